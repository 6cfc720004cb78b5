"""Independent reference for the window engine, and generators of out-of-order streams.

The reference follows the semantics stated in ``edgestream.edge.windows`` literally, one
reading at a time with plain Python, and computes every statistic with numpy per window. It
shares no code with the engine.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgestream.edge.windows import ReadingBatch, WindowEngine, WindowSpec

GATEWAY = "gw-test"


@dataclass
class Event:
    """One call on the engine: ``batch`` (process), ``idle`` (advance_idle), ``flush``."""

    kind: str
    now_ms: int = 0
    batch: ReadingBatch | None = None


@dataclass
class Reference:
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    emitted_at: dict[str, int] = field(default_factory=dict)
    # (event index, index in batch) -> (last window start, watermark)
    late: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    watermarks: list[float] = field(default_factory=list)


def _windows_of(ts: int, spec: WindowSpec) -> list[int]:
    step = spec.hop_ms or spec.size_ms
    first = -((-(ts - spec.size_ms + 1)) // step) * step  # ceil to a multiple of step
    return list(range(first, ts + 1, step))


def _single(values: set) -> Any:
    values = {v for v in values if v is not None}
    if not values:
        return None
    return next(iter(values)) if len(values) == 1 else "mixed"


def _stats(rows: list[dict], scope: str, key: str, start: int, spec: WindowSpec) -> dict:
    scores = [r["score"] for r in rows if not math.isnan(r["score"])]
    channels: dict[str, dict] = {}
    names = sorted({c for r in rows for c in r["values"]})
    for name in names:
        pts = [r for r in rows if not math.isnan(r["values"].get(name, math.nan))]
        if not pts:
            continue
        x = np.array([r["values"][name] for r in pts])
        mean = math.fsum(x) / len(x)
        m2 = float(np.sum((x - mean) ** 2))
        latest = max(pts, key=lambda r: (r["ts"], r["seq"], r["partition"], r["offset"], r["rank"]))
        channels[name] = {
            "count": len(x),
            "sum": math.fsum(x),
            "min": float(x.min()),
            "max": float(x.max()),
            "mean": mean,
            "m2": m2,
            "std": math.sqrt(m2 / len(x)),
            "last": latest["values"][name],
            "p50": float(np.percentile(x, 50, method="linear")),
            "p95": float(np.percentile(x, 95, method="linear")),
        }
    end = start + spec.size_ms
    return {
        "summary_id": f"{GATEWAY}|{scope}|{key}|{start}|{end}",
        "gateway_id": GATEWAY,
        "scope": scope,
        "scope_key": key,
        "site": _single({r["site"] for r in rows}),
        "device_type": _single({r["device_type"] for r in rows}),
        "window_start": start,
        "window_end": end,
        "count": len(rows),
        "anomaly_count": sum(bool(r["anomaly"]) for r in rows),
        "max_score": max(scores) if scores else None,
        "first_ts": min(r["ts"] for r in rows),
        "last_ts": max(r["ts"] for r in rows),
        "channels": channels,
        "model_version": _single({r["model_version"] for r in rows}),
        "late_count": 0,
        "rollup_level": 0,
        "gateway_seq": None,
    }


def reference(events: list[Event], spec: WindowSpec, source: str | None = None) -> Reference:
    """Replay ``events`` one reading at a time and compute every window from scratch.

    ``source``: the sensor topic of the readings; a site summary's key is then
    ``<site>/<source>`` (one site summary per topic, as a gateway's engines compute them)."""
    ref = Reference()
    max_ts: dict[int, int | None] = {}
    active_at: dict[int, int] = {}
    last_offset: dict[int, int] = {}
    wm = -math.inf
    open_windows: dict[tuple[str, str, int], list[dict]] = defaultdict(list)

    def partition_wm(p: int) -> float:
        return -math.inf if max_ts[p] is None else max_ts[p] - spec.max_out_of_orderness_ms

    def candidate(now: int) -> float:
        timeout = spec.idle_timeout_ms
        wms = [partition_wm(p) for p in max_ts if timeout is None or now - active_at[p] < timeout]
        return max(wm, min(wms)) if wms else wm

    def is_closed(start: int, watermark: float) -> bool:
        return start + spec.size_ms - 1 + spec.allowed_lateness_ms <= watermark

    for ei, ev in enumerate(events):
        if ev.kind == "flush":
            wm = math.inf
        elif ev.kind == "idle":
            wm = candidate(ev.now_ms)
        else:
            b = ev.batch
            p = b.partition
            new = [
                i for i in range(len(b)) if p not in last_offset or b.offsets[i] > last_offset[p]
            ]
            if new:
                max_ts.setdefault(p, None)
                active_at[p] = max(active_at.get(p, ev.now_ms), ev.now_ms)
            for i in new:
                wm = candidate(ev.now_ms)
                ts = int(b.ts[i])
                starts = _windows_of(ts, spec)
                open_starts = [s for s in starts if not is_closed(s, wm)]
                mv = b.model_version
                row = {
                    "ts": ts,
                    "seq": int(b.seq[i]),
                    "partition": p,
                    "offset": int(b.offsets[i]),
                    "rank": sum(1 for j in range(i) if b.offsets[j] == b.offsets[i]),
                    "site": b.site[i],
                    "device_type": b.device_type[i],
                    "score": float(b.scores[i]),
                    "anomaly": bool(b.anomaly[i]),
                    "model_version": mv if mv is None or isinstance(mv, str) else mv[i],
                    "values": {c: float(b.values[i, k]) for k, c in enumerate(b.channels)},
                }
                if not open_starts:
                    ref.late[(ei, i)] = (starts[-1], wm)
                for s in open_starts:
                    if "device" in spec.scopes:
                        open_windows[("device", b.device_id[i], s)].append(row)
                    if "site" in spec.scopes:
                        key = b.site[i] if source is None else f"{b.site[i]}/{source}"
                        open_windows[("site", key, s)].append(row)
                max_ts[p] = ts if max_ts[p] is None else max(max_ts[p], ts)
                last_offset[p] = int(b.offsets[i])
            if new:
                wm = candidate(ev.now_ms)
        ref.watermarks.append(wm)
        for w in [w for w in open_windows if is_closed(w[2], wm)]:
            rows = open_windows.pop(w)
            summary = _stats(rows, w[0], w[1], w[2], spec)
            ref.summaries[summary["summary_id"]] = summary
            ref.emitted_at[summary["summary_id"]] = ei
    return ref


@dataclass
class Run:
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    emitted_at: dict[str, int] = field(default_factory=dict)
    late: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    watermarks: list[int] = field(default_factory=list)


def call(engine: WindowEngine, ev: Event):
    if ev.kind == "flush":
        return engine.flush_all()
    if ev.kind == "idle":
        return engine.advance_idle(ev.now_ms)
    return engine.process(ev.batch, ev.now_ms)


def run_engine(engine: WindowEngine, events: list[Event], start: int = 0) -> Run:
    """Feed ``events[start:]``; every summary id must be returned once only."""
    run = Run()
    for ei in range(start, len(events)):
        res = call(engine, events[ei])
        for s in res.summaries:
            assert s["summary_id"] not in run.summaries, f"emitted twice: {s['summary_id']}"
            run.summaries[s["summary_id"]] = s
            run.emitted_at[s["summary_id"]] = ei
        for i, ws, we, w in zip(
            res.late.indices.tolist(),
            res.late.window_start.tolist(),
            res.late.window_end.tolist(),
            res.late.watermark.tolist(),
            strict=True,
        ):
            assert we - ws == engine.spec.size_ms
            run.late[(ei, i)] = (ws, w)
        run.watermarks.append(res.watermark)
    return run


def assert_close(a: Any, b: Any, path: str) -> None:
    """``a == b`` and of the same type, floats within 1e-9, dicts key by key (``path`` names
    the first difference)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, float | int) and isinstance(b, float | int), path
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {a.keys()} != {b.keys()}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"


def assert_matches(run: Run, ref: Reference, *, check_timing: bool = True) -> None:
    """Every reference window emitted once with equal stats; late sets equal."""
    assert run.summaries.keys() == ref.summaries.keys(), (
        f"missing {sorted(ref.summaries.keys() - run.summaries.keys())[:5]}, "
        f"extra {sorted(run.summaries.keys() - ref.summaries.keys())[:5]}"
    )
    for sid, expected in ref.summaries.items():
        assert_close(run.summaries[sid], expected, sid)
    if check_timing:
        assert run.emitted_at == ref.emitted_at
        assert run.late == {k: (s, w) for k, (s, w) in ref.late.items()}
        finite = [w for w in ref.watermarks if math.isfinite(w)]
        assert [w for w in run.watermarks if -(2**61) < w < 2**61] == finite


# -- stream generators --------------------------------------------------------------------


def make_batch(
    partition: int,
    offsets: list[int],
    rows: list[dict],
    channels: tuple[str, ...],
    model_version: Any,
) -> ReadingBatch:
    return ReadingBatch(
        partition=partition,
        offsets=offsets,
        device_id=[r["device"] for r in rows],
        site=[r["site"] for r in rows],
        device_type=[r["device_type"] for r in rows],
        ts=[r["ts"] for r in rows],
        seq=[r["seq"] for r in rows],
        values=np.array([r["values"] for r in rows], dtype=float).reshape(len(rows), len(channels)),
        channels=channels,
        scores=[r["score"] for r in rows],
        anomaly=[r["anomaly"] for r in rows],
        model_version=model_version,
    )


def make_stream(
    seed: int,
    *,
    n_readings: int = 3000,
    n_partitions: int = 3,
    n_devices: int = 9,
    ooo_ms: int = 200,
    period_ms: int = 50,
    pause: tuple[int, int] | None = (6000, 9000),
    max_frames: int = 8,
) -> list[Event]:
    """Out-of-order readings of several devices/partitions/sites, ending with a flush.

    Arrival = event time + a delay (mostly < ``ooo_ms``, some beyond, a few far beyond: late).
    Partition 1 stalls during ``pause`` (arrival time) and then delivers its backlog at once.
    Frames of 1-3 readings share an offset; batches take 1..``max_frames`` frames.
    """
    rnd = random.Random(seed)
    t0 = 1_700_000_000_000 + rnd.randrange(1000)
    per_partition: dict[int, list[dict]] = defaultdict(list)
    channel_sets = [("temp", "vib", "hum"), ("vib", "temp", "hum", "rpm")]
    seq = defaultdict(int)
    for k in range(n_readings):
        dev = k % n_devices
        ts = t0 + (k // n_devices) * period_ms + rnd.randrange(period_ms)
        u = rnd.random()
        delay = (
            rnd.randrange(int(ooo_ms * 0.8) + 1)
            if u < 0.9
            else rnd.randrange(ooo_ms, ooo_ms + 800)
            if u < 0.98
            else rnd.randrange(1500, 4000)
        )
        arrival = ts + delay
        if pause and dev % n_partitions == 1 and pause[0] <= arrival - t0 < pause[1]:
            arrival = t0 + pause[1] + rnd.randrange(50)
        seq[dev] += 1
        values = [
            round(rnd.gauss(20 + dev, 3), 3) if rnd.random() > 0.1 else math.nan for _ in range(4)
        ]
        per_partition[dev % n_partitions].append(
            {
                "device": f"dev-{dev}",
                "site": f"site-{dev % 3}",
                "device_type": "pump" if dev % 2 else "fan",
                "ts": ts,
                "seq": seq[dev],
                "arrival": arrival,
                "values": values,
                "score": rnd.random() if rnd.random() > 0.05 else math.nan,
                "anomaly": rnd.random() < 0.05,
            }
        )
    # frames: consecutive readings (arrival order) sharing an offset
    queues: dict[int, list[tuple[int, list[dict]]]] = {}
    for p, rows in per_partition.items():
        rows.sort(key=lambda r: (r["arrival"], r["seq"]))
        frames, i, off = [], 0, 0
        while i < len(rows):
            size = rnd.choice((1, 1, 2, 3))
            frames.append((off, rows[i : i + size]))
            i += size
            off += rnd.choice((1, 1, 2))  # gaps happen (compaction, other keys)
        queues[p] = frames
    events: list[Event] = []
    heads = dict.fromkeys(queues, 0)
    while any(heads[p] < len(queues[p]) for p in queues):
        p = min(
            (p for p in queues if heads[p] < len(queues[p])),
            key=lambda q: queues[q][heads[q]][1][0]["arrival"],
        )
        take = rnd.randint(1, max_frames)
        frames = queues[p][heads[p] : heads[p] + take]
        heads[p] += len(frames)
        offsets, rows = [], []
        for off, fr in frames:
            offsets += [off] * len(fr)
            rows += fr
        now = max(r["arrival"] for r in rows)
        chans = channel_sets[rnd.randrange(2)]
        order = [("temp", "vib", "hum", "rpm").index(c) for c in chans]
        mv_kind = rnd.random()
        mv: Any = "m1" if now - t0 < 8000 else "m2"
        if mv_kind < 0.1:
            mv = None
        elif mv_kind < 0.2:
            mv = [rnd.choice(("m1", "m2", None)) for _ in rows]
        if 11_000 <= now - t0 < 13_000:  # the model is down: no scores, no version
            mv = None
        unscored = mv is None
        batch_rows = [
            {**r, "values": [r["values"][j] for j in order]}
            | ({"score": math.nan, "anomaly": False} if unscored else {})
            for r in rows
        ]
        events.append(Event("batch", now, make_batch(p, offsets, batch_rows, chans, mv)))
        if rnd.random() < 0.1:
            events.append(Event("idle", now + rnd.randrange(3000)))
    events.sort(key=lambda e: e.now_ms)  # processing time never goes backwards
    events.append(Event("flush", events[-1].now_ms))
    return events


def split_batches(events: list[Event], seed: int) -> list[Event]:
    """Cut every batch in two at a random frame boundary (same now_ms): must change nothing."""
    rnd = random.Random(seed)
    out: list[Event] = []
    for ev in events:
        b = ev.batch
        if ev.kind != "batch" or len(b) < 2:
            out.append(ev)
            continue
        cuts = [i for i in range(1, len(b)) if b.offsets[i] != b.offsets[i - 1]]
        if not cuts:
            out.append(ev)
            continue
        c = rnd.choice(cuts)
        for sl in (slice(0, c), slice(c, None)):
            out.append(Event("batch", ev.now_ms, slice_batch(b, sl)))
    return out


def slice_batch(b: ReadingBatch, sl: slice) -> ReadingBatch:
    """The readings ``sl`` of a batch (cut at a frame boundary: a frame stays in one batch)."""
    mv = b.model_version
    return ReadingBatch(
        partition=b.partition,
        offsets=b.offsets[sl],
        device_id=b.device_id[sl],
        site=b.site[sl],
        device_type=b.device_type[sl],
        ts=b.ts[sl],
        seq=b.seq[sl],
        values=b.values[sl],
        channels=b.channels,
        scores=b.scores[sl],
        anomaly=b.anomaly[sl],
        model_version=mv if mv is None or isinstance(mv, str) else mv[sl],
    )
