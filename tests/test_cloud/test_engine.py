"""The fleet job's logic without Flink: the statistics (Java, ``FleetAnalytics`` in one JVM,
records Avro-encoded with a real registry) equal the offline reference and count late data;
drift (Python) gives one request per episode, stationary data none."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from edgestream.cloud.engine import FleetEngine
from edgestream.core.registry import RegistryServer
from edgestream.sim.config import SimConfig
from edgestream.testing.fleet_records import fleet_alerts, fleet_summaries, sampled_readings
from tests.support.cloud import cloud_topology
from tests.support.fleet_reference import assert_rows_match, reference_stats
from tests.support.java_stats import run_stats

START = 1_700_000_100_000  # a multiple of 5 minutes


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with RegistryServer(tmp_path_factory.mktemp("registry") / "r.db") as server:
        yield server.url


def run_engine(engine, records, now_step=0):
    """Feed (topic, partition, record) in order; the last row per key and all requests."""
    rows, requests = {}, []
    offsets = {}
    now = 0
    for topic, partition, record in records:
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        now += now_step
        outs = engine.process(topic, partition, offset, record, now)
        outs += engine.tick(now)
        collect(outs, rows, requests)
    collect(engine.flush(now), rows, requests)
    return rows, requests


def collect(outs, rows, requests):
    for kind, _key, value in outs:
        if kind == "stats":
            rows[(value["window_start"], value["scope"], value["scope_key"])] = value
        else:
            requests.append(value)


def test_stats_equal_reference_with_replays_site_summaries_and_alerts(registry):
    topo = cloud_topology(fleet_stats={"window": "1m", "allowed_lateness": "15m", "worst_n": 3})
    summaries = fleet_summaries(devices=10, windows=30, seed=3, start_ms=START, replay_every=7)
    alerts = fleet_alerts(summaries, seed=3)
    records = [("fleet.summaries", i % 2, s) for i, s in enumerate(summaries)]
    records += [("fleet.alerts", 0, a) for a in alerts]
    rows, counts, _ = run_stats(topo, registry, records)
    ref = reference_stats(summaries, alerts, 60_000, 3)
    assert_rows_match(rows, ref)
    assert counts["duplicates"] == len(summaries) - len(
        {(s["gateway_id"], s["gateway_seq"]) for s in summaries}
    )
    assert counts["summaries_skipped"] > 0  # site summaries
    assert counts["alerts_counted"] > 0


def _summary(i: int, values, **fields):
    return {
        "summary_id": None, "gateway_id": "gw", "gateway_seq": i, "scope": "device",
        "scope_key": f"d{i % 7}", "site": "s", "device_type": "pump",
        "window_start": START + (i % 6) * 10_000, "window_end": START + (i % 6 + 1) * 10_000,
        "count": len(values), "anomaly_count": 0, "max_score": None, "model_version": "v1",
        "first_ts": START, "last_ts": START, "late_count": 0, "rollup_level": 0,
        "channels": {"x": {"count": len(values), "sum": float(values.sum()),
                           "mean": float(values.mean()), "std": float(values.std()),
                           "min": float(values.min()), "max": float(values.max()),
                           "m2": float(((values - values.mean()) ** 2).sum())}},
        **fields,
    }  # fmt: skip


def test_pooled_moments_equal_numpy_over_the_raw_values(registry):
    import numpy as np

    rng = np.random.default_rng(3)
    topo = cloud_topology(fleet_stats={"window": "1m", "allowed_lateness": "0s"})
    values, records = [], []
    for i in range(40):
        v = rng.normal(rng.uniform(-100, 100), rng.uniform(0.01, 30), int(rng.integers(1, 50)))
        values.append(v)
        records.append(("fleet.summaries", 0, _summary(i, v)))
    rows, _, _ = run_stats(topo, registry, records)
    row = rows[(START, "fleet", "*")]
    allv = np.concatenate(values)
    assert row["channels"]["x"]["count"] == len(allv) and row["device_count"] == 7
    assert np.isclose(row["channels"]["x"]["mean"], allv.mean(), rtol=1e-9, atol=1e-9)
    assert np.isclose(row["channels"]["x"]["std"], allv.std(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_java_replay_dedup_decides_as_the_python_deduplicator(registry, seed):
    """The Java dedup ports ``wire.dedup.Deduplicator`` (which the alert subscriber and
    ``DedupReader`` use): with a small seq window and id memory, on replays within and beyond
    the window, ids seen again under a new seq, forgotten ids and records without a seq,
    the Java statistics count exactly the summaries the Python deduplicator accepts."""
    import random

    import numpy as np

    from edgestream.wire.dedup import Deduplicator
    from edgestream.wire.ids import record_id

    rng = random.Random(seed)
    window, memory = 16, 5
    topo = cloud_topology(fleet_stats={"window": "1m", "allowed_lateness": "15m"})
    high, records, kinds = {"gw-a": 0, "gw-b": 0}, [], Counter()
    for i in range(300):
        gw = rng.choice(sorted(high))
        kind = rng.choices(["new", "within", "beyond", "no seq"], [55, 20, 10, 15])[0]
        kind = "new" if high[gw] == 0 else kind
        kinds[kind] += 1
        if kind == "new":
            high[gw] += rng.choice((1, 1, 2))
        back = {"new": 0, "within": rng.randrange(window), "beyond": window + rng.randrange(40)}
        seq = None if kind == "no seq" else max(1, high[gw] - back[kind])
        sid = f"id-{rng.randrange(12)}" if rng.random() < 0.5 else None  # reused ids
        values = np.arange(1.0, 2.0 + i % 5)
        records.append(_summary(i, values, gateway_id=gw, gateway_seq=seq, summary_id=sid))
    dedup = Deduplicator(window=window, id_memory=memory)
    accepted = [r for r in records if dedup.accept(r["gateway_id"], r["gateway_seq"], record_id(r))]
    assert dedup.stats["duplicates"] > 50 and len(accepted) > 100 and min(kinds.values()) > 10
    sizes = {"dedup_window": window, "dedup_id_memory": memory}
    rows, counts, _ = run_stats(
        topo, registry, [("fleet.summaries", 0, r) for r in records], extra=sizes
    )
    assert counts["duplicates"] == dedup.stats["duplicates"]
    assert counts["summaries_counted"] == len(accepted)
    unique = [{**r, "gateway_seq": n} for n, r in enumerate(accepted)]  # the reference's key
    assert_rows_match(rows, reference_stats(unique, [], 60_000, 5))


def test_other_lineages_and_site_summaries_are_skipped(registry):
    import numpy as np

    topo = cloud_topology(fleet_stats={"window": "1m", "allowed_lateness": "0s"})
    v = np.array([1.0, 2.0])
    hour = {"window_start": START, "window_end": START + 60_000}
    records = [
        _summary(1, v, **hour),  # a 1-minute edge window: another lineage
        _summary(2, v, scope="site", scope_key="s"),
        _summary(3, v, **hour, rollup_level=1, summary_id="gw|device|d3|0|60000|r1.10000.3"),
    ]
    _, counts, _ = run_stats(topo, registry, [("fleet.summaries", 0, r) for r in records])
    assert (counts["summaries_skipped"], counts["summaries_counted"]) == (2, 1)


def test_summaries_in_the_forwarders_wire_form_give_the_same_stats(registry):
    """What the forwarder really sends (the wire form: mean/std/summary_id null, exact
    decimals for sum/min/max), encoded with the shipped schema."""
    from edgestream.wire.forms import wire_summary

    topo = cloud_topology(fleet_stats={"window": "1m", "allowed_lateness": "15m", "worst_n": 3})
    summaries = fleet_summaries(devices=6, windows=18, seed=4, start_ms=START, replay_every=5)
    for s in summaries:  # sensor-like values: short decimals, sent as exact Decimal records
        for c in s["channels"].values():
            c.update({k: round(c[k], 3) for k in ("sum", "min", "max")})
    wire = [wire_summary(s) for s in summaries]
    assert any(isinstance(c["sum"], dict) for w in wire for c in w["channels"].values())
    rows, _, _ = run_stats(topo, registry, [("fleet.summaries", 0, w) for w in wire])
    assert_rows_match(rows, reference_stats(summaries, [], 60_000, 3))


def test_outage_gateway_counted_in_its_windows_and_visibly_late(registry):
    """gw-2 offline for 10 minutes: its summaries arrive after everyone else's."""
    topo = cloud_topology(
        fleet_stats={
            "window": "1m",
            "allowed_lateness": "15m",
            "max_out_of_orderness": "10s",
            "idle_timeout": "1h",
        }
    )
    summaries = fleet_summaries(
        devices=8, windows=90, seed=5, start_ms=START, outage=("gw-2", 20, 79)
    )  # windows of 10 s: 10 minutes
    records = [("fleet.summaries", 0, s) for s in summaries]
    rows, counts, _ = run_stats(topo, registry, records)
    assert_rows_match(rows, reference_stats(summaries, [], 60_000, 5))
    late = {k: r["late_count"] for k, r in rows.items() if r["late_count"]}
    assert late, "the outage gateway's summaries must show as late"
    assert counts["summaries_late"] > 0 and counts["summaries_expired"] == 0


