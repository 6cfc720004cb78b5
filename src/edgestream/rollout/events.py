"""The RolloutEvents a gateway's rollout agent produces on ``edge.rollout`` (the forwarder
takes them to ``fleet.rollout``): what happened to which version of which slot, why, with the
shadow comparison and the swap figures."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.rollout.host import ModelHost, ShadowRun
from edgestream.rollout.slots import RolloutState, ShadowStats, Slot, shadow_fields
from edgestream.rollout.swap_timing import Timing
from edgestream.rollout.updates import now_ms
from edgestream.wire.topics import ROLLOUT_TOPIC

__all__ = ["RolloutEvents"]

log = logging.getLogger("edgestream.rollout")


class RolloutEvents:
    """Numbers and produces the events of one gateway (``state``: where the count is kept,
    ``save``: stores it; ``shadows``: the agent's running shadows, by device type)."""

    def __init__(
        self,
        host: ModelHost,
        state: RolloutState,
        save: Callable[[], Awaitable[None]],
        shadows: dict[str, ShadowRun],
        canary: bool,
    ) -> None:
        self.host, self.state, self._save = host, state, save
        self._shadows, self.canary = shadows, canary
        self._serialize = AvroSerializer(host.registry, "RolloutEvent", subject_for(ROLLOUT_TOPIC))

    async def emit(
        self,
        kind: str,
        slot: Slot,
        version: str,
        *,
        action: str | None = None,
        mode: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        previous: str | None = None,
        stats: ShadowStats | None = None,
        since_ms: int | None = None,
        timing: Timing = (None, None, None),
    ) -> int:
        """Produce a RolloutEvent on ``edge.rollout`` (its id counts this gateway's events,
        saved before producing so a restart never reuses one); returns its number."""
        self.state.event_seq += 1
        seq = self.state.event_seq
        await self._save()
        run = self._shadows.get(slot.device_type)
        if stats is None and run is not None and kind == "shadow-progress":
            stats = run.stats
        since = since_ms if since_ms is not None else (slot.since_ms if slot.candidate else 0)
        record: dict[str, Any] = {
            "event_id": f"{self.host.gateway_id}|rollout|{seq}",
            "gateway_id": self.host.gateway_id,
            "event": kind,
            "model_name": self.host.topology.models[slot.device_type].name,
            "device_type": slot.device_type,
            "version": version,
            "live_version": slot.live.version,
            "previous_version": previous,
            "action": action,
            "mode": mode,
            "canary": self.canary,
            "reason": reason,
            "detail": (detail or "")[:2000] or None,
            "created_at": now_ms(),
            **shadow_fields(stats, since, now_ms()),
            "swap_pause_ms": timing[0],
            "batch_gap_ms": timing[1],
            "swap_ms": timing[2],
        }
        key = self.host.gateway_id.encode()
        await self.host.send(ROLLOUT_TOPIC, key, self._serialize(record))
        log.info("rollout %s %s %s %s", kind, slot.device_type, version, reason or "")
        return seq
