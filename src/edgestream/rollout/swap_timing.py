"""The figures of a model swap on a gateway's batch path, per device type: the pause between
the last batch of the old model and the first of the new one, the median gap between batches
before the swap, and how long the swap held the pipelines. A swap is announced ``live`` once
the first batch of the new version is done, or after :data:`LIVE_WAIT_S` without one.

>>> timing = SwapTiming()
>>> timing.batch_done("pump", "v1", now=1.0), timing.batch_done("pump", "v1", now=1.5)
(None, None)
>>> timing.swapped("pump", "v2", "v1", timing.batch_gap_ms("pump"), started=1.6, at=1.61)
>>> timing.batch_done("pump", "v2", now=1.8)
('v2', 'v1', (300.0, 500.0, 10.0))
"""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from typing import Any

import numpy as np

__all__ = ["LIVE_WAIT_S", "SwapTiming", "Timing"]

LIVE_WAIT_S = 2.0  # a swap followed by no batch is announced as live after this long

#: (swap pause, batch gap, swap) in ms; None where not measured
Timing = tuple[float | None, float | None, float | None]


class SwapTiming:
    """Batch completions and swaps not yet announced, per device type (monotonic seconds)."""

    def __init__(self) -> None:
        self._done: dict[str, deque[tuple[float, str]]] = {}  # (batch done, version) per type
        self._due: dict[str, dict[str, Any]] = {}  # swaps not yet announced as live

    def due_types(self) -> set[str]:
        """Device types with a swap not yet announced."""
        return set(self._due)

    def batch_gap_ms(self, device_type: str) -> float | None:
        """The median time between the batches done lately (before a swap)."""
        done = [t for t, _v in self._done.get(device_type, ())]
        gaps = [b - a for a, b in pairwise(done)]
        return round(float(np.median(gaps)) * 1000, 3) if gaps else None

    def swapped(
        self,
        device_type: str,
        version: str,
        previous: str,
        gap_ms: float | None,
        started: float,
        at: float,
    ) -> None:
        """``version`` replaced ``previous``: the swap began at ``started``, ended ``at``."""
        self._due[device_type] = {
            "version": version,
            "previous": previous,
            "gap_ms": gap_ms,
            "swap_ms": round((at - started) * 1000, 3),
            "at": at,
        }

    def batch_done(
        self, device_type: str, scored_by: str | None, now: float
    ) -> tuple[str, str, Timing] | None:
        """Note a batch done at ``now`` (``scored_by`` None: no batch, a deadline check);
        returns the swap to announce now: (version, previous version, timing)."""
        done = self._done.setdefault(device_type, deque(maxlen=256))
        if scored_by is not None:
            done.append((now, scored_by))
        due = self._due.get(device_type)
        if due is None or (scored_by != due["version"] and now - due["at"] <= LIVE_WAIT_S):
            return None
        del self._due[device_type]
        pause = None
        if scored_by == due["version"]:
            old = [t for t, v in list(done)[:-1] if v != due["version"]]
            pause = round((now - old[-1]) * 1000, 3) if old else None
        return due["version"], due["previous"], (pause, due["gap_ms"], due["swap_ms"])
