"""WindowEngine against an independent reference, across batching, crashes and kill -9."""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgestream.edge.window_stats as window_stats
import edgestream.edge.windows as windows
import edgestream.wire.watermarks as watermarks
from edgestream.edge.windows import ReadingBatch, WindowEngine, WindowSpec, WindowStateError
from tests.support.doctests import run_doctests
from tests.support.windows_ref import (
    GATEWAY,
    Event,
    Reference,
    assert_matches,
    call,
    make_batch,
    make_stream,
    reference,
    run_engine,
    split_batches,
)

REPO = Path(__file__).resolve().parents[2]
HOPPING = WindowSpec(1000, 250, allowed_lateness_ms=300, max_out_of_orderness_ms=200,
                     idle_timeout_ms=1500)  # fmt: skip
TUMBLING = WindowSpec(700, None, allowed_lateness_ms=0, max_out_of_orderness_ms=100)
SITE_ONLY = WindowSpec(1000, 500, 100, 200, scopes=("site",), idle_timeout_ms=800)


@functools.cache
def _stream(seed: int) -> list[Event]:
    return make_stream(seed)


@functools.cache
def _reference(seed: int, spec: WindowSpec) -> Reference:
    return reference(_stream(seed), spec)


def _open(path: Path | str, spec: WindowSpec = HOPPING, sync: bool = False) -> WindowEngine:
    return WindowEngine.open(spec, gateway_id=GATEWAY, store_path=path, sync=sync)


def _batch(partition, offsets, ts, *, devices=None, values=None, mv="m1") -> ReadingBatch:
    n = len(ts)
    devices = devices or ["d1"] * n
    rows = [
        {
            "device": d,
            "site": "s1",
            "device_type": "pump",
            "ts": t,
            "seq": i,
            "values": [float(t) if values is None else values[i]],
            "score": 0.5,
            "anomaly": False,
        }
        for i, (d, t) in enumerate(zip(devices, ts, strict=True))
    ]
    return make_batch(partition, list(offsets), rows, ("v",), mv)


@pytest.mark.parametrize("module", [windows, watermarks], ids=lambda m: m.__name__)
def test_docstring_examples_run(module) -> None:
    run_doctests(module)


# -- the acceptance criterion: equality with the offline reference ------------------------


@pytest.mark.parametrize(
    ("spec", "seed"), [(HOPPING, 1), (TUMBLING, 2), (SITE_ONLY, 3)], ids=["hop", "tumble", "site"]
)
def test_matches_reference(tmp_path: Path, spec: WindowSpec, seed: int) -> None:
    events, ref = _stream(seed), _reference(seed, spec)
    assert len(ref.late) > 50 and len(ref.summaries) > 80  # the stream exercises lateness
    with _open(tmp_path, spec) as engine:
        run = run_engine(engine, events)
        metrics = engine.metrics()
    assert_matches(run, ref)
    assert metrics["late"] == len(ref.late)
    assert metrics["processed"] == sum(len(e.batch) for e in events if e.batch is not None)
    assert metrics["emitted"] == len(ref.summaries) and metrics["windows_open"] == 0
    if spec is TUMBLING:  # every accepted reading is in exactly one device window
        device_counts = sum(s["count"] for s in run.summaries.values() if s["scope"] == "device")
        assert device_counts == metrics["processed"] - metrics["late"]
    assert [s for s in run.summaries.values() if s["model_version"] == "mixed"]
    assert [s for s in run.summaries.values() if s["max_score"] is None] or spec is not HOPPING


def test_idleness_changes_results() -> None:
    """The stream's stalled partition matters: without an idle timeout windows close later."""
    no_idle = WindowSpec(1000, 250, 300, 200, idle_timeout_ms=None)
    assert _reference(1, no_idle).late != _reference(1, HOPPING).late


def test_batching_does_not_change_results(tmp_path: Path) -> None:
    events = make_stream(4)
    with _open(tmp_path / "a") as a, _open(tmp_path / "b") as b:
        whole = run_engine(a, events).summaries
        split = run_engine(b, split_batches(events, seed=9)).summaries
    assert json.dumps(whole, sort_keys=True) == json.dumps(split, sort_keys=True)


