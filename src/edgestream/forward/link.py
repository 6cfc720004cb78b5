"""The forwarder's link to the cloud broker: idempotent producers that are thrown away when
the link fails, a probe with backoff while it is down, and topics recreated when missing.

Two producers ("lanes") with the same settings but their linger and zstd level: ``urgent``
(alerts, reports; linger at most :data:`URGENT_LINGER_MS`) and ``bulk`` (summaries and sampled
readings; the topology's linger, :data:`BULK_ZSTD_LEVEL`). The forwarder hands summaries and
samples over in whole batches (it holds them in the outbox first:
``forwarding.summaries.linger``, ``forwarding.samples.linger``), so the producer linger only
has to keep a batch together. Each topic is written by one of them, so per-partition order is
the producer's. (Each producer costs a connection, its set-up and metadata requests on the
uplink: a third lane for samples measured more bytes than it saved.)

Producer settings: ``enable.idempotence`` (acks=all, ordered retries), ``enable.gapless.
guarantee`` (a record that fails for good fails everything after it on its partition too, so
a re-send never overtakes a delivered successor: per-device order holds), compression at the
codec's default level (zstd level 12 cost ~100 ms per batch in librdkafka for ~4 % fewer
bytes than level 3: measured), linger and batch size from the topology, a bounded
``message.timeout.ms`` (a dead link shows up as failed deliveries, the outbox keeps the
records), and statistics for the bytes on the wire: per producer the brokers' ``txbytes``
(requests as sent: compressed batches plus protocol overhead), split over its topics in
proportion to their partitions' ``txbytes`` (:meth:`CloudLink.take_wire_bytes_by_topic`).

The link is down after a failed delivery, a fatal producer error or "all brokers down"; it is
probed with exponential backoff (0.5 s doubling to ``max_backoff``); when the broker answers,
missing topics are created (a restarted in-memory broker comes back empty) and a fresh
producer starts (a new producer id: the broker may not know the old one).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from edgestream.core.security import redact

__all__ = ["CLOUD_PARTITIONS", "CloudLink", "producer_settings"]

log = logging.getLogger("edgestream.forward")

#: Partitions of the cloud topics when the forwarder creates them (records are keyed by
#: device, so per-device order holds with any count).
CLOUD_PARTITIONS = 3
#: The longest an alert waits in the producer for batch company.
URGENT_LINGER_MS = 5
#: Producer lanes (see the module doc).
LANES = ("urgent", "bulk")
#: zstd level of the bulk and sample lanes (librdkafka allows up to 12): one batch per window
#: burst, so a slower level is cheap (offline, 50 summaries: level 12 took 3 ms for 3 % fewer
#: bytes than level 3); alerts keep the codec default (latency).
BULK_ZSTD_LEVEL = 12
#: Seconds between checks that the cloud topics exist (a Metadata request each: uplink bytes).
TOPIC_CHECK_S = 30.0


def producer_settings(
    compression: str, linger_ms: int, batch_bytes: int, message_timeout_ms: int = 15_000
) -> dict[str, object]:
    """The cloud producer's settings (without bootstrap/security).

    >>> producer_settings("zstd", 50, 1_000_000)["compression.type"]
    'zstd'
    """
    conf: dict[str, object] = {
        "enable.idempotence": True,
        "enable.gapless.guarantee": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": batch_bytes,
        "message.timeout.ms": message_timeout_ms,
        "statistics.interval.ms": 1000,
        "reconnect.backoff.max.ms": 2000,
        "log_level": 2,
    }
    return conf


class CloudLink:
    """Produce to the cloud broker while the link is up; probe it while it is down."""

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        client_settings: dict[str, object],
        producer_conf: dict[str, object],
        partitions: int = CLOUD_PARTITIONS,
        max_backoff: float = 2.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.client = {"bootstrap.servers": bootstrap, **client_settings}
        self.producer_conf = producer_conf
        self.partitions = partitions
        self.max_backoff = max_backoff
        self.producers: dict[str, Producer] = {}  # one per lane (LANES) while the link is up
        self.generation = 0  # counts producer starts: delivery reports carry it
        self.up = False
        self.broken: str | None = None  # set by callbacks: the reason the link failed
        self.backoff = 0.5
        self.next_probe = 0.0
        self.next_topic_check = 0.0
        self.down_since: float | None = time.monotonic()
        self.wire_bytes = 0  # bytes sent on the wire by producers since the last take
        self.wire_by_topic: dict[str, float] = {}  # the same bytes, split by topic
        self._producer_tx: dict[str, int] = {}
        self._topic_tx: dict[tuple[str, str], int] = {}
        self._unsplit: dict[str, int] = {}  # producer bytes not yet matched to a topic
        self._stats_seen = 0
        self.transitions: list[tuple[float, str]] = []
        #: why the last probe failed, one line (TLS or authentication refusals named as such)
        self.last_error: str | None = None
        self._client_errors: list[KafkaError] = []
        self._probe_admin: AdminClient | None = None
        log.info("cloud link to %s with %s", bootstrap, redact(self.client))

    # -- state -----------------------------------------------------------------------------
    def ensure(self, now: float | None = None) -> bool:
        """True when the link is up (probing, at most once per backoff, when it is down)."""
        now = time.monotonic() if now is None else now
        if self.broken is not None:
            self.fail(self.broken)
        if self.up:
            if now >= self.next_topic_check:
                self.next_topic_check = now + TOPIC_CHECK_S
                if not self._topics_exist():
                    self.fail("cloud topics missing (broker restarted?)")
            return self.up
        if now < self.next_probe:
            return False
        try:
            self._tcp_reachable()
            self._create_missing_topics()
        except (KafkaException, OSError, RuntimeError) as error:
            self.next_probe = now + self.backoff
            self.backoff = min(self.backoff * 2, self.max_backoff)
            reason = self._probe_error(error)
            if reason != self.last_error:
                log.warning("cloud link down: %s", reason)
            self.last_error = reason
            return False
        self.last_error = None
        self._start_producer()
        self.up, self.backoff = True, 0.5
        self.next_topic_check = now + TOPIC_CHECK_S
        down = now - self.down_since if self.down_since else 0.0
        self.down_since = None
        self.transitions.append((time.time(), "up"))
        log.warning("cloud link up (%s; was down %.1f s)", self.bootstrap, down)
        return True

    def fail(self, reason: str) -> None:
        """Mark the link down: purge what is queued (it stays in the outbox) and drop the
        producer."""
        self.broken = None
        if not self.up and not self.producers:
            return
        log.warning("cloud link down: %s", reason)
        self.up = False
        self.down_since = time.monotonic()
        self.next_probe = self.down_since + self.backoff
        self.transitions.append((time.time(), "down"))
        producers, self.producers = self.producers, {}
        for producer in producers.values():
            try:
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
                producer.flush(0)
            except (KafkaException, RuntimeError) as error:
                log.debug("purging the producer: %s", error)

    # -- producing -------------------------------------------------------------------------
    def produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        on_delivery: Callable[[Any, Any], None],
        urgent: bool = False,
        lane: str | None = None,
    ) -> None:
        """Queue one record on the producer of ``lane`` (default: ``urgent`` for alerts and
        reports, else ``bulk``)."""
        producer = self.producers[lane or ("urgent" if urgent else "bulk")]
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.05)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports and statistics; returns how many events were served."""
        served = 0
        for producer in list(self.producers.values()):
            served += producer.poll(timeout)
            timeout = 0.0
        return served

    def take_wire_bytes(self) -> int:
        """Bytes the producers put on the wire since the last call (from client statistics)."""
        taken, self.wire_bytes = self.wire_bytes, 0
        return taken

    def take_wire_bytes_by_topic(self) -> dict[str, int]:
        """The bytes of :meth:`take_wire_bytes` by topic (a producer's bytes are split over
        its topics by their share of its record bytes; bytes of an interval without records,
        e.g. metadata requests, go with its next records; ``""``: left unsplit at close).
        Call it right after that."""
        out = {}
        for topic, size in self.wire_by_topic.items():
            whole = int(size)
            if whole:
                out[topic] = whole
                self.wire_by_topic[topic] = size - whole  # the fraction stays for next time
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Flush, then wait (up to ~1 s) for each producer's next statistics, so the bytes of
        the last records are counted too."""
        producers, self.producers = self.producers, {}
        for producer in producers.values():
            producer.flush(timeout)
        seen, deadline = self._stats_seen, time.monotonic() + 1.2
        while producers and self._stats_seen < seen + len(producers):
            if time.monotonic() > deadline:
                break
            for producer in producers.values():
                producer.poll(0.05)
        for name in list(self._unsplit):  # no more records to attach them to
            unsplit = self._unsplit.pop(name)
            self.wire_bytes += unsplit
            self.wire_by_topic[""] = self.wire_by_topic.get("", 0.0) + unsplit

    # -- internals -------------------------------------------------------------------------
    def _start_producer(self) -> None:
        self.generation += 1
        linger = int(self.producer_conf.get("linger.ms", 5))  # type: ignore[call-overload]
        lingers = {
            "urgent": min(linger, URGENT_LINGER_MS),
            "bulk": linger,
        }
        for name, ms in lingers.items():
            self._producer_tx[name] = 0
            for key in [k for k in self._topic_tx if k[0] == name]:
                del self._topic_tx[key]
            level = {}
            if name != "urgent" and self.producer_conf.get("compression.type") == "zstd":
                level = {"compression.level": BULK_ZSTD_LEVEL}
            conf = {
                **self.client,
                **self.producer_conf,
                **level,
                "linger.ms": ms,
                "error_cb": self._on_error,
                "stats_cb": partial(self._on_stats, name),
            }
            self.producers[name] = Producer(conf)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN:
            self.broken = f"{error.name()}: {error.str()}"

    def _on_stats(self, name: str, raw: str) -> None:
        self._stats_seen += 1
        try:
            stats = json.loads(raw)
            total = sum(int(b.get("txbytes", 0)) for b in stats.get("brokers", {}).values())
            per_topic = {
                topic: sum(int(p.get("txbytes", 0)) for p in t.get("partitions", {}).values())
                for topic, t in stats.get("topics", {}).items()
            }
        except (ValueError, TypeError, AttributeError):
            return
        if total <= self._producer_tx.get(name, 0):
            return
        delta = total - self._producer_tx.get(name, 0)
        self._producer_tx[name] = total
        shares = {}
        for topic, tx in per_topic.items():
            before = self._topic_tx.get((name, topic), 0)
            if tx > before:
                shares[topic] = tx - before
                self._topic_tx[(name, topic)] = tx
        whole = sum(shares.values())
        if not whole:  # requests before their records show in the partition counters
            self._unsplit[name] = self._unsplit.get(name, 0) + delta
            return
        delta += self._unsplit.pop(name, 0)
        self.wire_bytes += delta  # counted when split: the total and its split stay equal
        for topic, part in shares.items():
            self.wire_by_topic[topic] = self.wire_by_topic.get(topic, 0.0) + delta * part / whole

    def _tcp_reachable(self, timeout: float = 0.5) -> None:
        """Fail fast (no Kafka client, no 3 s metadata timeout) when no bootstrap server
        accepts a TCP connection; raises OSError."""
        last: OSError = OSError(f"no bootstrap server in {self.bootstrap!r}")
        for server in self.bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                    return
            except (OSError, ValueError) as error:
                last = OSError(f"{server}: {error}")
        raise last

    def _admin(self) -> AdminClient:
        self._client_errors = []
        conf = {**self.client, "log_level": 0, "socket.timeout.ms": 3000,
                "error_cb": self._client_errors.append}  # fmt: skip
        self._probe_admin = AdminClient(conf)
        return self._probe_admin

    def _probe_error(self, error: Exception) -> str:
        """One line saying why the probe failed: a refused TLS handshake or authentication
        (from the client's error callback) before a generic timeout. Client error texts
        carry no secrets."""
        if self._probe_admin is not None:
            self._probe_admin.poll(0.2)  # serves the error callback
            self._probe_admin = None
        refusals = (
            KafkaError._SSL,
            KafkaError._AUTHENTICATION,
            KafkaError.SASL_AUTHENTICATION_FAILED,
        )
        named = [e for e in self._client_errors if e.code() in refusals]
        if named:
            kind = "TLS" if named[0].code() == KafkaError._SSL else "authentication"
            text = f"{kind} refused by {self.bootstrap}: {named[0].str()}"
        elif isinstance(error, KafkaException):
            text = f"{self.bootstrap}: {error.args[0].str()}"
        else:
            text = str(error)
        return " ".join(text.split())

    def _topics_exist(self) -> bool:
        try:
            meta = self.producers["bulk"].list_topics(timeout=2)
        except (KafkaException, KeyError):
            return True  # cannot tell now: deliveries will tell
        return all(t in meta.topics and not meta.topics[t].error for t in self.topics)

    def _create_missing_topics(self) -> None:
        admin = self._admin()
        meta = admin.list_topics(timeout=3)
        if not meta.brokers:
            raise RuntimeError("no broker in the metadata")
        missing = [t for t in self.topics if t not in meta.topics]
        if not missing:
            return
        new = [NewTopic(t, num_partitions=self.partitions, replication_factor=1) for t in missing]
        for name, future in admin.create_topics(new, request_timeout=5).items():
            try:
                future.result(10)
                log.warning("created cloud topic %s (%d partitions)", name, self.partitions)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
