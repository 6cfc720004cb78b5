"""The schema catalogue, the house rules and the BACKWARD_TRANSITIVE release gate."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from edgestream.core import paths, schemas
from edgestream.core.exceptions import SchemaError
from edgestream.core.registry.client import registry_client
from edgestream.core.schemas import (
    LEVEL,
    all_schemas,
    check,
    history_versions,
    lint_schema,
    register_all,
    snapshot,
)
from edgestream.core.serde import AvroSerializer
from tests.support.doctests import run_doctests

NAMES = {
    "AnomalyAlert",
    "FleetStats",
    "ModelUpdate",
    "RetrainRequest",
    "SensorFrame",
    "SensorReading",
    "WindowSummary",
}


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    """A private copy of the repo's schemas folder (history included) to break at will."""
    target = tmp_path / "schemas"
    shutil.copytree(paths.schemas_dir(), target)
    return target


def edit(folder: Path, stem: str, change: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``change`` to the schema in ``<folder>/<stem>.avsc``."""
    path = folder / f"{stem}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


# --- catalogue -----------------------------------------------------------------------------


def test_all_schemas_has_the_seven_required_records() -> None:
    schemas = all_schemas()
    assert set(schemas) >= NAMES
    assert {s["namespace"] for s in schemas.values()} == {"io.edgestream.v1"}


def test_every_schema_has_a_released_first_version() -> None:
    for name in NAMES:
        versions = history_versions(name)
        assert versions[0] == 1
        assert versions == list(range(1, len(versions) + 1))
        first = paths.schemas_dir() / "history" / name / "1.avsc"
        assert json.loads(first.read_text())["name"] == name


def test_register_all_registers_topic_value_subjects() -> None:
    registry = registry_client(f"mock://{uuid.uuid4().hex}")
    topics = {"fleet.alerts": "AnomalyAlert", "sensors.pumps": "sensor_reading"}
    ids = register_all(registry, topics)
    assert set(ids) == set(topics)
    assert sorted(registry.get_subjects()) == ["fleet.alerts-value", "sensors.pumps-value"]
    # a producer of the topic finds the very same id
    assert (
        AvroSerializer(registry, "AnomalyAlert", "fleet.alerts-value").schema_id
        == ids["fleet.alerts"]
    )


# --- house rules ---------------------------------------------------------------------------


def test_lint_passes_on_the_repo() -> None:
    for schema in all_schemas().values():
        assert lint_schema(schema) == []


def test_lint_finds_missing_docs_and_defaults_in_nested_records() -> None:
    inner = {
        "type": "record",
        "name": "Inner",
        "fields": [{"name": "x", "type": ["null", "long"], "doc": "x"}],
    }
    outer = {
        "type": "record",
        "name": "Outer",
        "doc": "Outer.",
        "fields": [{"name": "items", "type": {"type": "array", "items": inner}, "doc": "Items."}],
    }
    assert lint_schema(outer) == [
        "record Inner has no 'doc'",
        "optional field Inner.x (union with null) has no default",
    ]


# --- the gate ------------------------------------------------------------------------------


def test_check_passes_on_the_repo() -> None:
    report = check()
    assert report.ok, report.to_dict()
    assert report.level == LEVEL == "BACKWARD_TRANSITIVE"
    assert {s.name for s in report.schemas} == set(all_schemas()) >= NAMES
    for entry in report.schemas:
        assert f"history/{entry.name}/1.avsc" in entry.checked


BREAKS: dict[str, tuple[str, Callable[[dict[str, Any]], Any], str]] = {
    "required field added": (
        "sensor_reading",
        lambda s: s["fields"].append({"name": "quality", "type": "double", "doc": "Quality."}),
        "READER_FIELD_MISSING_DEFAULT_VALUE",
    ),
    "type changed": (
        "sensor_reading",
        lambda s: field(s, "seq").update(type="string", default="-1"),
        "TYPE_MISMATCH",
    ),
    "optional default removed": (
        "window_summary",
        lambda s: field(s, "max_score").pop("default"),
        "optional field WindowSummary.max_score (union with null) has no default",
    ),
    "doc removed": (
        "anomaly_alert",
        lambda s: field(s, "score").pop("doc"),
        "field AnomalyAlert.score has no 'doc'",
    ),
    "bad default": (
        "model_update",
        lambda s: field(s, "framework").update(default=3),
        "does not parse",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_check_reports_a_break_readably(schemas_copy: Path, case: str) -> None:
    stem, change, expected = BREAKS[case]
    edit(schemas_copy, stem, change)
    report = check(schemas_copy)
    assert not report.ok
    [broken] = report.broken
    assert broken.file.endswith(f"{stem}.avsc")
    assert any(expected in problem for problem in broken.problems), broken.problems
    assert all(s.ok for s in report.schemas if s is not broken)
    json.dumps(report.to_dict())  # serialisable as is


def test_a_renamed_record_is_a_break_unless_it_aliases_the_old_name(schemas_copy: Path):
    edit(schemas_copy, "fleet_stats", lambda s: s.update(name="FleetStatistics"))
    [broken] = check(schemas_copy).broken
    assert broken.name == "FleetStats"
    assert "released record FleetStats has no current schema" in broken.problems[0]

    edit(schemas_copy, "fleet_stats", lambda s: s.update(aliases=["io.edgestream.v1.FleetStats"]))
    report = check(schemas_copy)
    assert report.ok, report.to_dict()
    renamed = next(s for s in report.schemas if s.name == "FleetStatistics")
    assert renamed.checked == ["history/FleetStats/1.avsc"]
    assert renamed.unreleased and renamed.latest_release == 0


def test_check_reports_a_file_that_is_not_json(schemas_copy: Path) -> None:
    (schemas_copy / "sensor_frame.avsc").write_text('{"type": "record", "name": ')
    report = check(schemas_copy)
    [broken] = report.broken
    assert broken.name == "sensor_frame"
    assert "sensor_frame.avsc does not parse" in broken.problems[0]


def test_check_is_transitive(schemas_copy: Path) -> None:
    """v1 has tags as a map, v2 dropped tags: re-adding tags as a string reads v2, not v1."""
    history = schemas_copy / "history" / "SensorReading"
    v2 = json.loads((history / "1.avsc").read_text())
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "tags"]
    (history / "2.avsc").write_text(json.dumps(v2))

    def readd_tags_as_string(schema: dict[str, Any]) -> None:
        field(schema, "tags").update(type="string", default="")

    edit(schemas_copy, "sensor_reading", readd_tags_as_string)
    [broken] = check(schemas_copy).broken
    assert broken.checked == ["history/SensorReading/1.avsc", "history/SensorReading/2.avsc"]
    assert len(broken.problems) == 1
    assert "history/SensorReading/1.avsc" in broken.problems[0]
    assert "TYPE_MISMATCH" in broken.problems[0]


def test_check_follows_edgestream_schemas(schemas_copy: Path, monkeypatch) -> None:
    edit(schemas_copy, "sensor_reading", lambda s: field(s, "ts").update(type="string"))
    monkeypatch.setenv("EDGESTREAM_SCHEMAS", str(schemas_copy))
    assert [s.name for s in check().broken] == ["SensorReading"]


def test_check_of_a_missing_folder_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="--schemas-dir"):
        check(tmp_path / "nope")


# --- release -------------------------------------------------------------------------------


def add_optional_quality(schema: dict[str, Any]) -> None:
    schema["fields"].append(
        {"name": "quality", "type": ["null", "double"], "default": None, "doc": "Quality 0..1."}
    )


def test_release_snapshots_changed_schemas_only(schemas_copy: Path) -> None:
    before = {name: history_versions(name, schemas_copy) for name in NAMES}
    edit(schemas_copy, "sensor_reading", add_optional_quality)
    report = check(schemas_copy)
    assert report.ok
    assert [s.name for s in report.schemas if s.unreleased] == sorted(
        name for name in NAMES if name == "SensorReading" or _differs(schemas_copy, name)
    )
    written = snapshot(schemas_copy)
    assert written["SensorReading"] == before["SensorReading"][-1] + 1
    released = schemas_copy / "history" / "SensorReading" / f"{written['SensorReading']}.avsc"
    assert released.read_text() == (schemas_copy / "sensor_reading.avsc").read_text()
    assert not any(s.unreleased for s in check(schemas_copy).schemas)
    assert snapshot(schemas_copy) == {}


def _differs(folder: Path, name: str) -> bool:
    stem = {s["name"]: p.stem for p in folder.glob("*.avsc") for s in [json.loads(p.read_text())]}
    current = json.loads((folder / f"{stem[name]}.avsc").read_text())
    latest = history_versions(name, folder)[-1]
    return current != json.loads((folder / "history" / name / f"{latest}.avsc").read_text())


def test_release_refuses_when_anything_breaks(schemas_copy: Path) -> None:
    edit(schemas_copy, "sensor_reading", add_optional_quality)
    edit(schemas_copy, "fleet_stats", lambda s: field(s, "scope").update(type="int"))
    with pytest.raises(SchemaError, match="not releasing: 1 schema"):
        snapshot(schemas_copy)
    assert history_versions("SensorReading", schemas_copy) == history_versions("SensorReading")


def test_release_of_a_new_schema_writes_version_one(schemas_copy: Path) -> None:
    new = {
        "type": "record",
        "name": "GatewayHeartbeat",
        "namespace": "io.edgestream.v1",
        "doc": "A gateway is alive.",
        "fields": [{"name": "gateway_id", "type": "string", "doc": "Gateway."}],
    }
    (schemas_copy / "gateway_heartbeat.avsc").write_text(json.dumps(new))
    assert snapshot(schemas_copy)["GatewayHeartbeat"] == 1
    assert history_versions("GatewayHeartbeat", schemas_copy) == [1]


# --- against a registry --------------------------------------------------------------------


@pytest.fixture
def real_registry(tmp_path: Path) -> Iterator[SchemaRegistryClient]:
    from edgestream.core.registry import RegistryServer

    with RegistryServer(tmp_path / "registry.db") as server:
        yield registry_client(server.url)


@pytest.mark.integration
def test_check_includes_every_registered_version(real_registry: SchemaRegistryClient) -> None:
    register_all(real_registry, {"sensors.pumps": "SensorReading", "fleet.alerts": "AnomalyAlert"})
    report = check(registry=real_registry)
    assert report.ok, report.to_dict()
    by_name = {s.name: s for s in report.schemas}
    assert "sensors.pumps-value v1" in by_name["SensorReading"].checked
    assert "fleet.alerts-value v1" in by_name["AnomalyAlert"].checked
    assert report.registry == real_registry.config()["url"]


@pytest.mark.integration
def test_check_fails_on_a_registered_version_the_repo_cannot_read(real_registry) -> None:
    """Someone registered a SensorReading with a required field the repo does not know."""
    legacy = json.loads((paths.schemas_dir() / "sensor_reading.avsc").read_text())
    field(legacy, "seq").update(type="string", default="")
    real_registry.set_compatibility("legacy.pumps-value", "NONE")
    real_registry.register_schema("legacy.pumps-value", Schema(json.dumps(legacy), "AVRO"))
    report = check(registry=real_registry)
    [broken] = report.broken
    assert broken.name == "SensorReading"
    assert "legacy.pumps-value v1" in broken.problems[0]
    assert "TYPE_MISMATCH" in broken.problems[0]


def test_docstring_examples_run() -> None:
    run_doctests(schemas)