@st.composite
def small_streams(draw: st.DrawFn) -> tuple[WindowSpec, list[Event]]:
    step = draw(st.sampled_from([100, 200, 250]))
    k = draw(st.integers(1, 4))
    spec = WindowSpec(
        size_ms=step * k,
        hop_ms=None if draw(st.booleans()) and k == 1 else step,
        allowed_lateness_ms=draw(st.integers(0, 400)),
        max_out_of_orderness_ms=draw(st.integers(0, 300)),
        scopes=draw(st.sampled_from([("device", "site"), ("device",), ("site",)])),
        idle_timeout_ms=draw(st.one_of(st.none(), st.integers(50, 1000))),
    )
    value = st.one_of(st.just(math.nan), st.integers(-4000, 4000).map(lambda x: x / 8))
    reading = st.tuples(st.integers(0, 3), st.integers(0, 3000), value, value, value, st.booleans())
    events, now, offsets, seq = [], 0, [0, 0, 0], [0, 0, 0, 0]
    for _ in range(draw(st.integers(1, 20))):
        now += draw(st.integers(0, 500))
        if draw(st.integers(0, 5)) == 0:
            events.append(Event("idle", now))
            continue
        p = draw(st.integers(0, 2))
        frames = draw(st.lists(st.lists(reading, min_size=1, max_size=3), min_size=1, max_size=4))
        rows, offs = [], []
        for frame in frames:
            offsets[p] += draw(st.integers(1, 2))
            for dev, ts, v1, v2, score, anomaly in frame:
                seq[dev] += 1
                offs.append(offsets[p])
                rows.append(
                    {
                        "device": f"d{dev}",
                        "site": f"s{dev % 2}",
                        "device_type": "pump" if dev % 3 else "fan",
                        "ts": 1_000_000 + ts,
                        "seq": seq[dev],
                        "values": [v1, v2],
                        "score": score,
                        "anomaly": anomaly,
                    }
                )
        mv = draw(st.one_of(st.none(), st.sampled_from(["a", "b"]), st.just("per-row")))
        if mv == "per-row":
            mv = [draw(st.sampled_from([None, "a", "b"])) for _ in rows]
        events.append(Event("batch", now, make_batch(p, offs, rows, ("x", "y"), mv)))
    events.append(Event("flush", now))
    return spec, events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_streams())
def test_property_matches_reference(case: tuple[WindowSpec, list[Event]]) -> None:
    spec, events = case
    with tempfile.TemporaryDirectory() as d, _open(d, spec) as engine:
        run = run_engine(engine, events)
    assert_matches(run, reference(events, spec))
    assert all(a <= b for a, b in zip(run.watermarks, run.watermarks[1:], strict=False))


def test_percentile_is_numpy_linear_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 40, 200)
    groups = [np.sort(rng.normal(0, 10, n)) for n in sizes]
    flat = np.concatenate(groups)
    offs = np.cumsum(sizes) - sizes
    for q in (50, 95):
        got = window_stats._lerp_percentile(flat, offs, sizes, q / 100)
        want = [np.percentile(g, q, method="linear") for g in groups]
        assert got.tolist() == [float(w) for w in want]


# -- exactly-once across crashes -----------------------------------------------------------


def _add(produced: dict, summaries: list[dict]) -> None:
    for s in summaries:
        if s["summary_id"] in produced:
            assert produced[s["summary_id"]] == s, "a re-delivered summary differs"
        produced[s["summary_id"]] = s


