"""Micro-benchmark of WindowEngine.process (run by hand, not a test).

    .venv/bin/python -m tests.support.windows_bench [--readings N] [--batch B] [--no-sync]

100 devices (10 sites, 4 partitions), 4 channels (5% NaN), 10 Hz each, timestamps jittered
by up to 500 ms, 10 s windows hopping by 5 s, both scopes, fsync on every commit. Batches are
built before the clock starts; the time covers process() + flush_all().
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

from edgestream.edge.windows import ReadingBatch, WindowEngine, WindowSpec


def batches(n_readings: int, batch: int, n_devices: int = 100, n_partitions: int = 4):
    rng = np.random.default_rng(7)
    t0 = 1_700_000_000_000
    k = np.arange(n_readings)
    dev = k % n_devices
    ts = t0 + (k // n_devices) * 100 + rng.integers(0, 500, n_readings)
    values = rng.normal(20, 3, (n_readings, 4))
    values[rng.random(values.shape) < 0.05] = np.nan
    names = np.array([f"dev-{d}" for d in range(n_devices)], dtype=object)
    sites = np.array([f"site-{d % 10}" for d in range(n_devices)], dtype=object)
    types = np.array(["pump" if d % 2 else "fan" for d in range(n_devices)], dtype=object)
    part = dev % n_partitions
    out = []
    for p in range(n_partitions):  # one call = `batch` consecutive readings of one partition
        idx = np.flatnonzero(part == p)
        for i in range(0, idx.size, batch):
            sel = idx[i : i + batch]
            out.append(
                (
                    int(ts[sel].max()),
                    ReadingBatch(
                        partition=p,
                        offsets=np.arange(i, i + sel.size),
                        device_id=names[dev[sel]],
                        site=sites[dev[sel]],
                        device_type=types[dev[sel]],
                        ts=ts[sel],
                        seq=k[sel],
                        values=values[sel],
                        channels=("temp", "vib", "hum", "rpm"),
                        scores=rng.random(sel.size),
                        anomaly=rng.random(sel.size) < 0.01,
                        model_version="m1",
                    ),
                )
            )
    out.sort(key=lambda x: x[0])  # partitions interleaved in event-time order
    return [b for _, b in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=400_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--no-sync", action="store_true")
    args = ap.parse_args()
    bs = batches(args.readings, args.batch)
    spec = WindowSpec(
        size_ms=10_000, hop_ms=5_000, allowed_lateness_ms=2_000, max_out_of_orderness_ms=1_000
    )
    with tempfile.TemporaryDirectory() as d:
        engine = WindowEngine.open(spec, "gw-bench", d, sync=not args.no_sync)
        emitted = 0
        t = time.perf_counter()
        for b in bs:
            res = engine.process(b, now_ms=int(b.ts.max()))
            emitted += len(res.summaries)
            engine.ack(s["summary_id"] for s in res.summaries)
        emitted += len(engine.flush_all().summaries)
        dt = time.perf_counter() - t
        m = engine.metrics()
        engine.close()
    print(
        json.dumps(
            {
                "readings": args.readings,
                "batch": args.batch,
                "calls": len(bs),
                "seconds": round(dt, 3),
                "readings_per_s": round(args.readings / dt),
                "summaries": emitted,
                "late": m["late"],
                "sync": not args.no_sync,
            }
        )
    )


if __name__ == "__main__":
    main()
