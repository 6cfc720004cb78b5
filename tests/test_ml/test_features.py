"""FeatureExtractor: exact against a per-reading reference, batch-invariant, checkpointable."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgestream.core.stateful as stateful_module
import edgestream.ml.features as features_module
from edgestream.ml.features import GAUSS_MAD, QUANTUM, RATE_PRIOR, FeatureError, FeatureExtractor
from tests.support.doctests import run_doctests

CHANNELS = ["x", "y", "z"]


def _make(**kw: object) -> FeatureExtractor:
    args: dict = {"window": 8, "prior_scale": [1.0, 1.0, 0.5], "median": 5}
    args.update(kw)
    return FeatureExtractor(CHANNELS, **args)  # type: ignore[arg-type]


def _stream(n: int = 1500, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five devices, coarse values (repeats), a stuck stretch and some late readings."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(["a", "b", "c", "d", "e"], n)
    late = rng.random(n) < 0.1
    ts = np.arange(n) * 10 + rng.integers(-300, 30, n) * late
    values = np.round(rng.normal(5.0, 1.0, (n, 3)), 1)
    values[500:530, 1] = values[499, 1]
    return ids, ts, values


def _reference(fx: FeatureExtractor, ids, ts, values) -> np.ndarray:
    """Plain per-reading Python definition of the features (module docstring)."""
    w, c, k = fx.window, len(fx.channels), RATE_PRIOR
    hist: dict[str, list[np.ndarray]] = {}
    newest: dict[str, int] = {}
    rows = []
    for device, t, x in zip(ids, ts, values, strict=True):
        xq = np.rint(x * QUANTUM).astype(np.int64)
        h = hist.setdefault(device, [])
        win = h[-w:]
        zs, dzs, fls = [], [], []
        for ch in range(c):
            if not win:
                zs.append(0.0), dzs.append(0.0), fls.append(0.0)
                continue
            v = [int(q[ch]) for q in win]
            m = len(v) - 1
            diffs = [v[i] - v[i - 1] for i in range(1, len(v))]
            pw = fx.prior_weight
            scale = (
                sum(abs(q) for q in diffs) / (QUANTUM * GAUSS_MAD) + pw * fx.prior_scale[ch]
            ) / (m + pw)
            scale = max(scale, 0.5 * fx.prior_scale[ch]) * QUANTUM
            base = float(np.median(v[-fx.median :])) if fx.median else sum(v) / len(v)
            zs.append((xq[ch] - base) / scale)
            dzs.append((xq[ch] - v[-1]) / scale)
            run = 0
            if xq[ch] == v[-1]:
                run = 1
                for q in reversed(diffs):
                    if q != 0:
                        break
                    run += 1
            if not run:
                fls.append(0.0)
                continue
            trailing = run - 1
            every = [int(q[ch]) for q in h]
            ad = [every[i] - every[i - 1] for i in range(1, len(every))]
            zeros = sum(q == 0 for q in ad) - trailing
            pairs = sum(ad[i] == 0 and ad[i - 1] == 0 for i in range(1, len(ad)))
            pairs -= max(trailing - 1, 0)
            steps = len(ad) - trailing
            p1 = min(max((zeros - pairs + 0.5 * k) / (max(steps - zeros, 0) + k), 1e-6), 1.0)
            p_rr = min(max((pairs + k * p1) / (zeros + k), 1e-6), 1.0)
            past = 0
            if fx.novel_runs:
                cur, lengths = 0, []
                for q in ad:
                    cur = cur + 1 if q == 0 else 0
                    lengths.append(min(cur, w - 1))
                end = len(ad)
                while end > 0 and ad[end - 1] == 0:
                    end -= 1
                past = max(lengths[:end], default=0)
            if run <= past:
                fls.append(0.0)
            elif past == 0:
                fls.append(-math.log(p1) - trailing * math.log(p_rr))
            else:
                fls.append(-(run - past) * math.log(p_rr))
        row = []
        for ch in range(c):
            row += [zs[ch], dzs[ch], fls[ch]]
        row += [max(map(abs, zs)), max(map(abs, dzs)), max(fls)]
        rows.append(row)
        if t > newest.get(device, -(2**63)):
            newest[device] = int(t)
            h.append(xq)
    return np.array(rows, dtype=np.float32)


def _in_batches(fx: FeatureExtractor, ids, ts, values, cuts) -> np.ndarray:
    """Transform in batches cut at ``cuts``, checkpointing and restoring between batches."""
    parts, start = [], 0
    for end in [*cuts, len(ts)]:
        fresh = FeatureExtractor.from_config(fx.config())
        fresh.restore(fx.state())
        fx = fresh
        parts.append(fx.transform(ids[start:end], ts[start:end], values[start:end]))
        start = end
    return np.concatenate(parts)


def test_docstring_examples() -> None:
    run_doctests(features_module)
    run_doctests(stateful_module)  # pack_parts / unpack_parts, the blob form of the parts


@pytest.mark.parametrize("novel_runs", [False, True])
def test_matches_per_reading_reference(novel_runs: bool) -> None:
    ids, ts, values = _stream()
    fx = _make(novel_runs=novel_runs)
    got = fx.transform(ids, ts, values)
    np.testing.assert_allclose(got, _reference(fx, ids, ts, values), rtol=1e-5, atol=1e-5)
    assert got[:, 2::3][:, :3].max() > 10  # the stuck stretch stands out


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 1499), max_size=12, unique=True), novel=st.booleans())
def test_bit_identical_however_batched_and_restored(cuts: list[int], novel: bool) -> None:
    ids, ts, values = _stream()
    whole = _make(novel_runs=novel).transform(ids, ts, values)
    split = _in_batches(_make(novel_runs=novel), ids, ts, values, sorted(cuts))
    assert np.array_equal(whole.view(np.uint32), split.view(np.uint32))


def test_state_round_trip_continues_exactly() -> None:
    ids, ts, values = _stream()
    fx = _make()
    fx.transform(ids[:700], ts[:700], values[:700])
    saved = fx.state()
    after = fx.transform(ids[700:], ts[700:], values[700:])
    other = _make()
    other.restore(saved)
    assert np.array_equal(other.transform(ids[700:], ts[700:], values[700:]), after)
    assert other.devices == 5


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 1499), min_size=1, max_size=12, unique=True))
def test_changed_parts_merged_into_a_store_continue_exactly(cuts: list[int]) -> None:
    """What the pipeline does: after each batch it stores ``changed_parts()`` under their keys
    (a batch commits only its own devices); a restart restores every stored part."""
    ids, ts, values = _stream()
    whole = _make().transform(ids, ts, values)
    store: dict[str, bytes] = {}
    fx, out, start = _make(), [], 0
    for end in [*sorted(cuts), len(ts)]:
        out.append(fx.transform(ids[start:end], ts[start:end], values[start:end]))
        changed = fx.changed_parts()
        assert set(changed) == {features_module.HEADER, *ids[start:end].tolist()}
        store.update(changed)
        fx = _make()
        fx.restore_parts(dict(store))
        start = end
    assert np.array_equal(whole.view(np.uint32), np.concatenate(out).view(np.uint32))
    assert fx.changed_parts() == {features_module.HEADER: store[features_module.HEADER]}
    assert {k: v for k, v in store.items()} == fx.parts()


def _format_1_blob(fx: FeatureExtractor) -> bytes:
    """A state as releases before parts wrote it (one numpy .npz blob)."""
    import io
    import json

    ids = sorted(fx._slots, key=fx._slots.__getitem__)
    buffer = io.BytesIO()
    header = json.dumps({"format": 1, **fx.config()})
    np.savez(
        buffer,
        header=np.array(header),
        ids=np.array(ids, dtype=str),
        hist=fx._hist,
        count=fx._count,
        last_ts=fx._last_ts,
        acc=fx._acc,
    )
    return buffer.getvalue()


def test_a_format_1_state_restores_and_is_stored_as_parts_next() -> None:
    ids, ts, values = _stream()
    fx = _make()
    fx.transform(ids[:700], ts[:700], values[:700])
    after = fx.transform(ids[700:], ts[700:], values[700:])
    old = _make()
    old.transform(ids[:700], ts[:700], values[:700])
    upgraded = _make()
    upgraded.restore(_format_1_blob(old))
    assert set(upgraded.changed_parts()) == {features_module.HEADER, *set(ids[:700].tolist())}
    assert np.array_equal(upgraded.transform(ids[700:], ts[700:], values[700:]), after)
    with pytest.raises(FeatureError, match="not 44 int64"):
        _make().restore_parts({**old.parts(), "a": b"short"})
    with pytest.raises(FeatureError, match="not a feature extractor state"):
        _make().restore(old.state()[:-3])


def test_out_of_order_readings_do_not_enter_history() -> None:
    ts = np.arange(40) * 100
    values = np.random.default_rng(3).normal(size=(40, 3))
    fx, with_late = _make(), _make()
    ids = np.array(["a"] * 40)
    clean = fx.transform(ids, ts, values)
    late_ts = np.insert(ts, 20, 50)  # an old reading arrives between #19 and #20
    late_values = np.insert(values, 20, [99.0, 99.0, 99.0], axis=0)
    got = with_late.transform(np.array(["a"] * 41), late_ts, late_values)
    assert np.array_equal(np.delete(got, 20, axis=0), clean)
    assert got[20, 0] > 10  # scored against the history as of its arrival


def test_first_reading_of_a_device_is_neutral_and_errors_are_clear() -> None:
    fx = _make()
    assert not fx.transform(["a"], [1], [[1.0, 2.0, 3.0]]).any()
    with pytest.raises(FeatureError, match=r"shape \(readings, 3\)"):
        fx.transform(["a"], [2], [[1.0, 2.0]])
    with pytest.raises(FeatureError, match="finite"):
        fx.transform(["a"], [2], [[1.0, np.nan, 3.0]])
    with pytest.raises(FeatureError, match="restore it into an extractor"):
        FeatureExtractor(["x"]).restore(fx.state())
    with pytest.raises(FeatureError, match="not a feature extractor state"):
        fx.restore(b"garbage")
    assert fx.transform([], [], np.zeros((0, 3))).shape == (0, fx.n_features)


def test_anomalies_stand_out_from_device_specific_baselines() -> None:
    rng = np.random.default_rng(0)
    n = 400
    ids = np.repeat([["cold", "hot"]], n, axis=0).ravel()
    ts = np.repeat(np.arange(n) * 100, 2)
    base = np.tile([[-20.0, 0.0, 0.0], [60.0, 0.0, 0.0]], (n, 1))
    values = np.round(base + rng.normal(0, 0.2, (2 * n, 3)), 3)
    values[2 * 300 + 1, 0] += 3.0  # spike on "hot"
    values[2 * 350 : 2 * 360 : 2, 2] = values[2 * 349, 2]  # "cold" channel z stuck
    feats = FeatureExtractor(CHANNELS, window=32, prior_scale=[0.2] * 3).transform(ids, ts, values)
    max_z, max_flat = feats[:, -3], feats[:, -1]
    assert max_z[2 * 300 + 1] > 8 and np.median(max_z[40:]) < 2
    assert max_flat[2 * 359] > 20 and np.quantile(max_flat[40:600], 0.99) < 10
