"""`econ-ray posttrain` on search_spaces/posttrain_gpt2.yaml end to end (a few CPU-minutes; run under the lock)."""

import json

import pytest

from econ_ray.cli.main import main

pytestmark = pytest.mark.integration


def test_posttrain_gpt2_beats_topk_at_the_same_edges(tmp_path, capsys):
    assert (
        main(
            [
                "posttrain",
                "search_spaces/posttrain_gpt2.yaml",
                "--eps",
                "0.01,0.05,0.1",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "posttrain.png").stat().st_size > 10_000
    gates = [r for r in out["rows"] if r["method"] == "gates"]
    assert [g["eps"] for g in gates] == [0.01, 0.05, 0.1]
    for g in gates:
        # feasible: certified on held-out rows the multiplier never read, and validation CE within tau;
        # otherwise the row says why. The two looser ceilings must be met.
        if g["feasible"]:
            assert g["snapshot_step"] > 0 and g["ce_certified"] <= g["tau"] and g["ce"] <= g["tau"]
        else:
            assert g["infeasible_reason"] and g["eps"] == 0.01, g
        assert g["kept_fraction"] < 0.8  # gates really closed
        budget = next(r for r in out["rows"] if r["method"] == "budget" and r["matched_eps"] == g["eps"])
        assert g["ce"] < budget["ce"]  # the threshold budget at the same edges per query is worse
        if g["topk_ce_at_match"] is not None:
            assert g["ce"] < g["topk_ce_at_match"]  # and so is top-k (seed 003)
    kept = [g["kept_fraction"] for g in gates]
    assert kept[-1] < kept[0]  # a looser ceiling closes more edges
