"""The validator on its own (no broker): one test per reason in ``validate.REASONS``, each with
a valid record in the same batch that must survive, against confluent-kafka's in-memory
registry and real Avro bodies."""

from __future__ import annotations

import struct
import time

import pytest

from edgestream.core.serde import AvroDeserializer, AvroSerializer
from edgestream.core.topology.edge import InputLimits, SensorTopic
from edgestream.edge import validate
from edgestream.edge.validate import REASONS, Validator

NOW = 1_800_000_000_000
CHANNELS = {"temp": {"min": -40, "max": 60}, "rpm": {"min": 0, "max": 5000}}
LIMITS = InputLimits(max_clock_skew=60_000, max_age=3_600_000, max_payload_bytes=2_000)


def _registry() -> str:
    return f"mock://validate-{time.time_ns()}"


def _reading(**changes) -> dict:
    record = {"device_id": "pump-1", "site": "site-1", "device_type": "pump", "ts": NOW - 1_000,
              "seq": 1, "channels": {"temp": 20.0, "rpm": 1200.0}, "tags": {}}  # fmt: skip
    record.update(changes)
    return record


def _frame(**changes) -> dict:
    record = {"device_id": "pump-1", "site": "site-1", "device_type": "pump", "first_seq": 10,
              "ts": [NOW - 2_000, NOW - 1_000], "channels": {"temp": [20.0, 21.0],
              "rpm": [1200.0, 1210.0]}, "tags": {}}  # fmt: skip
    record.update(changes)
    return record


def _setup(schema: str = "SensorReading") -> tuple[Validator, AvroSerializer]:
    registry = _registry()
    topic = SensorTopic(name="sensors.pump", device_type="pump", schema=schema, channels=CHANNELS)
    ser = AvroSerializer(registry, schema, "sensors.pump-value")
    return Validator(topic, LIMITS, AvroDeserializer(registry, reader_schema=schema)), ser


def _check(validator: Validator, good: bytes, bad: bytes, reason: str, detail: str) -> None:
    readings, rejected = validator.validate([good, bad, good], NOW)
    assert [(r.index, r.reason) for r in rejected] == [(1, reason)]
    assert detail in rejected[0].detail, rejected[0].detail
    survivors = sorted(set(readings.message.tolist()))
    assert survivors == [0, 2], "the valid records around it survive"
    assert validator.counts[reason] == 1 and validator.counts["valid_readings"] == len(readings)


def _bad_values(reason: str, ser: AvroSerializer) -> tuple[bytes, str]:
    header = ser(_reading())[:5]
    cases = {
        "empty": (b"", "no value bytes"),
        "bad_magic": (b"\x01" + ser(_reading())[1:], ""),
        "truncated_header": (b"\x00\x00\x01", ""),
        "unknown_schema_id": (b"\x00" + struct.pack(">I", 987_654) + ser(_reading())[5:], ""),
        "decode": (header + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", ""),
        "oversize": (header + b"x" * 3_000, "> limit 2000 bytes"),
        "wrong_device_type": (ser(_reading(device_type="reefer")), "'reefer'"),
        "missing_channel": (ser(_reading(channels={"temp": 20.0})), "rpm"),
        "non_finite": (ser(_reading(channels={"temp": float("nan"), "rpm": 1.0})), "temp=nan"),
        "out_of_range": (ser(_reading(channels={"temp": 99.0, "rpm": 1.0})), "temp=99"),
        "future_timestamp": (ser(_reading(ts=NOW + 120_000)), "120000 ms ahead"),
        "too_old": (ser(_reading(ts=NOW - 7_200_000)), "7200000 ms older"),
    }
    return cases[reason]


READING_REASONS = [r for r in REASONS if r not in ("schema_mismatch", "frame_shape")]


@pytest.mark.parametrize("reason", READING_REASONS)
def test_each_reason_rejects_one_record_and_keeps_the_rest(reason: str) -> None:
    validator, ser = _setup()
    bad, detail = _bad_values(reason, ser)
    _check(validator, ser(_reading()), bad, reason, detail)


def test_schema_mismatch_a_record_of_another_schema() -> None:
    validator, ser = _setup()
    schema = {"type": "record", "name": "Other", "namespace": "elsewhere",
              "fields": [{"name": "x", "type": "int"}]}  # fmt: skip
    bad = AvroSerializer(ser.registry, schema, "other-value")({"x": 1})
    _check(validator, ser(_reading()), bad, "schema_mismatch", "")


def test_frame_shape_and_a_frame_is_rejected_whole() -> None:
    validator, ser = _setup("SensorFrame")
    bad = ser(_frame(channels={"temp": [20.0], "rpm": [1200.0, 1210.0]}))
    _check(validator, ser(_frame()), bad, "frame_shape", "2 timestamps")
    one_bad = ser(_frame(channels={"temp": [20.0, 99.0], "rpm": [1.0, 1.0]}))
    readings, rejected = validator.validate([one_bad], NOW)
    assert [r.reason for r in rejected] == ["out_of_range"] and len(readings) == 0


def test_every_reason_has_a_test() -> None:
    tested = {*READING_REASONS, "schema_mismatch", "frame_shape"}
    assert tested == set(validate.REASONS)
