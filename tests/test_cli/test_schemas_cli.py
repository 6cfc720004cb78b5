"""``edgestream schemas check|release|list`` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgestream.cli.schemas import app
from edgestream.core import paths
from edgestream.core.exceptions import ServiceUnavailable
from edgestream.core.registry.client import registry_client
from edgestream.core.schemas import all_schemas, history_versions, register_all

WIDE = {"COLUMNS": "400", "NO_COLOR": "1"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(paths.schemas_dir(), target)
    return target


def edit(folder: Path, stem: str, change) -> None:
    path = folder / f"{stem}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def add_required_field(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "quality", "type": "double", "doc": "Signal quality."})


def add_optional_field(schema: dict[str, Any]) -> None:
    schema["fields"].append(
        {"name": "quality", "type": ["null", "double"], "default": None, "doc": "Quality."}
    )


def test_check_passes_on_the_repo(runner: CliRunner) -> None:
    result = runner.invoke(app, ["check"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "BACKWARD_TRANSITIVE" in result.output
    assert f"all {len(all_schemas())} schemas pass" in result.output
    for name in ("SensorReading", "WindowSummary", "history v1, v2", "history v1"):
        assert name in result.output


def test_check_json_is_one_object(runner: CliRunner) -> None:
    result = runner.invoke(app, ["check", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["ok"] is True
    assert len(report["schemas"]) == len(all_schemas())


def test_check_fails_with_a_readable_report(runner: CliRunner, schemas_copy: Path) -> None:
    edit(schemas_copy, "sensor_reading", add_required_field)
    result = runner.invoke(app, ["check", "--schemas-dir", str(schemas_copy)], env=WIDE)
    assert result.exit_code == 1, result.output
    assert "BREAKS" in result.output
    assert f"1 of {len(all_schemas())} schemas break BACKWARD_TRANSITIVE" in result.output
    assert "field 'quality' is in the reader schema without a default" in result.output
    assert "add a default to 'quality'" in result.output


def named(schema: dict, name: str) -> dict:
    """The field ``name`` of a record schema (by name: positions move between versions)."""
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.mark.parametrize(
    ("stem", "change", "expected"),
    [
        (
            "window_summary",
            lambda s: named(s, "max_score").pop("default"),
            "optional field WindowSummary.max_score (union with null) has no default",
        ),
        (
            "anomaly_alert",
            lambda s: named(s, "score").update(type="string"),
            "TYPE_MISMATCH",
        ),
    ],
    ids=["default-removed", "type-changed"],
)
def test_check_via_environment_variable(
    runner: CliRunner, schemas_copy: Path, stem: str, change, expected: str
) -> None:
    edit(schemas_copy, stem, change)
    result = runner.invoke(
        app, ["check", "--json"], env={**WIDE, "EDGESTREAM_SCHEMAS": str(schemas_copy)}
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    [broken] = [s for s in report["schemas"] if not s["ok"]]
    assert broken["file"].endswith(f"{stem}.avsc")
    assert any(expected in problem for problem in broken["problems"]), broken["problems"]


def test_release_then_nothing_to_release(runner: CliRunner, schemas_copy: Path) -> None:
    edit(schemas_copy, "sensor_reading", add_optional_field)
    args = ["release", "--schemas-dir", str(schemas_copy)]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    version = history_versions("SensorReading", schemas_copy)[-1]
    assert f"released SensorReading version {version}" in result.output
    again = runner.invoke(app, args, env=WIDE)
    assert again.exit_code == 0
    assert "nothing to release" in again.output


def test_release_refuses_a_break(runner: CliRunner, schemas_copy: Path) -> None:
    edit(schemas_copy, "sensor_reading", add_required_field)
    before = history_versions("SensorReading", schemas_copy)
    result = runner.invoke(app, ["release", "--schemas-dir", str(schemas_copy)], env=WIDE)
    assert result.exit_code == 1
    assert "not releasing" in result.output
    assert history_versions("SensorReading", schemas_copy) == before


def test_list(runner: CliRunner, schemas_copy: Path) -> None:
    edit(schemas_copy, "sensor_frame", add_optional_field)
    result = runner.invoke(app, ["list", "--schemas-dir", str(schemas_copy)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "SensorFrame" in result.output and "(unreleased)" in result.output
    assert "ts[i]" in result.output  # docs are printed as text, not as rich markup
    rows = json.loads(
        runner.invoke(app, ["list", "--json", "--schemas-dir", str(schemas_copy)]).output
    )
    assert {row["name"] for row in rows} >= {"SensorReading", "AnomalyAlert"}
    frame = next(row for row in rows if row["name"] == "SensorFrame")
    assert frame["unreleased_changes"] is True and frame["released"] >= 1


@pytest.fixture
def registry_url(tmp_path: Path) -> Iterator[str]:
    from edgestream.core.registry import RegistryServer

    with RegistryServer(tmp_path / "registry.db") as server:
        yield server.url


@pytest.mark.integration
def test_check_against_a_registry(runner: CliRunner, registry_url: str, schemas_copy: Path):
    register_all(registry_url, {"sensors.pumps": "SensorReading"})
    result = runner.invoke(app, ["check", "--registry", registry_url], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "sensors.pumps-value v1" in result.output
    # a repo change that cannot read what producers already wrote under that subject
    edit(schemas_copy, "sensor_reading", lambda s: s["fields"][4].update(type="int"))
    args = ["check", "--registry", registry_url, "--schemas-dir", str(schemas_copy)]
    broken = runner.invoke(app, args, env=WIDE)
    assert broken.exit_code == 1
    assert "sensors.pumps-value v1" in broken.output


def test_check_against_a_registry_that_is_down(runner: CliRunner) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    registry_client(url)  # cached client with fast-fail retries
    result = runner.invoke(app, ["check", "--registry", url])
    assert isinstance(result.exception, ServiceUnavailable)
    assert "is not answering: start it with `edgestream stack start`" in str(result.exception)
