"""What the forwarder checks about the edge topics it reads, so it never skips silently.

The forwarder reads ``edge.alerts``, ``edge.summaries``, ``edge.rollout`` and ``edge.samples``
from the offsets stored in its outbox. Those stop being valid when a topic is deleted and
created again (offsets restart at 0 under a new topic id) or the broker loses or purges its
log. :class:`EdgeTopicGuard` watches for it two ways, because neither is enough alone:

* the edge consumer runs with ``auto.offset.reset=error``: a fetch position beyond the log
  end or before the log start comes back at once as an ``_AUTO_OFFSET_RESET`` consumer error
  (:meth:`EdgeTopicGuard.suspect`), where librdkafka's default would jump to the earliest or
  latest record without a word;
* a position inside the log of a recreated topic is readable: once the new log has grown
  past it, librdkafka (2.x) reads on from the old offset without an error, and the new
  topic's first records are skipped (seen on the embedded Kafka). Only the topic id shows it:
  a thread compares the topics' ids with the ids the stored offsets belong to (kept in the
  outbox, so a restarted forwarder checks too) every :data:`TOPIC_CHECK_S`. It runs off the
  forwarding loop: a describe blocks while the edge broker is down, the drain must not.

A topic found either way follows the policy of :mod:`edgestream.core.offsets`: a position
that is not valid goes back to the log start of the topic as it is now, and everything is
read again. What the outbox accepted before is dropped there by its record id (``alert_id``,
``summary_id``, ``event_id``, ``device_id|seq``; ids are remembered for
``seen_retention_ms``), so only new records travel. Each reset is logged, counted in
``edgestream_offset_resets_total{gateway,topic,partition,reason}`` and put on ``edge.status``
as an ``offset_reset`` event with ``component`` ``forward``, like the gateway worker's. A
deleted edge topic is created again (one partition, as at start) and read from its start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.offsets import partitions_of, report_reset, reset_reason, topic_id
from edgestream.forward.outbox import Outbox
from edgestream.wire.topics import STATUS_TOPIC  # where operators follow the gateway's events

__all__ = ["SOURCE", "TOPIC_CHECK_S", "EdgeTopicGuard"]

log = logging.getLogger("edgestream.forward")

SOURCE = "edge"  # the outbox's offsets of the edge reads
TOPIC_CHECK_S = 2.0  # how often the topics' ids are compared with the stored ones
_RETRY_S = 1.0  # a topic that could not be checked is checked again after this


class EdgeTopicGuard:
    """The edge consumer's assignment, checked (see the module doc). Call :meth:`assign`
    once, :meth:`suspect` on an ``_AUTO_OFFSET_RESET`` error, :meth:`poll` from the loop."""

    def __init__(
        self,
        consumer: Consumer,
        outbox: Outbox,
        bootstrap: str,
        gateway: str,
        topics: Sequence[str],
    ) -> None:
        from confluent_kafka.admin import AdminClient

        self.consumer, self.outbox = consumer, outbox
        self.bootstrap, self.gateway, self.topics = bootstrap, gateway, list(topics)
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
        self.known = outbox.topic_ids(SOURCE)  # topic -> id its stored offsets belong to
        self.starts: dict[tuple[str, int], int] = {}
        self.resets = 0
        self._due: dict[str, float] = {}  # topics to check again -> not before (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None

    def assign(self, starts: dict[tuple[str, int], int]) -> None:
        """Read every edge topic from ``starts`` ((topic, partition) -> next offset, or
        ``OFFSET_BEGINNING``) where the outbox has no offset, after checking each topic; then
        start watching their ids."""
        self.starts = dict(starts)
        for topic in self.topics:
            if not self.verify(topic):
                self._flag(topic, _RETRY_S)
        self._thread = threading.Thread(target=self._watch, name="edge-topics", daemon=True)
        self._thread.start()

    def suspect(self, topic: str) -> None:
        """A fetch of ``topic`` answered out of range: check it on the next :meth:`poll`."""
        self._flag(topic, 0.0)

    def poll(self) -> None:
        """Check the topics flagged by the watcher or by :meth:`suspect` (forwarding loop)."""
        if not self._due:
            return
        now = time.monotonic()
        with self._lock:
            due = [t for t, at in self._due.items() if at <= now]
            for topic in due:
                del self._due[topic]
        for topic in due:
            if not self.verify(topic):
                self._flag(topic, _RETRY_S)
        if self._producer is not None:
            self._producer.poll(0)

    def verify(self, topic: str) -> bool:
        """Compare ``topic``'s id and log range with the positions it is read from, reset the
        ones that are not valid to the log start, and (re)assign its partitions at their
        positions. False when it cannot be checked now (missing, broker not answering)."""
        try:
            current = topic_id(self.admin, topic, timeout=5.0)
            parts = partitions_of(self.consumer, topic, timeout=5.0) if current else None
            if not current or not parts:
                return False
            ranges = {p: self.consumer.get_watermark_offsets(TopicPartition(topic, p), 5.0)
                      for p in parts}  # fmt: skip
        except KafkaException as error:
            log.info("cannot check %s yet (%s): checking again", topic, error.args[0].str())
            return False
        known = self.known.get(topic)
        recreated = known is not None and current != known
        stored = self.outbox.offsets(SOURCE)
        offsets, resets, events = {}, {}, []
        for p in parts:
            key = (topic, p)
            position = stored.get(key, self.starts.get(key, OFFSET_BEGINNING))
            low, high = ranges[p]
            reason = reset_reason(position, low, high, recreated) if position >= 0 else None
            if reason is not None and position != low:
                events.append(report_reset("forward", self.gateway, topic, p, position, low,
                                           reason))  # fmt: skip
                resets[key] = position = low
            offsets[key] = position
        if resets or current != known:
            self.outbox.reset_offsets(SOURCE, resets, {topic: current})
            self.known[topic] = current
        assigned = [tp for tp in self.consumer.assignment() if tp.topic == topic]
        if assigned:
            self.consumer.incremental_unassign(assigned)
        self.consumer.incremental_assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        for event in events:
            self._emit(event)
        self.resets += len(events)
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._producer is not None:
            self._producer.flush(2)

    # -- internals -------------------------------------------------------------------------
    def _flag(self, topic: str, after_s: float) -> None:
        at = time.monotonic() + after_s
        with self._lock:
            self._due[topic] = min(at, self._due.get(topic, at))

    def _watch(self) -> None:
        """Every :data:`TOPIC_CHECK_S`: flag a topic whose id is not the stored one; create a
        deleted one again (its new id is flagged on the next round)."""
        while not self._stop.wait(TOPIC_CHECK_S):
            for topic in self.topics:
                try:
                    current = topic_id(self.admin, topic, timeout=5.0)
                    if current is None:
                        if ensure_topics(self.bootstrap, {topic: 1}, timeout=5.0):
                            log.warning("%s was deleted on %s: created it again (1 partition)",
                                        topic, self.bootstrap)  # fmt: skip
                    elif current != self.known.get(topic):
                        self._flag(topic, 0.0)
                except Exception as error:  # the edge broker down or busy: next round
                    log.debug("checking %s: %s", topic, error)

    def _emit(self, event: dict[str, Any]) -> None:
        """Put an ``offset_reset`` event on ``edge.status`` (best effort: it is also logged
        and counted)."""
        try:
            if self._producer is None:
                ensure_topics(self.bootstrap, {STATUS_TOPIC: 1}, timeout=5.0)
                self._producer = Producer(producer_config(self.bootstrap))
            self._producer.produce(STATUS_TOPIC, json.dumps(event).encode(), b"offset_reset")
        except Exception as error:
            log.warning("could not put an offset_reset event on %s: %s", STATUS_TOPIC, error)
