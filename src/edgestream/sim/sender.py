"""The simulator's Kafka producer, kept going across a broker restart or a recreated topic.

Measured against the embedded Kafka 4.4 broker: when the broker restarts with its log dirs
purged while a librdkafka producer keeps producing, the producer never delivers again (0 of
3,425 records in 30 s, with or without idempotence; with idempotence it waits for a
"partition drain" of requests the new broker will never answer). Its delivery reports come
only when ``message.timeout.ms`` (5 min) expires, so a paced run looked alive and sent
nothing. And a deleted topic makes ``produce()`` raise (brokers do not auto-create topics).

So :class:`Sender` watches deliveries: when records wait and none was delivered for
``stall_s`` seconds while the broker answers, it replaces the producer. The old producer's
records are purged (their delivery reports hand them back) and produced again, in order, on
a new one: at least once (a record the broker wrote just before may be written twice; the
gateway's windows see it twice, its alerts and summaries keep their ids). A topic that went
missing is waited for (its owner, the gateway worker, creates it with the topology's
partitions) and created after ``topic_wait_s`` (or at a stall) like the simulator does at
start.

>>> sender = Sender({"bootstrap.servers": "127.0.0.1:1"}, {"t": 1})
>>> sender.pending, sender.delivered, sender.replaced
(0, 0, 0)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from edgestream.core import broker

__all__ = ["STALL_S", "Sender"]

log = logging.getLogger("edgestream.sim")

#: seconds without a delivery (records waiting, the broker answering) before the producer is
#: replaced
STALL_S = 10.0
#: seconds a missing topic is waited for before the simulator creates it itself
TOPIC_WAIT_S = 10.0


def _send_again_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError as E

    # purged by a replacement, or failed because the topic or partition went away
    return frozenset({E._PURGE_QUEUE, E._PURGE_INFLIGHT, E._UNKNOWN_PARTITION, E._UNKNOWN_TOPIC,
                      E.UNKNOWN_TOPIC_OR_PART})  # fmt: skip


_SEND_AGAIN = _send_again_codes()


class Sender:
    """``produce`` / ``poll`` / ``flush`` of one confluent-kafka producer that is replaced
    when it stops delivering (see the module doc). ``topics``: name -> partitions to create
    a missing topic with. ``errors``: delivery errors other than the purges of a
    replacement (the caller stops on them)."""

    def __init__(
        self,
        config: dict[str, object],
        topics: dict[str, int],
        stall_s: float = STALL_S,
        topic_wait_s: float = TOPIC_WAIT_S,
    ) -> None:
        from confluent_kafka import Producer

        self._producer_class = Producer
        self.config = {**config, "on_delivery": self._report}
        self.config["delivery.report.only.error"] = False  # successes show progress
        self.bootstrap = str(config["bootstrap.servers"])
        self.topics = dict(topics)
        self.stall_s, self.topic_wait_s = stall_s, topic_wait_s
        self.producer = Producer(self.config)
        self.errors: list[str] = []
        self.delivered = 0
        self.replaced = 0
        self._returned: list[tuple[str, bytes | None, bytes | None, int]] = []
        self._seen = 0  # deliveries counted at the last check
        # records produced whose delivery report has not come yet (``len(producer)`` also
        # counts librdkafka's queued events, such as a failed connect, so it is not this)
        self._waiting = 0
        self._progress = time.monotonic()

    @property
    def pending(self) -> int:
        """Records produced whose delivery report has not come yet."""
        return self._waiting

    def _report(self, err: Any, msg: Any) -> None:
        self._waiting -= 1
        if err is None:
            self.delivered += 1
        elif err.code() in _SEND_AGAIN:
            self._returned.append((msg.topic(), msg.value(), msg.key(), msg.timestamp()[1]))
        elif len(self.errors) < 5:
            self.errors.append(str(err))

    def produce(self, topic: str, value: bytes, key: bytes | None, timestamp: int) -> None:
        """Queue one record; waits (polling) while the queue is full or the topic missing."""
        from confluent_kafka import KafkaError, KafkaException

        missing_since: float | None = None
        while True:
            try:
                self.producer.produce(topic, value, key, timestamp=timestamp)
                self._waiting += 1
                return
            except BufferError:
                self.poll(0.05)
            except KafkaException as error:
                if error.args[0].code() != KafkaError._UNKNOWN_TOPIC:
                    raise
                now = time.monotonic()
                if missing_since is None:
                    missing_since = now
                    log.warning("topic %s is missing on %s: waiting for it", topic, self.bootstrap)
                elif now - missing_since >= self.topic_wait_s:
                    broker.ensure_topics(self.bootstrap, {topic: self.topics.get(topic, 1)})
                    missing_since = now
                self.poll(0.5)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports; replace the producer when it stopped delivering."""
        self.producer.poll(timeout)
        if self._returned:
            self._send_again()
        now = time.monotonic()
        if self.delivered != self._seen or not self._waiting:
            self._seen, self._progress = self.delivered, now
        elif now - self._progress >= self.stall_s and broker.broker_ready(self.bootstrap):
            self._replace()

    def flush(self, timeout: float) -> int:
        """Wait until every record is delivered or nothing was for ``timeout`` s; returns how
        many were not delivered."""
        last, since = self.delivered, time.monotonic()
        while self._waiting and not self.errors:
            self.poll(0.2)
            if self.delivered != last:
                last, since = self.delivered, time.monotonic()
            elif time.monotonic() - since >= timeout:
                break
        return self._waiting

    def close(self) -> None:
        """Let the producer go now, dropping what it still holds (call :meth:`flush` first).
        The producer and this sender refer to each other (its delivery callback), so
        otherwise it lives until a garbage collection, reconnecting to a broker that may
        have stopped meanwhile and logging each refused connection."""
        self.producer.purge()
        self.producer.poll(0)
        self.producer = None  # type: ignore[assignment]  # closed: no use after this
        self.config.pop("on_delivery", None)

    def _replace(self) -> None:
        # a topic still missing after stall_s s is not coming back by itself: create it
        created = broker.ensure_topics(self.bootstrap, self.topics)
        if created:
            log.warning("created the missing topic(s) %s on %s", ", ".join(created), self.bootstrap)
        old = self.producer
        waiting = self._waiting
        self.producer = self._producer_class(self.config)
        old.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + 5.0
        while len(old) and time.monotonic() < deadline:
            old.poll(0.1)  # the purged records come back through _report
        if len(old):  # not handed back in time: the old producer is dropped with them
            log.warning("%d record(s) of the replaced producer did not come back", len(old))
            self._waiting = max(0, self._waiting - len(old))
        self.replaced += 1
        log.warning(
            "no delivery from %s for %.0f s with %d record(s) waiting: sending them again on "
            "a new producer",
            self.bootstrap,
            self.stall_s,
            waiting,
        )
        self._send_again()
        self._seen, self._progress = self.delivered, time.monotonic()

    def _send_again(self) -> None:
        returned, self._returned = self._returned, []
        for topic, value, key, timestamp in returned:
            self.produce(topic, value or b"", key, timestamp)
