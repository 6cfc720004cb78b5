"""The forwarder of one gateway: edge broker -> durable outbox -> cloud broker.

One loop, one thread:

1. **Intake**: read ``edge.alerts`` / ``edge.summaries`` / ``edge.samples`` from the gateway's
   edge broker (confluent-kafka, group ``edgestream-forward-<gateway>``, partitions assigned
   from the offsets stored in the outbox, else the group's committed offsets, else the start;
   a stored position that is no longer valid, a recreated or deleted topic, is never skipped
   silently: :mod:`edgestream.forward.topic_guard`), decode, put into the outbox (records and
   offsets in one transaction), then commit the offsets to the group (for lag monitoring; the
   outbox is the source of truth). Alerts and
   summaries are kept in their wire form (derived values null, see
   :func:`~edgestream.wire.forms.wire_alert` and
   :func:`~edgestream.wire.forms.wire_summary`; ``forwarding.summaries``); scopes/window
   sizes the topology does not forward are skipped.
2. **Budget**: past ``max_bytes`` drop samples, roll up, then drop
   (:mod:`edgestream.forward.budget`).
3. **Drain**: while the cloud link is up, produce the outbox's most urgent records (alerts
   and reports, then summaries, then sampled readings; a kind waits while a more urgent one
   is in flight; summaries and samples held briefly to travel in whole batches), delete each
   once its delivery report confirms it. A failed delivery takes the link down: in-flight
   records become due again (same gateway_seq, so consumers drop any copy that arrived).
4. **Meter**: count raw sensor bytes in (:mod:`edgestream.forward.meter`) and the producer's
   wire bytes out; both are stored in the outbox every second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from edgestream.core.broker import consumer_config, ensure_topics
from edgestream.core.exceptions import SchemaError, SerdeError, ServiceUnavailable
from edgestream.core.metrics import register_forwarder
from edgestream.core.offsets import committed_offsets
from edgestream.forward.budget import enforce_budget, write_report
from edgestream.forward.config import ForwarderConfig
from edgestream.forward.downlink import Downlink
from edgestream.forward.link import CloudLink, producer_settings
from edgestream.forward.meter import SensorMeter
from edgestream.forward.outbox import Outbox
from edgestream.forward.records import Entry, Pending
from edgestream.forward.topic_guard import SOURCE, EdgeTopicGuard
from edgestream.wire.codec import CloudFraming, EdgeDecoder
from edgestream.wire.forms import wire_alert, wire_summary
from edgestream.wire.topics import EDGE_TOPICS

__all__ = ["Forwarder", "run_forwarder"]

log = logging.getLogger("edgestream.forward")

_EDGE_KIND = {topic: kind for kind, topic in EDGE_TOPICS.items()}


class Forwarder:
    """The forwarding loop of one gateway (see the module doc); :meth:`run` until stopped."""

    def __init__(self, config: ForwarderConfig) -> None:
        self.config = config
        fwd = config.topology.forwarding
        self.outbox = Outbox(config.outbox_config(), config.gateway_id)
        self.decode = EdgeDecoder(config.registry)
        self.framing = CloudFraming(config.registry, config.topics)
        self.tumbling = self.outbox.config.tumbling_sizes
        self.link = CloudLink(
            config.cloud_bootstrap,
            sorted(set(config.topics.values())),
            config.security.client_config(),
            producer_settings(fwd.compression, fwd.linger, fwd.batch_bytes),
        )
        self._kind_of_topic = {topic: kind for kind, topic in config.topics.items()}
        sums = fwd.summaries
        self._forwarded = (frozenset(sums.scopes), None if sums.windows is None
                           else frozenset(sums.windows))  # fmt: skip
        # summaries and samples wait in the outbox (durably) to travel in fewer, fuller batches
        self._hold_ms = {"summary": sums.linger, "sample": fwd.samples.linger}
        self._held_until = 0.0  # monotonic; nothing due before then unless new records came
        self.inflight: dict[int, Pending] = {}
        self._urgent: Counter[int] = Counter()  # priorities in flight
        self._results: list[tuple[Pending, int, Any]] = []
        self._drops_unreported = bool(self.outbox.stats().dropped_unreported)
        self._batch_bytes = max(1_000_000, 4 * fwd.batch_bytes)
        self._warned: dict[str, float] = {}
        self.rejected = 0
        self.consumer = self._edge_consumer()
        self.meter: SensorMeter | None = None
        if config.meter:
            self.meter = SensorMeter(
                config.edge_bootstrap,
                config.sensor_topics(),
                self.outbox.offsets("meter"),
                f"edgestream-forward-{config.gateway_id}-meter",
            )
        self._next = {"progress": 0.0, "budget": 0.0, "prune": 0.0, "log": 0.0, "metrics": 0.0}
        self.metrics = register_forwarder(config.gateway_id)  # Prometheus (core.metrics)
        self.edge_bytes_in = 0
        self._next_report = time.monotonic() + config.report_interval_s
        # fleet.models -> edge.models (its own thread and position; see forward/downlink.py)
        self.downlink = Downlink(
            config.gateway_id,
            config.cloud_bootstrap,
            config.edge_bootstrap,
            config.topology.cloud.models_topic,
            config.outbox_config().path.parent,
            config.security.client_config(),
        ).start()

    # -- setup -----------------------------------------------------------------------------
    def _edge_consumer(self) -> Consumer:
        cfg = self.config
        edge_topics = tuple(EDGE_TOPICS.values())
        ensure_topics(cfg.edge_bootstrap, dict.fromkeys(edge_topics, 1))
        # fetch.wait.max.ms bounds how long an idle fetch waits: records reach the outbox soon
        settings = {"enable.auto.commit": False, "fetch.wait.max.ms": 20, "log_level": 2,
                    "auto.offset.reset": "error"}  # out of range: the guard decides  # fmt: skip
        group = f"edgestream-forward-{cfg.gateway_id}"
        consumer = Consumer(consumer_config(cfg.edge_bootstrap, group, **settings))
        meta = consumer.list_topics(timeout=10)
        stored = self.outbox.offsets(SOURCE)
        parts = [TopicPartition(t, p) for t in edge_topics for p in meta.topics[t].partitions]
        committed = {(c.topic, c.partition): c.offset for c in committed_offsets(consumer, parts)}
        starts: dict[tuple[str, int], int] = {}
        for tp in parts:
            key = (tp.topic, tp.partition)
            start = stored.get(key, committed.get(key, -1))
            starts[key] = start if start is not None and start >= 0 else OFFSET_BEGINNING
        self.guard = EdgeTopicGuard(consumer, self.outbox, cfg.edge_bootstrap, cfg.gateway_id,
                                    edge_topics)  # fmt: skip
        self.guard.assign(starts)
        positions = sorted({**starts, **self.outbox.offsets(SOURCE)}.items())  # after resets
        log.info("reading %s from %s", positions, cfg.edge_bootstrap)
        return consumer

    # -- loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set, then flush what is in flight and close."""
        try:
            while not stop.is_set():
                busy = bool(self.inflight) or (self.outbox.depth > 0 and self.link.up)
                self.intake(0.01 if busy else 0.1)
                self.step()
        finally:
            self.close()

    def step(self) -> None:
        """Everything but intake: budget, drain, delivery reports, meter, bookkeeping."""
        now = time.monotonic()
        if self.outbox.bytes > self.outbox.config.max_bytes or now >= self._next["budget"]:
            self._next["budget"] = now + 10.0
            result = enforce_budget(self.outbox)
            self._drops_unreported |= bool(result.dropped)
            if result:
                log.warning("outbox budget: %d roll-ups of %d summaries, dropped %s",
                            result.rollups, result.rolled_up, dict(result.dropped))  # fmt: skip
        self.guard.poll()
        self.drain()
        self.link.poll(0)
        self.settle()
        if self.meter is not None:
            self.meter.poll()
        if now >= self._next["progress"]:
            self._next["progress"] = now + 1.0
            self.save_progress()
        if now >= self._next["prune"]:
            self._next["prune"] = now + 600.0
            self.outbox.prune_seen()
        if now >= self._next["metrics"]:
            self._next["metrics"] = now + 2.0
            stats = self.outbox.stats().as_dict()
            self.metrics.update(stats, self.link.up, self.edge_bytes_in)
        if now >= self._next["log"]:
            self._next["log"] = now + 30.0
            s = self.outbox.stats()
            log.info("outbox depth %d (%d B, oldest %.1f s), link %s, delivered %d, dropped %s",
                     s.depth, s.bytes, s.oldest_age_ms / 1000, "up" if self.link.up else "down",
                     s.delivered, s.dropped)  # fmt: skip

    def intake(self, timeout: float) -> int:
        """Move what the edge broker has (waiting up to ``timeout`` for the first record,
        not for a full batch) into the outbox."""
        first = self.consumer.poll(timeout)
        if first is None:
            return 0
        messages = [first, *self.consumer.consume(999, timeout=0)]
        entries: list[Entry] = []
        skipped: dict[tuple[str, int], int] = {}
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._AUTO_OFFSET_RESET:  # position outside the log
                    self.guard.suspect(msg.topic())
                elif error.code() != KafkaError._PARTITION_EOF:
                    self._warn("edge", "edge consumer: %s", error)
                continue
            kind = _EDGE_KIND[msg.topic()]
            source = (msg.topic(), msg.partition(), msg.offset())
            self.edge_bytes_in += len(msg.value() or b"")
            try:
                record = self.decode(kind, msg.value())
            except ServiceUnavailable as error:
                log.warning("registry unavailable, retrying: %s", error)
                self._rewind(messages)
                time.sleep(1.0)
                return 0
            except SerdeError as error:
                self.rejected += 1
                log.error("skipping undecodable %s at %s: %s", kind, source, error)
                skipped[source[:2]] = source[2] + 1
                continue
            if kind == "alert":  # wire form: derivable values null (AnomalyAlert v2)
                entries.append(Entry.alert(wire_alert(record), source))
            elif kind == "rollout":
                entries.append(Entry.rollout(record, source))
            elif kind == "sample":
                entries.append(Entry.sample(record, source))
            elif self._forwards(record):
                sums = self.config.topology.forwarding.summaries
                wire = wire_summary(record, sums.quantiles, sums.last)
                entries.append(Entry.summary(wire, source, self.tumbling))
            else:  # a scope or window size the topology does not forward
                skipped[source[:2]] = source[2] + 1
        if entries:
            self._held_until = 0.0
        if entries or skipped:
            self.outbox.put(entries, skipped=skipped)
            self._commit_group()
        return len(entries)

    def _rewind(self, messages: list[Any]) -> None:
        first: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error() is None:
                key = (msg.topic(), msg.partition())
                first[key] = min(first.get(key, msg.offset()), msg.offset())
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def _commit_group(self) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.outbox.offsets(SOURCE).items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as error:  # best effort: the outbox holds the offsets
            log.debug("group commit failed: %s", error)

    def drain(self) -> None:
        """Produce due records while the link is up and the in-flight window has room."""
        link = self.link
        now = time.monotonic()
        periodic = bool(self.config.report_interval_s) and now >= self._next_report
        if self.outbox.depth <= len(self.inflight) and not (periodic or self._drops_unreported):
            return
        if not link.ensure():
            if self.inflight:
                self._requeue()
            return
        if periodic or self._drops_unreported:
            write_report(self.outbox, force=periodic)
            self._drops_unreported = False
            self._held_until = 0.0
            if periodic:
                self._next_report = now + self.config.report_interval_s
        if now < self._held_until:
            return
        floor = 0
        while len(self.inflight) < self.config.max_inflight:
            room = self.config.max_inflight - len(self.inflight)
            limit = min(self.config.batch, room)
            batch = self.outbox.take(limit, self._batch_bytes, floor)
            if not batch:
                return
            if self._urgent and batch[0].priority > min(self._urgent):
                return  # summaries wait until the alerts in flight are confirmed
            wait_s = self._hold_s(batch, limit)
            if wait_s > 0:  # held: lower priorities may still go
                self._held_until = now + min(wait_s, 1.0) if not floor else self._held_until
                floor = batch[0].priority + 1
                continue
            try:
                values = [self.framing.frame(p.kind, p.body) for p in batch]
            except (SchemaError, ServiceUnavailable) as error:
                self._warn("frame", "cannot frame records for the cloud: %s", error)
                return
            urgent = batch[0].priority == 0
            if not urgent:  # marked before producing: an attempted summary is never rolled up
                self.outbox.mark_sent(batch)
            topics, generation = self.config.topics, link.generation
            for pending, value in zip(batch, values, strict=True):
                self.inflight[pending.seq] = pending
                self._urgent[pending.priority] += 1
                link.produce(
                    topics[pending.kind],
                    pending.key,
                    value,
                    partial(self._delivered, pending, generation),
                    urgent=urgent,
                )
            if urgent:  # alerts are never rolled up: mark them after, off their latency path
                self.outbox.mark_sent(batch)
            link.poll(0)

    def _hold_s(self, batch: list[Pending], limit: int) -> float:
        """Seconds until a batch of summaries/samples is due: a full batch (a backlog) is
        due at once, else when its oldest record has waited ``forwarding.<kind>.linger``."""
        hold = self._hold_ms.get(batch[0].kind, 0)
        if not hold or len(batch) >= limit or sum(p.bytes for p in batch) * 2 > self._batch_bytes:
            return 0.0
        oldest = min(p.created_ms for p in batch)
        return max(0.0, (oldest + hold) / 1000 - time.time())

    def _delivered(self, pending: Pending, generation: int, error: Any, _msg: Any) -> None:
        self._results.append((pending, generation, error))

    def settle(self) -> None:
        """Apply delivery reports: delete confirmed records; a failure of the current
        producer takes the link down (reports of a discarded producer only confirm)."""
        if not self.link.up and self.inflight:
            self._requeue()
        if not self._results:
            return
        results, self._results = self._results, []
        ok = [p for p, _gen, err in results if err is None]
        self.outbox.ack(ok)
        for p in ok:
            if self.inflight.pop(p.seq, None) is not None:
                self._urgent[p.priority] -= 1
                if self._urgent[p.priority] <= 0:
                    del self._urgent[p.priority]
        failed = [(p, e) for p, gen, e in results if e is not None and gen == self.link.generation]
        if failed and self.link.up:
            pending, error = failed[0]
            self.link.fail(f"delivery of {pending.kind} {pending.seq} failed: {error}")
            self._requeue()

    def _requeue(self) -> None:
        self._held_until = 0.0
        self.outbox.retry()
        self.inflight.clear()
        self._urgent.clear()

    def _warn(self, topic: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._warned.get(topic, 0.0):
            self._warned[topic] = now + 30.0
            log.warning(message, *args)

    def save_progress(self) -> None:
        offsets, counted = self.meter.take() if self.meter is not None else ({}, 0)
        wire = self.link.take_wire_bytes()
        by_kind: Counter[str] = Counter()
        for topic, size in self.link.take_wire_bytes_by_topic().items():
            by_kind[self._kind_of_topic.get(topic, "other")] += size
        downlink = self.downlink.take_wire_bytes()  # its fetch requests are uplink bytes too
        by_kind["downlink"] += downlink
        self.outbox.save_progress(offsets, counted, wire + downlink, dict(+by_kind))

    def _forwards(self, summary: dict[str, Any]) -> bool:
        """Whether the topology forwards this summary (``forwarding.summaries``)."""
        scopes, sizes = self._forwarded
        size = int(summary["window_end"]) - int(summary["window_start"])
        return summary["scope"] in scopes and (sizes is None or size in sizes)

    def close(self) -> None:
        """Give in-flight records a few seconds, store progress, close everything."""
        deadline = time.monotonic() + 5.0
        while self.inflight and self.link.up and time.monotonic() < deadline:
            self.link.poll(0.1)
            self.settle()
        self.link.close(1.0)
        self.settle()
        self.save_progress()
        self.downlink.stop()
        self.guard.close()
        self.consumer.close()
        if self.meter is not None:
            self.meter.close()
        self.outbox.close()


def run_forwarder(config: ForwarderConfig, stop: threading.Event | None = None) -> None:
    """Run a forwarder in the foreground until SIGTERM/SIGINT (or ``stop``)."""
    import signal

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    Forwarder(config).run(stop)
