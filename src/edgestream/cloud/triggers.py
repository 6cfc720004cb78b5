"""Retraining triggers: one RetrainRequest per drift (or anomaly-rate) episode, with a cooldown.

Pure logic. :class:`Triggers` sees one verdict per analytic window and key ``(model, scope,
scope_key)`` (``crossing``: the window crossed its threshold):

* an *episode* opens with the first crossing window and closes after ``quiet_windows``
  consecutive windows that do not cross; while it is open, more crossing windows add nothing;
* an opening episode fires (one RetrainRequest) unless the model fired less than ``cooldown``
  ago (event time: window ends), in which case the whole episode stays silent;
* the request's ``id`` is its ``dedup_key`` = ``model|scope|scope_key|episode start``: a
  replay of the same input gives the same id (the retrainer drops repeats by it).

>>> t = Triggers(cooldown_ms=600_000, quiet_windows=2)
>>> key = ("pump-ae", "device_type", "pump")
>>> [t.observe(key, s, s + 60_000, c) for s, c in
...  [(0, False), (60_000, True), (120_000, True), (180_000, False), (240_000, True)]]
[None, 'pump-ae|device_type|pump|60000', None, None, None]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["Triggers", "retrain_request"]

SOURCES = {"drift": "/edgestream/cloud/drift", "anomaly_rate": "/edgestream/cloud/anomaly-rate"}


@dataclass
class _Episode:
    start: int
    quiet: int = 0


class Triggers:
    """Episode + cooldown state machine (see the module doc)."""

    def __init__(self, cooldown_ms: int, quiet_windows: int = 2) -> None:
        self.cooldown_ms = cooldown_ms
        self.quiet_windows = quiet_windows
        self.episodes: dict[tuple[str, str, str], _Episode] = {}
        self.last_fired: dict[str, int] = {}  # model -> window end of its last request
        self.stats: Counter[str] = Counter()

    def observe(
        self, key: tuple[str, str, str], window_start: int, window_end: int, crossing: bool
    ) -> str | None:
        """The dedup key of a request to emit now, or None."""
        episode = self.episodes.get(key)
        if not crossing:
            if episode is not None:
                episode.quiet += 1
                if episode.quiet >= self.quiet_windows:
                    del self.episodes[key]
            return None
        if episode is not None:
            episode.quiet = 0
            return None
        self.episodes[key] = _Episode(window_start)
        model = key[0]
        last = self.last_fired.get(model)
        if last is not None and window_end - last < self.cooldown_ms:
            self.stats["cooldown"] += 1
            return None
        self.last_fired[model] = window_end
        self.stats["fired"] += 1
        return "|".join((*key, str(window_start)))


def retrain_request(
    dedup_key: str,
    reason: str,
    severity: str,
    model: dict[str, Any],
    scope: tuple[str, str],
    window: tuple[int, int],
    features: list[dict[str, Any]],
    data_pointer: list[dict[str, Any]],
    now_ms: int,
) -> dict[str, Any]:
    """A RetrainRequest CloudEvent (schemas/retrain_request.avsc).

    ``model``: ``name``, ``version``, ``sha256``; ``features``: FeatureDrift records;
    ``data_pointer``: OffsetRange records of ``fleet.samples``.
    """
    return {
        "specversion": "1.0",
        "id": dedup_key,
        "source": SOURCES.get(reason, "/edgestream/cloud"),
        "type": "io.edgestream.retrain.requested",
        "time": now_ms,
        "subject": model["name"],
        "datacontenttype": "application/avro",
        "data": {
            "model_name": model["name"],
            "model_version": model["version"],
            "model_sha256": model.get("sha256"),
            "dedup_key": dedup_key,
            "reason": reason,
            "severity": severity,
            "scope": scope[0],
            "scope_key": scope[1],
            "window_start": window[0],
            "window_end": window[1],
            "features": features,
            "data_pointer": data_pointer,
        },
    }
