"""``econ-ray sync RUN_DIR``: upload the MLflow operations a search kept on disk during a tracking outage."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail


def cmd_sync(args: argparse.Namespace) -> int:
    from econ_ray.search.resume import ResumeError
    from econ_ray.search.sync import sync_run
    from econ_ray.tracking import TrackingError

    try:
        out = sync_run(args.run_dir, tracking_uri=args.tracking_uri)
    except ResumeError as exc:
        return fail(str(exc))
    except TrackingError as exc:
        return fail(f"{args.run_dir}: {exc}")
    if out["applied"] or out["files"]:
        print(
            f"uploaded {out['applied']} tracking operation(s) from {len(out['files'])} file(s) to {out['tracking_uri']}"
        )
        for trial, version in sorted(out["versions"].items()):
            print(f"  trial {trial}: registry version {version}")
    else:
        print(f"{args.run_dir}: nothing to upload")
    if args.json:
        print(dump(out))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="upload tracking operations a search kept on disk while MLflow was unreachable",
        description="Replay RUN_DIR/tracking_outbox (MLflow operations a search could not log) "
        "onto the tracking store, in order, then fill the registry versions into pareto.json. "
        "Safe to run again: finished files are renamed *.synced.",
    )
    p.add_argument("run_dir", help="the search's run folder")
    p.add_argument("--tracking-uri", help="tracking store (default: the one the search used, else MLFLOW_TRACKING_URI)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.set_defaults(func=cmd_sync)
