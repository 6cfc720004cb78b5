"""Where a gateway's outbox lives and what bounds it (``forwarding.outbox`` and
``forwarding.rollup`` of the topology)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgestream.core.topology import Topology

__all__ = ["DAY_MS", "OutboxConfig", "outbox_path"]

DAY_MS = 86_400_000


def outbox_path(topology: Topology | None, gateway_id: str, data_dir: Path) -> Path:
    """Where a gateway's outbox lives: ``forwarding.outbox.path`` under its data dir.

    >>> outbox_path(None, "gw-1", Path("/data")).as_posix()
    '/data/outbox-gw-1.sqlite'
    """
    pattern = "outbox-{gateway}.sqlite" if topology is None else topology.forwarding.outbox.path
    return Path(data_dir) / pattern.replace("{gateway}", gateway_id)


@dataclass(frozen=True)
class OutboxConfig:
    """Where the outbox is and what bounds it (``rollup``: the roll-up chain in ms;
    ``tumbling_sizes``: window sizes the edge computes as tumbling windows)."""

    path: Path
    max_bytes: int = 256_000_000
    max_age_ms: int = 7 * DAY_MS
    fsync: Literal["always", "batch", "never"] = "batch"
    rollup: tuple[int, ...] = (10_000, 60_000, 600_000)
    tumbling_sizes: frozenset[int] = field(default_factory=frozenset)
    seen_retention_ms: int = DAY_MS

    @classmethod
    def from_topology(cls, topology: Topology, gateway_id: str, data_dir: Path) -> OutboxConfig:
        box = topology.forwarding.outbox
        return cls(
            path=outbox_path(topology, gateway_id, data_dir),
            max_bytes=box.max_bytes,
            max_age_ms=box.max_age,
            fsync=box.fsync,
            rollup=tuple(topology.forwarding.rollup),
            tumbling_sizes=frozenset(w.size for w in topology.windows if w.tumbling),
        )
