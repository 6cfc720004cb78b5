"""A sensor topic deleted and recreated under a running gateway worker (real worker process,
real embedded Kafka, real registry): the worker creates it again with the topology's
partitions, resets its positions to the new log start, counts the reset, and processes every
new reading (counted one by one on ``edge.samples``, every reading sampled)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from edgestream.core.metrics import read_port
from edgestream.core.offsets import partitions_of
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.sim import simulate
from tests.support import gateway as gr

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY = "gw-test"
TOPIC = "sensors.pump"


def _topology(path: Path) -> Path:
    gr.write_topology(path, GATEWAY)
    topo = yaml.safe_load(path.read_text())
    topo["sensors"]["topics"][0]["partitions"] = 2
    topo["forwarding"] = {"samples": {"every": 1}}  # every valid reading: one sample
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def _send(bootstrap: str, registry: str, seed: int, start_s: int) -> None:
    simulate(
        bootstrap=bootstrap,
        registry=registry,
        devices=6,
        rate=10.0,
        duration=10.0,
        seed=seed,
        device_types=("pump",),
        topic=TOPIC,
        labels=None,
        fast=True,
        anomaly_rate=0.0,
        late_fraction=0.0,
        start_time=start_s * 1000,
    )


def _samples(bootstrap: str, registry: str) -> set[tuple[str, int]]:
    decode = AvroDeserializer(registry)
    return {
        (r["device_id"], r["ts"])
        for r in (decode(m.value()) for m in gr.read_topic(bootstrap, "edge.samples", settle=1.0))
    }


def _wait_samples(env: dict, count: int, worker: gr.Worker) -> set[tuple[str, int]]:
    deadline = time.monotonic() + 120
    got: set[tuple[str, int]] = set()
    while time.monotonic() < deadline and len(got) < count:
        assert worker.alive(), worker.log_text()[-3000:]
        got = _samples(env["bootstrap"], env["registry"])
    return got


def test_recreated_topic_is_read_again_from_its_start(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    ends = stack.start(gateways=1).endpoints()
    env = {"bootstrap": ends["edge"]["gw-1"], "registry": str(ends["registry"])}
    topology = _topology(tmp_path / "topology.yaml")
    worker = gr.Worker(topology, GATEWAY, env["bootstrap"], env["registry"], tmp_path / "gw")
    worker.start()
    try:
        now = int(time.time())
        _send(env["bootstrap"], env["registry"], seed=1, start_s=now - 300)  # 600 readings
        first = _wait_samples(env, 600, worker)
        assert len(first) == 600
        admin = AdminClient({"bootstrap.servers": env["bootstrap"]})
        admin.delete_topics([TOPIC])[TOPIC].result(30)
        meta = Consumer({"bootstrap.servers": env["bootstrap"], "group.id": "m", "log_level": 2})
        deadline = time.monotonic() + 60  # the worker creates its topic again
        while partitions_of(meta, TOPIC) != [0, 1]:
            assert time.monotonic() < deadline, "the worker did not recreate its topic (2 parts)"
            time.sleep(0.5)
        meta.close()
        # fewer new readings than were read before: each partition's new log ends before the
        # old positions, which a worker that skips "replays" by offset would drop
        _send(env["bootstrap"], env["registry"], seed=2, start_s=now - 120)  # 600 more
        both = _wait_samples(env, 1200, worker)
        assert len(both) == 1200, f"{1200 - len(both)} new readings were not processed"
        port = read_port(tmp_path / "gw", "edge")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        resets = [
            line
            for line in text.decode().splitlines()
            if line.startswith("edgestream_offset_resets_total{") and TOPIC in line
        ]
        assert resets and sum(float(line.rsplit(" ", 1)[1]) for line in resets) >= 1, text
        assert worker.alive()
    finally:
        worker.stop()
        stack.stop()
