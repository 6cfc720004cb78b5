"""Bad input records on a real Flink MiniCluster over a real Kafka broker: garbage bytes, a
wrong magic byte, an unknown schema id and a record of another schema among good summaries do
not fail the job; each goes to ``fleet.dlq`` (original bytes, reason, source position) and the
fleet stats still equal the offline reference of the good records."""

from __future__ import annotations

import json

import pytest

from edgestream.cloud.job import run_jobs
from edgestream.core.offsets import read_to_end
from edgestream.core.serde import AvroSerializer
from edgestream.testing.fleet_records import fleet_summaries, produce_records
from tests.support.cloud import cloud_topology
from tests.support.fleet_reference import assert_rows_match, reference_stats

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = 1_700_000_220_000  # a multiple of 1 minute


def test_bad_records_go_to_the_dlq_and_the_job_goes_on(stack):
    from confluent_kafka import Producer

    endpoints = stack.endpoints()
    cloud, registry = str(endpoints["cloud"]), str(endpoints["registry"])
    stats = {"window": "1m", "allowed_lateness": "15m", "worst_n": 3,
             "max_out_of_orderness": "20s", "idle_timeout": "1h"}  # fmt: skip
    topo = cloud_topology(fleet_stats=stats)
    summaries = fleet_summaries(devices=6, windows=24, seed=5, start_ms=START, replay_every=11)
    half = len(summaries) // 2
    topic = "fleet.summaries"
    ends = produce_records(cloud, registry, topic, "WindowSummary", summaries[:half], "scope_key")
    reading = {"device_id": "p1", "device_type": "pump", "site": "s1", "ts": START, "seq": 1,
               "channels": {"t": 1.0}, "tags": {}}  # fmt: skip
    other = AvroSerializer(registry, "SensorReading", "dlq-test-reading-value")(reading)
    bad = {
        b"\x00\x00\x00\x00\x01\xff\xfe\xfd garbage": "decode",  # a known id, a corrupt body
        b"\x07not even a header": "bad_magic",
        b"\x00\x7f\xff\xff\x00\x02\x04": "unknown_schema_id",
        other: "invalid_record",  # a valid SensorReading on the summaries topic
    }
    producer = Producer({"bootstrap.servers": cloud, "log_level": 2})
    positions: dict[bytes, tuple[int, int]] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        positions[msg.value()] = (msg.partition(), msg.offset())
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i, value in enumerate(bad):
        producer.produce(topic, value, b"bad", partition=i % 2, on_delivery=delivered)
    producer.flush(30)
    rest = produce_records(cloud, registry, topic, "WindowSummary", summaries[half:], "scope_key")
    ends = {p: max(ends.get(p, 0), rest.get(p, 0)) for p in {*ends, *rest}}

    run_jobs(topo, cloud, registry, ends={topic: ends}, name="edgestream-dlq-test")

    rows = {}
    for msg in read_to_end(cloud, "fleet.stats"):
        row = json.loads(msg.value())
        rows[(row["window_start"], row["scope"], row["scope_key"])] = row
    assert_rows_match(rows, reference_stats(summaries, [], 60_000, 3))

    dead = read_to_end(cloud, topo.cloud.dlq_topic)
    assert sorted(m.value() for m in dead) == sorted(bad)
    for msg in dead:
        headers = {k: v.decode() for k, v in msg.headers()}
        partition, offset = positions[msg.value()]
        assert headers["x-edgestream-reason"] == bad[msg.value()], headers
        assert headers["x-edgestream-detail"]
        assert headers["x-edgestream-source-topic"] == topic
        assert (
            int(headers["x-edgestream-source-partition"]),
            int(headers["x-edgestream-source-offset"]),
        ) == (partition, offset)
    meta = json.loads(read_to_end(cloud, "edgestream-dlq-test.meta")[-1].value())
    assert meta["dlq"] == len(bad) and meta["dlq_unknown_schema_id"] == 1
