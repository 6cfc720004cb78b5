"""``deploy --target systemd``: units that ``systemd-analyze verify`` accepts, running the
exact commands of the local target, with restart policy and resource limits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import edgestream.deploy.systemd as systemd
from edgestream.cli.main import app
from edgestream.core.paths import topologies_dir
from edgestream.core.topology import load_topology
from edgestream.deploy.brokers import Targets
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.local import process_argv, run_dir
from edgestream.deploy.plan import build_plan
from edgestream.deploy.systemd import SystemdOptions, units, write_units
from tests.support.doctests import run_doctests

TOPOLOGY = topologies_dir() / "default.yaml"


def _systemd_analyze() -> str:
    """``systemd-analyze``, installed from Debian's ``systemd`` package when it is missing."""
    found = shutil.which("systemd-analyze")
    if found is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True)
        found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing and `apt-get install systemd` did not bring it")
    return found


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_doctests() -> None:
    run_doctests(systemd)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    verify = _systemd_analyze()
    written = write_units(load_topology(TOPOLOGY), tmp_path)
    assert written["edgestream-default.target"] == "created"
    files = sorted(str(tmp_path / f) for f in written if not f.endswith(".env.example"))
    assert len(files) == 6  # worker + forwarder for 2 gateways, the Flink jobs, the target
    done = subprocess.run([verify, "verify", *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    )
    assert set(write_units(load_topology(TOPOLOGY), tmp_path).values()) == {"unchanged"}


def test_a_unit_runs_the_local_command_with_restart_and_limits() -> None:
    topology = load_topology(TOPOLOGY)
    opts = SystemdOptions(edge_bootstrap="10.0.0.5:9092", cloud_bootstrap="cloud:9092")
    text = units(topology, opts)["edgestream-default-edge-gw-1.service"]
    unit = _settings(text)
    spec = next(p for p in build_plan(topology).processes if p.name == "edge-gw-1")
    brokers = {"edge:gw-1": "10.0.0.5:9092", "edge:gw-2": "10.0.0.5:9092", "cloud": "cloud:9092"}
    targets = Targets(brokers, "http://schema-registry:8081")
    assert unit["ExecStart"] == [" ".join(process_argv(spec, topology, targets, run_dir(topology)))]
    assert unit["Restart"] == ["on-failure"] and unit["RestartSec"] == ["1"]
    assert unit["StartLimitBurst"] == ["10"] and unit["StartLimitIntervalSec"] == ["600"]
    assert unit["MemoryMax"] == ["1G"] and unit["CPUQuota"] == ["100%"]
    assert unit["WorkingDirectory"] == [str(TOPOLOGY.resolve().parent)]
    assert unit["EnvironmentFile"] == ["-/etc/edgestream/default.env"]
    assert unit["WantedBy"] == ["edgestream-default.target"]
    no_cloud = units(topology, SystemdOptions(cloud_jobs=False))
    assert "edgestream-default-cloud-jobs.service" not in no_cloud


def test_bad_limits_and_a_missing_out_dir_are_refused() -> None:
    with pytest.raises(DeployError, match="MemoryMax '1 GB'"):
        SystemdOptions(limits={"edge-worker": ("1 GB", "100%")})
    with pytest.raises(DeployError, match="CPUQuota '2'"):
        SystemdOptions(limits={"edge-worker": ("1G", "2")})
    result = CliRunner().invoke(app, ["deploy", str(TOPOLOGY), "--target", "systemd"])
    assert result.exit_code != 0 and "--out DIR" in str(result.exception), result.output