def test_crash_then_replay_from_earlier_offset(tmp_path: Path) -> None:
    events = make_stream(5)
    with _open(tmp_path / "baseline") as engine:
        baseline = run_engine(engine, events).summaries

    store = tmp_path / "crashy"
    engine = _open(store, sync=True)
    produced: dict[str, dict] = {}
    in_flight: list[str] = []
    crash_at = len(events) // 2
    for ev in events[:crash_at]:
        res = call(engine, ev)
        _add(produced, res.summaries)
        if res.summaries:  # the previous emission is confirmed by now, this one is in flight
            engine.ack(in_flight)
            in_flight = [s["summary_id"] for s in res.summaries]
    assert in_flight, "crash point should leave unacked summaries"
    del engine, res  # simulated kill: no close(), last summaries never acked
    gc.collect()

    engine = _open(store, sync=True)
    recovered = engine.unacked()
    assert [s["summary_id"] for s in recovered] == in_flight
    _add(produced, recovered)
    engine.ack(in_flight)
    before = set(produced)
    # Kafka replays from an older committed offset, with different batch boundaries
    replay = split_batches(events[crash_at - 40 :], seed=11)
    skipped = 0
    for ev in replay:
        res = call(engine, ev)
        assert not {s["summary_id"] for s in res.summaries} & before, "re-emitted after replay"
        _add(produced, res.summaries)
        skipped += res.skipped_replayed
    engine.close()
    assert skipped > 0
    assert produced == baseline


_CHILD = """
import json, pickle, sys
from edgestream.edge.windows import WindowEngine, WindowSpec
from tests.support.windows_ref import GATEWAY, call
events_path, store, out_path, spec = sys.argv[1:]
spec = WindowSpec(**json.loads(spec))
events = pickle.loads(open(events_path, "rb").read())
engine = WindowEngine.open(spec, GATEWAY, store)
with open(out_path, "a") as out:
    for i, ev in enumerate(events):
        res = call(engine, ev)
        for s in res.summaries:
            out.write(json.dumps(s) + "\\n")
        out.flush()
        engine.ack(s["summary_id"] for s in res.summaries)
        print(i, flush=True)
"""


def test_kill_9_mid_run_then_reopen(tmp_path: Path) -> None:
    events = make_stream(6)
    with _open(tmp_path / "baseline") as engine:
        baseline = run_engine(engine, events).summaries
    (tmp_path / "events.pkl").write_bytes(pickle.dumps(events[:-1]))  # no flush in the child
    store, out = tmp_path / "store", tmp_path / "produced.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "events.pkl"), str(store), str(out),
         json.dumps(asdict(HOPPING))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )  # fmt: skip
    last = -1
    try:
        for line in child.stdout:
            last = int(line)
            if last >= len(events) // 2:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and last < len(events) - 2

    produced: dict[str, dict] = {}
    for line in out.read_text().splitlines():
        try:
            s = json.loads(line)
        except json.JSONDecodeError:  # the kill cut the producer mid-write
            continue
        _add(produced, [s])
    with _open(store, sync=True) as engine:
        _add(produced, engine.unacked())
        replay_from = max(0, last - 25)
        for ev in split_batches(events[replay_from:], seed=3):
            _add(produced, call(engine, ev).summaries)
    assert produced == baseline


# -- watermarks, idleness, lateness ----------------------------------------------------------


def test_idle_partition_stops_holding_the_watermark(tmp_path: Path) -> None:
    spec = WindowSpec(1000, max_out_of_orderness_ms=0, idle_timeout_ms=5000)
    with _open(tmp_path, spec) as engine:
        engine.process(_batch(1, [0], [100], devices=["d2"]), now_ms=0)
        res = engine.process(_batch(0, [0, 1, 2], [0, 1500, 2500]), now_ms=0)
        assert res.watermark == 100 and res.summaries == []
        res = engine.process(_batch(0, [3], [3500]), now_ms=1000)
        assert res.watermark == 100 and res.summaries == []  # partition 1 holds it
        res = engine.advance_idle(now_ms=4999)
        assert res.summaries == [] and res.watermark == 100
        res = engine.advance_idle(now_ms=5000)  # partition 1 idle, partition 0 active
        assert res.watermark == 3500
        ids = [s["summary_id"] for s in res.summaries]
        assert ids[:2] == [f"{GATEWAY}|device|d1|0|1000", f"{GATEWAY}|device|d2|0|1000"]
        assert {s["window_end"] for s in res.summaries} == {1000, 2000, 3000}
        assert engine.advance_idle(now_ms=60_000).watermark == 3500  # all idle: unchanged
        # partition 1 comes back with old data: late, and the watermark does not go back
        res = engine.process(_batch(1, [1, 2], [200, 3400], devices=["d2", "d2"]), now_ms=61_000)
        assert res.watermark == 3500
        assert res.late.indices.tolist() == [0]
        assert (res.late.window_start[0], res.late.window_end[0]) == (0, 1000)
        assert res.late.watermark.tolist() == [3500] and res.late.reason == "window_closed"
        assert engine.late_counts() == {("device", "d2"): 1, ("site", "s1"): 1}


