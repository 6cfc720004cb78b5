"""The pure parts of ``bench edge``'s sustained-load mode: lag growth, the sustainable
verdict and the step search for the highest sustainable rate."""

from __future__ import annotations

from typing import Any

import pytest

from edgestream.bench.sustained import (
    LAG_FLOOR_S,
    MAX_P99_ALERT_MS,
    LoadPlan,
    lag_growth,
    percentiles,
    step_search,
    sustainable,
)


def test_lag_growth_compares_the_last_ten_seconds_with_the_first() -> None:
    steady = [(t / 2, 100) for t in range(120)]  # 60 s at a lag of 100
    assert lag_growth(steady) == 1.0
    growing = [(t / 2, 10 * t) for t in range(120)]  # grows linearly for 60 s
    first = sum(10 * t for t in range(21)) / 21  # samples at 0..10 s
    last = sum(10 * t for t in range(99, 120)) / 21  # samples at 49.5..59.5 s
    assert lag_growth(growing) == round(last / first, 3)
    assert lag_growth([(0.0, 0), (30.0, 7)]) == 7.0  # a first mean of zero counts as one record


def test_lag_growth_needs_samples() -> None:
    with pytest.raises(ValueError, match="at least one"):
        lag_growth([])


def test_percentiles_of_latencies() -> None:
    values = list(range(1, 101))
    assert percentiles(values) == {"p50": 50.5, "p99": 99.01, "n": 100}


def _step(rate: float, p99: float | None, lag_last: float, growth: float) -> dict[str, Any]:
    return {
        "rate": rate,
        "p99_reading_to_alert_ms": p99,
        "lag_last_mean": lag_last,
        "lag_growth": growth,
    }


def test_sustainable_needs_bounded_lag_and_alert_latency() -> None:
    rate = 10_000
    floor = rate * LAG_FLOOR_S
    assert sustainable(_step(rate, 80, floor, 50.0))  # small lag: bounded whatever its growth
    assert sustainable(_step(rate, 80, floor * 4, 1.5))  # larger but not growing
    assert not sustainable(_step(rate, 80, floor * 4, 3.0))  # larger and growing
    assert not sustainable(_step(rate, MAX_P99_ALERT_MS + 1, 0, 1.0))
    assert not sustainable(_step(rate, None, 0, 1.0))  # no alert: latency unknown
    assert not sustainable({**_step(rate, 80, 0, 1.0), "caught_up": False})


def test_step_search_finds_the_highest_sustainable_rate() -> None:
    probed: list[float] = []

    def probe(rate: float) -> dict[str, Any]:
        probed.append(rate)
        return _step(rate, 100 if rate <= 23_000 else 400, 0, 1.0)

    best, steps = step_search(probe, 10_000, max_steps=10, resolution=0.05)
    assert probed[:3] == [10_000, 20_000, 40_000]  # doubles until a step fails
    assert best is not None and 23_000 * 0.95 <= best <= 23_000
    assert [s["sustainable"] for s in steps] == [r <= 23_000 for r in probed]


def test_step_search_halves_from_a_failing_start_and_stops_on_the_producer() -> None:
    probed: list[float] = []

    def probe(rate: float) -> dict[str, Any]:
        probed.append(rate)
        return _step(rate, 100 if rate <= 3000 else 400, 0, 1.0)

    best, _ = step_search(probe, 10_000, max_steps=3)
    assert probed == [10_000, 5000, 2500] and best == 2500

    def short_input(rate: float) -> dict[str, Any]:
        return {**_step(rate, 100, 0, 1.0), "producer_bound": rate > 10_000}

    best, steps = step_search(short_input, 10_000, max_steps=8)
    assert best == 10_000 and len(steps) == 2  # 20k could not be produced: the search ends


def test_load_plan_adds_devices_for_high_rates() -> None:
    plan = LoadPlan(rate=10_000, duration=60, step_duration=20, max_steps=3, devices=50, seed=1)
    assert plan.devices_for(10_000) == 50
    assert plan.devices_for(100_000) == 200  # at most 500 readings/s per simulated pump
