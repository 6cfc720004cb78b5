"""NAB windows: the scaled sigmoid, probationary period, window rows and false-positive costs."""

from __future__ import annotations

import numpy as np
import pytest

from edgestream import evaluation
from edgestream.evaluation import corpus, nab, report, windows
from edgestream.evaluation.exceptions import EvaluationError
from edgestream.evaluation.windows import (
    probation_rows,
    scaled_sigmoid,
    series_windows,
    tp_credit,
    window_rows,
)
from tests.support.doctests import run_doctests


@pytest.mark.parametrize("module", [evaluation, windows, nab, corpus, report])
def test_doctests(module: object) -> None:
    run_doctests(module)


def minutes(n: int) -> np.ndarray:
    return np.arange(n).astype("datetime64[m]")


def at(minute: int) -> str:
    """NAB's timestamp format for minute ``minute`` after the epoch."""
    return str(np.datetime64(minute, "m").astype("datetime64[us]")).replace("T", " ")


def test_scaled_sigmoid_values() -> None:
    y = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 3.0001, 50.0])
    s = scaled_sigmoid(y)
    assert s[0] == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert s[2] == 0.0
    assert s[1] == pytest.approx(-s[3])  # odd around 0
    assert np.all(np.diff(s[:7]) < 0)
    assert s[5] > -1.0 and s[6] == -1.0 and s[7] == -1.0


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(0) == 0
    assert probation_rows(99) == 14
    assert probation_rows(1000) == 150
    assert probation_rows(5000) == 750
    assert probation_rows(100_000) == 750


def test_window_rows_are_inclusive_and_read_nab_timestamps() -> None:
    ts = minutes(30)
    bounds = window_rows(ts, [(at(5), at(9)), (at(20), at(20))])
    assert bounds.tolist() == [[5, 9], [20, 20]]
    # a window's edge between rows takes the rows inside it
    half = ts.astype("datetime64[s]") + np.timedelta64(30, "s")
    assert window_rows(half, [(at(5), at(9))]).tolist() == [[5, 8]]


def test_window_rows_rejects_empty_and_overlapping_windows() -> None:
    with pytest.raises(EvaluationError, match="holds no row"):
        window_rows(minutes(10), [(at(50), at(60))])
    with pytest.raises(EvaluationError, match="overlap"):
        window_rows(minutes(30), [(at(5), at(9)), (at(9), at(12))])


def test_tp_credit_is_one_at_the_window_start_and_falls_to_the_end() -> None:
    credit = tp_credit(np.array([10, 19]), np.arange(10, 20))
    assert credit[0] == pytest.approx(1.0)
    assert np.all(np.diff(credit) < 0)
    # the last row of the window: y = -1/L
    assert credit[-1] == pytest.approx(scaled_sigmoid(np.array([-0.1]))[0] / scaled_sigmoid(-1.0))


def test_false_positive_rows_and_costs() -> None:
    sw = series_windows("c/s.csv", minutes(100), [(at(40), at(49)), (at(70), at(79))])
    assert sw.probation == 15 and sw.category == "c"
    rows = set(sw.fp_rows.tolist())
    assert rows == set(range(15, 40)) | set(range(50, 70)) | set(range(80, 100))
    factor = dict(zip(sw.fp_rows.tolist(), sw.fp_factor.tolist(), strict=True))
    assert factor[15] == factor[39] == -1.0  # no window before: the full weight
    # after a window: relative to that window (width = rows - 1)
    assert factor[50] == pytest.approx(scaled_sigmoid(np.array([1 / 9]))[0])
    assert factor[69] == pytest.approx(scaled_sigmoid(np.array([20 / 9]))[0])
    assert factor[80] == pytest.approx(scaled_sigmoid(np.array([1 / 9]))[0])  # the closer one


def test_series_without_windows() -> None:
    sw = series_windows("c/s.csv", minutes(20), [])
    assert sw.bounds.shape == (0, 2)
    assert sw.fp_rows.tolist() == list(range(3, 20))
    assert np.all(sw.fp_factor == -1.0)
