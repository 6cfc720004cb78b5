"""Inputs of the cloud job for benchmarks and tests: forwarded summaries, alerts, samples.

:func:`fleet_summaries` builds what the forwarders of a fleet would deliver to
``fleet.summaries``: per gateway, device and 10 s window a device summary (count, anomaly
count, max score, per-channel count/sum/m2/min/max), a site summary per site and window
(the fleet job must skip it), replays of some records (same ``gateway_seq``: the job must drop
them) and ``gateway_seq`` numbering per gateway; ``outage`` holds back one gateway's records
and delivers them after the others (a gateway back from an outage). :func:`sampled_readings`
turns a simulator run into ``fleet.samples`` records (1 in ``every`` readings per device).

>>> recs = fleet_summaries(devices=4, windows=3, seed=1, start_ms=0, replay_every=5)
>>> device = [r for r in recs if r["scope"] == "device"]
>>> len(device), len({r["gateway_seq"] for r in recs}) < len(recs)
(14, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["fleet_alerts", "fleet_summaries", "produce_records", "sampled_readings"]

CHANNELS = {
    "pump": ("vibration_rms", "bearing_temp", "pressure", "motor_current"),
    "reefer": ("supply_air_temp", "return_air_temp", "humidity", "compressor_current"),
}


def fleet_summaries(
    devices: int = 12,
    windows: int = 60,
    seed: int = 0,
    start_ms: int = 1_700_000_000_000,
    window_ms: int = 10_000,
    gateways: int = 2,
    replay_every: int = 0,
    outage: tuple[str, int, int] | None = None,
    seq_base: int = 0,
) -> list[dict[str, Any]]:
    """Forwarded WindowSummary records in delivery order (see the module doc).

    ``outage = (gateway, first_window, last_window)``: that gateway's records of those
    windows arrive after every other record (its forwarder drained them after the outage).
    ``gateway_seq`` numbering starts after ``seq_base`` (successive calls of one fleet).
    """
    rng = np.random.default_rng(seed)
    fleet = []
    for i in range(devices):
        dtype = ("pump", "reefer")[i % 2]
        gw = f"gw-{i % gateways + 1}"
        fleet.append((f"{gw}-{dtype}-{i:03d}", dtype, f"site-{i % 3 + 1}", gw))
    seqs = {f"gw-{g + 1}": seq_base for g in range(gateways)}
    live: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    count = 0
    for w in range(windows):
        ws = start_ms + w * window_ms
        for device, dtype, site, gw in fleet:
            n = int(rng.integers(80, 101))
            channels = _channel_stats(rng, dtype, n)
            anomalies = int(rng.poisson(1.0))
            seqs[gw] += 1
            record = {
                "summary_id": None, "gateway_id": gw, "scope": "device", "scope_key": device,
                "site": site, "device_type": dtype, "window_start": ws,
                "window_end": ws + window_ms, "count": n, "anomaly_count": min(anomalies, n),
                "max_score": float(rng.uniform(0, 1)), "first_ts": ws,
                "last_ts": ws + window_ms - 1,
                "channels": channels, "model_version": "v1" if rng.random() < 0.9 else "v2",
                "late_count": 0, "rollup_level": 0, "gateway_seq": seqs[gw],
            }  # fmt: skip
            delayed = outage is not None and gw == outage[0] and outage[1] <= w <= outage[2]
            (held if delayed else live).append(record)
            count += 1
            if replay_every and count % replay_every == 0:
                (held if delayed else live).append(dict(record))
        for site in sorted({f[2] for f in fleet}):  # site summaries: skipped by the job
            gw = "gw-1"
            seqs[gw] += 1
            live.append(_site_summary(gw, site, ws, window_ms, seqs[gw]))
    return live + held


def _channel_stats(rng: np.random.Generator, dtype: str, n: int) -> dict[str, Any]:
    """Per channel of ``dtype``: the stats of ``n`` random readings."""
    channels = {}
    for c in CHANNELS[dtype]:
        values = rng.normal(rng.uniform(-5, 50), rng.uniform(0.1, 5), n)
        mean = float(values.mean())
        channels[c] = {
            "count": n, "sum": float(values.sum()), "min": float(values.min()),
            "max": float(values.max()), "mean": None,
            "m2": float(((values - mean) ** 2).sum()),
            "std": None, "last": None, "p50": None, "p95": None,
        }  # fmt: skip
    return channels


def _site_summary(gw: str, site: str, ws: int, window_ms: int, seq: int) -> dict[str, Any]:
    """A site summary of one window (the fleet job skips them)."""
    return {
        "summary_id": None, "gateway_id": gw, "scope": "site", "scope_key": site,
        "site": site, "device_type": "pump", "window_start": ws,
        "window_end": ws + window_ms, "count": 1, "anomaly_count": 0, "max_score": None,
        "first_ts": ws, "last_ts": ws, "channels": {}, "model_version": "v1",
        "late_count": 0, "rollup_level": 0, "gateway_seq": seq,
    }  # fmt: skip


def fleet_alerts(summaries: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """One ``open`` alert (and an ``update``) per device summary with anomalies."""
    rng = np.random.default_rng(seed)
    out = []
    seq = 10**9
    for s in summaries:
        if s["scope"] != "device" or not s["anomaly_count"] or rng.random() < 0.5:
            continue
        ts = s["window_start"] + int(rng.integers(0, s["window_end"] - s["window_start"]))
        for status in ("open", "update"):
            seq += 1
            out.append({
                "alert_id": f"{s['gateway_id']}|{s['scope_key']}|{ts}|{status}",
                "incident_id": f"{s['gateway_id']}|{s['scope_key']}|{ts}", "status": status,
                "gateway_id": s["gateway_id"], "site": s["site"], "device_id": s["scope_key"],
                "device_type": s["device_type"], "severity": "warning", "ts": ts,
                "first_ts": ts, "last_ts": ts, "score": 0.5, "threshold": 0.1,
                "rule": "threshold", "model_version": "v1", "channels": {}, "readings": [],
                "reading_count": 1, "gateway_seq": seq, "emitted_at": ts,
            })  # fmt: skip
    return out


def sampled_readings(config: Any, every: int, gateway_id: str = "gw-1") -> Iterator[dict]:
    """SensorReading records of a simulator run, 1 in ``every`` per device (``seq % every``),
    tagged like the gateways tag them (``gateway_id``, ``model_version``)."""
    from edgestream.sim.simulator import Simulator

    for message in Simulator(config).messages():
        reading = message.value
        if message.frame or reading["seq"] % every:
            continue
        yield {**reading, "tags": {**reading.get("tags", {}), "gateway_id": gateway_id,
                                   "model_version": "v1"}}  # fmt: skip


def produce_records(
    bootstrap: str,
    registry: str,
    topic: str,
    schema: str,
    records: list[dict[str, Any]],
    key_field: str,
    partitions: int = 2,
) -> dict[int, int]:
    """Produce Confluent-framed Avro ``records`` (key = ``record[key_field]``); returns the end
    offset of every partition (from the delivery reports: exact on any broker)."""
    from confluent_kafka import Producer

    from edgestream.core.broker import ensure_topics, producer_config
    from edgestream.core.serde import AvroSerializer, subject_for

    ensure_topics(bootstrap, {topic: partitions})
    ser = AvroSerializer(registry, schema, subject_for(topic))
    producer = Producer(producer_config(bootstrap))
    ends: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i, record in enumerate(records):
        producer.produce(topic, ser(record), str(record[key_field]).encode(), on_delivery=delivered)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(60)
    if errors:
        raise RuntimeError(f"{len(errors)} records not delivered to {topic}: {errors[0]}")
    return ends
