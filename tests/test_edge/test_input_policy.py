"""The gateway's input policy on real processes: a worker subprocess (``edgestream edge run``)
on the embedded Kafka broker with the real registry. No input stops a gateway: a record of
10 MB, an event time of 1970, a device id of 10 KB and a fuzzed mix of sizes and bytes each
end up exactly once, on the DLQ with their reason or as a reading."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.stack import StackStatus
from edgestream.edge.validate import OVERSIZE_HEAD_BYTES
from edgestream.wire.topics import CONTROL_TOPIC, STATUS_TOPIC
from tests.support import gateway as gr

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 4_000  # gr.write_topology's max_payload_bytes (4KB)
MB = 1_000_000


def _ends(stack: StackStatus) -> tuple[str, str]:
    ends = stack.endpoints()
    return ends["edge"]["gw-1"], str(ends["registry"])


def _topology(path: Path, gateway: str, topic: str, **validation: Any) -> Path:
    """gr.write_topology's pump topology on its own sensor topic, with validation changes."""
    gr.write_topology(path, gateway)
    topo = yaml.safe_load(path.read_text())
    topo["sensors"]["topics"][0]["name"] = topic
    topo["sensors"]["validation"].update(validation)
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def _reading(seq: int, ts: int, device: str = "pump-0001", **changes: Any) -> dict[str, Any]:
    channels = {"vibration_rms": 2.0, "bearing_temp": 55.0, "pressure": 6.0, "motor_current": 30.0}
    record = {"device_id": device, "site": "site-1", "device_type": "pump", "ts": ts,
              "seq": seq, "channels": channels, "tags": {}}  # fmt: skip
    record.update(changes)
    return record


