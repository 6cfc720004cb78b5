"""Where one gateway's forwarder reads, keeps and sends.

>>> from edgestream.core.topology import load_topology
>>> from edgestream.loop.up import default_topology
>>> cfg = ForwarderConfig(load_topology(default_topology()), "gw-1", "127.0.0.1:9092",
...                       "127.0.0.1:9093", "http://127.0.0.1:8081", Path("/tmp/gw-1"))
>>> cfg.topics["alert"], cfg.topics["summary"], cfg.topics["sample"]
('fleet.alerts', 'fleet.summaries', 'fleet.samples')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core.security import ClientSecurity
from edgestream.core.topology import Topology
from edgestream.forward.outbox_config import OutboxConfig
from edgestream.wire.topics import FLEET, REPORTS_TOPIC

__all__ = ["ForwarderConfig"]


@dataclass(frozen=True)
class ForwarderConfig:
    """Where one gateway's forwarder reads, keeps and sends."""

    topology: Topology
    gateway_id: str
    edge_bootstrap: str
    cloud_bootstrap: str
    registry: str
    data_dir: Path
    security: ClientSecurity = field(default_factory=ClientSecurity)
    report_interval_s: float = 60.0  # 0: reports only when something was dropped
    max_inflight: int = 10_000
    batch: int = 2_000
    meter: bool = True

    @property
    def topics(self) -> dict[str, str]:
        """Cloud topic per record kind."""
        t = self.topology.forwarding.topics
        return {
            "alert": t.alerts,
            "summary": t.summaries,
            "report": str(getattr(t, "reports", REPORTS_TOPIC)),
            "rollout": str(getattr(t, "rollout", FLEET["rollout"])),
            "sample": t.samples,
        }

    def outbox_config(self) -> OutboxConfig:
        return OutboxConfig.from_topology(self.topology, self.gateway_id, self.data_dir)

    def sensor_topics(self) -> list[str]:
        gateway = self.topology.gateway(self.gateway_id)
        return [t.name for d in gateway.device_types for t in self.topology.topics_for(d)]
