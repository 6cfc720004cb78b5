"""The instruments of a sustained-load run (:mod:`edgestream.bench.sustained`): the live
producer that stamps each reading with its produce time, and the observers of a running
worker (its outputs' latencies, its lag from the metrics it serves).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestream.bench.common import BenchError, TopicReader

SAMPLE_S = 0.5  # lag sampling interval
ANOMALY_RATE = 0.05  # share of anomalous readings the live producer sends


@dataclass
class _Outputs:
    """What the output reader collected: (record time ms, reading ts ms) per alert and
    (record time ms, window closable ms) per summary."""

    alerts: list[tuple[int, int]] = field(default_factory=list)
    summaries: list[tuple[int, int]] = field(default_factory=list)


class LoadRun:
    """One running worker and its observers: output reader and lag sampler threads."""

    def __init__(
        self,
        bootstrap: str,
        registry: str,
        metrics_url: str,
        waits_ms: dict[int, int],
        start_offsets: dict[str, dict[int, int]],
    ) -> None:
        from edgestream.core.serde import AvroDeserializer

        self.metrics_url = metrics_url
        self.waits_ms = waits_ms  # window size -> allowed lateness + max out-of-orderness
        self.out = _Outputs()
        self.produced = 0  # readings acknowledged by the simulator so far
        self.samples: list[tuple[float, int, int]] = []  # (monotonic s, produced, processed)
        self._decode = AvroDeserializer(registry)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._readers = {t: TopicReader(bootstrap, t, o) for t, o in start_offsets.items()}
        self._threads = [
            threading.Thread(target=self._read, name="bench-outputs", daemon=True),
            threading.Thread(target=self._sample, name="bench-lag", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def processed(self) -> int | None:
        """``edgestream_readings_total`` of the worker (None: metrics not up yet)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        total = 0
        for line in text.splitlines():
            if line.startswith("edgestream_readings_total{"):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            before = self.produced
            done = self.processed()
            if done is not None:  # the counter was read during the scrape: take its middle
                with self._lock:
                    produced = (before + self.produced) // 2
                    self.samples.append((time.monotonic(), produced, done))

    def _read(self) -> None:
        from edgestream.wire.topics import ALERTS_TOPIC

        while not self._stop.is_set():
            for topic, reader in self._readers.items():
                messages = reader.poll(0.1)
                if not messages:
                    continue
                records = self._decode.decode_many([m.value() for m in messages])
                rows = []
                for msg, rec in zip(messages, records, strict=True):
                    if not isinstance(rec, dict):
                        continue
                    at = msg.timestamp()[1]
                    if topic == ALERTS_TOPIC:
                        rows.append((at, int(rec["ts"])))
                    else:
                        size = rec["window_end"] - rec["window_start"]
                        rows.append((at, rec["window_end"] + self.waits_ms.get(size, 0)))
                with self._lock:
                    target = self.out.alerts if topic == ALERTS_TOPIC else self.out.summaries
                    target.extend(rows)

    def snapshot(self) -> tuple[list[tuple[float, int, int]], _Outputs]:
        with self._lock:
            out = _Outputs(list(self.out.alerts), list(self.out.summaries))
            return list(self.samples), out

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        for reader in self._readers.values():
            reader.close()


def wait_metrics(port_file: Path, proc_alive: Callable[[], bool], timeout: float) -> str:
    """The worker's ``/metrics`` URL once it wrote its port file and answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_alive():
            raise BenchError("the sustained-load worker exited before serving its metrics")
        try:
            url = f"http://127.0.0.1:{int(port_file.read_text().strip())}/metrics"
            with urllib.request.urlopen(url, timeout=2):
                return url
        except (OSError, ValueError):
            time.sleep(0.1)
    raise BenchError(f"the sustained-load worker wrote no metrics port to {port_file} in time")


def produce_live(
    endpoints: tuple[str, str],
    topic: str,
    rate: float,
    duration: float,
    devices: int,
    seed: int,
    on_progress: Callable[[int], None],
) -> int:
    """Send the simulator's pump readings (anomalies included) at ``rate`` readings/s for
    ``duration`` s, each stamped with the time it is handed to the producer (its ``ts`` and
    record timestamp: produce time = event time); returns how many were acknowledged.
    A producer that cannot keep the pace sends late, and the step says so (producer_bound).
    """
    from confluent_kafka import Producer

    from edgestream.core.broker import producer_config
    from edgestream.core.serde import AvroSerializer, subject_for
    from edgestream.sim.config import SimConfig
    from edgestream.sim.simulator import Simulator

    bootstrap, registry = endpoints
    config = SimConfig(
        devices=devices,
        rate=rate / devices,
        duration=duration,
        seed=seed,
        device_types=("pump",),
        topic=topic,
        labels=None,
        fast=True,
        anomaly_rate=ANOMALY_RATE,  # alerts enough for percentiles in a 20 s step
    )
    sim = Simulator(config)
    serialize = AvroSerializer(registry, "SensorReading", subject_for(topic))
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 5}))
    failed: list[str] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            failed.append(str(error))

    sent = 0
    v0, begin = sim.start_ms, time.monotonic()
    for msg in sim.messages():
        wait = (msg.emit_ts - v0) / 1000 - (time.monotonic() - begin)
        if wait > 0.001:
            time.sleep(wait)
        now = int(time.time() * 1000)
        value = serialize({**msg.value, "ts": now})
        producer.produce(topic, value, msg.key, on_delivery=delivered, timestamp=now)
        sent += 1
        on_progress(sent)
        if sent & 0xFF == 0:
            producer.poll(0)
    if producer.flush(30) or failed:
        detail = failed[0] if failed else "records not acknowledged in 30 s"
        raise BenchError(f"the sustained-load producer failed on {topic}: {detail}")
    return sent


__all__ = ["LoadRun", "produce_live", "wait_metrics"]
