"""Event-time watermarks over Kafka partitions: bounded out-of-orderness plus idleness.

A partition's watermark is ``max event time seen - max_out_of_orderness``. The engine
watermark is the max of its previous value and the min over the partitions that are not
idle; a partition is idle when ``now_ms - last time it was active >= idle_timeout``
(processing time, passed in: never read from the clock here). It never goes backwards.

A partition is active when it delivers readings and when the caller declares it live
(:meth:`Watermarks.assign`): on assignment, so the time a worker was down is not taken for
silence, and while the consumer has records of it not yet read, so a backlog holds the
watermark until it is read and windowed by its own event times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgestream.wire.window_types import MIN_WATERMARK, WindowSpec


@dataclass
class PartitionPosition:
    """What the engine knows of one partition (persisted in the store's meta)."""

    max_ts: int | None = None
    last_offset: int | None = None
    last_active_ms: int | None = None


class Watermarks:
    """Per-partition positions and the engine watermark.

    >>> wm = Watermarks(WindowSpec(1000, max_out_of_orderness_ms=100, idle_timeout_ms=50))
    >>> wm.observe(0, max_ts=5000, last_offset=9, now_ms=0)
    >>> wm.observe(1, max_ts=2000, last_offset=3, now_ms=0)
    >>> wm.candidate(now_ms=10)  # the slower partition holds the watermark
    1900
    >>> wm.observe(0, max_ts=6000, last_offset=12, now_ms=40)
    >>> wm.candidate(now_ms=60)  # partition 1 idle since 50: no longer holds it
    5900
    >>> wm.assign([0, 1], now_ms=100)  # a restart, or records of partition 1 not yet read
    False
    >>> wm.candidate(now_ms=120)  # partition 1 holds it again until idle from 100
    1900
    """

    def __init__(
        self,
        spec: WindowSpec,
        value: int = MIN_WATERMARK,
        partitions: dict[int, PartitionPosition] | None = None,
    ) -> None:
        self.spec = spec
        self.value = value
        self.partitions: dict[int, PartitionPosition] = partitions or {}

    @classmethod
    def from_json(cls, spec: WindowSpec, value: int, data: dict[str, Any]) -> Watermarks:
        return cls(spec, value, {int(p): PartitionPosition(*v) for p, v in data.items()})

    def to_json(self) -> dict[str, list]:
        return {
            str(p): [s.max_ts, s.last_offset, s.last_active_ms] for p, s in self.partitions.items()
        }

    def assign(self, partitions: list[int], now_ms: int) -> bool:
        """These partitions are live at ``now_ms``: each holds the watermark until it delivers
        or stays silent for the idle timeout from ``now_ms``. True if one was new."""
        new = False
        for p in partitions:
            pos = self.partitions.get(p)
            if pos is None:
                self.partitions[p] = PartitionPosition(last_active_ms=now_ms)
                new = True
            elif pos.last_active_ms is None or pos.last_active_ms < now_ms:
                pos.last_active_ms = now_ms
        return new

    def last_offset(self, pid: int) -> int | None:
        pos = self.partitions.get(pid)
        return None if pos is None else pos.last_offset

    def _own(self, pos: PartitionPosition) -> int:
        if pos.max_ts is None:
            return MIN_WATERMARK
        return pos.max_ts - self.spec.max_out_of_orderness_ms

    def _active(self, pos: PartitionPosition, now_ms: int) -> bool:
        timeout = self.spec.idle_timeout_ms
        return (
            timeout is None or pos.last_active_ms is None or now_ms - pos.last_active_ms < timeout
        )

    def candidate(self, now_ms: int) -> int:
        """max(watermark, min over the partitions not idle at ``now_ms``)."""
        wms = [self._own(p) for p in self.partitions.values() if self._active(p, now_ms)]
        return max(self.value, min(wms)) if wms else self.value

    def before_each(self, pid: int, ts: np.ndarray, now_ms: int) -> np.ndarray:
        """The engine watermark in force before each reading of a batch of partition ``pid``
        (which is active), each reading raising its partition's maximum after it is judged."""
        others = [
            self._own(p) for q, p in self.partitions.items() if q != pid and self._active(p, now_ms)
        ]
        pos = self.partitions.get(pid)
        prior = pos.max_ts if pos is not None and pos.max_ts is not None else MIN_WATERMARK
        max_before = np.maximum.accumulate(np.r_[prior, ts[:-1]])
        ooo = self.spec.max_out_of_orderness_ms
        own = np.where(max_before == MIN_WATERMARK, MIN_WATERMARK, max_before - ooo)
        cand = np.minimum(own, min(others)) if others else own
        return np.maximum(cand, self.value)

    def observe(self, pid: int, max_ts: int, last_offset: int, now_ms: int) -> None:
        """Partition ``pid`` delivered readings up to ``last_offset`` at processing ``now_ms``."""
        pos = self.partitions.setdefault(pid, PartitionPosition())
        pos.max_ts = max_ts if pos.max_ts is None else max(pos.max_ts, max_ts)
        pos.last_offset = last_offset
        pos.last_active_ms = (
            now_ms if pos.last_active_ms is None else max(pos.last_active_ms, now_ms)
        )
