"""``edge.alerts`` deleted and recreated under a real forwarder process (real embedded Kafka,
real registry, no gateway worker: alerts are produced the way the gateway produces them):
every new alert reaches ``fleet.alerts`` exactly once, also when the new log is shorter than
the stored position (a running forwarder) or has grown past it (a restarted one), and each
reset is counted and put on ``edge.status``."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.metrics import read_port
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from tests.support.gateway import GATEWAY, read_topic
from tests.support.pipeline import Pipeline
from tests.support.records import alert

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "edge.alerts"


def _alerts(first_ts: int, n: int) -> list[dict[str, Any]]:
    return [alert(f"pump-{i % 3}", first_ts + i, gateway=GATEWAY) for i in range(n)]


def _produce(edge: str, registry: str, alerts: list[dict[str, Any]]) -> None:
    ensure_topics(edge, {TOPIC: 1})  # or the forwarder has created it again already
    producer = Producer(producer_config(edge))
    serialize = AvroSerializer(registry, "AnomalyAlert", subject_for(TOPIC))
    for a in alerts:
        producer.produce(TOPIC, serialize(a), a["alert_id"].encode())
    assert producer.flush(20) == 0


def _delete(edge: str) -> None:
    admin = AdminClient({"bootstrap.servers": edge})  # kept until the answer came
    admin.delete_topics([TOPIC])[TOPIC].result(30)


def _copies(p: Pipeline, alerts: list[dict[str, Any]], timeout: float = 90) -> Counter[str]:
    """Copies of each alert on fleet.alerts (raw, no dedup), once every one has arrived."""
    decode = AvroDeserializer(p.registry)
    want = {a["alert_id"] for a in alerts}
    deadline = time.monotonic() + timeout
    while True:
        assert p.forwarder.alive(), p.forwarder.log.read_text()[-3000:]
        copies = Counter(decode(m.value())["alert_id"] for m in read_topic(p.cloud, "fleet.alerts"))
        if want <= set(copies) or time.monotonic() > deadline:
            return copies


def _resets(p: Pipeline) -> dict[str, float]:
    """edgestream_offset_resets_total of edge.alerts by reason, from the forwarder's /metrics."""
    port = read_port(p.data, "forward")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("edgestream_offset_resets_total{") and f'topic="{TOPIC}"' in line:
            assert f'gateway="{GATEWAY}"' in line, line
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = out.get(reason, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def _events(p: Pipeline) -> list[dict[str, Any]]:
    records = (json.loads(m.value()) for m in read_topic(p.edge, "edge.status", settle=1.0))
    return [r for r in records if r.get("event") == "offset_reset" and r["topic"] == TOPIC]


def test_recreated_edge_topic_is_forwarded_again_from_its_start(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)  # its gateway worker is not started
    try:
        p.forwarder.start()
        first = _alerts(1_000, 20)
        _produce(p.edge, p.registry, first)
        assert set(_copies(p, first)) >= {a["alert_id"] for a in first}

        # deleted under the running forwarder: it stays up; the new log (10 records) ends
        # before the stored position (20)
        _delete(p.edge)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert p.forwarder.alive(), p.forwarder.log.read_text()[-3000:]
            time.sleep(0.5)
        second = _alerts(5_000, 10)
        _produce(p.edge, p.registry, second)
        copies = _copies(p, first + second)
        missing = [a["alert_id"] for a in second if a["alert_id"] not in copies]
        assert not missing, f"{len(missing)} new alerts were skipped: {missing}"
        live_resets = _resets(p)

        # recreated while the forwarder is stopped and filled past its stored position (10):
        # 5 alerts forwarded before (a replay: dropped by their ids) and 15 new ones
        assert p.forwarder.stop() == 0
        _delete(p.edge)
        third = _alerts(9_000, 15)
        _produce(p.edge, p.registry, second[:5] + third)
        p.forwarder.start()
        copies = _copies(p, first + second + third)
        missing = [a["alert_id"] for a in third if a["alert_id"] not in copies]
        assert not missing, f"{len(missing)} new alerts were skipped: {missing}"
        twice = {i: n for i, n in copies.items() if n != 1}
        assert not twice, f"alerts on fleet.alerts more than once: {twice}"
        assert set(copies) == {a["alert_id"] for a in first + second + third}

        assert live_resets.get("topic_recreated", 0) >= 1, live_resets
        assert _resets(p).get("topic_recreated", 0) >= 1, "the restarted forwarder's reset"
        events = [(e["component"], e["gateway"], e["from"], e["to"], e["reason"])
                  for e in _events(p)]  # fmt: skip
        assert ("forward", GATEWAY, 20, 0, "topic_recreated") in events, events
        assert ("forward", GATEWAY, 10, 0, "topic_recreated") in events, events
        assert p.forwarder.alive()
    finally:
        p.close()
