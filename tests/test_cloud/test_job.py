"""The fleet job on a real Flink MiniCluster over a real Kafka broker: fleet.stats equals
the offline reference (replays, site summaries, a gateway back from a 10-minute outage) and
injected drift gives exactly one RetrainRequest."""

from __future__ import annotations

import json

import pytest

from edgestream.cloud.job import CloudJobConfig, ensure_cloud_topics, job_plan, run_jobs
from edgestream.core.offsets import read_to_end
from edgestream.core.serde import AvroDeserializer
from edgestream.sim.config import SimConfig
from edgestream.testing.fleet_records import (
    fleet_alerts,
    fleet_summaries,
    produce_records,
    sampled_readings,
)
from tests.support.cloud import cloud_topology
from tests.support.fleet_reference import assert_rows_match, reference_stats

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = 1_700_000_100_000  # a multiple of 5 minutes


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded"])
def test_each_input_is_read_and_aggregated_once(stack, bounded):
    """The job's stream graph has one Kafka source per input topic and one ``fleet_stats``:
    its output feeds the sinks and the Python function, and a view read by both used to be
    planned twice (each summary read, decoded and aggregated twice)."""
    endpoints = stack.endpoints()
    cloud, registry = str(endpoints["cloud"]), str(endpoints["registry"])
    topo = cloud_topology()
    ensure_cloud_topics(topo, cloud)
    ends = {"fleet.summaries": {0: 10}, "fleet.alerts": {0: 3}} if bounded else None
    plan = job_plan(CloudJobConfig(topo, cloud, registry, ends=ends))
    nodes = [(n["type"], n["contents"]) for n in plan["nodes"]]  # ("Source: src0[1]", "...")
    sources = sorted(t.split("[")[0] for t, _ in nodes if t.startswith("Source: src"))
    want = ["Source: src0", "Source: src1"] if bounded else [f"Source: src{i}" for i in range(4)]
    assert sources == want, nodes
    assert sum("fleet_stats(" in c for _, c in nodes) == 1, nodes
    assert sum("PythonCalc" in c and "fleet(" in c for _, c in nodes) == 1, nodes


def test_fleet_job_on_minicluster(stack):
    endpoints = stack.endpoints()
    cloud, registry = str(endpoints["cloud"]), str(endpoints["registry"])
    topo = cloud_topology(
        fleet_stats={
            "window": "1m",
            "allowed_lateness": "15m",
            "worst_n": 3,
            "max_out_of_orderness": "20s",
            "idle_timeout": "1h",
        },
        drift={
            "window": "5m",
            "ks_threshold": 0.25,
            "min_samples": 300,
            "reference": "lagged",
            "reference_lag": 2,
        },
        retrain={"cooldown": "30m"},
    )
    # 40 windows of 10 s; gw-2 offline for 10 minutes (windows 5..64 arrive last)
    summaries = fleet_summaries(
        devices=10, windows=80, seed=11, start_ms=START, replay_every=9, outage=("gw-2", 5, 64)
    )
    alerts = fleet_alerts(summaries, seed=11)
    config = SimConfig(
        devices=12,
        rate=10.0,
        duration=1500,
        seed=4,
        start_time=START,
        labels=None,
        fast=True,
        drift_at=900,
        drift_types=("pump",),
        anomaly_rate=0.0,
    )
    samples = list(sampled_readings(config, every=20))
    ends = {
        "fleet.summaries": produce_records(
            cloud, registry, "fleet.summaries", "WindowSummary", summaries, "scope_key"
        ),
        "fleet.alerts": produce_records(
            cloud, registry, "fleet.alerts", "AnomalyAlert", alerts, "device_id"
        ),
        "fleet.samples": produce_records(
            cloud, registry, "fleet.samples", "SensorReading", samples, "device_id"
        ),
    }
    run_jobs(topo, cloud, registry, ends=ends, name="edgestream-fleet-test")

    rows = {}
    for msg in read_to_end(cloud, "fleet.stats"):
        row = json.loads(msg.value())
        key = (row["window_start"], row["scope"], row["scope_key"])
        assert msg.key().decode() == "|".join(map(str, key))
        rows[key] = row  # the last row of a key is the current one
    assert_rows_match(rows, reference_stats(summaries, alerts, 60_000, 3))
    assert sum(r["late_count"] for k, r in rows.items() if k[1] == "fleet") > 0  # the outage

    decode = AvroDeserializer(registry)
    requests = [decode(m.value()) for m in read_to_end(cloud, "fleet.retrain")]
    drift = [r for r in requests if r["data"]["reason"] == "drift"]
    assert len(drift) == 1, [r["id"] for r in requests]
    data = drift[0]["data"]
    assert data["model_name"] == "pump-ae" and data["window_end"] - (START + 900_000) <= 900_000
    assert data["data_pointer"][0]["topic"] == "fleet.samples"
