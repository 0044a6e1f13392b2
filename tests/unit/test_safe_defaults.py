"""Safe defaults: the local Ray cluster starts no dashboard unless asked, and then on 127.0.0.1 unless told;
the capacity check counts only the trials that can run at once."""

from __future__ import annotations

import pytest

from econ_ray.cli.main import build_parser
from econ_ray.config import ConfigError, parse_config
from econ_ray.search.driver import local_ray_options
from econ_ray.search.preflight import check_capacity


def test_local_cluster_listens_on_localhost_without_dashboard():
    opts = local_ray_options(parse_config({}))
    assert opts["address"] == "local"
    assert opts["include_dashboard"] is False
    assert opts["dashboard_host"] == "127.0.0.1"


def test_dashboard_is_opt_in_and_its_host_is_the_users_choice():
    opts = local_ray_options(parse_config({"distributed": {"dashboard": True, "dashboard_host": "0.0.0.0"}}))
    assert opts["include_dashboard"] is True and opts["dashboard_host"] == "0.0.0.0"
    args = build_parser().parse_args(["search", "f.yaml", "--dashboard-host", "127.0.0.1"])
    assert args.dashboard_host == "127.0.0.1"
    assert build_parser().parse_args(["search", "f.yaml"]).dashboard_host is None


def test_capacity_counts_trials_that_run_at_once():
    cfg = parse_config({"distributed": {"workers": 2, "cpus_per_worker": 1.0}})
    check_capacity(cfg, "f.yaml", trials=1, concurrency=8, cpus=2, gpus=0)  # one trial at a time fits
    with pytest.raises(ConfigError, match="search.concurrency: concurrency 2 x 2 workers x 1 CPU = 4 CPUs"):
        check_capacity(cfg, "f.yaml", trials=5, concurrency=2, cpus=2, gpus=0)
    check_capacity(cfg, "f.yaml", trials=5, concurrency=2, cpus=4, gpus=0)
