"""What the gateway worker checks about a sensor topic it reads, so it never skips silently.

A worker reads each partition from its own stored positions (RocksDB). Those positions stop
being valid when the topic is deleted and created again (offsets start at 0 under a new topic
id) or the broker loses or purges its log. :class:`TopicGuard` sees it three ways: the topic
id changed, a fetch position is beyond the log end (a fetch answered out of range) or before
the log start. The policy (:mod:`edgestream.core.offsets`): reset to the log start of the
topic as it is now and read everything again, with a warning and
``edgestream_offset_resets_total{gateway,topic,partition,reason}``. A deleted topic is
created again with the topology's partitions and configs (brokers do not auto-create topics).

>>> reset_event("edge", "gw-1", "sensors.pump", 0, 520, 0, "beyond_log_end")["event"]
'offset_reset'
"""

from __future__ import annotations

import logging
from typing import Any

from edgestream.core.broker import ensure_topics
from edgestream.core.offsets import report_reset, reset_event, topic_id
from edgestream.core.topology.edge import SensorTopic

__all__ = ["TopicGuard", "reset_event"]

log = logging.getLogger("edgestream.edge")


class TopicGuard:
    """Admin-side checks of one sensor topic (blocking calls: run them off the event loop)."""

    def __init__(self, bootstrap: str, gateway: str, topic: SensorTopic) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap, self.gateway, self.topic = bootstrap, gateway, topic
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})

    def current_id(self) -> str | None:
        """The topic's id now; None while it does not exist."""
        return topic_id(self.admin, self.topic.name)

    def ensure(self) -> None:
        """Create the topic if it is missing, with the topology's partitions and configs."""
        name = self.topic.name
        created = ensure_topics(
            self.bootstrap,
            {name: self.topic.partitions},
            topic_configs={name: self.topic.kafka_configs()},
        )
        if created:
            log.warning("%s was missing on %s: created it with %d partition(s)",
                        name, self.bootstrap, self.topic.partitions)  # fmt: skip

    def report(self, partition: int, position: int, start: int, reason: str) -> dict[str, Any]:
        """Log and count one reset; returns its ``edge.status`` event."""
        return report_reset("edge", self.gateway, self.topic.name, partition, position, start,
                            reason)  # fmt: skip
