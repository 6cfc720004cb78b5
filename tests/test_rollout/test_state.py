"""The rollout state machine, the shadow statistics and the gates (pure logic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgestream.core.topology import load_topology
from edgestream.loop.up import default_topology
from edgestream.rollout.slots import (
    Gates,
    ModelRef,
    RolloutState,
    ShadowStats,
    Slot,
    judge,
    spearman,
)

GATES = Gates(min_readings=1000, max_anomaly_rate_delta=0.02, min_rank_correlation=0.8,
              max_duration_ms=60_000)  # fmt: skip


def test_spearman_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (2, 5, 100, 3000):
        a = rng.integers(0, 20, n).astype(float)  # many ties
        b = a + rng.normal(0, 5, n)
        assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]))  # a constant model has no ranking


def test_shadow_stats_counts_and_reservoir() -> None:
    rng = np.random.default_rng(0)
    cur = rng.normal(size=5000)
    cand = cur + rng.normal(0, 0.1, 5000)
    exact = ShadowStats(capacity=10_000)
    sampled = ShadowStats(capacity=1000, seed=1)
    for i in range(0, 5000, 333):  # uneven batches
        exact.add(cur[i : i + 333], cand[i : i + 333], 1.0, 1.2)
        sampled.add(cur[i : i + 333], cand[i : i + 333], 1.0, 1.2)
    assert exact.n == sampled.n == 5000
    assert exact.current_anomalies == sampled.current_anomalies == int((cur > 1.0).sum())
    assert exact.candidate_anomalies == int((cand > 1.2).sum())
    assert exact.rank_correlation() == pytest.approx(spearman(cur, cand), abs=1e-12)
    # the reservoir estimate is close to the exact value
    assert sampled.rank_correlation() == pytest.approx(exact.rank_correlation(), abs=0.02)
    with pytest.raises(ValueError, match="shape"):
        exact.add([1.0, 2.0], [1.0], 0.5, 0.5)


def _stats(cur: np.ndarray, cand: np.ndarray, thr: float = 1.0) -> ShadowStats:
    s = ShadowStats()
    s.add(cur, cand, thr, thr)
    return s


def test_judge_promotes_a_similar_model_and_waits_for_min_readings() -> None:
    rng = np.random.default_rng(1)
    cur = rng.normal(size=2000)
    similar = _stats(cur, cur * 1.01 + rng.normal(0, 0.05, 2000))
    assert judge(similar, GATES, 1000).decision == "promote"
    early = _stats(cur[:999], cur[:999])
    assert judge(early, GATES, 1000).decision == "continue"


@pytest.mark.parametrize(
    "make, failed",
    [
        (lambda c, r: np.full_like(c, 5.0), "rank correlation nan"),  # everything anomalous
        (lambda c, r: r.normal(size=len(c)), "rank correlation"),  # random scores
        (lambda c, r: c + 0.5, "anomaly rate delta"),  # same ranking, many more anomalies
    ],
)
def test_judge_rolls_back_a_worse_model(make, failed) -> None:
    rng = np.random.default_rng(2)
    cur = rng.normal(size=2000)
    verdict = judge(_stats(cur, make(cur, rng)), GATES, 1000)
    assert verdict.decision == "rollback" and verdict.reason == "gates-failed"
    assert failed in verdict.detail


def test_judge_max_duration_and_no_auto_rollback() -> None:
    few = _stats(np.zeros(10), np.zeros(10))
    assert judge(few, GATES, 59_999).decision == "continue"
    verdict = judge(few, GATES, 60_000)
    assert (verdict.decision, verdict.reason) == ("rollback", "max-duration")
    manual = Gates(**{**GATES.__dict__, "auto_rollback": False})
    bad = _stats(np.arange(2000.0), -np.arange(2000.0))
    assert judge(bad, manual, 1000).decision == "continue"  # the operator decides
    assert judge(bad, manual, 60_000).reason == "max-duration"


def test_gates_from_the_default_topology() -> None:
    gates = Gates.from_topology(load_topology(default_topology()))
    assert (gates.min_readings, gates.max_anomaly_rate_delta, gates.min_rank_correlation) == (
        300,
        0.02,
        0.8,
    )
    assert gates.auto_rollback is True


def test_slot_promote_revert_drop() -> None:
    slot = Slot("pump", ModelRef("v1"))
    with pytest.raises(ValueError, match="no candidate"):
        slot.promote()
    slot.accept(ModelRef("v2", "ab", "/m/v2.onnx"), "shadow", 5)
    assert (slot.candidate.version, slot.mode, slot.since_ms) == ("v2", "shadow", 5)
    old = slot.promote()
    assert (old.version, slot.live.version, slot.previous.version, slot.candidate) == (
        "v1",
        "v2",
        "v1",
        None,
    )
    slot.accept(ModelRef("v3"), "pending", 9)
    assert slot.drop_candidate().version == "v3" and slot.candidate is None
    assert slot.revert().version == "v2" and slot.live.version == "v1"
    assert slot.history == ["v3", "v2"]
    with pytest.raises(ValueError, match="no previous"):
        slot.revert()


def test_state_round_trip_and_atomic_save(tmp_path) -> None:
    path = tmp_path / "gw" / "rollout.json"
    assert RolloutState.load(path) == RolloutState()
    state = RolloutState(next_offset=7, event_seq=3)
    slot = state.slots["pump"] = Slot("pump", ModelRef("v1", "aa"))
    slot.accept(ModelRef("v2", "bb", "/x/v2.onnx", "pump-ae"), "pending", 11)
    state.save(path)
    assert RolloutState.load(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["rollout.json"]  # no temp file left
    assert json.loads(path.read_text())["format"] == 1
