"""The one Avro serde path: round trips, every decode failure, evolution, confluent-kafka."""

from __future__ import annotations

import copy
import json
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentAvroDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentAvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgestream.core import avro_schema, serde
from edgestream.core.avro_schema import fastavro_schema, load_schema
from edgestream.core.exceptions import SchemaError, SerdeError, ServiceUnavailable
from edgestream.core.serde import (
    DECODE_REASONS,
    AvroDeserializer,
    AvroSerializer,
    registry_client,
    subject_for,
)
from tests.support.doctests import run_doctests

# --- realistic records: one per schema, every field set --------------------------------------


T0 = 1_718_000_000_000  # 2024-06-10T06:13:20Z, epoch ms

SENSOR_READING: dict[str, Any] = {
    "device_id": "pump-0042",
    "site": "plant-rotterdam",
    "device_type": "centrifugal_pump",
    "ts": T0 + 123,
    "seq": 184_467,
    "channels": {"temp_c": 71.25, "vibration_mm_s": 0.0315, "pressure_bar": 4.92, "rpm": 1480.0},
    "tags": {"fw": "1.4.2", "unit.temp_c": "celsius"},
}

SENSOR_FRAME: dict[str, Any] = {
    "device_id": "pump-0042",
    "site": "plant-rotterdam",
    "device_type": "centrifugal_pump",
    "first_seq": 184_467,
    "ts": [T0 + 1000 * i for i in range(50)],
    "channels": {
        "temp_c": [71.0 + i / 100 for i in range(50)],
        "rpm": [1480.0 - i for i in range(50)],
    },
    "tags": {"fw": "1.4.2"},
}

WINDOW_SUMMARY: dict[str, Any] = {
    "summary_id": f"gw-1|device|pump-0042|{T0}|{T0 + 60_000}",
    "gateway_id": "gw-1",
    "scope": "device",
    "scope_key": "pump-0042",
    "site": "plant-rotterdam",
    "device_type": "centrifugal_pump",
    "window_start": T0,
    "window_end": T0 + 60_000,
    "count": 60,
    "anomaly_count": 2,
    "max_score": 0.8125,
    "first_ts": T0 + 12,
    "last_ts": T0 + 59_980,
    "channels": {
        "temp_c": {
            "count": 60,
            "sum": 4275.0,
            "min": 70.5,
            "max": 73.25,
            "mean": 71.25,
            "m2": 12.5,
            "std": 0.45643546458763845,
            "last": 72.0,
            "p50": 71.0,
            "p95": 73.0,
        }
    },
    "model_version": "iforest-2024.06.01",
    "late_count": 1,
    "rollup_level": 0,
    "gateway_seq": 9001,
    "emitted_at": T0 + 75_000,
}

ANOMALY_ALERT: dict[str, Any] = {
    "alert_id": f"gw-1|pump-0042|{T0}|0",
    "incident_id": f"gw-1|pump-0042|{T0}",
    "status": "open",
    "update_number": None,
    "gateway_id": "gw-1",
    "site": "plant-rotterdam",
    "device_id": "pump-0042",
    "device_type": "centrifugal_pump",
    "severity": "critical",
    "ts": T0 + 2000,
    "first_ts": T0,
    "last_ts": T0 + 2000,
    "score": 0.9375,
    "threshold": 0.7,
    "rule": "consecutive(3)",
    "model_version": "iforest-2024.06.01",
    "channels": {"temp_c": 98.5, "rpm": 2210.0},
    "readings": [{"seq": 184_467 + i, "ts": T0 + 1000 * i, "score": 0.875} for i in range(3)],
    "reading_count": 3,
    "gateway_seq": 42,
    "emitted_at": T0 + 2100,
}

FLEET_STATS: dict[str, Any] = {
    "window_start": T0,
    "window_end": T0 + 300_000,
    "scope": "site",
    "scope_key": "plant-rotterdam",
    "device_count": 12,
    "reading_count": 3600,
    "anomaly_count": 9,
    "alert_count": 2,
    "anomaly_rate": 0.0025,
    "channels": {"temp_c": {"count": 3600, "mean": 71.5, "std": 1.25}},
    "worst_devices": [
        {"device_id": "pump-0042", "anomaly_count": 7, "max_score": 0.9375},
        {"device_id": "pump-0007", "anomaly_count": 2, "max_score": None},
    ],
    "model_versions": {"iforest-2024.06.01": 3600},
    "late_count": 0,
    "computed_at": T0 + 310_000,
}

