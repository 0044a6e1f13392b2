"""The search figures are written as real PNG files, whatever the inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from econ_ray.search.pareto import TrialPoint, hypervolume_history, pareto_front
from econ_ray.search.plot import plot_hypervolume_history, plot_pareto

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024


@pytest.fixture
def points():
    return [
        TrialPoint("a", 0.70, 1.0, order=0),
        TrialPoint("b", 0.80, 2.0, order=1),
        TrialPoint("c", 0.75, 2.5, order=2),
        TrialPoint("d", 0.90, 4.0, order=3),
        TrialPoint("x", 0.95, 0.5, feasible=False, order=4),
        TrialPoint("f", 0.99, 0.1, complete=False, order=5),
    ]


def test_plot_pareto_writes_png(tmp_path, points):
    dense = TrialPoint("dense", 0.91, 4.5, params={"lam": 0.0})
    out = plot_pareto(
        points,
        pareto_front(points),
        tmp_path / "sub" / "pareto.png",
        metric_name="accuracy",
        seq_len=128,
        dense=dense,
        title="quickstart",
    )
    assert out == tmp_path / "sub" / "pareto.png"
    assert_png(out)


def test_plot_pareto_empty_front_and_no_dense(tmp_path, points):
    assert_png(plot_pareto(points, [], tmp_path / "a.png", metric_name="accuracy", seq_len=32))
    assert_png(plot_pareto([], [], tmp_path / "b.png", metric_name="perplexity", seq_len=32, maximize_metric=False))


def test_plot_pareto_accepts_str_path(tmp_path, points):
    out = plot_pareto(points, pareto_front(points), str(tmp_path / "c.png"), metric_name="accuracy", seq_len=32)
    assert isinstance(out, Path)
    assert_png(out)


def test_plot_hypervolume_history(tmp_path, points):
    hist = hypervolume_history(points, ref_metric=0.5, ref_gflops=5.0)
    assert_png(plot_hypervolume_history(hist, tmp_path / "hv.png", title="hv"))
    assert_png(plot_hypervolume_history([], tmp_path / "hv_empty.png"))


def test_plotting_leaves_pyplot_alone(tmp_path, points):
    # The figures are built without pyplot, so no figure is left open in its registry.
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plot_pareto(points, pareto_front(points), tmp_path / "p.png", metric_name="accuracy", seq_len=8)
    assert len(plt.get_fignums()) == before