def test_assigned_partition_holds_watermark_until_idle(tmp_path: Path) -> None:
    spec = WindowSpec(1000, idle_timeout_ms=100)
    with _open(tmp_path, spec) as engine:
        engine.assign([0, 1], now_ms=0)
        res = engine.process(_batch(0, [0], [5000]), now_ms=50)
        assert res.watermark < 0 and res.summaries == []  # partition 1 has no data yet
        res = engine.advance_idle(now_ms=100)  # partition 1 idle now
        assert res.watermark == 5000 and res.summaries == []
        res = engine.process(_batch(0, [1], [6500]), now_ms=120)
        assert [s["window_end"] for s in res.summaries] == [6000, 6000]


def test_a_backlog_after_downtime_is_windowed_like_live_data(tmp_path: Path) -> None:
    """Both partitions got readings while the worker was down (75 s, idle timeout 100 ms):
    reopened and assigned, the engine gives the summaries of a run without the downtime and
    no late reading; a partition the consumer is behind on holds the watermark however long
    the other partition's backlog takes; a genuinely late reading is still late."""
    spec = WindowSpec(1000, idle_timeout_ms=100)
    live = [(0, [0], [500], 0), (1, [0], [600], 0)]
    backlog = [(0, [1, 2, 3], [1500, 2500, 3500], 0), (1, [1, 2, 3], [1600, 2600, 3600], 1)]

    def batch(partition: int, offsets: list[int], ts: list[int]) -> ReadingBatch:
        return _batch(partition, offsets, ts, devices=[f"d{partition}"] * len(ts))

    with _open(tmp_path / "reference", spec) as engine:
        engine.assign([0, 1], now_ms=0)
        want = [
            s for p, o, t, _ in live + backlog for s in engine.process(batch(p, o, t), 0).summaries
        ]
    assert len(want) == 9  # [0,1000) .. [2000,3000) for d0, d1 and the site

    with _open(tmp_path / "restarted", spec) as engine:
        engine.assign([0, 1], now_ms=0)
        got = [s for p, o, t, _ in live for s in engine.process(batch(p, o, t), 0).summaries]
    down = 75_000
    with _open(tmp_path / "restarted", spec) as engine:
        engine.assign([0, 1], now_ms=down)
        for p, o, t, slow in backlog:
            now = down + 1000 * slow  # the other partition's backlog took a second to read
            engine.assign([1], now_ms=now - 50)  # the consumer has records of partition 1 unread
            res = engine.process(batch(p, o, t), now_ms=now)
            assert len(res.late) == 0
            got += res.summaries
        assert got == want
        res = engine.process(batch(1, [4], [1700]), now_ms=down + 1010)
        assert res.late.indices.tolist() == [0], "a reading whose windows closed is late"