RETRAIN_REQUEST: dict[str, Any] = {
    "specversion": "1.0",
    "id": f"iforest|device_type|centrifugal_pump|{T0}",
    "source": "/edgestream/cloud/drift",
    "type": "io.edgestream.retrain.requested",
    "time": T0 + 600_000,
    "subject": "iforest",
    "datacontenttype": "application/avro",
    "data": {
        "model_name": "iforest",
        "model_version": "iforest-2024.06.01",
        "model_sha256": "ab" * 32,
        "dedup_key": f"iforest|device_type|centrifugal_pump|{T0}",
        "reason": "drift",
        "severity": "major",
        "scope": "device_type",
        "scope_key": "centrifugal_pump",
        "window_start": T0,
        "window_end": T0 + 300_000,
        "features": [
            {
                "feature": "temp_c",
                "statistic": "psi",
                "value": 0.31,
                "threshold": 0.2,
                "sample_count": 3600,
            }
        ],
        "data_pointer": [
            {"topic": "fleet.summaries", "partition": 0, "start_offset": 100, "end_offset": 4100}
        ],
    },
}

MODEL_UPDATE: dict[str, Any] = {
    "model_name": "iforest",
    "version": "iforest-2024.06.02",
    "action": "candidate",
    "device_type": "centrifugal_pump",
    "created_at": T0 + 900_000,
    "framework": "onnx",
    "sha256": "cd" * 32,
    "artifact": b"\x08\x07\x12\x04onnx" + bytes(range(64)),
    "artifact_uri": None,
    "signature": bytes(range(64)),
    "signature_alg": "ed25519",
    "key_id": "ed25519:9f86d081",
    "inputs": ["temp_c", "vibration_mm_s", "pressure_bar", "rpm"],
    "threshold": 0.7,
    "metrics": {"auc": 0.93, "f1": 0.81},
    "baseline": [
        {
            "channel": "temp_c",
            "edges": [60.0 + i for i in range(9)],
            "fractions": [0.1] * 10,
            "mean": 64.5,
            "std": 3.0,
            "count": 10_000,
        }
    ],
    "parent_version": "iforest-2024.06.01",
    "canary_fraction": 0.25,
    "retrain_request_id": f"iforest|device_type|centrifugal_pump|{T0}",
}


