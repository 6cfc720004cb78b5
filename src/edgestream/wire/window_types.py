"""Value types of the window engine: its configuration, its input and its results.

See :mod:`edgestream.edge.windows` for the semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCOPES = ("device", "site")
MIN_WATERMARK = -(2**62)  # "no watermark yet"
MAX_WATERMARK = 2**62  # watermark after flush_all()


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry and event-time policy. Times in ms; ``hop_ms=None`` means tumbling."""

    size_ms: int
    hop_ms: int | None = None
    allowed_lateness_ms: int = 0
    max_out_of_orderness_ms: int = 0
    scopes: tuple[str, ...] = SCOPES
    idle_timeout_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if self.size_ms <= 0:
            raise ValueError(f"window size_ms must be > 0, got {self.size_ms}")
        if self.hop_ms is not None and not (0 < self.hop_ms <= self.size_ms):
            raise ValueError(f"hop_ms must be in (0, size_ms={self.size_ms}], got {self.hop_ms}")
        if self.size_ms % self.step_ms:
            raise ValueError(f"size_ms={self.size_ms} must be a multiple of hop_ms={self.hop_ms}")
        if self.allowed_lateness_ms < 0 or self.max_out_of_orderness_ms < 0:
            raise ValueError("allowed_lateness_ms and max_out_of_orderness_ms must be >= 0")
        unknown = set(self.scopes) - set(SCOPES)
        if not self.scopes or unknown or len(set(self.scopes)) < len(self.scopes):
            raise ValueError(f"scopes must be distinct names from {SCOPES}, got {self.scopes}")
        if self.idle_timeout_ms is not None and self.idle_timeout_ms <= 0:
            raise ValueError(f"idle_timeout_ms must be > 0 or None, got {self.idle_timeout_ms}")

    @property
    def step_ms(self) -> int:
        """Distance between window starts (the hop, or the size for tumbling windows)."""
        return self.hop_ms or self.size_ms

    def closed_through(self, watermark: int) -> int:
        """Start of the latest window that ``watermark`` has closed."""
        step = self.step_ms
        return (watermark - self.size_ms + 1 - self.allowed_lateness_ms) // step * step


def _has_missing(column: np.ndarray) -> bool:
    """Whether an object column holds None or NaN (NaN is the one value unequal to itself).

    >>> _has_missing(np.array(["a", None], dtype=object)), _has_missing(np.array(["a", "b"]))
    (True, False)
    >>> _has_missing(np.array(["a", float("nan")], dtype=object))
    True
    """
    return bool(np.equal(column, None).any() or (column != column).any())


def _column(x: Any, dtype: Any, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"ReadingBatch.{name} must be 1-D with one entry per reading")
    return arr


@dataclass(frozen=True)
class ReadingBatch:
    """Columnar readings of one Kafka partition, in offset order (offsets non-decreasing).

    ``values`` is readings x channels (NaN: channel missing). ``scores`` NaN: not scored;
    ``scores``/``anomaly`` default to NaN/False. ``model_version`` is one per batch or per
    reading (None: no model).
    """

    partition: int
    offsets: np.ndarray
    device_id: np.ndarray
    site: np.ndarray
    device_type: np.ndarray
    ts: np.ndarray
    seq: np.ndarray
    values: np.ndarray
    channels: tuple[str, ...]
    scores: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    model_version: str | Sequence[str | None] | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "offsets", _column(self.offsets, np.int64, "offsets", None))
        n = self.offsets.shape[0]
        for name in ("device_id", "site", "device_type"):
            put(self, name, _column(getattr(self, name), object, name, n))
            if n and _has_missing(getattr(self, name)):
                raise ValueError(f"ReadingBatch.{name} must not contain None/NaN")
        put(self, "ts", _column(self.ts, np.int64, "ts", n))
        put(self, "seq", _column(self.seq, np.int64, "seq", n))
        put(self, "channels", tuple(self.channels))
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"ReadingBatch.channels must be distinct, got {self.channels}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.shape != (n, len(self.channels)):
            raise ValueError(
                f"ReadingBatch.values must be {n} x {len(self.channels)} (readings x channels),"
                f" got {values.shape}"
            )
        put(self, "values", values)
        scores = np.full(n, np.nan) if self.scores is None else self.scores
        put(self, "scores", _column(scores, np.float64, "scores", n))
        anomaly = np.zeros(n, bool) if self.anomaly is None else self.anomaly
        put(self, "anomaly", _column(anomaly, bool, "anomaly", n))
        if self.model_version is not None and not isinstance(self.model_version, str):
            put(self, "model_version", _column(self.model_version, object, "model_version", n))
        if n > 1 and bool(np.any(self.offsets[1:] < self.offsets[:-1])):
            raise ValueError(f"ReadingBatch.offsets must not decrease (partition {self.partition})")

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


@dataclass(frozen=True)
class LateReadings:
    """Readings of a batch whose windows were all closed: send them to ``<topic>.late``.

    ``indices`` point into the batch; ``window_start``/``window_end`` is the last window the
    reading belongs to and ``watermark`` the engine watermark that had closed it.
    """

    indices: np.ndarray
    window_start: np.ndarray
    window_end: np.ndarray
    watermark: np.ndarray
    reason: str = "window_closed"

    @classmethod
    def empty(cls) -> LateReadings:
        e = np.zeros(0, np.int64)
        return cls(e, e, e, e)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class ProcessResult:
    """Summaries closed by a call (sorted by window_end, scope, scope_key), late readings."""

    summaries: list[dict[str, Any]]
    late: LateReadings = field(default_factory=LateReadings.empty)
    skipped_replayed: int = 0
    watermark: int = MIN_WATERMARK
