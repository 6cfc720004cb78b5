"""Event-level metrics, and the product's detection-quality targets on fresh simulator seeds."""

from __future__ import annotations

import pytest

from edgestream.ml.artifact import shipped_model_path
from edgestream.ml.data import Episode
from edgestream.ml.evaluate import (
    Incident,
    IncidentRule,
    evaluate_fleet,
    event_metrics,
    incidents_from_scores,
)
from edgestream.ml.nab import evaluate_nab
from edgestream.sim.config import SimConfig
from tests.support.nab import NAB


def test_incident_rule_consecutive_and_gap_per_device() -> None:
    ids = ["a"] * 10 + ["b"] * 3
    ts = [*range(10), 5, 3, 4]  # "b" arrives out of order
    scores = [0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0]
    one = incidents_from_scores(ids, ts, scores, IncidentRule(0.5))
    assert [(i.device_id, i.first_ts, i.last_ts) for i in one] == [
        ("a", 1, 1), ("b", 3, 3), ("a", 4, 5), ("b", 5, 5), ("a", 9, 9)
    ]  # fmt: skip
    merged = incidents_from_scores(ids, ts, scores, IncidentRule(0.5, consecutive=1, gap=2))
    assert [(i.device_id, i.first_ts, i.last_ts, i.readings) for i in merged] == [
        ("a", 1, 5, 3), ("b", 3, 5, 2), ("a", 9, 9, 1)
    ]  # fmt: skip
    strict = incidents_from_scores(ids, ts, scores, IncidentRule(0.5, consecutive=2, gap=3))
    assert [(i.device_id, i.first_ts, i.last_ts) for i in strict] == [("a", 4, 9)]


def test_event_metrics_with_tolerance_and_kinds() -> None:
    episodes = [Episode("a", "spike", 100, 120), Episode("a", "stuck", 500, 600)]
    incidents = [Incident("a", 125, 125, 1, 1.0), Incident("a", 900, 950, 2, 1.0)]
    strict = event_metrics(episodes, incidents, tolerance_ms=0)
    assert (strict.recall, strict.precision, strict.false_alerts) == (0.0, 0.0, 2)
    loose = event_metrics(episodes, incidents, tolerance_ms=10)
    assert (loose.recall, loose.precision, loose.detected, loose.incidents) == (0.5, 0.5, 1, 2)
    assert loose.per_kind == {
        "spike": {"episodes": 1, "detected": 1, "recall": 1.0},
        "stuck": {"episodes": 1, "detected": 0, "recall": 0.0},
    }
    assert event_metrics([], []).recall == 1.0


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_detection_quality_on_fresh_simulator_seeds(seed: int) -> None:
    """Product target: recall >= 0.95, precision >= 0.90 (20 devices, 10 Hz, 10 min).

    Seeds 11-13 were fixed before evaluation and are not used in training (101, 102, 7).
    Over seeds 11-20 the shipped models reach recall 0.944-1.0 (mean 0.971) and
    precision 0.907-1.0 (mean 0.971); seed 19 gives recall 0.944 (stuck sensors on
    coarse, slowly varying channels are the misses).
    """
    cfg = SimConfig(
        devices=20,
        rate=10.0,
        duration=600,
        seed=seed,
        start_time=1718000000000 + seed * 3_600_000,
        labels=None,
    )
    models = {t: shipped_model_path(t) for t in cfg.device_types}
    run = evaluate_fleet(cfg, models)
    m = run.metrics
    assert m.episodes > 80
    assert m.recall >= 0.95, m.as_dict()
    assert m.precision >= 0.90, m.as_dict()


def test_nab_machine_temperature_windows() -> None:
    """Measured: 2 of the 4 labelled windows (#2 and #4, the sensor drop to ~2 degC and the
    failure) found, with 2 false alerts; windows #1 and #3 are slow excursions that look
    like earlier normal behaviour."""
    result = evaluate_nab(
        NAB / "machine_temperature_system_failure.csv", NAB / "combined_windows.json"
    )
    assert result.windows == 4 and result.train_readings == 2126
    assert result.found == 2 and result.found_windows == [1, 3]
    assert result.false_alerts == 2