def test_reading_is_late_only_when_all_its_windows_are_closed(tmp_path: Path) -> None:
    spec = WindowSpec(1000, 500, max_out_of_orderness_ms=0)
    with _open(tmp_path, spec) as engine:
        first = engine.process(_batch(0, [0, 1], [100, 1200]), now_ms=0)  # closes [0,1000)
        res = engine.process(_batch(0, [2, 3], [700, 400]), now_ms=0)
        # 700 is in [0,1000) closed and [500,1500) open: kept there; 400 only in closed ones
        assert res.late.indices.tolist() == [1]
        assert (res.late.window_start[0], res.late.window_end[0]) == (0, 1000)
        out = {s["summary_id"]: s for s in first.summaries + engine.flush_all().summaries}
        assert out[f"{GATEWAY}|device|d1|0|1000"]["count"] == 1
        assert out[f"{GATEWAY}|device|d1|500|1500"]["count"] == 2
        assert out[f"{GATEWAY}|device|d1|500|1500"]["first_ts"] == 700
        assert engine.metrics()["late"] == 1


def test_replayed_offsets_are_skipped_and_late_indices_refer_to_the_batch(tmp_path: Path) -> None:
    spec = WindowSpec(1000)
    with _open(tmp_path, spec) as engine:
        engine.process(_batch(0, [0, 0, 1, 2, 2, 3], [10, 20, 30, 2500, 2600, 2700]), now_ms=0)
        res = engine.process(_batch(0, [2, 2, 3, 4, 4], [2500, 2600, 2700, 50, 3100]), now_ms=0)
        assert res.skipped_replayed == 3
        assert res.late.indices.tolist() == [3]
        m = engine.metrics()
        assert (m["processed"], m["replay_skipped"], m["late"]) == (8, 3, 1)
        assert engine.positions() == {0: 5}
        assert engine.process(_batch(0, [4], [3100]), now_ms=0).skipped_replayed == 1


def test_summary_fields(tmp_path: Path) -> None:
    spec = WindowSpec(1000, scopes=("device", "site"))
    b = make_batch(
        0,
        [0, 1, 2, 3],
        [
            {"device": d, "site": "s", "device_type": t, "ts": ts, "seq": q, "values": v,
             "score": sc, "anomaly": a}
            for d, t, ts, q, v, sc, a in [
                ("a", "pump", 10, 1, [1.0, math.nan], math.nan, False),
                ("a", "pump", 30, 3, [3.0, 7.0], 0.25, True),
                ("b", "fan", 30, 3, [5.0, math.nan], math.nan, False),
                ("a", "pump", 30, 2, [9.0, math.nan], math.nan, False),
            ]
        ],
        ("x", "y"),
        ["m1", "m2", None, "m1"],
    )  # fmt: skip
    with _open(tmp_path, spec) as engine:
        engine.process(b, now_ms=0)
        out = {s["scope_key"]: s for s in engine.flush_all().summaries}
    a, b_, site = out["a"], out["b"], out["s"]
    assert (a["count"], a["anomaly_count"], a["max_score"], a["first_ts"], a["last_ts"]) == (
        3, 1, 0.25, 10, 30,
    )  # fmt: skip
    assert a["model_version"] == "mixed" and b_["model_version"] is None
    assert a["channels"]["x"] == {
        "count": 3, "sum": 13.0, "min": 1.0, "max": 9.0, "mean": 13 / 3,
        "m2": pytest.approx((1 - 13 / 3) ** 2 + (3 - 13 / 3) ** 2 + (9 - 13 / 3) ** 2),
        "std": pytest.approx(math.sqrt(((1 - 13 / 3) ** 2 + (3 - 13 / 3) ** 2
                                        + (9 - 13 / 3) ** 2) / 3)),
        "last": 3.0,  # ts 30 ties: seq 3 beats seq 2
        "p50": 3.0, "p95": float(np.percentile([1, 3, 9], 95)),
    }  # fmt: skip
    assert list(a["channels"]) == ["x", "y"] and list(b_["channels"]) == ["x"]
    assert b_["max_score"] is None and b_["device_type"] == "fan"
    assert site["device_type"] == "mixed" and site["site"] == "s" and site["count"] == 4
    assert site["channels"]["x"]["last"] == 5.0  # ts/seq tie between a and b: later offset
    assert (site["late_count"], site["rollup_level"], site["gateway_seq"]) == (0, 0, None)
    schema = json.loads((REPO / "schemas" / "window_summary.avsc").read_text())
    assert list(a) == [f["name"] for f in schema["fields"]]


