"""The generator: determinism, anomalies and their ground truth, drift, plausible values."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgestream.sim import DEVICE_TYPES, SimConfig
from edgestream.sim.signals import SignalGenerator
from tests.support.sim import START, config, generate, run


def _records(cfg: SimConfig) -> list[tuple]:
    messages, _ = run(cfg)
    return [(m.emit_ts, m.topic, m.key, repr(m.value)) for m in messages]


def test_same_seed_same_records_different_seed_different() -> None:
    cfg = config(anomaly_rate=0.05, late_fraction=0.1, drift_at=30.0)
    assert _records(cfg) == _records(cfg)
    assert _records(cfg) != _records(cfg.with_(seed=12))
    assert _records(cfg) != _records(cfg.with_(start_time=START + 1000))


def test_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    _, short = generate(config(duration=60.0, anomaly_rate=0.05))
    _, long = generate(config(duration=120.0, anomaly_rate=0.05))
    for dtype, arrays in short.items():
        steps = arrays["ts"].shape[1]
        for key in ("ts", "values", "anomalous"):
            np.testing.assert_array_equal(arrays[key], long[dtype][key][:, :steps])


def test_event_times_are_start_plus_i_over_rate_with_small_per_device_jitter() -> None:
    cfg = config(rate=4.0, duration=60.0)
    _, data = generate(cfg)
    for arrays in data.values():
        ts = arrays["ts"]
        nominal = START + np.arange(ts.shape[1]) * 250
        offset = ts - nominal
        assert offset.min() >= -5 and offset.max() < 250 + 5  # phase < interval, jitter <= 5
        assert (np.diff(ts, axis=1) > 0).all()  # strictly increasing per device
        assert len({int(o) for o in offset[:, 0]}) > 1  # devices differ


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_anomaly_fraction_is_close_to_the_rate(rate: float) -> None:
    cfg = config(devices=40, rate=1.0, duration=5000.0, anomaly_rate=rate)
    _, data = generate(cfg)
    anomalous = sum(int(a["anomalous"].sum()) for a in data.values())
    total = sum(a["anomalous"].size for a in data.values())
    assert abs(anomalous / total - rate) < 0.15 * rate, anomalous / total


def test_no_anomalies_at_rate_zero() -> None:
    gen, data = generate(config(anomaly_rate=0.0, keep_clean=True))
    assert not gen.episodes
    for arrays in data.values():
        assert not arrays["anomalous"].any()
        np.testing.assert_array_equal(arrays["values"], arrays["clean"])


def test_labelled_episodes_are_exactly_the_injected_readings() -> None:
    cfg = config(devices=12, rate=1.0, duration=3000.0, anomaly_rate=0.05, keep_clean=True)
    gen, data = generate(cfg)
    fleet = {d.index: d for d in gen.fleet.devices}
    expected = {t: np.zeros(a["anomalous"].shape, dtype=bool) for t, a in data.items()}
    kinds = set()
    for ep in gen.episodes:
        device = fleet[ep.device]
        dtype = DEVICE_TYPES[device.device_type]
        arrays = data[device.device_type]
        group = next(g for g in gen.fleet.groups if g.dtype.name == device.device_type)
        r = int(np.flatnonzero(group.index == ep.device)[0])
        last = min(ep.last_seq, arrays["ts"].shape[1] - 1)
        span = slice(ep.first_seq, last + 1)
        expected[device.device_type][r, span] = True
        assert ep.start_ts == arrays["ts"][r, ep.first_seq]
        if last == ep.last_seq:
            assert ep.end_ts == arrays["ts"][r, ep.last_seq]
        kinds.add(ep.kind)
        for name in ep.channels:
            c = dtype.channel_names.index(name)
            got, clean = arrays["values"][r, span, c], arrays["clean"][r, span, c]
            if ep.kind == "stuck":
                assert np.all(got == got[0]), (ep, got)
            else:
                deviation = np.abs(got - clean)
                assert deviation.min() >= 0.25 * dtype.channels[c].scale, (ep, deviation)
    assert kinds == {"spike", "level_shift", "stuck", "noise_burst", "channel_drift"}
    for dtype, arrays in data.items():
        np.testing.assert_array_equal(arrays["anomalous"], expected[dtype])
        # outside the episodes' channels nothing differs from the clean signal
        changed = (arrays["values"] != arrays["clean"]).any(axis=2)
        assert not (changed & ~expected[dtype]).any()


def test_labels_match_the_generator_episodes() -> None:
    cfg = config(devices=8, rate=1.0, duration=2000.0, anomaly_rate=0.03)
    _, sim = run(cfg)
    labels = sim.labels()
    gen, data = generate(cfg.with_(keep_clean=True))
    ids = {d.index: d.device_id for d in gen.fleet.devices}
    from_gen = {(ids[e.device], e.first_seq, e.last_seq, e.kind, e.channels) for e in gen.episodes}
    from_labels = {
        (a.device_id, a.first_seq, a.last_seq, a.type, a.channels) for a in labels.anomalies
    }
    assert from_labels == from_gen
    flagged = sum(int(a["anomalous"].sum()) for a in data.values())
    assert labels.run.anomalous_readings == flagged == len(labels.anomalous_ids())


def test_drift_changes_the_distribution_after_drift_at_and_not_before() -> None:
    cfg = config(devices=40, rate=2.0, duration=600.0, anomaly_rate=0.0, drift_at=300.0,
                 drift_ramp=30.0, drift_shift=2.0, drift_std=1.5)  # fmt: skip
    gen, data = generate(cfg)
    for dtype_name, arrays in data.items():
        dtype = DEVICE_TYPES[dtype_name]
        rel = (arrays["ts"] - START) / 1000.0
        before_a, before_b = rel[0] < 140, (rel[0] >= 150) & (rel[0] < 290)
        after = rel[0] >= 340
        for c, channel in enumerate(dtype.channels):
            if channel.name == "door_open":
                continue
            x = arrays["values"][..., c]
            drifted = channel.name in dtype.drift_channels
            shift_before = np.median(x[:, before_b].mean(1) - x[:, before_a].mean(1))
            shift_after = np.median(x[:, after].mean(1) - x[:, before_b].mean(1))
            assert abs(shift_before) < 0.25 * channel.scale, (channel.name, shift_before)
            # noise level from consecutive differences (insensitive to slow trends)
            noise_before = np.diff(x[:, before_b], axis=1).std()
            noise_after = np.diff(x[:, after], axis=1).std()
            ratio = noise_after / noise_before
            if drifted:
                assert abs(shift_after - 2.0 * channel.scale) < 0.25 * channel.scale
                assert 1.3 < ratio < 1.7, (channel.name, ratio)
            else:
                assert abs(shift_after) < 0.25 * channel.scale, (channel.name, shift_after)
                assert 0.85 < ratio < 1.15, (channel.name, ratio)
    assert {d.device_type for d in gen.drifts} == {"pump", "reefer"}


def test_drift_label_and_type_selection() -> None:
    cfg = config(drift_at=60.0, drift_ramp=10.0, drift_types=("pump",),
                 drift_channels=("pressure",))  # fmt: skip
    _, sim = run(cfg)
    (drift,) = sim.labels().drifts
    assert drift.device_type == "pump" and drift.channels == ("pressure",)
    assert drift.start_ts == START + 60_000 and drift.end_ts == START + 70_000
    assert drift.shift == {"pressure": 2.0 * 0.4}
    _, sim = run(config(drift_at=500.0))  # after the end: no drift line
    assert sim.labels().drifts == []


def test_channels_stay_in_plausible_ranges() -> None:
    cfg = config(devices=30, rate=0.01, duration=3 * 86400.0, anomaly_rate=0.02)
    _, data = generate(cfg)
    typical = {
        "vibration_rms": (0.3, 8.0),
        "bearing_temp": (10.0, 90.0),
        "pressure": (1.0, 9.0),
        "motor_current": (5.0, 35.0),
        "supply_air_temp": (-30.0, 20.0),
        "return_air_temp": (-30.0, 30.0),
        "humidity": (40.0, 100.0),
        "compressor_current": (1.0, 30.0),
        "door_open": (0.0, 1.0),
    }
    for dtype_name, arrays in data.items():
        dtype = DEVICE_TYPES[dtype_name]
        normal = ~arrays["anomalous"]
        for c, channel in enumerate(dtype.channels):
            x = arrays["values"][..., c]
            assert x.min() >= channel.lo and x.max() <= channel.hi
            lo, hi = typical[channel.name]
            assert lo <= x[normal].min() and x[normal].max() <= hi, channel.name
    pump = data["pump"]["values"]
    current, pressure = pump[..., 3].ravel(), pump[..., 2].ravel()
    assert np.corrcoef(current, pressure)[0, 1] > 0.8
    door = data["reefer"]["values"][..., 4]
    assert set(np.unique(door)) <= {0.0, 1.0} and 0 < door.mean() < 0.1


def test_generator_throughput_is_at_least_100k_readings_per_second() -> None:
    cfg = SimConfig(devices=100, rate=10.0, duration=300.0, seed=1, anomaly_rate=0.01,
                    late_fraction=0.05, drift_at=100.0, labels=None)  # fmt: skip
    best = 0.0
    for _ in range(3):
        gen = SignalGenerator(cfg, START)
        begin = time.perf_counter()
        readings = sum(batch.readings for batch in gen.batches())
        best = max(best, readings / (time.perf_counter() - begin))
    assert best >= 100_000, f"{best:,.0f} readings/s"
