"""``edgestream validate``: exit codes, summary, one problem per line, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgestream.cli.validate import register
from edgestream.core.paths import topologies_dir

BROKEN = """\
name: broken
gateways:
  - id: gw-1
    sites: [site-1]
    device_types: [pump]
    canry: true
sensors:
  topics:
    - name: sensors/pump
      device_type: pump
      channels: {vibration_rms: {unit: mm/s}}
models:
  pump: {name: m, path: m.onnx, threshold: 0.5}
windows:
  - {size: 10s, hop: 3s}
"""


@pytest.fixture
def app() -> typer.Typer:
    cli = typer.Typer()
    register(cli)

    @cli.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps "validate" a subcommand
        """Nothing."""

    return cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_valid_topology_prints_summary_and_exits_0(app: typer.Typer, runner: CliRunner) -> None:
    path = topologies_dir() / "default.yaml"
    result = runner.invoke(app, ["validate", str(path), "--no-check-files"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "topology default v1 is valid" in result.output
    for heading in ("gateways", "topics", "models", "windows", "cloud jobs"):
        assert heading in result.output
    assert "gw-1" in result.output and "sensors.reefer" in result.output
    assert "fleet_stats" in result.output


def test_invalid_topology_lists_every_problem_and_exits_1(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{path}:6: gateways[0].canry: got the unknown key 'canry'; expected one of: id, sites, "
        "device_types, devices, bootstrap, canary; did you mean 'canary'?",
        f"{path}:9: sensors.topics[0].name: got 'sensors/pump'; expected a Kafka topic name: "
        "only letters, digits, '.', '_' and '-'",
    ]
    assert "2 problems in" in result.stderr


def test_cross_reference_problems_after_fields_are_fixed(
    app: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN.replace("    canry: true\n", "").replace("sensors/pump", "sensors.pump"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:12: models.pump.path: got 'm.onnx'; expected an existing")
    assert lines[1] == (
        f"{path}:14: windows[0].hop: got '3s'; expected a hop that divides size 10s evenly"
    )
    skipped = runner.invoke(app, ["validate", str(path), "--no-check-files"])
    assert skipped.exit_code == 1 and len(skipped.stdout.splitlines()) == 1


def test_json_output(app: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    good = runner.invoke(
        app, ["validate", str(topologies_dir() / "default.yaml"), "--json", "--no-check-files"]
    )
    assert good.exit_code == 0
    report = json.loads(good.stdout)
    assert report["ok"] is True and report["name"] == "default"
    assert len(report["fingerprint"]) == 64
    assert [g["id"] for g in report["gateways"]] == ["gw-1", "gw-2"]
    assert {m["device_type"] for m in report["models"]} == {"pump", "reefer"}
    assert set(report["cloud_jobs"]) == {"fleet_stats", "drift", "retrain"}

    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    bad = runner.invoke(app, ["validate", str(path), "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    assert [(p["line"], p["path"]) for p in report["problems"]] == [
        (6, "gateways[0].canry"),
        (9, "sensors.topics[0].name"),
    ]


def test_missing_file_exits_1_with_one_line(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "no/such/topology.yaml"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"no/such/topology.yaml: no such topology file: check the path (the examples are in "
        f"{topologies_dir()})"
    ]


def test_missing_env_var_is_reported_not_leaked(
    app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FACTORY_CLOUD_BOOTSTRAP", "FACTORY_CLOUD_USER", "FACTORY_CLOUD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = topologies_dir() / "factory_vibration.yaml"
    result = runner.invoke(app, ["validate", str(path), "--no-check-files"])
    assert result.exit_code == 1
    assert "environment variable FACTORY_CLOUD_PASSWORD to be set" in result.stdout
    monkeypatch.setenv("FACTORY_CLOUD_BOOTSTRAP", "k:9093")
    monkeypatch.setenv("FACTORY_CLOUD_USER", "u")
    monkeypatch.setenv("FACTORY_CLOUD_PASSWORD", "do-not-print-me")
    result = runner.invoke(app, ["validate", str(path), "--no-check-files", "--json"])
    assert result.exit_code == 0, result.output
    assert "do-not-print-me" not in result.output
