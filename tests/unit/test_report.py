"""econ-ray report: every number in report.md comes from the run folder's files; PNGs redrawn."""

import json

from econ_ray.cli.main import main
from econ_ray.experiments.report import build_report, fmt, md_table
from econ_ray.search.records import TrialRecord, write_trials
from econ_ray.search.results import summarise


def _search_folder(root):
    def rec(i, metric, gflops, status="complete", reason=None):
        m = {
            "metric": metric,
            "effective_gflops": gflops,
            "dense_total_gflops": 1.0,
            "dense_metric": 0.9,
            "seq_len": 32,
            "metric_name": "accuracy",
            "lam": 0.1 * (i + 1),
            "alpha": 1.0,
            "beta": 0.5,
        }
        return TrialRecord(
            trial_id=f"t{i}",
            order=i,
            status=status,
            knobs={"lam": 0.1 * (i + 1)},
            metrics=m if status == "complete" else {},
            reason=reason,
        )

    records = [rec(0, 0.8765, 0.25), rec(1, 0.91, 0.6), rec(2, 0.7, 0.7), rec(3, 0.0, 0.0, "failed", "loss is nan")]
    root.mkdir()
    write_trials(root, records)
    rows, hv, ref, _ = summarise(root, records, metric_name="accuracy", maximize=True, chance=0.5)
    (root / "summary.json").write_text(
        json.dumps(
            {
                "n_trials": 4,
                "n_failed": 1,
                "hypervolume": hv,
                "pareto": rows,
                "reference_point": ref,
                "registered_model": "m",
            }
        )
    )
    for png in root.glob("*.png"):
        png.unlink()  # the report redraws them
    return hv


def test_report_of_a_search_with_experiments(tmp_path):
    root = tmp_path / "run"
    hv = _search_folder(root)
    (root / "abl").mkdir()
    (root / "abl" / "ablation.json").write_text(
        json.dumps(
            [
                {
                    "variant": "dense",
                    "lam": 0.0,
                    "metric_name": "accuracy",
                    "metric": 0.9123,
                    "effective_gflops": 1.0,
                    "seq_len": 32,
                },
                {
                    "variant": "both",
                    "lam": 2.0,
                    "alpha": 1.0,
                    "beta": 1.0,
                    "metric_name": "accuracy",
                    "metric": 0.8555,
                    "effective_gflops": 0.3333,
                    "seq_len": 32,
                },
            ]
        )
    )
    (root / "prune").mkdir()
    (root / "prune" / "baselines.json").write_text(
        json.dumps(
            [
                {
                    "method": "dense",
                    "ratio": 0.0,
                    "metric_name": "accuracy",
                    "metric": 0.9,
                    "effective_gflops": 1.0,
                    "seq_len": 32,
                },
                {
                    "method": "heads",
                    "ratio": 0.5,
                    "metric_name": "accuracy",
                    "metric": 0.6543,
                    "effective_gflops": 0.55,
                    "seq_len": 32,
                },
            ]
        )
    )
    path = build_report(root)
    text = path.read_text()
    assert "0.6543" in text and "](prune/pareto_baselines.png)" in text  # baselines over the search's trials
    assert (root / "prune" / "pareto_baselines.png").stat().st_size > 1000
    assert fmt(hv) in text and "0.8765" in text and "0.91" in text  # hypervolume and the Pareto points
    assert "loss is nan" in text and "| t3 | failed |" in text
    assert "0.8555" in text and "0.3333" in text and "(`abl/`)" in text
    for png in ("pareto.png", "hypervolume.png", "abl/ablation.png"):
        assert (root / png).stat().st_size > 1000, png
        assert f"]({png})" in text
    # the dominated trial t2 (0.7 at 0.7 GFLOPs) is listed among trials but not in the Pareto table
    pareto_part = text.split("**Pareto set**")[1].split("**Hypervolume")[0]
    assert "t2" not in pareto_part and "t0" in pareto_part and "t1" in pareto_part


def test_md_table_skips_empty_columns_and_escapes():
    lines = md_table([{"a": 1.23456, "b": None, "c": "x|y"}, {"a": float("nan"), "c": True}])
    assert lines[0] == "| a | c |"
    assert lines[2] == "| 1.235 | x\\|y |" and lines[3] == "| - | yes |"


def test_cli_report(tmp_path, capsys):
    _search_folder(tmp_path / "run")
    assert main(["report", str(tmp_path / "run"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["report"].endswith("report.md") and len(out["figures"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "nothing to report" in capsys.readouterr().err
