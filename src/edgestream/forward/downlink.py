"""The forwarder's downlink: the cloud's ``fleet.models`` mirrored into the edge topic
``edge.models``, exactly (key, value, headers, in order), for the gateway worker to read.

A thread of the forwarder process. It reads ``fleet.models`` from its own position (next
offset per partition in ``<data dir>/downlink-<gateway>.json``, written atomically after the
edge broker confirmed the copies; the beginning of the topic the first time, so a new
gateway learns every model ever published), copies each record to partition 0 of
``edge.models`` and only then moves its position. A crash between the two re-copies the
last records: the gateway ignores a version it already has. While the cloud topic does not
exist yet (no model published) or a broker is down it waits and retries.

(The uplink, ``edge.rollout`` -> ``fleet.rollout``, rides the outbox like alerts: see
:mod:`edgestream.forward.records`.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from edgestream.core.broker import consumer_config, ensure_topics, producer_config
from edgestream.wire.topics import MODELS_TOPIC as EDGE_MODELS_TOPIC

__all__ = ["Downlink"]

log = logging.getLogger("edgestream.forward.downlink")


class Downlink:
    """Mirror ``cloud_topic`` (cloud broker) into ``edge.models`` (edge broker)."""

    def __init__(
        self,
        gateway_id: str,
        cloud_bootstrap: str,
        edge_bootstrap: str,
        cloud_topic: str,
        data_dir: Path,
        cloud_client: dict[str, object] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.cloud_bootstrap = cloud_bootstrap
        self.edge_bootstrap = edge_bootstrap
        self.cloud_topic = cloud_topic
        self.cloud_client = dict(cloud_client or {})
        self.position_path = Path(data_dir) / f"downlink-{gateway_id}.json"
        self.positions: dict[int, int] = self._load()
        self.copied = 0
        self.wire_bytes = 0  # bytes this consumer sent to the cloud broker (fetch requests)
        self._tx: dict[str, int] = {}
        self._tx_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Downlink:
        self._thread = threading.Thread(target=self._run, name="downlink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._mirror()
            except Exception as error:  # a broker gone, metadata errors: retry, never die
                log.warning("downlink %s: %s; retrying", self.cloud_topic, error)
                self._stop.wait(2.0)

    # -- copying ---------------------------------------------------------------------------
    def _mirror(self) -> None:
        ensure_topics(self.edge_bootstrap, {EDGE_MODELS_TOPIC: 1})
        group = f"edgestream-downlink-{self.gateway_id}"
        consumer = Consumer(
            consumer_config(
                self.cloud_bootstrap,
                group,
                **{
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # long poll: Kafka answers as soon as a model arrives, and an idle gateway
                    # sends 1 fetch per s instead of 10 (uplink bandwidth); a broker answers
                    # a waiting fetch as soon as a model arrives, so this costs no latency.
                    "fetch.wait.max.ms": 1000,
                    "statistics.interval.ms": 1000,
                    "stats_cb": self._on_stats,
                    "log_level": 2,
                    **self.cloud_client,
                },
            )
        )
        producer = Producer(producer_config(self.edge_bootstrap, **{"acks": "all", "linger.ms": 0}))
        try:
            partitions = self._wait_topic(consumer)
            if partitions is None:
                return
            consumer.assign(
                [
                    TopicPartition(self.cloud_topic, p, self.positions.get(p, OFFSET_BEGINNING))
                    for p in partitions
                ]
            )
            while not self._stop.is_set():
                first = consumer.poll(0.2)  # returns on the first record (consume() would
                if first is None:  # wait for the full batch or the timeout)
                    continue
                batch = [first, *consumer.consume(49, timeout=0)]
                messages = [m for m in batch if _ok(m)]
                if messages:
                    self._copy(consumer, producer, messages)
        finally:
            consumer.close()
            producer.flush(5)

    def _on_stats(self, raw: str) -> None:
        """Count the bytes sent to the cloud (they are uplink bytes too: bench e2e)."""
        try:
            brokers = json.loads(raw).get("brokers", {})
        except ValueError:
            return
        with self._tx_lock:
            for name, broker in brokers.items():
                total = int(broker.get("txbytes", 0))
                if total > self._tx.get(name, 0):
                    self.wire_bytes += total - self._tx.get(name, 0)
                self._tx[name] = total

    def take_wire_bytes(self) -> int:
        """Bytes sent to the cloud since the last call."""
        with self._tx_lock:
            taken, self.wire_bytes = self.wire_bytes, 0
        return taken

    def _wait_topic(self, consumer: Consumer) -> list[int] | None:
        while not self._stop.is_set():
            meta = consumer.list_topics(timeout=10).topics.get(self.cloud_topic)
            if meta is not None and meta.error is None and meta.partitions:
                return sorted(meta.partitions)
            self._stop.wait(1.0)
        return None

    def _copy(self, consumer: Consumer, producer: Producer, messages: list[Any]) -> None:
        errors: list[Any] = []

        def delivered(error: Any, _msg: Any) -> None:
            if error is not None:
                errors.append(error)

        for msg in messages:
            producer.produce(
                EDGE_MODELS_TOPIC,
                key=msg.key(),
                value=msg.value(),
                headers=msg.headers() or None,
                partition=0,
                on_delivery=delivered,
            )
        left = producer.flush(30)
        if errors or left:
            # not confirmed: copy them again from where we were (the gateway ignores repeats)
            for p, offset in self._first_offsets(messages).items():
                consumer.seek(TopicPartition(self.cloud_topic, p, offset))
            raise RuntimeError(f"edge broker did not confirm the copies: {errors[:1] or left}")
        for msg in messages:
            self.positions[msg.partition()] = msg.offset() + 1
        self.copied += len(messages)
        self._save()
        log.info("downlink: copied %d model updates (%d in all)", len(messages), self.copied)

    @staticmethod
    def _first_offsets(messages: list[Any]) -> dict[int, int]:
        first: dict[int, int] = {}
        for m in messages:
            first[m.partition()] = min(first.get(m.partition(), m.offset()), m.offset())
        return first

    # -- position --------------------------------------------------------------------------
    def _load(self) -> dict[int, int]:
        try:
            data = json.loads(self.position_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {int(p): int(o) for p, o in data.get("positions", {}).items()}

    def _save(self) -> None:
        self.position_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.position_path.with_name(self.position_path.name + ".tmp")
        body = {"topic": self.cloud_topic, "positions": self.positions, "saved_at": time.time()}
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.position_path)


def _ok(msg: Any) -> bool:
    error = msg.error()
    if error is None:
        return True
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("downlink consumer: %s", error)
    return False
