"""NAB scores of a detector over a corpus: profiles, threshold search, normalisation.

A detector's anomaly scores become detections at a threshold (``score >= threshold``). At a
threshold, a series scores (weights from the profile's cost matrix, factors from
:mod:`edgestream.evaluation.windows`)::

    sum over windows: A_tp * credit(first detection)    or  -A_fn when none
  + sum over false positives: A_fp * factor (in [-1, 0])

A profile's raw score is the sum over the corpus at the threshold that maximises it (one
threshold for the whole corpus, as NAB optimises it). It is normalised between the null
detector (no detection: ``-A_fn`` per window) and the perfect one (every window at its first
row, nothing else: ``A_tp`` per window): ``100 * (raw - null) / (perfect - null)``.

The threshold search is exact and vectorised: lowering the threshold past a score value
changes the total by a known amount (a false positive's cost, or a window's first detection
moving to an earlier row), so sorting these events by score and summing them cumulatively
gives the corpus score at every distinct threshold at once.

>>> import numpy as np
>>> ts = np.arange(100).astype("datetime64[m]")
>>> windows = {"a/s.csv": [("1970-01-01T00:40", "1970-01-01T00:49")]}
>>> scores = np.zeros(100)
>>> scores[[42, 70]] = [0.9, 0.6]
>>> result = score_corpus({"a/s.csv": SeriesResult(ts, scores)}, windows, STANDARD_PROFILES)
>>> best = result.profiles["standard"]
>>> best.threshold, round(best.raw, 3), round(best.score, 1)
(0.9, 0.977, 98.9)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from edgestream.evaluation.exceptions import EvaluationError
from edgestream.evaluation.windows import SeriesWindows, Window, series_windows, tp_credit


@dataclass(frozen=True)
class Profile:
    """A NAB cost matrix: weights of true positives, false positives and false negatives."""

    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD_PROFILES: Mapping[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}
"""NAB's three application profiles (its ``config/profiles.json``)."""


class SeriesResult(NamedTuple):
    """A detector's output for one series: row timestamps and anomaly scores (NaN: none)."""

    timestamps: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class SeriesScore:
    """One series at a threshold: raw score, windows detected and missed, false positives."""

    name: str
    score: float
    detected: int
    missed: int
    false_positives: int


@dataclass(frozen=True)
class ProfileScore:
    """A profile's result over the corpus: best threshold, raw/null/perfect and normalised.

    ``categories`` holds each corpus folder's normalised score at the corpus threshold
    (``None`` for a folder without windows, where it is undefined; its raw score is in
    ``category_raw``).
    """

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float
    categories: dict[str, float | None]
    category_raw: dict[str, float]
    series: tuple[SeriesScore, ...] = field(repr=False)


