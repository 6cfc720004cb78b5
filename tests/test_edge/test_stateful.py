"""Every stateful step of the gateway pipeline implements the contract of
:mod:`edgestream.core.stateful`, and keeps it: a fresh step restored from ``state()`` (or
from every ``changed_parts()`` stored so far) continues exactly like the step it came from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgestream.core.stateful import PartedState, Stateful
from edgestream.core.topology.detection import AnomalyRule, AnomalySpec, Suppression
from edgestream.edge.incidents import IncidentTracker
from edgestream.edge.models import RawFeatures
from edgestream.edge.online import OnlineDetector
from edgestream.ml.artifact import shipped_model
from edgestream.ml.features import FeatureExtractor

CHANNELS = ("vibration_rms", "bearing_temp", "pressure", "motor_current")
DEVICES = [f"pump-{i:04d}" for i in range(5)]


def _batch(rng: np.random.Generator, start: int, n: int) -> tuple[list[str], Any, Any]:
    devices = [DEVICES[i] for i in rng.integers(0, len(DEVICES), n)]
    ts = start + np.arange(n, dtype=np.int64) * 100
    values = rng.normal(10.0, 2.0, (n, len(CHANNELS)))
    return devices, ts, values


def _steps() -> dict[str, Any]:
    pump = shipped_model("pump")
    return {
        "feature extractor": lambda: FeatureExtractor.from_config(pump.features),
        "raw features": lambda: RawFeatures(CHANNELS),
        "online detector": lambda: OnlineDetector(CHANNELS, calibration=40),
    }


@pytest.mark.parametrize("name", list(_steps()))
def test_feature_steps_continue_exactly_from_their_state_and_from_their_parts(name: str) -> None:
    make = _steps()[name]
    step = make()
    assert isinstance(step, PartedState)
    rng = np.random.default_rng(3)
    stored: dict[str, bytes] = {}
    t = 1_795_000_000_000
    for _ in range(4):  # batches: parts stored incrementally, as the pipeline does
        step.transform(*_batch(rng, t, 150))
        stored.update(step.changed_parts())
        t += 150 * 100
    whole, parted = make(), make()
    whole.restore(step.state())
    parted.restore_parts(stored)
    assert whole.state() == step.state() == parted.state()
    nxt = _batch(rng, t, 200)
    expected = step.transform(*nxt)
    np.testing.assert_array_equal(whole.transform(*nxt), expected)
    np.testing.assert_array_equal(parted.transform(*nxt), expected)


def test_the_incident_tracker_continues_exactly_from_its_state() -> None:
    rule = AnomalyRule(name="pump-anomaly", consecutive=2)
    spec = AnomalySpec(rules=(rule,), suppression=Suppression(cooldown=3_000, update_interval=500))

    def make() -> IncidentTracker:
        return IncidentTracker(spec, "gw-1", thresholds={"pump": 0.3})

    def run(tracker: IncidentTracker, lo: int, hi: int) -> list[dict[str, Any]]:
        n = hi - lo
        return tracker.process(devices[lo:hi], ["site-1"] * n, ["pump"] * n, ts[lo:hi],
                               np.arange(lo, hi), scores[lo:hi], values[lo:hi], CHANNELS,
                               "pump-ae-v1")  # fmt: skip

    rng = np.random.default_rng(11)
    n = 400
    devices = [DEVICES[i % 2] for i in range(n)]
    ts = 1_795_000_000_000 + np.arange(n) * 100
    scores = rng.uniform(0.0, 0.2, n)
    scores[100:160] = rng.uniform(0.3, 0.9, 60)  # an incident open across the cut at 150
    scores[300:320] = 0.8
    values = rng.normal(10.0, 1.0, (n, len(CHANNELS)))
    step = make()
    assert isinstance(step, Stateful)
    first = run(step, 0, 150)
    restored = make()
    restored.restore(step.state())
    assert restored.state() == step.state()
    assert any(a["status"] == "open" for a in first)
    rest = run(step, 150, n)
    assert run(restored, 150, n) == rest
    assert {a["status"] for a in rest} >= {"update", "resolved"}
