"""``edgestream validate``: exit codes, summary, one problem per line, --json."""

from __future__ import annotations

import json
import re
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
    result = runner.invoke(app, ["validate", str(path), "--no-check-files", "--strict"])
    assert result.exit_code == 1
    assert "environment variable FACTORY_CLOUD_PASSWORD to be set" in result.stdout
    monkeypatch.setenv("FACTORY_CLOUD_BOOTSTRAP", "k:9093")
    monkeypatch.setenv("FACTORY_CLOUD_USER", "u")
    monkeypatch.setenv("FACTORY_CLOUD_PASSWORD", "do-not-print-me")
    result = runner.invoke(app, ["validate", str(path), "--no-check-files", "--json"])
    assert result.exit_code == 0, result.output
    assert "do-not-print-me" not in result.output


# --- ${VAR} references: needed at deploy time, not at validation -----------------------------

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SHIPPED = sorted(topologies_dir().glob("*.yaml"))


def without_their_env(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Unset every variable the file references without a default; their names."""
    names = sorted(set(ENV_REFERENCE.findall(path.read_text())))
    for name in names:
        monkeypatch.delenv(name, raising=False)
    return names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_example_validates_without_its_secrets(
    path: Path, app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = without_their_env(path, monkeypatch)
    result = runner.invoke(app, ["validate", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output
    if names:
        assert "needed at deploy time" in result.output
    as_json = runner.invoke(app, ["validate", str(path), "--json"])
    assert as_json.exit_code == 0, as_json.output
    needed = json.loads(as_json.stdout)["needed_at_deploy"]
    assert sorted({n["variable"] for n in needed}) == names
    for need in needed:  # each variable with the key path (and line) that uses it
        line = path.read_text().splitlines()[need["line"] - 1]
        assert "${" + need["variable"] + "}" in line
        assert f"{path}:{need['line']}: {need['path']}: ${{{need['variable']}}}" in result.output


def test_validate_topologies_glob_exits_0_without_secrets(
    app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for path in SHIPPED:  # `edgestream validate topologies/*.yaml`, as the shell expands it
        without_their_env(path, monkeypatch)
    result = runner.invoke(app, ["validate", *map(str, SHIPPED)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.count("is valid") == len(SHIPPED) >= 4
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    mixed = runner.invoke(app, ["validate", str(broken), *map(str, SHIPPED), "--no-check-files"])
    assert mixed.exit_code == 1  # one bad file fails the run; the others are still checked
    assert mixed.stdout.count("is valid") == len(SHIPPED) and "canry" in mixed.stdout


def test_needed_variables_name_their_key_paths(
    app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = topologies_dir() / "cold_chain.yaml"
    without_their_env(path, monkeypatch)
    result = runner.invoke(app, ["validate", str(path), "--json"])
    needed = {(n["variable"], n["path"]) for n in json.loads(result.stdout)["needed_at_deploy"]}
    assert needed == {
        ("COLD_CHAIN_CLOUD_BOOTSTRAP", "forwarding.bootstrap"),
        ("COLD_CHAIN_CLOUD_USER", "forwarding.security.sasl.username"),
        ("COLD_CHAIN_CLOUD_PASSWORD", "forwarding.security.sasl.password"),
    }


def test_strict_fails_naming_the_variable(
    app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = topologies_dir() / "cold_chain.yaml"
    without_their_env(path, monkeypatch)
    result = runner.invoke(app, ["validate", str(path), "--strict"], terminal_width=200)
    assert result.exit_code == 1
    line = line_of(path, "bootstrap: ${COLD_CHAIN_CLOUD_BOOTSTRAP}")
    assert (
        f"{path}:{line}: forwarding.bootstrap: got "
        "'${COLD_CHAIN_CLOUD_BOOTSTRAP}'; expected environment variable "
        "COLD_CHAIN_CLOUD_BOOTSTRAP to be set" in result.stdout
    )


def test_other_problems_are_still_found_beside_unset_variables(
    app: typer.Typer, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = topologies_dir() / "cold_chain.yaml"
    without_their_env(source, monkeypatch)
    broken = tmp_path / "cold_chain.yaml"
    broken.write_text(source.read_text().replace("  compression: ", "  compresion: "))
    result = runner.invoke(app, ["validate", str(broken), "--no-check-files"])
    assert result.exit_code == 1
    assert "forwarding.compresion: got the unknown key 'compresion'" in result.stdout
    assert "COLD_CHAIN_CLOUD" not in result.stdout  # deferred, not a problem


def test_deploy_still_fails_on_unset_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgestream.cli.main import main

    path = topologies_dir() / "factory_vibration.yaml"
    without_their_env(path, monkeypatch)
    with pytest.raises(SystemExit) as exited:
        main(["deploy", str(path), "--dry-run"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "environment variable FACTORY_CLOUD_PASSWORD to be set" in err
    assert "forwarding.security.sasl.password" in err


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)
