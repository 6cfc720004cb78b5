"""Moving parts of ``bench e2e``: paced sensors that remember when each reading was sent, a
reader of the cloud topics (first copies, with arrival times), processes, percentiles.

>>> percentiles([5.0, 1.0, 3.0, 2.0, 4.0])["p50"]
3.0
>>> percentiles([])
{}
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edgestream.core.broker import producer_config
from edgestream.core.commands import forward_run, python_argv
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.sim import SimConfig, Simulator
from edgestream.wire.dedup import Deduplicator, DedupReader, Delivered

__all__ = ["CloudWatcher", "SensorSender", "percentiles", "tail_fetch_ms"]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max (and the sample count) of ``values``, rounded to 0.1."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=float)
    out = {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in (50, 95, 99)}
    return {**out, "max": round(float(arr.max()), 1), "samples": len(values)}


class SensorSender:
    """Sends simulated SensorReadings at wall-clock pace (virtual time = now) from a thread;
    ``sent_at[(device_id, ts)]`` is the wall-clock ms at which each reading was produced and
    ``bytes`` the key + value bytes sent (the readings as the sensors produce them)."""

    def __init__(self, bootstrap: str, registry: str, config: SimConfig) -> None:
        from confluent_kafka import Producer

        self.config = config
        self.sim = Simulator(config)
        self.serialize = AvroSerializer(registry, "SensorReading", subject_for(config.topic))
        settings = {"linger.ms": 5, "partitioner": "murmur2_random", "log_level": 2}
        self.producer = Producer(producer_config(bootstrap, **settings))
        self.sent_at: dict[tuple[str, int], float] = {}
        self.bytes = 0
        self.readings = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="bench-sensors", daemon=True)

    def _run(self) -> None:
        try:
            begin = time.monotonic()
            v0 = self.sim.start_ms
            for msg in self.sim.messages(stop=self.stop.is_set):
                wait = (msg.emit_ts - v0) / 1000.0 - (time.monotonic() - begin)
                if wait > 0.002:
                    self.stop.wait(wait)
                data = self.serialize(msg.value)
                while True:
                    try:
                        self.producer.produce(msg.topic, data, msg.key)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                self.sent_at[(msg.value["device_id"], int(msg.value["ts"]))] = time.time() * 1000
                self.bytes += len(data) + len(msg.key)
                self.readings += msg.readings
                self.producer.poll(0)
            self.producer.flush(30)
        except BaseException as error:  # reported by the benchmark
            self.error = error

    def start(self) -> SensorSender:
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)


class CloudWatcher:
    """Reads the cloud topics in a thread, first copies only, arrival time to ~10 ms;
    :meth:`restart` reads recreated topics from offset 0 with the same dedup state."""

    def __init__(self, bootstrap: str, topics: list[str], registry: str) -> None:
        self.bootstrap, self.topics, self.registry = bootstrap, topics, registry
        self.dedup = Deduplicator()
        self.delivered: list[Delivered] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        reader = DedupReader(self.bootstrap, self.topics, self.registry, dedup=self.dedup)
        try:
            while not self._stop.is_set():
                self.delivered += reader.poll(0.01)
        finally:
            reader.close()

    def start(self) -> CloudWatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-cloud", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def count(self, topic: str) -> int:
        return sum(1 for d in self.delivered if d.topic == topic)


def forwarder_argv(topology: Path, gateway: str, edge: str, cloud: str, registry: str,
                   data_dir: Path) -> list[str]:  # fmt: skip
    """``edgestream forward run ...`` for a subprocess."""
    args = forward_run(topology, gateway, edge_bootstrap=edge, cloud_bootstrap=cloud,
                       registry=registry, data_dir=data_dir, loglevel="warning")  # fmt: skip
    return python_argv(args)


def tail_fetch_ms(bootstrap: str, topic: str, probes: int = 10) -> float | None:
    """Median ms from assigning ``topic``'s newest records (every partition) to receiving one,
    on one consumer: what the broker spends to serve a fetch at the tail.

    A broker whose fetch cost grows with the record batches a partition holds shows it here,
    so the bench probes it at the start and at the end of the live phase.
    """
    from confluent_kafka import Consumer, TopicPartition

    from edgestream.core.broker import consumer_config

    group = f"edgestream-bench-probe-{time.time_ns()}"
    consumer = Consumer(consumer_config(bootstrap, group, **{"enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        times = []
        for _ in range(probes):
            tps = []
            for p in sorted(meta.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                tps.append(TopicPartition(topic, p, max(low, high - 1)))
            start = time.perf_counter()
            consumer.assign(tps)
            msg = consumer.poll(5.0)
            if msg is not None and msg.error() is None:
                times.append((time.perf_counter() - start) * 1000)
            consumer.unassign()
        return round(float(np.median(times)), 1) if times else None
    finally:
        consumer.close()
