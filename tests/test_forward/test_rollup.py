"""Roll-up of window summaries: exact aggregates against numpy over the original readings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgestream.forward import rollup
from edgestream.forward.rollup import merge_summaries, next_size, weighted_median
from tests.support.doctests import run_doctests
from tests.support.records import CHANNELS, random_windows, summary


def _check_exact(merged: dict, values: dict[str, np.ndarray], parts: list[dict]) -> None:
    for channel, v in values.items():
        got = merged["channels"][channel]
        assert got["count"] == len(v)
        assert got["sum"] == pytest.approx(np.sum(v), rel=1e-12)
        assert got["min"] == np.min(v) and got["max"] == np.max(v)
        assert got["mean"] == pytest.approx(np.mean(v), rel=1e-12)
        assert got["m2"] == pytest.approx(np.sum((v - np.mean(v)) ** 2), rel=1e-9)
        assert got["std"] == pytest.approx(np.std(v), rel=1e-9)
        for q in ("p50", "p95"):  # approximate, within the parts' range (see rollup doc)
            part_q = [p["channels"][channel][q] for p in parts if channel in p["channels"]]
            assert min(part_q) <= got[q] <= max(part_q)
    assert merged["count"] == sum(p["count"] for p in parts)
    assert merged["anomaly_count"] == sum(p["anomaly_count"] for p in parts)


def test_merge_equals_numpy_over_the_original_readings() -> None:
    rng = np.random.default_rng(4)
    parts, raw = random_windows(rng, devices=1, windows=6)
    merged = merge_summaries(parts, 60_000, 10_000, first_seq=11)
    values = {c: np.concatenate(raw["pump-0"][c]) for c in CHANNELS}
    _check_exact(merged, values, parts)
    assert merged["window_start"] == 0 and merged["window_end"] == 60_000
    assert merged["rollup_level"] == 1
    assert merged["summary_id"] == "gw|device|pump-0|0|60000|r1.10000.11"
    assert merged["first_ts"] == parts[0]["first_ts"]
    assert merged["last_ts"] == parts[-1]["last_ts"]
    assert merged["channels"]["pressure"]["last"] == raw["pump-0"]["pressure"][-1][-1]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 1e6]),
)
def test_merge_is_exact_for_any_split(sizes: list[int], seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    chunks = [rng.normal(scale * 3, scale, size=n) for n in sizes]
    parts = [summary("d", i * 10_000, {"x": c}) for i, c in enumerate(chunks)]
    merged = merge_summaries(parts, 600_000, 10_000, first_seq=1)
    _check_exact(merged, {"x": np.concatenate(chunks)}, parts)


def test_two_levels_stay_exact() -> None:
    rng = np.random.default_rng(9)
    parts, raw = random_windows(rng, devices=1, windows=120)  # 20 minutes of 10 s windows
    minutes = [
        merge_summaries(parts[i : i + 6], 60_000, 10_000, first_seq=i + 1) for i in range(0, 120, 6)
    ]
    tens = [merge_summaries(minutes[i : i + 10], 600_000, 10_000, i + 1000) for i in (0, 10)]
    assert [t["rollup_level"] for t in tens] == [2, 2]
    values = {c: np.concatenate(raw["pump-0"][c][:60]) for c in CHANNELS}
    _check_exact(tens[0], values, minutes[:10])
    assert tens[0]["summary_id"].endswith("|r2.10000.1000")


def test_parts_outside_the_window_are_refused() -> None:
    a = summary("d", 50_000, {"x": np.array([1.0])})
    b = summary("d", 60_000, {"x": np.array([2.0])})
    with pytest.raises(ValueError, match="do not all fall"):
        merge_summaries([a, b], 60_000, 10_000, 1)


def test_mixed_model_versions_and_missing_channels() -> None:
    a = summary("d", 0, {"x": np.array([1.0, 2.0])})
    b = summary("d", 10_000, {"y": np.array([5.0])})
    b["model_version"] = "v2"
    b["max_score"] = None
    merged = merge_summaries([a, b], 60_000, 10_000, 1)
    assert merged["model_version"] == "mixed"
    assert set(merged["channels"]) == {"x", "y"}
    assert merged["channels"]["y"]["count"] == 1
    assert merged["max_score"] == a["max_score"]


def test_chain_targets() -> None:
    chain = (10_000, 60_000, 600_000)
    assert [next_size(s, chain) for s in (10_000, 60_000, 600_000, 7_000)] == [
        60_000,
        600_000,
        None,
        None,
    ]
    assert weighted_median([1.0, 2.0], [1, 1]) == 1.0


def test_docstring_examples_run() -> None:
    run_doctests(rollup)