def _produce(
    bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None
) -> list[int]:
    """Produce ``values`` in order (lz4 batches, records up to 20 MB; key ``pump`` unless
    ``keys``); returns their offsets."""
    producer = Producer(producer_config(bootstrap, **{"message.max.bytes": 20 * MB}))
    offsets: dict[int, int] = {}
    errors: list[Any] = []

    def delivered(i: int) -> Callable[[Any, Any], None]:
        def report(error: Any, msg: Any) -> None:
            if error is not None:
                errors.append(error)
            else:
                offsets[i] = msg.offset()

        return report

    for i, value in enumerate(values):
        key = keys[i] if keys else b"pump"
        producer.produce(topic, key=key, value=value, on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors
    return [offsets[i] for i in range(len(values))]


def _counts(
    bootstrap: str, gateway: str, topic: str, worker: gr.Worker, done: Callable[[dict], bool]
) -> dict[str, int]:
    """The worker's counters of ``topic`` (validation reasons, ``valid_readings``) as it
    reports them on ``edge.status``, once ``done(counts)`` holds (asked until 90 s passed)."""
    producer = Producer(producer_config(bootstrap))
    deadline = time.monotonic() + 90
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        producer.produce(CONTROL_TOPIC, value=b'{"command": "metrics"}')
        producer.flush(10)
        time.sleep(1.0)
        mine = [
            m for m in gr.read_topic(bootstrap, STATUS_TOPIC, 0.5) if m.key() == gateway.encode()
        ]
        if mine:
            counts = json.loads(mine[-1].value())["topics"].get(topic, {}).get("rejected", {})
            if done(counts):
                return counts
        assert worker.alive(), worker.log_text()[-3000:]
    raise AssertionError(f"the worker's counts never got there: {counts}")


def _dlq_by_offset(bootstrap: str, topic: str, count: int, worker: gr.Worker) -> dict[int, Any]:
    """The DLQ's records by source offset, once it holds ``count``; each offset only once."""
    dlq = gr.wait_for(bootstrap, f"{topic}.dlq", count, 90, worker)
    offsets = [int(gr.header(m, "x-edgestream-source-offset") or -1) for m in dlq]
    assert len(offsets) == len(set(offsets)), "a record went to the DLQ twice"
    return dict(zip(offsets, dlq, strict=True))


@pytest.fixture
def work(stack: StackStatus, tmp_path: Path) -> Iterator[dict[str, Any]]:
    bootstrap, registry = _ends(stack)
    yield {"bootstrap": bootstrap, "registry": registry, "dir": tmp_path}


# -- item 1: a 10 MB record ---------------------------------------------------------------------


def test_a_10mb_record_goes_to_the_dlq_as_its_head_and_the_worker_keeps_running(work) -> None:
    """The evaluation's case: 10 MB on the sensor topic (default topic configs; lz4 makes the
    batch small enough for the broker). It used to kill the worker (MessageSizeTooLargeError
    writing it whole to the DLQ) and, after a restart, be nowhere."""
    topic, gateway = "sensors.big", "gw-big"
    bootstrap, registry = work["bootstrap"], work["registry"]
    ensure_topics(bootstrap, {topic: 1})
    ser = AvroSerializer(registry, "SensorReading", subject_for(topic))
    now = int(time.time() * 1000)
    big = ser(_reading(1, now - 2_000, tags={"blob": "x" * (10 * MB)}))
    values = [
        ser(_reading(0, now - 3_000)),
        big,
        *(ser(_reading(i, now - 1_000 + i)) for i in (2, 3)),
    ]
    offsets = _produce(bootstrap, topic, values)
    path = _topology(work["dir"] / "topology.yaml", gateway, topic)
    worker = gr.Worker(path, gateway, bootstrap, registry, work["dir"] / "gw").start()
    try:
        dlq = _dlq_by_offset(bootstrap, topic, 1, worker)
        assert list(dlq) == [offsets[1]], "only the big record is on the DLQ"
        msg = dlq[offsets[1]]
        assert gr.header(msg, "x-edgestream-reason") == "oversize"
        assert msg.value() == big[:OVERSIZE_HEAD_BYTES]
        assert gr.header(msg, "x-edgestream-original-size") == str(len(big))
        assert gr.header(msg, "x-edgestream-sha256") == hashlib.sha256(big).hexdigest()
        assert gr.header(msg, "x-edgestream-source-topic") == topic
        assert f"{len(big)} bytes" in (gr.header(msg, "x-edgestream-detail") or "")
        counts = _counts(bootstrap, gateway, topic, worker, lambda c: c.get("valid_readings") == 3)
        assert counts.get("oversize") == 1
        assert worker.alive()
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


# -- item 1: fuzzing the DLQ path ----------------------------------------------------------------

#: one produced record: ("good", -), ("padded", tag bytes: a valid reading made big, very
#: compressible), ("bytes", size): random bytes (incompressible) or ("key", size): a key of
#: that size (compressible) with a random-bytes value
RECORD = st.one_of(
    st.tuples(st.just("good"), st.just(0)),
    st.tuples(st.just("padded"), st.integers(0, 6_000) | st.integers(900_000, 12 * MB)),
    st.tuples(st.just("bytes"), st.integers(0, 6_000) | st.integers(900_000, 3 * MB)),
    st.tuples(st.just("key"), st.integers(1, 2_000) | st.integers(900_000, 12 * MB)),
)


@pytest.fixture(scope="module")
def fuzzed(stack: StackStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One worker for every example, on a sensor topic that takes records of up to 16 MB
    (``max.message.bytes``): random bytes beyond the broker's default 1 MB get in too."""
    bootstrap, registry = _ends(stack)
    topic, gateway, tmp = "sensors.fuzz", "gw-fuzz", tmp_path_factory.mktemp("fuzz")
    ensure_topics(bootstrap, {topic: 1}, topic_configs={topic: {"max.message.bytes": str(16 * MB)}})
    path = _topology(tmp / "topology.yaml", gateway, topic)
    worker = gr.Worker(path, gateway, bootstrap, registry, tmp / "gw").start()
    state = {"bootstrap": bootstrap, "registry": registry, "topic": topic, "gateway": gateway,
             "worker": worker, "good": 0, "bad": 0, "seed": 0}  # fmt: skip
    try:
        yield state
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # each example waits for a real worker
)
@given(records=st.lists(RECORD, min_size=1, max_size=10))
@example(
    records=[("good", 0), ("padded", 10 * MB), ("bytes", 2 * MB), ("bytes", 0), ("key", 10 * MB)]
)
def test_fuzzed_sizes_and_bytes_each_end_up_once_in_the_dlq_or_as_a_reading(fuzzed, records):
    f = fuzzed
    ser = AvroSerializer(f["registry"], "SensorReading", subject_for(f["topic"]))
    now = int(time.time() * 1000)
    values: list[bytes] = []
    keys = [b"k" * size if kind == "key" else b"pump" for kind, size in records]
    for i, (kind, size) in enumerate(records):
        if kind in ("bytes", "key"):
            f["seed"] += 1
            value = random.Random(f["seed"]).randbytes(size if kind == "bytes" else 64)
            if value[:1] == b"\x00":
                value = b"\x01" + value[1:]  # never a registry header by chance
        else:
            tags = {"blob": "y" * size} if kind == "padded" else {}
            value = ser(_reading(i, now - 1_000 + i, tags=tags))
        values.append(value)
    offsets = _produce(f["bootstrap"], f["topic"], values, keys)
    bad = {
        o: v
        for o, v, (kind, _) in zip(offsets, values, records, strict=True)
        if kind in ("bytes", "key") or len(v) > LIMIT
    }
    key_of = dict(zip(offsets, keys, strict=True))
    f["bad"] += len(bad)
    f["good"] += len(values) - len(bad)
    worker = f["worker"]
    dlq = _dlq_by_offset(f["bootstrap"], f["topic"], f["bad"], worker)
    assert len(dlq) == f["bad"], "nothing else is on the DLQ"
    for offset, value in bad.items():
        msg = dlq[offset]
        assert msg.key() == key_of[offset][:OVERSIZE_HEAD_BYTES]
        if len(value) > LIMIT:
            assert gr.header(msg, "x-edgestream-reason") == "oversize"
            assert msg.value() == value[:OVERSIZE_HEAD_BYTES]
            assert gr.header(msg, "x-edgestream-sha256") == hashlib.sha256(value).hexdigest()
            assert gr.header(msg, "x-edgestream-original-size") == str(len(value))
        else:
            assert msg.value() == value, "a rejected record keeps its original bytes"
    counts = _counts(
        f["bootstrap"], f["gateway"], f["topic"], worker,
        lambda c: c.get("valid_readings", 0) + sum(v for k, v in c.items() if k != "valid_readings")
        >= f["good"] + f["bad"],
    )  # fmt: skip
    assert counts.get("valid_readings", 0) == f["good"], "every good record is a reading, once"
    assert sum(v for k, v in counts.items() if k != "valid_readings") == f["bad"]
    assert worker.alive()


# -- item 3: event time in both directions ------------------------------------------------------


def test_event_time_from_1970_goes_to_the_dlq_not_to_late(work) -> None:
    """``max_clock_skew: 5m`` and no ``max_age`` in the topology: the default week applies.
    A reading of 1970 used to be accepted (and then went to ``.late``)."""
    topic, gateway = "sensors.clock", "gw-clock"
    bootstrap, registry = work["bootstrap"], work["registry"]
    ensure_topics(bootstrap, {topic: 1})
    ser = AvroSerializer(registry, "SensorReading", subject_for(topic))
    now, day = int(time.time() * 1000), 86_400_000
    times = [now - 2_000, 0, now - 8 * day, now + day, now - 6 * day, now - 1_000]
    offsets = _produce(bootstrap, topic, [ser(_reading(i, t)) for i, t in enumerate(times)])
    path = _topology(work["dir"] / "topology.yaml", gateway, topic)
    worker = gr.Worker(path, gateway, bootstrap, registry, work["dir"] / "gw").start()
    try:
        dlq = _dlq_by_offset(bootstrap, topic, 3, worker)
        reasons = {o: gr.header(m, "x-edgestream-reason") for o, m in dlq.items()}
        assert reasons == {
            offsets[1]: "too_old",
            offsets[2]: "too_old",
            offsets[3]: "future_timestamp",
        }
        counts = _counts(bootstrap, gateway, topic, worker, lambda c: c.get("valid_readings") == 3)
        assert counts.get("too_old") == 2 and counts.get("future_timestamp") == 1
        late = gr.read_topic(bootstrap, f"{topic}.late")
        late_offsets = {int(gr.header(m, "x-edgestream-source-offset") or -1) for m in late}
        assert late_offsets <= {offsets[4]}, "1970 and 8 days ago are not late readings"
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


# -- item 4: device ids -------------------------------------------------------------------------


def test_a_10kb_device_id_goes_to_the_dlq(work) -> None:
    """A 10 KB device id used to be a valid reading and travel into summaries."""
    topic, gateway = "sensors.ids", "gw-ids"
    bootstrap, registry = work["bootstrap"], work["registry"]
    ensure_topics(bootstrap, {topic: 1})
    ser = AvroSerializer(registry, "SensorReading", subject_for(topic))
    now = int(time.time() * 1000)
    devices = ["pump-0001", "d" * 10_000, "pump 2", "site-1:pump_3.a"]
    values = [ser(_reading(i, now - 2_000 + i, device=d)) for i, d in enumerate(devices)]
    offsets = _produce(bootstrap, topic, values)
    path = _topology(work["dir"] / "topology.yaml", gateway, topic, max_payload_bytes="64KB")
    worker = gr.Worker(path, gateway, bootstrap, registry, work["dir"] / "gw").start()
    try:
        dlq = _dlq_by_offset(bootstrap, topic, 2, worker)
        assert sorted(dlq) == [offsets[1], offsets[2]]
        for offset in (offsets[1], offsets[2]):
            assert gr.header(dlq[offset], "x-edgestream-reason") == "bad_device_id"
            assert dlq[offset].value() == values[offsets.index(offset)]
        detail = gr.header(dlq[offsets[1]], "x-edgestream-detail") or ""
        assert "10000 characters" in detail and len(detail) < 300
        counts = _counts(bootstrap, gateway, topic, worker, lambda c: c.get("valid_readings") == 2)
        assert counts.get("bad_device_id") == 2
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_late_reading_with_a_10mb_key_goes_to_late_as_the_key_head(work) -> None:
    """A valid reading may come with any key; copied whole onto ``.late``, a 10 MB key made
    the write fail (the worker exits on a failed write). Its head travels, with the size."""
    topic, gateway = "sensors.bigkey", "gw-bigkey"
    bootstrap, registry = work["bootstrap"], work["registry"]
    big = {"max.message.bytes": str(16 * MB)}
    ensure_topics(bootstrap, {topic: 1}, topic_configs={topic: big})
    ser = AvroSerializer(registry, "SensorReading", subject_for(topic))
    now, day = int(time.time() * 1000), 86_400_000
    values = [ser(_reading(0, now - 2_000)), ser(_reading(1, now - day)), ser(_reading(2, now))]
    keys = [b"pump", b"k" * (10 * MB), b"pump"]
    offsets = _produce(bootstrap, topic, values, keys)
    path = _topology(work["dir"] / "topology.yaml", gateway, topic)
    worker = gr.Worker(path, gateway, bootstrap, registry, work["dir"] / "gw").start()
    try:
        _counts(bootstrap, gateway, topic, worker, lambda c: c.get("valid_readings") == 3)
        late = gr.wait_for(bootstrap, f"{topic}.late", 1, 60, worker)
        mine = [m for m in late if gr.header(m, "x-edgestream-source-offset") == str(offsets[1])]
        assert mine, [gr.header(m, "x-edgestream-source-offset") for m in late]
        assert all(m.value() == values[1] for m in mine), "the reading itself, whole"
        assert all(m.key() == keys[1][:OVERSIZE_HEAD_BYTES] for m in mine)
        assert {gr.header(m, "x-edgestream-original-key-size") for m in mine} == {str(10 * MB)}
        assert worker.alive(), worker.log_text()[-3000:]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
