"""cluster.yaml: valid for Ray's autoscaler, A100 workers that scale to zero, nothing public but SSH."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"

# A line that defines a mapping key: optional list dash, then a bare or quoted key and a colon
# followed by a space or the end of the line (so "s3://..." or "--host=..." are not keys).
_KEY_LINE = re.compile(r"""^\s*(?:-\s+)?(?:"[^"]*"|'[^']*'|[A-Za-z_~][\w.\-/~]*)\s*:(?:\s|$)""")


@pytest.fixture(scope="module")
def text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def config(text) -> dict:
    return yaml.safe_load(text)


def test_validates_with_rays_schema(config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(config))
    # `ray up` validates the config after filling in the AWS defaults; do the same.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_name_provider_and_timeouts(config):
    assert config["cluster_name"] == "econ-ray"
    prov = config["provider"]
    assert prov["type"] == "aws" and prov["region"] == "us-east-1"
    assert prov["availability_zone"].startswith("us-east-1")
    assert prov["cache_stopped_nodes"] is False
    assert config["idle_timeout_minutes"] == 10
    assert config["upscaling_speed"] > 0
    assert config["auth"] == {"ssh_user": "ubuntu"}


def test_head_node_type_is_a_cpu_node(config):
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    assert types[head]["node_config"]["InstanceType"] == "m5.2xlarge"
    assert types[head]["resources"].get("GPU", 0) == 0
    assert types[head]["min_workers"] == 0 and types[head]["max_workers"] == 0


def test_a100_worker_type(config):
    a100 = [t for t in config["available_node_types"].values() if t["node_config"]["InstanceType"] == "p4d.24xlarge"]
    assert len(a100) == 1
    (t,) = a100
    assert t["resources"]["GPU"] == 8
    assert t["resources"]["CPU"] == 96
    assert t["resources"]["accelerator_type:A100"] == 1
    assert t["min_workers"] == 0 < t["max_workers"] == 4
    assert config["max_workers"] >= t["max_workers"]


def test_dashboard_on_localhost_only(config):
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in start
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start


def test_mlflow_bound_to_localhost_with_s3_artifacts(config):
    cmds = " ".join(config["head_setup_commands"])
    assert "mlflow server" in cmds and "nohup" in cmds
    assert "--host 127.0.0.1" in cmds
    assert "0.0.0.0" not in cmds and "hostname -I" not in cmds
    start = " ".join(config["head_start_ray_commands"])
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in start
    assert "s3://YOUR-BUCKET/econ-ray/mlflow" in cmds


def test_setup_installs_cuda_torch_then_project(config):
    cmds = config["setup_commands"]
    joined = "\n".join(cmds)
    assert "torch==2.13.0" in joined and "download.pytorch.org/whl/cu128" in joined
    i_torch = next(i for i, c in enumerate(cmds) if "torch==2.13.0" in c)
    i_proj = next(i for i, c in enumerate(cmds) if "install -e ~/econ-ray" in c)
    assert i_torch < i_proj  # the CUDA build must be in place before pip resolves the project
    assert config["file_mounts"] == {"~/econ-ray": "."}


def test_only_ssh_is_open(config):
    perms = config["provider"]["security_group"]["IpPermissions"]
    assert perms, "expected an explicit SSH rule"
    for rule in perms:
        assert rule["FromPort"] == 22 and rule["ToPort"] == 22 and rule["IpProtocol"] == "tcp"
        cidrs = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        assert cidrs and "0.0.0.0/0" not in cidrs
        assert not rule.get("Ipv6Ranges")


def test_every_key_is_commented(text):
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or not _KEY_LINE.match(line):
            continue
        trailing = " #" in line
        above = i > 0 and lines[i - 1].strip().startswith("#")
        if not (trailing or above):
            missing.append(f"{i + 1}: {line}")
    assert not missing, "keys without a comment:\n" + "\n".join(missing)


def test_key_check_can_fail():
    # The line-based check itself: a bare key with no comment is caught, a command is not a key.
    assert _KEY_LINE.match("    min_workers: 0")
    assert _KEY_LINE.match('    "~/econ-ray": "."')
    assert _KEY_LINE.match("            - FromPort: 22")
    assert not _KEY_LINE.match("    - ray stop")
    assert not _KEY_LINE.match("    - nohup mlflow server --artifacts-destination s3://b/x")
