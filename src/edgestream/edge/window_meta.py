"""The header a window engine keeps in its store (key ``m``, :mod:`edgestream.edge.state`):
the state format, the gateway and window spec the state belongs to, the watermark and
partitions, the channel names, the counters and the next segment / outbox numbers. A store is
opened only by the engine of the same format, gateway and spec.

>>> from edgestream.wire.window_types import WindowSpec
>>> meta = new_meta("gw-1", WindowSpec(size_ms=1000))
>>> meta["format"], meta["counters"]["emitted"]
(1, 0)
>>> check_meta(meta, "state", "gw-2", WindowSpec(size_ms=1000))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edgestream.edge.state.WindowStateError: window state at state belongs to gateway gw-1, not gw-2: ...
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgestream.edge.state import WindowStateError
from edgestream.wire.window_types import MIN_WATERMARK, WindowSpec

__all__ = ["COUNTERS", "FORMAT", "check_meta", "new_meta", "spec_dict"]

COUNTERS = ("processed", "late", "replay_skipped", "emitted")
FORMAT = 1


def spec_dict(spec: WindowSpec) -> dict[str, Any]:
    """The spec as stored (JSON)."""
    return {**asdict(spec), "scopes": list(spec.scopes)}


def new_meta(gateway_id: str, spec: WindowSpec) -> dict[str, Any]:
    """The header of a new store."""
    return {
        "format": FORMAT,
        "gateway_id": gateway_id,
        "spec": spec_dict(spec),
        "watermark": MIN_WATERMARK,
        "partitions": {},
        "channels": [],
        "counters": dict.fromkeys(COUNTERS, 0),
        "next_segment": 0,
        "next_outbox": 0,
    }


def check_meta(meta: dict[str, Any], path: Path | str, gateway_id: str, spec: WindowSpec) -> None:
    """Raise :class:`WindowStateError` unless the store at ``path`` is for this engine."""
    if meta.get("format") != FORMAT:
        raise WindowStateError(
            f"window state at {path} has format {meta.get('format')}, expected "
            f"{FORMAT}: delete the directory to start over"
        )
    for what, have, want in (
        ("gateway", meta["gateway_id"], gateway_id),
        ("window spec", meta["spec"], spec_dict(spec)),
    ):
        if have != want:
            raise WindowStateError(
                f"window state at {path} belongs to {what} {have}, not {want}: "
                "use the same settings or another state directory"
            )
