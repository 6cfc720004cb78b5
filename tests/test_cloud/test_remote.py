"""``edgestream cloud run --jobmanager HOST:PORT``: the fleet job submitted to a real
standalone Flink session cluster (JobManager + TaskManager processes from the installed
PyFlink), not a MiniCluster. Topic names of its own, so it shares the session broker with
the MiniCluster test without reading its records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgestream.cloud.job import run_jobs
from edgestream.core.offsets import read_to_end
from edgestream.core.topology import Topology
from edgestream.testing.fleet_records import fleet_alerts, fleet_summaries, produce_records
from tests.support.cloud import DEFAULT
from tests.support.fleet_reference import assert_rows_match, reference_stats
from tests.support.flink_cluster import flink_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = 1_700_000_400_000


def remote_topology() -> Topology:
    raw = yaml.safe_load(DEFAULT.read_text())
    topics = {"summaries": "remote.summaries", "alerts": "remote.alerts",
              "samples": "remote.samples"}  # fmt: skip
    raw["forwarding"]["topics"] = topics
    cloud = raw["cloud"]
    cloud.update(stats_topic="remote.stats", retrain_topic="remote.retrain",
                 models_topic="remote.models")  # fmt: skip
    cloud.setdefault("jobs", {})["fleet_stats"] = {
        "window": "1m", "allowed_lateness": "15m", "worst_n": 3, "idle_timeout": "1h",
    }  # fmt: skip
    return Topology.model_validate(raw).with_source(DEFAULT)


def test_fleet_job_on_a_standalone_cluster(stack, tmp_path: Path) -> None:
    endpoints = stack.endpoints()
    cloud, registry = str(endpoints["cloud"]), str(endpoints["registry"])
    topo = remote_topology()
    summaries = fleet_summaries(devices=6, windows=24, seed=21, start_ms=START, replay_every=7)
    alerts = fleet_alerts(summaries, seed=21)
    ends = {
        "remote.summaries": produce_records(
            cloud, registry, "remote.summaries", "WindowSummary", summaries, "scope_key"
        ),
        "remote.alerts": produce_records(
            cloud, registry, "remote.alerts", "AnomalyAlert", alerts, "device_id"
        ),
    }
    with flink_cluster(tmp_path / "flink") as jobmanager:
        run_jobs(topo, cloud, registry, jobmanager=jobmanager, ends=ends, name="edgestream-remote")
        ran = (tmp_path / "flink" / "log").glob("*taskexecutor*.log")
        assert any("edgestream-remote" in p.read_text(errors="replace") for p in ran)

    rows = {}
    for msg in read_to_end(cloud, "remote.stats"):
        row = json.loads(msg.value())
        rows[(row["window_start"], row["scope"], row["scope_key"])] = row
    assert_rows_match(rows, reference_stats(summaries, alerts, 60_000, 3))
