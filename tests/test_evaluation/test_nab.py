"""NAB scoring of series and corpora: detections before, inside and after windows, probation,
the exact threshold search against brute force, normalisation and input errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgestream.evaluation.exceptions import EvaluationError
from edgestream.evaluation.nab import (
    STANDARD_PROFILES,
    Profile,
    SeriesResult,
    normalise,
    score_corpus,
    score_series,
)
from edgestream.evaluation.windows import scaled_sigmoid, series_windows, tp_credit

PROFILE = Profile(tp=1.0, fp=0.11, fn=1.0)
N = 100  # probation: 15 rows
TS = np.arange(N).astype("datetime64[m]")
WINDOW = [(str(TS[40]), str(TS[49]))]  # rows 40..49


def score(detections: list[int], windows: list = WINDOW, profile: Profile = PROFILE):
    scores = np.zeros(N)
    scores[detections] = 1.0
    return score_series(series_windows("c/s.csv", TS, windows), scores, 0.5, profile)


def test_no_detection_misses_the_window() -> None:
    result = score([])
    assert (result.score, result.detected, result.missed, result.false_positives) == (-1, 0, 1, 0)


def test_detection_before_the_window_costs_the_full_fp_weight() -> None:
    result = score([30])
    assert result.score == pytest.approx(-0.11 - 1.0)
    assert result.false_positives == 1 and result.missed == 1


def test_detection_at_the_window_start_earns_the_tp_weight() -> None:
    assert score([40]).score == pytest.approx(1.0)
    assert score([40], profile=Profile(tp=0.5)).score == pytest.approx(0.5)


def test_detection_inside_the_window_earns_its_position() -> None:
    expected = tp_credit(np.array([40, 49]), np.array([45]))[0]
    assert score([45]).score == pytest.approx(expected)
    assert 0 < score([49]).score < score([45]).score < score([41]).score < 1


def test_only_the_first_detection_in_a_window_counts() -> None:
    several = score([43, 44, 47, 49])
    assert several.score == pytest.approx(score([43]).score)
    assert several.detected == 1 and several.false_positives == 0


def test_detection_after_the_window_is_scored_by_its_distance() -> None:
    near, far = score([40, 52]), score([40, 95])
    assert near.score == pytest.approx(1.0 + 0.11 * scaled_sigmoid(np.array([3 / 9]))[0])
    assert far.score == pytest.approx(1.0 - 0.11)  # y > 3: the full weight
    assert near.false_positives == far.false_positives == 1


def test_file_without_windows_scores_only_false_positives() -> None:
    result = score([20, 60], windows=[])
    assert result.score == pytest.approx(-0.22)
    assert result.missed == 0 and result.detected == 0


def test_probationary_period_is_not_scored() -> None:
    assert score([0, 5, 14]).score == -1.0
    assert score([0, 5, 14]).false_positives == 0
    # a window reaching into the probation: only its rows after it can detect
    partial = [(str(TS[10]), str(TS[19]))]
    assert score([12], windows=partial).missed == 1
    credit = tp_credit(np.array([10, 19]), np.array([16]))[0]
    assert score([12, 16], windows=partial).score == pytest.approx(credit)


def test_nan_scores_never_detect() -> None:
    scores = np.full(N, np.nan)
    result = score_series(series_windows("c/s.csv", TS, WINDOW), scores, 0.0, PROFILE)
    assert result.score == -1.0


def random_corpus(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    results, windows = {}, {}
    for k in range(4):
        n = int(rng.integers(60, 200))
        ts = np.arange(n).astype("datetime64[m]")
        scores = np.round(rng.random(n) ** 4, 2)  # ties on purpose
        starts = sorted(rng.choice(np.arange(5, n - 12, 12), size=k % 3, replace=False))
        for s in starts:  # windows hold higher scores, not always at their start
            scores[s : s + 8] = np.round(rng.random(8) * 0.6 + 0.4, 2)
        windows[f"cat{k % 2}/s{k}.csv"] = [(str(ts[s]), str(ts[s + 7])) for s in starts]
        results[f"cat{k % 2}/s{k}.csv"] = SeriesResult(ts, scores)
    return results, windows


@pytest.mark.parametrize("seed", range(6))
def test_threshold_search_finds_the_brute_force_optimum(seed: int) -> None:
    results, windows = random_corpus(seed)
    scores = score_corpus(results, windows, STANDARD_PROFILES)
    candidates = np.append(np.unique(np.concatenate([r.scores for r in results.values()])), np.inf)
    for name, profile in STANDARD_PROFILES.items():
        geometry = {n: series_windows(n, r.timestamps, windows[n]) for n, r in results.items()}
        totals = [
            sum(score_series(geometry[n], r.scores, t, profile).score for n, r in results.items())
            for t in candidates
        ]
        best = scores.profiles[name]
        assert best.raw == pytest.approx(max(totals), abs=1e-9)
        assert totals[list(candidates).index(best.threshold)] == pytest.approx(best.raw)
        assert best.threshold < np.inf  # something worth detecting


def test_normalisation_and_categories() -> None:
    results, windows = random_corpus(1)
    result = score_corpus(results, windows, {"standard": PROFILE}).profiles["standard"]
    n = sum(len(w) for w in windows.values())
    assert (result.null, result.perfect) == (-n, n)
    assert result.score == pytest.approx(normalise(result.raw, n, PROFILE))
    assert sum(result.category_raw.values()) == pytest.approx(result.raw)
    assert set(result.categories) == {"cat0", "cat1"}


def test_fixed_threshold_and_perfect_detector() -> None:
    scores = np.zeros(N)
    scores[40] = 1.0
    result = score_corpus({"c/s.csv": SeriesResult(TS, scores)}, {"c/s.csv": WINDOW})
    assert result.profiles["standard"].score == pytest.approx(100.0)
    fixed = score_corpus(
        {"c/s.csv": SeriesResult(TS, scores)}, {"c/s.csv": WINDOW}, thresholds={"standard": 2.0}
    )
    assert fixed.profiles["standard"].score == 0.0  # nothing detected: the null detector
    assert fixed.profiles["reward_low_FN_rate"].score == pytest.approx(100.0)
    assert fixed.as_dict()["standard"]["threshold"] == 2.0
    series = fixed.as_dict(series=True)["standard"]["series"]["c/s.csv"]
    assert (series["missed"], series["score"]) == (1, -1.0)
    nothing = score_corpus({"c/s.csv": SeriesResult(TS, np.zeros(N))}, {"c/s.csv": WINDOW})
    assert nothing.profiles["standard"].threshold == np.inf  # no detection is best
    assert nothing.as_dict()["standard"]["threshold"] is None


def test_input_errors_name_the_series() -> None:
    with pytest.raises(EvaluationError, match="no series"):
        score_corpus({}, {})
    with pytest.raises(EvaluationError, match=r"'x/y\.csv' has no entry"):
        score_corpus({"x/y.csv": SeriesResult(TS, np.zeros(N))}, {})
    with pytest.raises(EvaluationError, match="100 timestamps but 3 scores"):
        score_corpus({"c/s.csv": SeriesResult(TS, np.zeros(3))}, {"c/s.csv": WINDOW})