def test_beyond_allowed_lateness_is_counted_not_dropped(registry):
    topo = cloud_topology(
        fleet_stats={
            "window": "1m",
            "allowed_lateness": "1m",
            "max_out_of_orderness": "10s",
            "idle_timeout": "1h",
        }
    )
    summaries = fleet_summaries(
        devices=4, windows=60, seed=2, start_ms=START, outage=("gw-2", 0, 5)
    )
    rows, counts, _ = run_stats(topo, registry, [("fleet.summaries", 0, s) for s in summaries])
    held = [
        s
        for s in summaries
        if s["gateway_id"] == "gw-2"
        and s["window_start"] < START + 60_000
        and s["scope"] == "device"
    ]
    row = rows[(START, "fleet", "*")]
    assert row["late_count"] == len(held)  # in late_count, not in the statistics
    assert row["device_count"] == 2 and counts["summaries_late"] == len(held)


def drift_records(duration, drift_at, seed, every=20, start=START, ramp=60.0):
    config = SimConfig(
        devices=12,
        rate=10.0,
        duration=duration,
        seed=seed,
        start_time=start,
        drift_ramp=ramp,
        labels=None,
        fast=True,
        drift_at=drift_at,
        anomaly_rate=0.0,
        drift_types=("pump",) if drift_at is not None else None,
    )
    return [("fleet.samples", r["seq"] % 2, r) for r in sampled_readings(config, every)]


