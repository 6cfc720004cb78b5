"""Anomaly likelihood: how unusual the recent raw anomaly scores are for this device.

Numenta's post-processing of raw anomaly scores (Ahmad, Lavin, Purdy, Agha 2017,
"Unsupervised real-time anomaly detection for streaming data", section 4.3): the mean of
the last ``average`` raw scores is compared with the running normal distribution of that
mean; its upper tail probability ``q`` becomes a score ``ln(q + 1e-10) / ln(1e-10)`` in
[0, 1] (0.5: a mean with a tail probability of 1e-5). Differences from Numenta's code, so
that the state is a few numbers per device: the distribution is estimated incrementally
(its first ``horizon`` means equally, then exponentially) instead of re-fitted every 100
records over a window of 8,640; the tail is one-sided (an unusually *low* raw score is not
an anomaly). Like Numenta's filter, a red score (>= 0.5) right after another is reported as
yellow (0.3): one alarm per run.

The state is a plain list (JSON-able): ``[ring, mean, var, seen, red]``.

>>> state = new_state()
>>> [round(update(state, 0.1, average=10, horizon=100), 3) for _ in range(3)][-1]
0.03
>>> for _ in range(200):
...     _ = update(state, 0.1, average=10, horizon=100)
>>> [round(update(state, 1.0, average=10, horizon=100), 2) for _ in range(3)]
[0.7, 0.3, 0.3]
"""

from __future__ import annotations

import math
from typing import Any

EPS = 1e-10  # scores saturate at a tail probability of EPS
LOG_EPS = math.log(EPS)
MEAN_FLOOR, VAR_FLOOR = 0.03, 0.0003  # Numenta's floors of the raw-score distribution
RED = 0.5  # likelihood 0.99999
YELLOW = math.log(1e-3 + EPS) / LOG_EPS  # likelihood 0.999
SQRT2 = math.sqrt(2.0)


def new_state() -> list[Any]:
    """The state of a device that has seen nothing."""
    return [[], 0.0, 0.0, 0, False]


def update(state: list[Any], raw: float, average: int, horizon: int, learn: bool = True) -> float:
    """The score of ``raw`` (appended to the recent raw scores); ``learn``: let the mean of
    the recent scores enter the distribution (not while the raw model is brand new)."""
    ring, mean, var, seen, was_red = state
    ring.append(raw)
    if len(ring) > average:
        del ring[0]
    avg = sum(ring) / len(ring)
    score = 0.0
    if seen >= 2:
        z = (avg - max(mean, MEAN_FLOOR)) / math.sqrt(max(var, VAR_FLOOR))
        score = min(max(math.log(0.5 * math.erfc(z / SQRT2) + EPS) / LOG_EPS, 0.0), 1.0)
    red = score >= RED
    state[4] = red
    if red and was_red:
        score = YELLOW
    if learn:
        seen += 1
        rate = 1.0 / min(seen, horizon)
        delta = avg - mean
        state[1] = mean + rate * delta
        state[2] = (1.0 - rate) * (var + rate * delta * delta)
        state[3] = seen
    return score
