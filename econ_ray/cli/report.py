"""``econ-ray report RUN_DIR``: report.md and its PNGs from a finished search or experiment folder."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail


def cmd_report(args: argparse.Namespace) -> int:
    from econ_ray.experiments.report import build_report

    try:
        path = build_report(args.run_dir, title=args.title)
    except FileNotFoundError as exc:
        return fail(str(exc))
    pngs = sorted(str(p) for p in path.parent.rglob("*.png"))
    print(f"wrote {path} ({len(pngs)} figures)")
    if args.json:
        print(dump({"report": str(path), "figures": pngs}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write RUN_DIR/report.md and its PNGs from a finished run folder",
        description="Write report.md from a search run folder or an experiment folder (topk, "
        "ablation, baselines, posttrain, export; sub-folders included). Every number comes from "
        "the folder's files; figures are redrawn from the data.",
    )
    p.add_argument("run_dir", help="a finished search or experiment folder")
    p.add_argument("--title", help="report title (default: the folder's name)")
    p.add_argument("--json", action="store_true", help="print {report, figures} as one JSON object on the last line")
    p.set_defaults(func=cmd_report)