DRIFT = {
    "window": "5m",
    "psi_major": 0.25,
    "psi_minor": 0.1,
    "ks_threshold": 0.25,
    "min_samples": 300,
    "reference": "lagged",
    "reference_lag": 2,
}


@pytest.mark.parametrize("seed", [1, 2])
def test_stationary_hour_gives_no_request(seed):
    engine = FleetEngine(cloud_topology(drift=DRIFT, retrain={"cooldown": "30m"}))
    _, requests = run_engine(engine, drift_records(3600, None, seed))
    judged = [v for v in engine.verdicts if v.severity != "unjudged"]
    assert len(judged) >= 18 and requests == []


def test_drift_gives_one_request_within_three_windows():
    engine = FleetEngine(cloud_topology(drift=DRIFT, retrain={"cooldown": "30m"}))
    drift_at = 1800
    _, requests = run_engine(engine, drift_records(3000, drift_at, 4))
    drifts = [r for r in requests if r["data"]["reason"] == "drift"]
    assert len(drifts) == 1, [r["id"] for r in requests]  # pumps drift, reefers do not
    data = drifts[0]["data"]
    assert (data["model_name"], data["scope_key"], data["severity"]) == ("pump-ae", "pump", "major")
    start = START + drift_at * 1000
    assert data["window_end"] - start <= 3 * 300_000
    assert data["window_end"] > start
    assert data["data_pointer"] and all(
        r["end_offset"] > r["start_offset"] for r in data["data_pointer"]
    )
    assert drifts[0]["id"] == data["dedup_key"]
    assert any(f["statistic"] == "psi" and f["value"] > f["threshold"] for f in data["features"])


FIRST = {
    **DRIFT,
    "window": "20s",
    "min_samples": 80,
    "reference": "first",
    "psi_major": 0.5,
    "ks_threshold": 0.3,
}