# -- state --------------------------------------------------------------------------------


def test_state_stays_bounded(tmp_path: Path) -> None:
    events = [e for e in make_stream(8, n_readings=12_000, pause=None) if e.kind == "batch"]
    sizes, opened = [], []
    with _open(tmp_path) as engine:
        for i, ev in enumerate(events):
            res = engine.process(ev.batch, ev.now_ms)
            engine.ack(s["summary_id"] for s in res.summaries)
            if i % 200 == 199:
                sizes.append(engine.store.count_keys())
                opened.append(engine.metrics()["windows_open"])
        segments = engine.store.count_keys(b"r")
        fixed = engine.store.count_keys() - segments
        engine.flush_all()
        engine.ack(s["summary_id"] for s in engine.unacked())
        after = engine.store.count_keys()
        strings, late = engine.store.count_keys(b"s"), engine.store.count_keys(b"l")
    # keys do not grow with the length of the run...
    assert max(sizes[len(sizes) // 2 :]) <= 1.5 * max(sizes[: len(sizes) // 2])
    # ...they are the open windows' readings (segments) plus one per string and late counter
    assert segments <= 2 * max(opened)
    assert after == fixed == 1 + strings + late and strings == 9 + 3 + 2 + 2


def test_reopen_with_another_spec_or_gateway_is_refused(tmp_path: Path) -> None:
    _open(tmp_path).close()
    with pytest.raises(WindowStateError, match="window spec"):
        _open(tmp_path, TUMBLING)
    with pytest.raises(WindowStateError, match="gateway"):
        WindowEngine.open(HOPPING, "other", tmp_path)
    _open(tmp_path).close()  # the refused opens released the directory


def test_metrics_and_state_survive_reopen(tmp_path: Path) -> None:
    events = make_stream(2, n_readings=600)
    half = len(events) // 2
    with _open(tmp_path) as engine:
        first = run_engine(engine, events[:half])
        m1 = engine.metrics()
    with _open(tmp_path) as engine:
        assert engine.metrics() == m1 and engine.watermark == first.watermarks[-1]
        assert len(engine.unacked()) == m1["emitted"] == m1["outbox_pending"]


def test_failed_call_leaves_disk_state_intact_and_engine_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _batch(0, [0, 1], [100, 1500]), _batch(0, [2], [2600])
    with _open(tmp_path / "clean") as engine:
        engine.process(first, now_ms=0)
        want = engine.process(second, now_ms=0).summaries
    engine = _open(tmp_path / "failing")
    engine.process(first, now_ms=0)
    monkeypatch.setattr(engine.store, "commit", lambda changes: (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        engine.process(second, now_ms=0)
    with pytest.raises(WindowStateError, match="reopen"):
        engine.process(second, now_ms=0)
    engine.close()
    with _open(tmp_path / "failing") as engine:
        assert engine.process(second, now_ms=0).summaries == want


def test_empty_batch_of_a_new_partition_does_not_hold_the_watermark(tmp_path: Path) -> None:
    with _open(tmp_path, WindowSpec(1000, idle_timeout_ms=10)) as engine:
        engine.process(_batch(1, [], []), now_ms=0)
        assert engine.process(_batch(0, [0], [2500]), now_ms=0).watermark == 2500


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple"):
        WindowSpec(1000, 300)
    with pytest.raises(ValueError, match="scopes"):
        WindowSpec(1000, scopes=("fleet",))
    with pytest.raises(ValueError, match="must not decrease"):
        _batch(0, [1, 0], [0, 0])
    with pytest.raises(ValueError, match="device_id must not contain None"):
        _batch(0, [0], [0], devices=[None])
    with pytest.raises(ValueError, match="readings x channels"):
        ReadingBatch(0, [0], ["d"], ["s"], ["t"], [0], [0], [[1.0, 2.0]], ("v",))