@dataclass(frozen=True)
class Scores:
    """A detector's NAB scores in every profile."""

    profiles: dict[str, ProfileScore]

    def as_dict(self, series: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict (threshold ``None``: no detection is best); ``series=True``
        adds every series' numbers."""
        out: dict[str, Any] = {}
        for name, p in self.profiles.items():
            entry: dict[str, Any] = {
                "score": p.score,
                "threshold": p.threshold if np.isfinite(p.threshold) else None,
                "raw": p.raw,
                "null": p.null,
                "perfect": p.perfect,
                "categories": p.categories,
                "category_raw": p.category_raw,
            }
            if series:
                entry["series"] = {s.name: asdict(s) for s in p.series}
            out[name] = entry
        return out


class _Events(NamedTuple):
    """Score changes when the threshold drops to ``threshold``: unit parts per weight."""

    threshold: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray


def _series_events(sw: SeriesWindows, scores: np.ndarray) -> _Events:
    s = np.where(np.isnan(scores), -np.inf, scores)
    zeros = np.zeros(len(sw.fp_rows))
    parts = [_Events(s[sw.fp_rows], zeros, sw.fp_factor, zeros)]
    for k in range(len(sw.bounds)):
        rows = sw.scored_rows(k)
        running = np.maximum.accumulate(s[rows])
        record = np.ones(len(rows), dtype=bool)
        record[1:] = running[1:] > running[:-1]
        record &= np.isfinite(running)
        rec_rows = rows[record]
        if not len(rec_rows):
            continue
        credit = tp_credit(sw.bounds[k], rec_rows)
        # threshold falling through record values (last record first): the first detection
        # appears at the last record, then moves to each earlier record
        tp_delta = credit - np.append(credit[1:], 0.0)
        fn_delta = np.zeros(len(rec_rows))
        fn_delta[-1] = 1.0
        parts.append(_Events(running[record], tp_delta, np.zeros(len(rec_rows)), fn_delta))
    return _concat(parts)


def _concat(parts: list[_Events]) -> _Events:
    return _Events(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _sweep(events: _Events, windows: int, profile: Profile) -> tuple[float, float]:
    """Best (threshold, raw score) of the corpus; ``inf`` when no detection is best."""
    order = np.argsort(-events.threshold, kind="stable")
    thresholds = events.threshold[order]
    delta = profile.tp * events.tp + profile.fp * events.fp + profile.fn * events.fn
    total = -profile.fn * windows + np.cumsum(delta[order])
    last_of_group = np.ones(len(thresholds), dtype=bool)
    last_of_group[:-1] = thresholds[1:] != thresholds[:-1]
    last_of_group &= np.isfinite(thresholds)
    candidates = np.append(total[last_of_group], -profile.fn * windows)
    levels = np.append(thresholds[last_of_group], np.inf)
    best = int(np.argmax(candidates))
    return float(levels[best]), float(candidates[best])


def score_series(
    sw: SeriesWindows, scores: np.ndarray, threshold: float, profile: Profile
) -> SeriesScore:
    """One series' raw score at ``threshold`` (detections: ``score >= threshold``)."""
    hit = np.nan_to_num(scores, nan=-np.inf) >= threshold
    fp_hit = hit[sw.fp_rows]
    total = profile.fp * float(sw.fp_factor[fp_hit].sum())
    detected = 0
    for k in range(len(sw.bounds)):
        rows = sw.scored_rows(k)
        first = rows[hit[rows]][:1]
        if len(first):
            detected += 1
            total += profile.tp * float(tp_credit(sw.bounds[k], first)[0])
        else:
            total -= profile.fn
    missed = len(sw.bounds) - detected
    return SeriesScore(sw.name, total, detected, missed, int(fp_hit.sum()))


def score_corpus(
    results: Mapping[str, SeriesResult],
    windows: Mapping[str, Sequence[Window]],
    profiles: Mapping[str, Profile] = STANDARD_PROFILES,
    thresholds: Mapping[str, float] | None = None,
) -> Scores:
    """A detector's NAB scores: per profile the corpus-wide best threshold and its scores.

    ``results`` maps a series name (``category/file.csv``, as in NAB's windows file) to the
    detector's output; every series in it needs an entry in ``windows`` (possibly empty).
    ``thresholds`` fixes a profile's threshold (e.g. the detector's own operating threshold)
    instead of searching for the best one.
    """
    geometry, arrays = _prepare(results, windows)
    events = _concat([_series_events(sw, s) for sw, s in zip(geometry, arrays, strict=True)])
    n_windows = sum(len(sw.bounds) for sw in geometry)
    out: dict[str, ProfileScore] = {}
    for name, profile in profiles.items():
        if thresholds is not None and name in thresholds:
            threshold = float(thresholds[name])
        else:
            threshold, _ = _sweep(events, n_windows, profile)
        per_series = tuple(
            score_series(sw, s, threshold, profile) for sw, s in zip(geometry, arrays, strict=True)
        )
        out[name] = _profile_score(name, profile, threshold, geometry, per_series)
    return Scores(out)


def _prepare(
    results: Mapping[str, SeriesResult], windows: Mapping[str, Sequence[Window]]
) -> tuple[list[SeriesWindows], list[np.ndarray]]:
    if not results:
        raise EvaluationError("no series to score: the results are empty")
    geometry, arrays = [], []
    for name in sorted(results):
        if name not in windows:
            raise EvaluationError(
                f"series {name!r} has no entry in the anomaly windows: name it as in the "
                "windows file (category/file.csv)"
            )
        timestamps, scores = results[name]
        scores = np.asarray(scores, dtype=np.float64)
        if len(timestamps) != len(scores):
            raise EvaluationError(
                f"series {name!r}: {len(timestamps)} timestamps but {len(scores)} scores"
            )
        geometry.append(series_windows(name, timestamps, windows[name]))
        arrays.append(scores)
    return geometry, arrays


def _profile_score(
    name: str,
    profile: Profile,
    threshold: float,
    geometry: list[SeriesWindows],
    per_series: tuple[SeriesScore, ...],
) -> ProfileScore:
    raw_by: dict[str, float] = {}
    windows_by: dict[str, int] = {}
    for sw, result in zip(geometry, per_series, strict=True):
        raw_by[sw.category] = raw_by.get(sw.category, 0.0) + result.score
        windows_by[sw.category] = windows_by.get(sw.category, 0) + len(sw.bounds)
    categories = {
        c: normalise(raw_by[c], windows_by[c], profile) if windows_by[c] else None
        for c in sorted(raw_by)
    }
    raw = sum(raw_by.values())
    n = sum(windows_by.values())
    return ProfileScore(
        profile=name,
        threshold=threshold,
        raw=raw,
        null=-profile.fn * n,
        perfect=profile.tp * n,
        score=normalise(raw, n, profile),
        categories=categories,
        category_raw=dict(sorted(raw_by.items())),
        series=per_series,
    )


def normalise(raw: float, windows: int, profile: Profile) -> float:
    """``100 * (raw - null) / (perfect - null)`` for a corpus with ``windows`` windows.

    >>> normalise(0.0, 10, Profile()), normalise(-10.0, 10, Profile())
    (50.0, 0.0)
    """
    null, perfect = -profile.fn * windows, profile.tp * windows
    if perfect == null:
        raise EvaluationError("cannot normalise a score over a corpus without anomaly windows")
    return 100.0 * (raw - null) / (perfect - null)