@pytest.mark.parametrize("offset_s", [0, 7, 13, 19])
def test_first_full_window_reference_sees_a_demo_drift_whatever_the_alignment(offset_s):
    """`edgestream up`'s setting: 20 s windows, pumps drift from 40 s (ramp 10 s); the
    reference is the first full window, so a ramp across a window boundary is not missed."""
    engine = FleetEngine(cloud_topology(drift=FIRST, retrain={"cooldown": "30m"}))
    start = START + offset_s * 1000
    _, requests = run_engine(engine, drift_records(150, 40, 5, every=10, start=start, ramp=10))
    assert [r["data"]["scope_key"] for r in requests] == ["pump"]
    assert requests[0]["data"]["window_end"] - (start + 40_000) <= 3 * 20_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_first_full_window_reference_is_quiet_on_stationary_data(seed):
    engine = FleetEngine(cloud_topology(drift=FIRST, retrain={"cooldown": "30m"}))
    _, requests = run_engine(engine, drift_records(600, None, seed, every=10))
    judged = [v for v in engine.verdicts if v.severity not in ("unjudged",)]
    assert len(judged) >= 50 and requests == []


def test_a_partition_not_yet_read_holds_the_watermark(registry):
    """A source that reads partition 0's backlog before partition 1 must not make partition
    1's summaries late (assigned partitions hold the watermark from the start)."""
    topo = cloud_topology(
        fleet_stats={
            "window": "1m",
            "allowed_lateness": "0s",
            "max_out_of_orderness": "0s",
            "idle_timeout": "1h",
        }
    )
    summaries = [s for s in fleet_summaries(devices=6, windows=30, seed=9, start_ms=START)
                 if s["scope"] == "device"]  # fmt: skip
    by_partition = sorted(((int(s["scope_key"][-3:]) % 2, i), s) for i, s in enumerate(summaries))
    records = [("fleet.summaries", p, s) for (p, _), s in by_partition]
    rows, counts, _ = run_stats(topo, registry, records)
    assert counts["summaries_late"] == 0
    assert_rows_match(rows, reference_stats(summaries, [], 60_000, 5))


def test_anomaly_rate_crossing_gives_one_request_per_episode(registry):
    """Pumps' anomaly rate jumps from ~1 % to 20 % at minute 5 and stays there: one
    ``anomaly_rate`` RetrainRequest for pump-ae, judged in that window; reefers stay quiet.
    The statistics' rows reach the Python engine in the order the JVM wrote them (as in the
    job)."""
    topo = cloud_topology(
        fleet_stats={"window": "1m", "allowed_lateness": "1m", "worst_n": 3},
        retrain={"anomaly_rate_threshold": 0.05, "min_readings": 1000, "cooldown": "30m"},
    )
    summaries = fleet_summaries(devices=12, windows=90, seed=6, start_ms=START)
    jump = START + 5 * 60_000
    for s in summaries:
        if s["device_type"] == "pump" and s["scope"] == "device" and s["window_start"] >= jump:
            s["anomaly_count"] = s["count"] // 5
    rows, _, outs = run_stats(topo, registry, [("fleet.summaries", 0, s) for s in summaries])
    engine = FleetEngine(topo)
    requests = []
    for out in outs:
        if out["kind"] == "rate":  # what the job gives the Python function
            requests += [r for _, _, r in engine.stats_row(json.loads(out["value"]), 0)]
    rate_keys = [o["key"] for o in outs if o["kind"] == "rate"]  # one per device_type row key
    assert sorted(rate_keys) == sorted("|".join(map(str, k)) for k in rows if k[1] == "device_type")
    rates = {k[0]: r["anomaly_rate"] for k, r in rows.items() if k[1:] == ("device_type", "pump")}
    assert max(v for w, v in rates.items() if w < jump) < 0.05  # quiet before the jump
    assert min(v for w, v in rates.items() if w >= jump) > 0.05  # crossing in every window after
    assert len(requests) == 1, [r["id"] for r in requests]
    data = requests[0]["data"]
    assert (data["reason"], data["model_name"], data["scope_key"]) == (
        "anomaly_rate",
        "pump-ae",
        "pump",
    )
    assert data["window_start"] == jump
    feature = data["features"][0]
    want = reference_stats(summaries, [], 60_000, 3)[(jump, "device_type", "pump")]
    assert want["anomaly_rate"] > 0.05  # the summaries as written, not the JVM's rows
    assert feature["value"] == pytest.approx(want["anomaly_rate"], rel=1e-12)
    assert feature["threshold"] == 0.05
    assert feature["sample_count"] == want["reading_count"]
