"""Training baselines for drift detection: per-channel decile edges and bin fractions.

A model's baseline (ModelUpdate ``baseline``, sidecar ``baseline``) describes the training
distribution of each channel: the 9 inner decile ``edges``, the share of training values in
each of the 10 bins (bin ``i`` of ``x`` is ``numpy.searchsorted(edges, x, side="left")``),
``mean``, ``std`` and ``count``. The cloud drift job bins live samples with the same edges and
compares the fractions (PSI / KS).

>>> import numpy as np
>>> base = training_baseline(["a"], np.arange(100.0).reshape(-1, 1))
>>> base[0]["channel"], len(base[0]["edges"]), base[0]["count"]
('a', 9, 100)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestream.ml.artifact import decile_baseline

__all__ = ["bin_counts", "channel_drift", "ks_binned", "psi", "training_baseline"]

#: Floor of a bin fraction in PSI (an empty bin would make the log infinite).
PSI_EPSILON = 1e-4


def training_baseline(channels: Sequence[str], values: np.ndarray) -> list[dict[str, Any]]:
    """ChannelBaseline records (ModelUpdate ``baseline``) of the columns of ``values``.

    Channels without a finite value are left out.
    """
    out = []
    data = np.asarray(values, dtype=np.float64)
    for i, channel in enumerate(channels):
        column = data[:, i]
        if not np.isfinite(column).any():
            continue
        out.append({"channel": channel, **decile_baseline(column)})
    return out


def bin_counts(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Values per bin of a baseline's ``edges`` (bin of ``x``: ``searchsorted(edges, x, "left")``).

    >>> bin_counts([1.0, 2.0], np.array([0.5, 1.0, 1.5, 3.0])).tolist()
    [2, 1, 1]
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    return np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)


def psi(expected: Sequence[float], counts: np.ndarray) -> float:
    """Population stability index of observed bin ``counts`` against ``expected`` fractions:
    ``sum((a - e) * ln(a / e))``, both fractions floored at :data:`PSI_EPSILON`.

    >>> psi([0.5, 0.5], np.array([50, 50]))
    0.0
    >>> round(psi([0.5, 0.5], np.array([90, 10])), 4)
    0.8789
    """
    n = counts.sum()
    if n <= 0:
        return 0.0
    a = np.maximum(counts / n, PSI_EPSILON)
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_binned(expected: Sequence[float], counts: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic evaluated at the baseline's bin edges: the largest gap
    between the observed and the baseline cumulative fractions (the baseline ships only its
    deciles, so this is the KS distance of the two distributions seen through those edges).

    >>> ks_binned([0.5, 0.5], np.array([80, 20]))
    0.3
    """
    n = counts.sum()
    if n <= 0:
        return 0.0
    gap = np.cumsum(counts / n)[:-1] - np.cumsum(np.asarray(expected, dtype=np.float64))[:-1]
    return round(float(np.max(np.abs(gap))), 12) if len(gap) else 0.0


def channel_drift(baseline: dict[str, Any], values: np.ndarray) -> tuple[float, float, int]:
    """``(psi, ks, n)`` of a channel's live ``values`` against its baseline record
    (``edges`` + ``fractions``, as :func:`training_baseline` builds them).

    >>> base = training_baseline(["a"], np.arange(1000.0).reshape(-1, 1))[0]
    >>> p, k, n = channel_drift(base, np.arange(1000.0))
    >>> p < 1e-6, k < 1e-6, n
    (True, True, 1000)
    >>> p, k, n = channel_drift(base, np.arange(500.0, 1500.0))
    >>> p > 0.25, round(k, 3)
    (True, 0.5)
    """
    counts = bin_counts(baseline["edges"], values)
    return (
        psi(baseline["fractions"], counts),
        ks_binned(baseline["fractions"], counts),
        int(counts.sum()),
    )
