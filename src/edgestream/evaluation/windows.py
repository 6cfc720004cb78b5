"""NAB anomaly windows of one series: rows, probationary period and the scaled sigmoid.

The Numenta Anomaly Benchmark (Lavin & Ahmad 2015; Ahmad et al. 2017) scores a detector by
*anomaly windows* around each labelled anomaly (NAB's ``combined_windows.json`` holds them as
``[start, end]`` timestamps, both inclusive). Within a window only the first detection counts,
and it is worth more the earlier it comes; a detection outside every window is a false
positive whose cost shrinks towards the full weight as it moves away from the window before it.
Both use the scaled sigmoid of a relative position ``y``::

    sigma(y) = 2 / (1 + exp(5 y)) - 1        (and -1 for y > 3)

which is +0.987 at y = -1, 0 at y = 0 and tends to -1 for large y.

Positions, as the published per-record scores of NAB's own detectors show them (a window of
``L`` rows ``a..b``, a detection at row ``i``):

- in a window: ``y = -(b - i + 1) / L``; the credit is ``sigma(y) / sigma(-1)``, so a detection
  at the window's first row earns exactly 1 (times the profile's true-positive weight);
- after a window: ``y = (i - b) / (L - 1)`` relative to the closest window before it; a
  detection with no window before it costs the full weight (factor -1).

The first ``probation_rows(n)`` rows of a series (15 %, at most 750) are the detector's
probationary period: nothing there is scored.

>>> import numpy as np
>>> round(float(scaled_sigmoid(np.array([-1.0]))[0]), 4), float(scaled_sigmoid(np.array([0.0]))[0])
(0.9866, 0.0)
>>> ts = np.arange(10).astype("datetime64[m]")
>>> bounds = window_rows(ts, [("1970-01-01T00:03", "1970-01-01T00:05")])
>>> bounds.tolist()
[[3, 5]]
>>> [round(float(v), 3) for v in tp_credit(bounds[0], np.arange(3, 6))]
[1.0, 0.944, 0.692]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgestream.evaluation.exceptions import EvaluationError

PROBATION_FRACTION = 0.15
"""Share of a series' rows (at most ``PROBATION_FRACTION * 5000``) that are not scored."""

Window = tuple[object, object]
"""An anomaly window: inclusive start and end timestamps (strings or ``numpy.datetime64``)."""


def scaled_sigmoid(y: np.ndarray) -> np.ndarray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``, exactly -1 beyond ``y = 3``.

    >>> scaled_sigmoid(np.array([3.5])).tolist()
    [-1.0]
    """
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, value)


_SIGMA_AT_START = float(scaled_sigmoid(np.array([-1.0]))[0])


def probation_rows(n: int) -> int:
    """Rows at the start of an ``n``-row series that are not scored.

    >>> probation_rows(4032), probation_rows(22695)
    (604, 750)
    """
    return int(min(np.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000))


def window_rows(timestamps: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Inclusive row bounds ``(k, 2)`` of each window's rows in ``timestamps`` (sorted).

    A window that holds no row is an error: NAB's windows are built on the data's rows.
    """
    ts = np.asarray(timestamps).astype("datetime64[us]")
    bounds = np.empty((len(windows), 2), dtype=np.int64)
    for k, (start, end) in enumerate(windows):
        lo = np.searchsorted(ts, np.datetime64(_iso(start), "us"), side="left")
        hi = np.searchsorted(ts, np.datetime64(_iso(end), "us"), side="right") - 1
        if hi < lo:
            raise EvaluationError(
                f"anomaly window {start} .. {end} holds no row of the series "
                f"({ts[0] if len(ts) else 'empty'} .. {ts[-1] if len(ts) else 'empty'}): "
                "check that the windows belong to this series"
            )
        bounds[k] = (lo, hi)
    if len(bounds) > 1 and np.any(bounds[1:, 0] <= bounds[:-1, 1]):
        raise EvaluationError("anomaly windows overlap or are not in time order")
    return bounds


def _iso(stamp: object) -> str:
    return str(stamp).strip().replace(" ", "T")


def tp_credit(bounds: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Credit (before the true-positive weight) of a first detection at ``rows`` of a window."""
    first, last = int(bounds[0]), int(bounds[1])
    length = last - first + 1
    return scaled_sigmoid(-(last - rows + 1) / length) / _SIGMA_AT_START


@dataclass(frozen=True)
class SeriesWindows:
    """One series' scoring geometry: its length, windows, probation and false-positive costs.

    ``fp_rows`` are the scored rows outside every window, ``fp_factor`` their cost factor
    (in [-1, 0]; times the profile's false-positive weight).
    """

    name: str
    length: int
    bounds: np.ndarray
    probation: int
    fp_rows: np.ndarray
    fp_factor: np.ndarray

    @property
    def category(self) -> str:
        """The corpus folder of the series (``realKnownCause/nyc_taxi.csv`` -> realKnownCause)."""
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    def scored_rows(self, window: int) -> np.ndarray:
        """Rows of window ``window`` after the probationary period."""
        first, last = self.bounds[window]
        return np.arange(max(int(first), self.probation), int(last) + 1)


def series_windows(name: str, timestamps: np.ndarray, windows: Sequence[Window]) -> SeriesWindows:
    """The scoring geometry of series ``name`` from its timestamps and its anomaly windows.

    >>> ts = np.arange(20).astype("datetime64[s]")
    >>> sw = series_windows("cat/s.csv", ts, [("1970-01-01T00:00:10", "1970-01-01T00:00:12")])
    >>> sw.probation, sw.fp_rows.tolist()
    (3, [3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 18, 19])
    >>> [round(float(f), 3) for f in sw.fp_factor[[0, 7, 8]]]  # rows 3, 13, 14
    [-1.0, -0.848, -0.987]
    """
    n = len(timestamps)
    bounds = window_rows(timestamps, windows)
    probation = probation_rows(n)
    rows = np.arange(probation, n)
    inside = np.zeros(n, dtype=bool)
    for first, last in bounds:
        inside[first : last + 1] = True
    rows = rows[~inside[probation:]]
    # the closest window ending before each row (-1: none)
    before = np.searchsorted(bounds[:, 1], rows, side="left") - 1 if len(bounds) else rows * 0 - 1
    factor = np.full(len(rows), -1.0)
    after = before >= 0
    if after.any():
        first, last = bounds[before[after], 0], bounds[before[after], 1]
        width = np.maximum(last - first, 1)
        factor[after] = scaled_sigmoid((rows[after] - last) / width)
    return SeriesWindows(name, n, bounds, probation, rows, factor)
