"""Where a gateway worker runs, and the topics it has on its edge broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgestream.core.topology import Topology
from edgestream.wire.topics import GATEWAY_TOPICS

__all__ = ["GatewayConfig", "edge_topics", "sensor_topic_configs"]


@dataclass(frozen=True)
class GatewayConfig:
    """Where a gateway worker runs."""

    topology: Topology
    gateway_id: str
    bootstrap: str
    registry: str
    data_dir: Path
    sync: bool = True  # fsync every state commit (power-loss safe)


def sensor_topic_configs(topology: Topology, gateway_id: str) -> dict[str, dict[str, str]]:
    """Kafka configs of the gateway's sensor topics (retention from the topology)."""
    gateway = topology.gateway(gateway_id)
    return {
        topic.name: topic.kafka_configs()
        for dtype in gateway.device_types
        for topic in topology.topics_for(dtype)
    }


def edge_topics(topology: Topology, gateway_id: str) -> dict[str, int]:
    """Every topic the gateway reads or writes on its edge broker -> partitions."""
    gateway = topology.gateway(gateway_id)
    topics = dict(GATEWAY_TOPICS)
    for dtype in gateway.device_types:
        for topic in topology.topics_for(dtype):
            topics[topic.name] = topic.partitions
            topics[topic.dlq] = 1
            topics[topic.late] = 1
    return topics
