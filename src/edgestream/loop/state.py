"""What the loop is doing now (:class:`LoopState`, one :class:`GatewayState` per gateway),
read by the live console, and the two questions asked of it: did everything produced reach
its end (:func:`drained`), and did the whole loop run once (:func:`loop_closed`)?
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgestream.loop.procs import Managed
from edgestream.loop.watch import CloudWatch
from edgestream.sim import SimResult


@dataclass
class GatewayState:
    """Live figures of one gateway's part of the loop."""

    name: str
    bootstrap: str
    readings: int = 0
    bytes: int = 0
    late_pending: int = 0
    alerts: int = 0
    summaries: int = 0
    worker_pid: int | None = None
    worker_alive: bool = False
    restarts: int = 0
    result: SimResult | None = None
    error: str | None = None
    worker: Managed | None = None
    forwarder: Managed | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # from the metrics pages
    rate: float = 0.0  # readings/s processed by the worker, last few seconds


@dataclass
class LoopState:
    """What the loop is doing now; read by the live console."""

    started_at: float = field(default_factory=time.monotonic)
    endpoints: dict[str, Any] = field(default_factory=dict)
    gateways: dict[str, GatewayState] = field(default_factory=dict)
    latest_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=8))
    phase: str = "starting"
    run_dir: Path | None = None
    error: BaseException | None = None
    services: dict[str, Managed] = field(default_factory=dict)  # cloud job, retrainer
    missing: list[str] = field(default_factory=list)  # parts not installed yet
    cloud: CloudWatch | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def summary(self) -> dict[str, Any]:
        gws = list(self.gateways.values())
        cloud = self.cloud.figures if self.cloud is not None else None
        raw = sum(g.figures.get("sensor_bytes", 0) for g in gws)
        out = sum(g.figures.get("cloud_bytes", 0) for g in gws)
        updates = cloud.model_updates if cloud else {}
        rollout = cloud.rollout if cloud else {}
        errors = [f"{g.name}: {g.error}" for g in gws if g.error]
        if self.cloud is not None and self.cloud.error:
            errors.append(self.cloud.error)
        errors += [note for m in self.processes() if (note := m.restart_note)]
        return {
            "seconds": round(self.elapsed, 1),
            "gateways": len(gws),
            "readings_in": sum(g.readings for g in gws),
            "readings_processed": sum(g.figures.get("processed", 0) for g in gws),
            "sensor_bytes": sum(g.bytes for g in gws),
            "alerts_edge": sum(g.alerts for g in gws),
            "alerts_cloud": cloud.alerts if cloud else 0,
            "summaries_edge": sum(g.summaries for g in gws),
            "summaries_cloud": cloud.summaries if cloud else 0,
            "dlq_records": sum(g.figures.get("dlq", 0) for g in gws),
            "dlq_by_reason": dict(
                sum((Counter(g.figures.get("dlq_reasons", {})) for g in gws), Counter())
            ),
            "late_readings": sum(g.figures.get("late", 0) for g in gws),
            "raw_sensor_bytes": raw,
            "cloud_bytes": out,
            "bytes_saved": round(1 - out / raw, 4) if raw else None,
            "fleet_stats_windows": cloud.stats_windows if cloud else 0,
            "retrain_requests": cloud.retrain_requests if cloud else 0,
            "retrains": updates.get("candidate", 0),
            "model_promotions": updates.get("promote", 0),
            "gateway_promotions": rollout.get("promoted", 0),
            "rollbacks": updates.get("rollback", 0) + rollout.get("rolled_back", 0),
            "anomalous_readings_injected": sum(
                g.result.anomalous_readings for g in gws if g.result
            ),
            "late_readings_injected": sum(g.result.late_readings for g in gws if g.result),
            "worker_restarts": sum(g.restarts for g in gws),
            "forwarder_restarts": sum(g.forwarder.restarts for g in gws if g.forwarder),
            "service_restarts": sum(m.restarts for m in self.services.values()),
            "not_started": list(self.missing),
            "run_dir": str(self.run_dir),
            "errors": errors,
        }

    def processes(self) -> list[Managed]:
        """Every supervised process."""
        out = [m for g in self.gateways.values() for m in (g.worker, g.forwarder) if m]
        return out + list(self.services.values())


def drained(state: LoopState) -> bool:
    """Whether every reading produced was processed (valid or to the DLQ), every forwarder's
    outbox is empty and the cloud holds as many alerts as the gateways emitted: the summary's
    edge and cloud figures are then one cut of the run."""
    for gw in state.gateways.values():
        f = gw.figures
        if f.get("processed", 0) + f.get("dlq", 0) < gw.readings or f.get("outbox_depth", 1):
            return False
    edge = sum(gw.alerts for gw in state.gateways.values())
    return state.cloud is not None and state.cloud.figures.alerts >= edge


def loop_closed(state: LoopState) -> bool:
    """Whether the whole loop has run once, as the cloud broker shows it: a retrain was
    requested and published, the cloud promoted it, and every gateway announced it live."""
    if state.cloud is None:
        return False
    f = state.cloud.figures
    return (
        f.retrain_requests >= 1
        and f.model_updates["candidate"] >= 1
        and f.model_updates["promote"] >= 1
        and f.rollout["promoted"] >= len(state.gateways) > 0
    )
