"""The validator on its own (no broker): one test per reason in ``validate.REASONS``, each with
a valid record in the same batch that must survive, against confluent-kafka's in-memory
registry and real Avro bodies."""

from __future__ import annotations

import hashlib
import struct
import time
from pathlib import Path

import pytest
import yaml

from edgestream.core.serde import AvroDeserializer, AvroSerializer
from edgestream.core.topology import TopologyError, load_topology
from edgestream.core.topology.edge import DeviceIdPolicy, InputLimits, SensorTopic
from edgestream.edge import validate
from edgestream.edge.validate import OVERSIZE_HEAD_BYTES, REASONS, Rejected, Validator, dead_letter
from tests.support.doctests import run_doctests
from tests.support.gateway import write_topology

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


def _setup(
    schema: str = "SensorReading", limits: InputLimits = LIMITS
) -> tuple[Validator, AvroSerializer]:
    registry = _registry()
    topic = SensorTopic(name="sensors.pump", device_type="pump", schema=schema, channels=CHANNELS)
    ser = AvroSerializer(registry, schema, "sensors.pump-value")
    return Validator(topic, limits, AvroDeserializer(registry, reader_schema=schema)), ser


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
        "bad_device_id": (ser(_reading(device_id="d" * 300)), "300 characters"),
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


# -- event time in both directions, by default ------------------------------------------------


def test_default_limits_reject_event_time_from_1970_and_from_next_week() -> None:
    """Without ``max_age`` in the topology, a reading of 1970 is ``too_old`` (it used to pass:
    only the future was checked); a week ahead is ``future_timestamp``. ``max_age: null``
    (replays of recorded data) lets 1970 through."""
    validator, ser = _setup(limits=InputLimits())
    day = 86_400_000
    batch = [ser(_reading(ts=0)), ser(_reading(ts=NOW - 6 * day)), ser(_reading(ts=NOW + 7 * day))]
    readings, rejected = validator.validate(batch, NOW)
    assert [(r.index, r.reason) for r in rejected] == [(0, "too_old"), (2, "future_timestamp")]
    assert readings.message.tolist() == [1], "six days old is within the default week"
    validator, ser = _setup(limits=InputLimits(max_age=None))
    readings, rejected = validator.validate([ser(_reading(ts=0))], NOW)
    assert rejected == [] and len(readings) == 1


def test_a_frame_with_one_reading_from_1970_is_rejected_whole_by_default() -> None:
    validator, ser = _setup("SensorFrame", limits=InputLimits())
    readings, rejected = validator.validate([ser(_frame(ts=[0, NOW - 1_000]))], NOW)
    assert [r.reason for r in rejected] == ["too_old"] and len(readings) == 0


# -- device ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", ["", "pump 1", "pümp-1", "pump/1", "d" * 129, "a\nb"])
def test_bad_device_ids_go_to_the_dlq(device_id: str) -> None:
    validator, ser = _setup()
    _check(validator, ser(_reading()), ser(_reading(device_id=device_id)), "bad_device_id", "")


def test_device_id_policy_is_configurable() -> None:
    policy = DeviceIdPolicy(max_length=8, pattern="[a-z ]+")
    validator, ser = _setup(limits=InputLimits(device_id=policy))
    ok, long, upper = "pump one", "pump one!", "PUMP"
    values = [ser(_reading(device_id=d)) for d in (ok, long, upper)]
    readings, rejected = validator.validate(values, NOW)
    assert readings.device_id == [ok]
    assert [(r.index, r.reason) for r in rejected] == [(1, "bad_device_id"), (2, "bad_device_id")]
    assert "1-8 characters matching [a-z ]+" in rejected[0].detail


def test_the_detail_of_a_long_device_id_shows_its_head_only() -> None:
    validator, ser = _setup(limits=InputLimits(max_payload_bytes=20_000))
    _, rejected = validator.validate([ser(_reading(device_id="d" * 10_000))], NOW)
    assert [r.reason for r in rejected] == ["bad_device_id"]
    assert len(rejected[0].detail) < 200 and "10000 characters" in rejected[0].detail


# -- what goes to the DLQ -----------------------------------------------------------------------


def test_an_oversize_dead_letter_is_its_head_with_size_and_sha256() -> None:
    body = bytes(range(256)) * 40_000  # 10 MB: more than a Kafka record may hold by default
    key, value, headers = dead_letter(b"pump-1", body, Rejected(0, "oversize", "too big"))
    got = dict(headers)
    assert key == b"pump-1" and value == body[:OVERSIZE_HEAD_BYTES]
    assert got["x-edgestream-reason"] == b"oversize"
    assert got["x-edgestream-original-size"] == str(len(body)).encode()
    assert got["x-edgestream-sha256"] == hashlib.sha256(body).hexdigest().encode()
    for reason in (r for r in REASONS if r != "oversize"):  # kept whole (<= max_payload_bytes)
        key, value, headers = dead_letter(None, body[:5_000], Rejected(0, reason, "x" * 5_000))
        assert key is None and value == body[:5_000]
        assert dict(headers) == {"x-edgestream-reason": reason.encode(),
                                 "x-edgestream-detail": b"x" * 1000}  # fmt: skip


def test_a_dead_letter_of_a_10mb_key_keeps_its_head_and_size() -> None:
    key, value, headers = dead_letter(b"k" * (10 * 10**6), b"\x01", Rejected(0, "bad_magic", ""))
    assert key == b"k" * OVERSIZE_HEAD_BYTES and value == b"\x01"
    assert dict(headers)["x-edgestream-original-key-size"] == b"10000000"


# -- topology keys -------------------------------------------------------------------------------


def _load_with(tmp_path: Path, **validation: object):
    path = write_topology(tmp_path / "topology.yaml")
    topo = yaml.safe_load(path.read_text())
    topo["sensors"]["validation"] = validation
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return load_topology(path).sensors.validation


def test_topology_defaults_and_explicit_settings(tmp_path: Path) -> None:
    limits = _load_with(tmp_path)
    assert limits.max_age == 7 * 86_400_000 and limits.max_payload_bytes == 900_000
    assert limits.device_id == DeviceIdPolicy(max_length=128, pattern="[A-Za-z0-9._:-]+")
    limits = _load_with(tmp_path, max_age=None, device_id={"max_length": 16, "pattern": "[a-z]+"})
    assert limits.max_age is None and limits.device_id.max_length == 16


@pytest.mark.parametrize(
    ("validation", "expected"),
    [
        ({"max_payload_bytes": "10MB"}, "max_payload_bytes: got '10MB'; expected a size of at "
         "most 900KB"),
        ({"device_id": {"max_length": 0}}, "device_id.max_length: got 0; expected an integer"),
        ({"device_id": {"pattern": "[a-"}}, "device_id.pattern: got '[a-'; expected a regular "
         "expression"),
    ],
)  # fmt: skip
def test_bad_settings_name_their_key_path(tmp_path: Path, validation: dict, expected: str) -> None:
    with pytest.raises(TopologyError) as raised:
        _load_with(tmp_path, **validation)
    assert f"sensors.validation.{expected}" in str(raised.value), str(raised.value)


def test_docstring_examples() -> None:
    run_doctests(validate)
