"""The online detector (model ``kind: online``): scores, state, restarts, the topology."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgestream.core.paths import topologies_dir
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.stateful import HEADER, pack_parts, unpack_parts
from edgestream.core.topology import load_topology
from edgestream.core.topology.detection import ModelSpec
from edgestream.edge.models import features_for, load_model
from edgestream.edge.online import MAX_COUNTS, OnlineDetector, OnlineError
from edgestream.edge.pipeline import TopicPipeline
from edgestream.evaluation.replay import with_online_settings
from tests.support.doctests import run_doctests


def series(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20 + 3 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 0.2, n)


STEP = 900_000  # 15 minutes: series() repeats daily


def score(det: OnlineDetector, x: np.ndarray, device: str = "d", t0: int = 0) -> np.ndarray:
    ts = (t0 + np.arange(len(x))) * STEP
    return det.transform([device] * len(x), ts, np.asarray(x).reshape(len(x), -1))[:, 0]


def test_calibration_then_scores_in_unit_range() -> None:
    x = series()
    s = score(OnlineDetector(["v"], calibration=300), x)
    assert (s[:300] == 0).all()
    assert ((s >= 0) & (s <= 1)).all()
    assert np.quantile(s[300:], 0.99) < 0.5  # a quiet periodic series: few high scores


def test_level_shift_and_spike_score_high() -> None:
    x = series()
    x[1000] = 40.0  # spike beyond the range: the spatial check
    x[1200:] += 2.5  # a shift inside the range: values unusual for their time of day
    s = score(OnlineDetector(["v"], calibration=300), x)
    assert s[1000] == 1.0 and s[1001:1026].max() == 0.0  # then a rest (25 readings)
    assert s[1200:1260].max() > 0.5 and s[1100:1199].max() < 0.5


def test_batches_restarts_and_devices_do_not_change_scores() -> None:
    x, y = series(seed=1), series(seed=2)
    one = score(OnlineDetector(["v"], calibration=200), x)
    det = OnlineDetector(["v"], calibration=200)
    parts: dict[str, bytes] = {}
    got = []
    for lo in range(0, len(x), 97):  # odd batches, state through parts as the pipeline keeps it
        fresh = OnlineDetector(["v"], calibration=200)
        if parts:
            fresh.restore_parts(parts)
        chunk = x[lo : lo + 97]
        got.append(score(fresh, chunk, t0=lo))
        parts.update(fresh.changed_parts())
    assert np.array_equal(np.concatenate(got), one)
    # two devices interleaved score as each alone
    n = len(x)
    ids = np.array(["a", "b"] * n)
    ts = np.repeat(np.arange(n), 2) * STEP
    both = det.transform(ids, ts, np.stack([x, y], 1).reshape(-1, 1))[:, 0]
    assert np.array_equal(both[0::2], one)
    assert np.array_equal(both[1::2], score(OnlineDetector(["v"], calibration=200), y))


def test_out_of_order_reading_scores_zero_and_is_not_learned() -> None:
    x = series(600)
    det, ref = OnlineDetector(["v"], calibration=100), OnlineDetector(["v"], calibration=100)
    score(det, x[:500]), score(ref, x[:500])
    late = det.transform(["d"], [10 * STEP], [[99.0]])
    assert late[0, 0] == 0.0 and det.state() == ref.state()


def test_state_of_other_settings_is_refused() -> None:
    det = OnlineDetector(["v"], calibration=100)
    score(det, series(200))
    with pytest.raises(OnlineError, match="same settings"):
        OnlineDetector(["v"], calibration=100, levels=8).restore(det.state())
    with pytest.raises(OnlineError, match="unknown"):
        OnlineDetector(["v"], window=3)


def test_long_run_level_model_is_on_by_default_and_in_the_state() -> None:
    topology = load_topology(topologies_dir() / "nab.yaml")
    scorer, _ = load_model(topology, "metric")
    assert scorer.meta.features["history"] == 8000
    x = series()
    x[1200:] += 2.5  # a shift inside the range
    on = OnlineDetector(["v"], calibration=300)
    with_long = score(on, x)
    without = score(OnlineDetector(["v"], calibration=300, history=0), x)
    # the shifted level stays unusual for the long-run model after the recent one followed it
    assert with_long[300:1200].max() < 0.5
    assert with_long[1350:].mean() > 1.2 * without[1350:].mean()
    # a state saved before the long-run model (format 1, no history setting) is refused
    parts = unpack_parts(on.state())
    header = json.loads(parts[HEADER])
    del header["history"]
    parts[HEADER] = json.dumps({**header, "format": 1}).encode()
    with pytest.raises(OnlineError, match="same settings"):
        OnlineDetector(["v"], calibration=300).restore(pack_parts(parts))


def test_topology_kind_online_needs_no_file_and_onnx_does() -> None:
    topology = load_topology(topologies_dir() / "nab.yaml")
    scorer, threshold = load_model(topology, "metric")
    assert scorer.meta.family == "online" and threshold == 0.5
    assert isinstance(features_for(scorer.meta), OnlineDetector)
    with pytest.raises(ValueError, match="path to the ONNX file"):
        ModelSpec(name="m")


def test_pipeline_restart_continues_bit_identically(tmp_path: Path) -> None:
    """The worker's TopicPipeline with the online model: stopped half way and reopened from
    its state directory, it scores the rest exactly as one uninterrupted run."""
    topology = with_online_settings(
        load_topology(topologies_dir() / "nab.yaml"), "metric", calibration=200
    )
    topic = topology.sensors.topics[0]
    registry = "mock://test-online-restart"
    ser = AvroSerializer(registry, topic.schema_, subject_for(topic.name))
    x = series(900)
    t0 = 1_400_000_000_000
    msgs = [
        ser(
            {
                "device_id": "m-1",
                "site": "replay",
                "device_type": "metric",
                "ts": t0 + i * 60_000,
                "seq": i,
                "channels": {"value": float(v)},
                "tags": {},
            }
        )
        for i, v in enumerate(x)
    ]

    def run(state: Path, ranges: list[tuple[int, int]]) -> np.ndarray:
        scores = []
        for lo, hi in ranges:
            scorer, threshold = load_model(topology, "metric")
            p = TopicPipeline(
                topology,
                "gw",
                topic,
                state,
                AvroDeserializer(registry),
                scorer,
                threshold=threshold,
            )
            for a in range(lo, hi, 128):
                b = min(a + 128, hi)
                out = p.process(0, range(a, b), msgs[a:b], t0 + b * 60_000)
                scores.append(out.scores)
            p.close()
        return np.concatenate(scores)

    whole = run(tmp_path / "a", [(0, 900)])
    restarted = run(tmp_path / "b", [(0, 450), (450, 900)])
    assert np.array_equal(whole, restarted) and whole[200:].max() > 0


def test_counts_stay_bounded_on_a_drifting_counter() -> None:
    """A value that only grows makes a new bin at every step: the counts are halved and
    pruned instead of growing with the stream, and the state stays small."""
    det = OnlineDetector(["v"], calibration=10)
    x = np.arange(30_000, dtype=float) * 0.5  # 0.75 per bin: ~4,000 bins, ~8,000 entries
    score(det, x)
    dev = det._devices["d"]
    assert all(len(c) <= MAX_COUNTS for model in dev.counts for c in model)
    assert max(len(c) for c in dev.counts[0]) > MAX_COUNTS // 2  # it did fill up
    assert len(det.state()) < 400_000


@pytest.mark.parametrize("name", ["edgestream.edge.online", "edgestream.edge.likelihood"])
def test_docstring_examples(name: str) -> None:
    run_doctests(importlib.import_module(name))
