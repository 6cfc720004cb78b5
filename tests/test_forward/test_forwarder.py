"""The forwarder in process against real brokers, fed with records produced the way the
gateway produces them (no gateway worker: fast enough for the default run)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.topology import load_topology
from edgestream.forward import config as forwarder_config
from edgestream.forward import topic_guard
from edgestream.forward.config import ForwarderConfig
from edgestream.forward.forwarder import Forwarder
from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig, outbox_path
from edgestream.wire.dedup import DedupReader
from edgestream.wire.topics import EDGE_TOPICS
from tests.support.gateway import read_topic, write_topology
from tests.support.records import alert, random_windows

pytestmark = pytest.mark.integration
TOPICS = ["fleet.alerts", "fleet.summaries", "fleet.forwarder"]


def _produce_edge(bootstrap: str, registry: str, alerts: list, summaries: list) -> int:
    """Produce like the gateway (keyed by id, Avro); returns sensor bytes also produced."""
    ensure_topics(bootstrap, {"edge.alerts": 1, "edge.summaries": 1, "sensors.pump": 2})
    producer = Producer(producer_config(bootstrap))
    ser_a = AvroSerializer(registry, "AnomalyAlert", subject_for("edge.alerts"))
    ser_s = AvroSerializer(registry, "WindowSummary", subject_for("edge.summaries"))
    for a in alerts:
        producer.produce("edge.alerts", ser_a(a), a["alert_id"].encode())
    for s in summaries:
        producer.produce("edge.summaries", ser_s(s), s["summary_id"].encode())
    sensor = 0
    for i in range(300):
        key, value = f"pump-{i % 3}".encode(), bytes(100 + i % 7)
        producer.produce("sensors.pump", value, key, headers=[("h", b"xy")])
        sensor += len(key) + len(value) + 3
    assert producer.flush(20) == 0
    return sensor


def _run(config: ForwarderConfig) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    fwd = Forwarder(config)
    thread = threading.Thread(target=fwd.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def _collect(reader: DedupReader, until: int, timeout: float = 60) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while sum(d.topic != "fleet.forwarder" for d in got) < until and time.monotonic() < deadline:
        got += reader.poll(0.3)
    return got


def test_forwards_once_in_order_keyed_by_device_and_meters_bytes(stack, tmp_path: Path) -> None:
    ends = stack.endpoints()
    edge, cloud, registry = ends["edge"]["gw-1"], ends["cloud"], ends["registry"]
    topo = load_topology(write_topology(tmp_path / "t.yaml", "gw-test"))
    alerts = [alert(f"pump-{i % 3}", 1_000 + i, gateway="gw-test") for i in range(12)]
    sums, _ = random_windows(np.random.default_rng(2), devices=3, windows=5)
    sensor_bytes = _produce_edge(edge, registry, alerts + alerts[:2], sums)  # 2 replays
    config = ForwarderConfig(topo, "gw-test", edge, cloud, registry, tmp_path, report_interval_s=1)
    stop, thread = _run(config)
    reader = DedupReader(cloud, TOPICS, registry)
    try:
        got = _collect(reader, len(alerts) + len(sums))
        deadline = time.monotonic() + 10
        while not any(d.topic == "fleet.forwarder" for d in got) and time.monotonic() < deadline:
            got += reader.poll(0.3)
    except BaseException:
        reader.close()
        raise
    finally:
        stop.set()
        thread.join(30)
    cloud_alerts = [d for d in got if d.topic == "fleet.alerts"]
    cloud_sums = [d for d in got if d.topic == "fleet.summaries"]
    assert sorted(d.record["alert_id"] for d in cloud_alerts) == sorted(
        a["alert_id"] for a in alerts
    ), "each once: the two replays were dropped by the outbox"
    assert sorted(d.record["summary_id"] for d in cloud_sums) == sorted(
        s["summary_id"] for s in sums
    )
    for device in ("pump-0", "pump-2"):
        mine = [d for d in cloud_alerts if d.record["device_id"] == device]
        assert [d.record["ts"] for d in mine] == sorted(d.record["ts"] for d in mine), "order"
        assert {d.key for d in mine} == {device.encode()} and len({d.partition for d in mine}) == 1
        mine_s = [d.record["window_start"] for d in cloud_sums if d.record["scope_key"] == device]
        assert mine_s == sorted(mine_s)
    seqs = [d.record["gateway_seq"] for d in got]
    assert len(seqs) == len(set(seqs)) and None not in seqs
    decode = AvroDeserializer(registry)
    wire = [decode(m.value()) for m in read_topic(cloud, "fleet.alerts")]
    sent = {a["alert_id"]: a["incident_id"] for a in alerts}
    assert len(wire) >= len(alerts) and all(
        sent[r["alert_id"]] == r["incident_id"] for r in wire
    ), "the ids travel as the gateway assigned them: fleet.alerts is read by any client"
    reports = [d.record for d in got if d.topic == "fleet.forwarder"]
    assert reports and reports[0]["gateway_id"] == "gw-test"

    box = Outbox(OutboxConfig(outbox_path(topo, "gw-test", tmp_path)), "gw-test", readonly=True)
    stats = box.stats()
    box.close()
    assert stats.sensor_bytes == sensor_bytes, "raw sensor bytes: key + value + headers"
    assert stats.cloud_bytes > 0 and stats.depth == 0
    # every report written was delivered (depth 0); one may come after the reader stopped
    assert stats.delivered == len(alerts) + len(sums) + stats.reports
    assert stats.reports >= len(reports)

    # a restart reads on from the stored offsets: nothing is sent twice. A marker alert
    # produced after the restart is the positive sign that it reads and forwards; when it has
    # arrived, it must be the only new record (reports aside).
    stop, thread = _run(config)
    marker = alert("pump-9", 99_000, gateway="gw-test")
    producer = Producer(producer_config(edge))
    ser = AvroSerializer(registry, "AnomalyAlert", subject_for("edge.alerts"))
    producer.produce("edge.alerts", ser(marker), marker["alert_id"].encode())
    assert producer.flush(20) == 0
    try:
        again = _collect(reader, 1)
        again += reader.poll(1.0)  # anything sent with it (a replay would come before it)
    finally:
        stop.set()
        thread.join(30)
        reader.close()
    new = [d.record["alert_id"] for d in again if d.topic != "fleet.forwarder"]
    assert new == [marker["alert_id"]], "only the marker: nothing read again after the restart"
    assert reader.dedup.stats["duplicates"] == 0


def test_topic_names_match_the_gateway() -> None:
    """One table now (edgestream.wire.topics): the names on the wire stay what they were."""
    from edgestream.wire import topics

    assert forwarder_config.REPORTS_TOPIC == topics.FLEET["reports"] == "fleet.forwarder"
    assert EDGE_TOPICS["alert"] == topics.ALERTS_TOPIC == "edge.alerts"
    assert EDGE_TOPICS["summary"] == topics.SUMMARIES_TOPIC == "edge.summaries"
    assert EDGE_TOPICS["rollout"] == topics.ROLLOUT_TOPIC == "edge.rollout"  # -> fleet.rollout
    assert topic_guard.STATUS_TOPIC == topics.STATUS_TOPIC == "edge.status"  # offset_reset events