def _current_fields(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record cut to the fields the current schema has (tests follow schema edits)."""
    names = {field["name"] for field in load_schema(name)["fields"]}
    return {k: v for k, v in record.items() if k in names}


RECORDS: dict[str, dict[str, Any]] = {
    name: _current_fields(name, record)
    for name, record in {
        "SensorReading": SENSOR_READING,
        "SensorFrame": SENSOR_FRAME,
        "WindowSummary": WINDOW_SUMMARY,
        "AnomalyAlert": ANOMALY_ALERT,
        "FleetStats": FLEET_STATS,
        "RetrainRequest": RETRAIN_REQUEST,
        "ModelUpdate": MODEL_UPDATE,
    }.items()
}
SENSOR_READING, ANOMALY_ALERT = RECORDS["SensorReading"], RECORDS["AnomalyAlert"]

TOPICS = {
    "SensorReading": "sensors.pumps",
    "SensorFrame": "sensors.pumps.frames",
    "WindowSummary": "fleet.summaries",
    "AnomalyAlert": "fleet.alerts",
    "FleetStats": "fleet.stats",
    "RetrainRequest": "fleet.retrain",
    "ModelUpdate": "fleet.models",
}


@pytest.fixture
def registry() -> SchemaRegistryClient:
    """A fresh in-memory mock registry (confluent-kafka's), unique per test."""
    return registry_client(f"mock://{uuid.uuid4().hex}")


def with_defaults(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the schema defaults of the top-level fields it leaves out."""
    full = dict(record)
    for field in load_schema(name)["fields"]:
        if field["name"] not in full:
            full[field["name"]] = field["default"]
    return full


def minimal(name: str) -> dict[str, Any]:
    """The record of ``name`` with every defaulted top-level field left out."""
    defaulted = {f["name"] for f in load_schema(name)["fields"] if "default" in f}
    return {k: v for k, v in RECORDS[name].items() if k not in defaulted}


def encode(registry: SchemaRegistryClient, name: str, record: dict[str, Any]) -> bytes:
    return AvroSerializer(registry, name, subject_for(TOPICS[name]))(record)


def reason_of(deserializer: AvroDeserializer, data: Any) -> str:
    with pytest.raises(SerdeError) as caught:
        deserializer(data)
    return caught.value.reason


# --- schemas -------------------------------------------------------------------------------


def test_load_schema_by_record_name_stem_and_full_name() -> None:
    by_name = load_schema("SensorReading")
    assert by_name["name"] == "SensorReading"
    assert load_schema("sensor_reading") == by_name
    assert load_schema("io.edgestream.v1.SensorReading") == by_name


def test_load_schema_returns_a_copy() -> None:
    load_schema("SensorReading")["fields"].clear()
    assert load_schema("SensorReading")["fields"]


def test_unknown_schema_lists_the_known_names() -> None:
    with pytest.raises(SchemaError) as caught:
        load_schema("SensorReadin")
    message = str(caught.value)
    for name in RECORDS:
        assert name in message


def test_load_schema_follows_edgestream_schemas(tmp_path: Path, monkeypatch) -> None:
    schema = {"type": "record", "name": "Only", "fields": [{"name": "a", "type": "int"}]}
    (tmp_path / "only.avsc").write_text(json.dumps(schema))
    monkeypatch.setenv("EDGESTREAM_SCHEMAS", str(tmp_path))
    assert load_schema("Only") == schema
    with pytest.raises(SchemaError, match="known names are Only"):
        load_schema("SensorReading")


def test_parsed_schemas_carry_no_logical_types() -> None:
    for name in RECORDS:
        assert "timestamp-millis" in json.dumps(load_schema(name))
        parsed = fastavro_schema(load_schema(name))
        assert "logicalType" not in json.dumps(parsed, default=str)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip_of_every_schema(registry: SchemaRegistryClient, name: str) -> None:
    data = encode(registry, name, RECORDS[name])
    assert data[0] == 0
    assert AvroDeserializer(registry)(data) == RECORDS[name]
    assert AvroDeserializer(registry, reader_schema=name)(data) == RECORDS[name]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_left_out_fields_decode_as_their_defaults(registry: SchemaRegistryClient, name: str):
    decoded = AvroDeserializer(registry)(encode(registry, name, minimal(name)))
    assert decoded == with_defaults(name, minimal(name))


def test_any_bytes_like_value_decodes(registry: SchemaRegistryClient) -> None:
    data = encode(registry, "SensorReading", SENSOR_READING)
    de = AvroDeserializer(registry)
    for value in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert de(value) == SENSOR_READING
        assert de.decode_many([value]) == [SENSOR_READING]


def test_timestamps_decode_as_epoch_millisecond_ints(registry: SchemaRegistryClient) -> None:
    alert = AvroDeserializer(registry)(encode(registry, "AnomalyAlert", ANOMALY_ALERT))
    for key in ("ts", "first_ts", "last_ts"):
        assert type(alert[key]) is int
    assert type(alert["readings"][0]["ts"]) is int
    frame = AvroDeserializer(registry)(encode(registry, "SensorFrame", SENSOR_FRAME))
    assert all(type(ts) is int for ts in frame["ts"])


def test_serializer_registers_lazily_once_under_the_topic_subject(registry) -> None:
    ser = AvroSerializer(registry, "SensorReading", subject_for("sensors.pumps"))
    assert registry.get_subjects() == []
    first, second = ser(SENSOR_READING), ser(SENSOR_READING)
    assert first == second
    assert registry.get_subjects() == ["sensors.pumps-value"]
    assert first[1:5] == struct.pack(">I", ser.schema_id)
    registered = registry.get_latest_version("sensors.pumps-value")
    assert registered.schema_id == ser.schema_id
    # the registry keeps the schema with its logical types
    assert "timestamp-millis" in registered.schema.schema_str


def test_serializer_accepts_schema_as_dict_json_text_or_name(registry) -> None:
    as_dict = load_schema("SensorReading")
    for schema in (as_dict, json.dumps(as_dict), "SensorReading", "sensor_reading"):
        ser = AvroSerializer(registry, schema, "sensors.pumps-value")
        assert AvroDeserializer(registry)(ser(SENSOR_READING)) == SENSOR_READING


def test_serializer_without_auto_register_needs_a_registered_schema(registry) -> None:
    lookup = AvroSerializer(registry, "SensorReading", "sensors.pumps-value", auto_register=False)
    with pytest.raises(SchemaError, match="could not find"):
        lookup(SENSOR_READING)
    registered = AvroSerializer(registry, "SensorReading", "sensors.pumps-value").schema_id
    assert lookup.schema_id == registered
    assert AvroDeserializer(registry)(lookup(SENSOR_READING)) == SENSOR_READING


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.pop("device_id"), "device_id"),
        (lambda r: r.update(device_id=42), "device_id"),
        (lambda r: r.update(ts="yesterday"), "ts"),
        (lambda r: r["channels"].update(temp_c="hot"), "channels"),
        (lambda r: r.update(channels=None), "channels"),
    ],
    ids=["missing", "int-for-string", "string-for-long", "string-in-map", "null-map"],
)
def test_encoding_errors_are_serde_errors_naming_the_field(registry, change, expected) -> None:
    record = copy.deepcopy(SENSOR_READING)
    change(record)
    with pytest.raises(SerdeError) as caught:
        encode(registry, "SensorReading", record)
    assert caught.value.reason == "encode"
    assert expected in str(caught.value)
    assert "SensorReading" in str(caught.value)


def test_encoding_a_non_dict_is_a_serde_error(registry) -> None:
    with pytest.raises(SerdeError, match="expected a dict, got list") as caught:
        encode(registry, "SensorReading", [1, 2])  # type: ignore[arg-type]
    assert caught.value.reason == "encode"


def test_datetimes_are_not_accepted_for_timestamps(registry) -> None:
    from datetime import UTC, datetime

    record = {**SENSOR_READING, "ts": datetime(2024, 6, 10, tzinfo=UTC)}
    with pytest.raises(SerdeError, match="ts"):
        encode(registry, "SensorReading", record)


# --- every decode failure reason -----------------------------------------------------------


def test_every_decode_reason_from_crafted_bytes(registry) -> None:
    good = encode(registry, "SensorReading", SENSOR_READING)
    header = good[:5]
    de = AvroDeserializer(registry)
    strict = AvroDeserializer(registry, reader_schema="AnomalyAlert")
    cases = {
        "empty": [b"", None, bytearray()],
        "bad_magic": [b"\x01" + good[1:], b"\xff", b'{"device_id": 1}', b"\x01\x00"],
        "truncated_header": [b"\x00", b"\x00\x00\x00\x00", good[:4]],
        "unknown_schema_id": [b"\x00\x00\x0f\x42\x40" + good[5:], b"\x00\xff\xff\xff\xff"],
        "decode": [
            good[:-1],  # body cut short
            good + b"\x00",  # trailing garbage
            header,  # header only
            header + b"\x80" * 12,  # a varint that never ends
            header + b"\x06\xff\xfe\xfd" + good[9:],  # invalid UTF-8 in device_id
            "text, not bytes",
        ],
    }
    for reason, values in cases.items():
        for value in values:
            assert reason_of(de, value) == reason, value
    assert reason_of(strict, good) == "schema_mismatch"
    assert set(cases) | {"schema_mismatch"} == set(DECODE_REASONS)


def test_decode_many_returns_errors_in_place(registry) -> None:
    good = encode(registry, "SensorReading", SENSOR_READING)
    values = [good, b"", b"\x07", b"\x00\x00", good + b"!", b"\x00\x00\x00\x03\xe7" + good[5:]]
    out = AvroDeserializer(registry).decode_many([*values, good[:-2], good])
    assert out[0] == SENSOR_READING and out[-1] == SENSOR_READING
    reasons = [item.reason for item in out[1:-1]]  # type: ignore[union-attr]
    assert reasons == [
        "empty",
        "bad_magic",
        "truncated_header",
        "decode",
        "unknown_schema_id",
        "decode",
    ]


def test_reader_of_another_record_is_a_schema_mismatch(registry) -> None:
    alert = encode(registry, "AnomalyAlert", ANOMALY_ALERT)
    de = AvroDeserializer(registry, reader_schema="SensorReading")
    with pytest.raises(SerdeError, match=r"writes io\.edgestream\.v1\.AnomalyAlert") as caught:
        de(alert)
    assert caught.value.reason == "schema_mismatch"
    assert de.decode_many([alert])[0].reason == "schema_mismatch"  # type: ignore[union-attr]


def test_unresolvable_same_name_writer_is_a_schema_mismatch(registry) -> None:
    changed = load_schema("SensorReading")
    changed["fields"][4]["type"] = "string"  # seq: long -> string
    changed["fields"][4]["default"] = ""
    data = AvroSerializer(registry, changed, "legacy-value")({**SENSOR_READING, "seq": "17"})
    with pytest.raises(SerdeError, match="TYPE_MISMATCH") as caught:
        AvroDeserializer(registry, reader_schema="SensorReading")(data)
    assert caught.value.reason == "schema_mismatch"


def test_unknown_ids_are_remembered_so_garbage_does_not_hammer_the_registry(registry) -> None:
    calls = []
    real = registry.get_schema

    def counting(schema_id: int, *args: Any, **kwargs: Any) -> Schema:
        calls.append(schema_id)
        return real(schema_id, *args, **kwargs)

    registry.get_schema = counting  # type: ignore[method-assign]
    de = AvroDeserializer(registry)
    for _ in range(100):
        assert reason_of(de, b"\x00\x00\x00\x30\x39\x02") == "unknown_schema_id"
    assert calls == [12345]


def test_writer_schemas_are_fetched_once_per_id(registry) -> None:
    data = encode(registry, "SensorReading", SENSOR_READING)
    calls = []
    real = registry.get_schema
    registry.get_schema = lambda i, *a, **k: calls.append(i) or real(i, *a, **k)  # type: ignore
    de = AvroDeserializer(registry)
    de.decode_many([data] * 10)
    for _ in range(10):
        de(data)
    assert len(calls) == 1


VALID_HEADER_DATA = st.sampled_from(sorted(RECORDS)).flatmap(
    lambda name: st.binary(max_size=300).map(lambda body: (name, body))
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_serde_error(data: bytes) -> None:
    de = AvroDeserializer(_SHARED)
    try:
        de(data)
    except SerdeError as error:
        assert error.reason in DECODE_REASONS
    [item] = de.decode_many([data])
    assert isinstance(item, dict | SerdeError)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=VALID_HEADER_DATA, mutate=st.booleans(), cut=st.integers(0, 400))
def test_random_bodies_behind_a_valid_header_only_raise_serde_error(
    case: tuple[str, bytes], mutate: bool, cut: int
) -> None:
    name, body = case
    data = _HEADERS[name] + body
    if mutate:  # a real record with one byte flipped and maybe cut short
        real = _ENCODED[name]
        pos = 5 + cut % (len(real) - 5)
        data = (real[:pos] + bytes([real[pos] ^ 0x5A]) + real[pos + 1 :])[: 5 + cut]
    for de in (AvroDeserializer(_SHARED), AvroDeserializer(_SHARED, reader_schema=name)):
        try:
            de(data)
        except SerdeError as error:
            assert error.reason in ("decode", "schema_mismatch")
        [item] = de.decode_many([data])
        assert isinstance(item, dict | SerdeError)


_SHARED = registry_client("mock://edgestream-serde-property-tests")
_ENCODED = {name: encode(_SHARED, name, record) for name, record in RECORDS.items()}
_HEADERS = {name: data[:5] for name, data in _ENCODED.items()}


# --- schema evolution ----------------------------------------------------------------------


def _sensor_reading_v2() -> dict[str, Any]:
    v2 = load_schema("SensorReading")
    v2["fields"].append(
        {"name": "quality", "type": "double", "default": 1.0, "doc": "Signal quality 0..1."}
    )
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "tags"]
    return v2


def test_new_reader_reads_old_writer_with_defaults(registry) -> None:
    old_bytes = encode(registry, "SensorReading", SENSOR_READING)
    decoded = AvroDeserializer(registry, reader_schema=_sensor_reading_v2())(old_bytes)
    expected = {k: v for k, v in SENSOR_READING.items() if k != "tags"}
    assert decoded == {**expected, "quality": 1.0}


def test_old_reader_reads_new_writer_and_ignores_the_new_field(registry) -> None:
    v2 = _sensor_reading_v2()
    new_bytes = AvroSerializer(registry, v2, "sensors.pumps-value")(
        {**SENSOR_READING, "quality": 0.5}
    )
    decoded = AvroDeserializer(registry, reader_schema="SensorReading")(new_bytes)
    assert decoded == {**SENSOR_READING, "tags": {}}


def test_reader_with_a_required_new_field_cannot_read_old_data(registry) -> None:
    v2 = load_schema("SensorReading")
    v2["fields"].append({"name": "quality", "type": "double", "doc": "No default."})
    old_bytes = encode(registry, "SensorReading", SENSOR_READING)
    with pytest.raises(SerdeError, match="quality") as caught:
        AvroDeserializer(registry, reader_schema=v2)(old_bytes)
    assert caught.value.reason == "schema_mismatch"


# --- confluent-kafka interop ---------------------------------------------------------------


def _ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_confluent_kafka_deserializer_reads_our_bytes(registry) -> None:
    data = encode(registry, "AnomalyAlert", ANOMALY_ALERT)
    theirs = ConfluentAvroDeserializer(registry)(data, _ctx("fleet.alerts"))
    assert theirs["alert_id"] == ANOMALY_ALERT["alert_id"]
    assert theirs["channels"] == ANOMALY_ALERT["channels"]
    # confluent-kafka honours the registered logical type: same instant, as a datetime
    assert int(theirs["ts"].timestamp() * 1000) == ANOMALY_ALERT["ts"]


def test_we_read_confluent_kafka_serializer_bytes(registry) -> None:
    text = json.dumps(load_schema("SensorReading"))
    data = ConfluentAvroSerializer(registry, text)(SENSOR_READING, _ctx("sensors.pumps"))
    assert AvroDeserializer(registry)(data) == SENSOR_READING
    assert AvroDeserializer(registry, reader_schema="SensorReading")(data) == SENSOR_READING


# --- registry clients ----------------------------------------------------------------------


def test_registry_client_is_cached_per_url() -> None:
    url = f"mock://{uuid.uuid4().hex}"
    assert registry_client(url) is registry_client(url + "/")
    assert registry_client(url) is registry_client({"url": url})
    assert registry_client(url) is not registry_client(url + "-other")
    with pytest.raises(SchemaError, match="--registry"):
        registry_client("")


@pytest.fixture
def dead_url() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}"


def test_a_registry_that_does_not_answer_is_service_unavailable(dead_url: str) -> None:
    ser = AvroSerializer(dead_url, "SensorReading", "sensors.pumps-value")
    with pytest.raises(ServiceUnavailable, match="is not answering: start it with"):
        ser(SENSOR_READING)
    de = AvroDeserializer(dead_url)
    with pytest.raises(ServiceUnavailable, match=dead_url):
        de(b"\x00\x00\x00\x00\x01\x02")
    assert not de._failed  # an outage is not remembered as an unknown schema id


# --- against the real embedded registry ----------------------------------------------------


@pytest.fixture
def real_registry(tmp_path: Path) -> Iterator[SchemaRegistryClient]:
    from edgestream.core.registry import RegistryServer

    with RegistryServer(tmp_path / "registry.db") as server:
        yield registry_client(server.url)


@pytest.mark.integration
def test_with_the_embedded_registry_both_ways(real_registry: SchemaRegistryClient) -> None:
    ours = AvroSerializer(real_registry, "AnomalyAlert", subject_for("fleet.alerts"))
    data = ours(ANOMALY_ALERT)
    assert real_registry.get_latest_version("fleet.alerts-value").schema_id == ours.schema_id
    # a fresh confluent-kafka client: nothing cached, everything comes from the server
    fresh = SchemaRegistryClient({"url": registry_url_of(real_registry)})
    theirs = ConfluentAvroDeserializer(fresh)(data, _ctx("fleet.alerts"))
    assert theirs["readings"][0]["seq"] == ANOMALY_ALERT["readings"][0]["seq"]
    assert int(theirs["last_ts"].timestamp() * 1000) == ANOMALY_ALERT["last_ts"]

    text = json.dumps(load_schema("AnomalyAlert"))
    their_bytes = ConfluentAvroSerializer(fresh, text)(ANOMALY_ALERT, _ctx("fleet.alerts"))
    de = AvroDeserializer(registry_url_of(real_registry), reader_schema="AnomalyAlert")
    assert de(their_bytes) == ANOMALY_ALERT
    assert de.decode_many([data, their_bytes]) == [ANOMALY_ALERT, ANOMALY_ALERT]
    assert reason_of(de, b"\x00\x00\x00\x07\x77" + data[5:]) == "unknown_schema_id"


@pytest.mark.integration
def test_every_schema_round_trips_through_the_embedded_registry(real_registry) -> None:
    ids = {name: AvroSerializer(real_registry, name, subject_for(TOPICS[name])) for name in RECORDS}
    de = AvroDeserializer(real_registry)
    for name, ser in ids.items():
        assert de(ser(RECORDS[name])) == RECORDS[name]
    assert len({ser.schema_id for ser in ids.values()}) == len(RECORDS)


def registry_url_of(client: SchemaRegistryClient) -> str:
    return client.config()["url"]


def test_docstring_examples_run() -> None:
    run_doctests(serde)
    run_doctests(avro_schema)
