"""The forwarder's downlink on real brokers: fleet.models (cloud) copied exactly and in order
into edge.models (edge), from its own saved position (a restart copies only what is new)."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.forward.downlink import Downlink
from edgestream.wire.topics import MODELS_TOPIC as EDGE_MODELS_TOPIC
from tests.support import gateway as gr

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(bootstrap, **{"acks": "all", "linger.ms": 0}))
    for key, value in records:
        producer.produce(topic, value, key, headers=[("x-test", key)])
    assert producer.flush(30) == 0


def _edge_copies(edge: str, count: int, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    got: list = []
    while time.monotonic() < deadline and len(got) < count:
        got = gr.read_topic(edge, EDGE_MODELS_TOPIC, settle=0.5)
    return got


def test_downlink_mirrors_fleet_models_from_its_own_position(stack, tmp_path) -> None:
    ends = stack.endpoints()
    edge, cloud = str(ends["edge"]["gw-1"]), str(ends["cloud"])
    topic = f"fleet.models.{time.time_ns()}"  # this test's own cloud topic
    ensure_topics(cloud, {topic: 1})
    first = [(f"m{i}".encode(), bytes([i]) * (100 + i)) for i in range(3)]
    _produce(cloud, topic, first)

    link = Downlink("gw-x", cloud, edge, topic, tmp_path).start()
    try:
        copies = _edge_copies(edge, 3)
    finally:
        link.stop()
    before = len(copies) - 3  # edge.models may hold other tests' records: ours are last
    mine = copies[before:]
    assert [(m.key(), m.value()) for m in mine] == first
    assert [dict(m.headers())["x-test"] for m in mine] == [k for k, _ in first]
    saved = json.loads((tmp_path / "downlink-gw-x.json").read_text())
    assert saved["positions"] == {"0": 3}

    second = [(b"m3", b"\x03" * 50), (b"m4", b"\x04" * 60)]
    _produce(cloud, topic, second)
    again = Downlink("gw-x", cloud, edge, topic, tmp_path).start()
    try:
        copies = _edge_copies(edge, before + 5)
        # a marker produced after the restart's copies: copies keep the cloud's order, so
        # once it is there any re-copy of first or second is there too (no wait for nothing)
        marker = [(b"m5", b"\x05" * 10)]
        _produce(cloud, topic, marker)
        copies = _edge_copies(edge, before + 6)
    finally:
        again.stop()
    assert [(m.key(), m.value()) for m in copies[before:]] == first + second + marker
