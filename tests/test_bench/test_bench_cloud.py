"""``edgestream bench cloud``: one tiny real run (embedded stack, Flink MiniCluster) whose JSON
line must be complete and agree with the input it produced (not fast: speed is not asserted)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgestream.cli.bench import app
from edgestream.testing.fleet_records import fleet_summaries

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_cloud_json_counts_what_it_produced() -> None:
    devices, summaries = 20, 1_000
    args = ["cloud", "--json", "-q", "-n", str(summaries), "--devices", str(devices),
            "--lag-windows", "2", "--timeout", "300"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # the same input the bench produced (same defaults: seed 7, a replay every 50 records)
    records = fleet_summaries(devices, summaries // devices, 7, replay_every=50)
    device = [r for r in records if r["scope"] == "device"]
    unique = {(r["gateway_id"], r["gateway_seq"]) for r in device}
    t = out["throughput"]
    assert t["records"] == len(records)
    assert t["counts"]["summaries_counted"] == len(unique) == summaries
    assert t["counts"]["duplicates"] == len(device) - len(unique) > 0
    assert t["counts"]["summaries_skipped"] == len(records) - len(device)
    assert "dlq" not in t["counts"]
    assert t["summaries_per_s"] == t["runs"]["warm"]["summaries_per_s"] > 0
    assert t["first_run_per_s"] == t["runs"]["first"]["summaries_per_s"] > 0
    for run in t["runs"].values():  # the same job twice in one JVM: the same records
        assert run["records"] == len(records)
        assert run["summaries_per_s"] > 0 and run["second_half_per_s"] > 0
        assert run["span_s"] > 0 and run["wall_s"] >= run["span_s"]
        us = run["us_per_record"]  # decode and engine are parts of the span (span_s: rounded)
        span_us = run["span_s"] * 1e6 / run["records"]
        assert us["total"] == pytest.approx(span_us, abs=5000 / run["records"] + 0.1)
        assert us["decode"] > 0 and us["engine"] > 0
        assert us["other"] == pytest.approx(us["total"] - us["decode"] - us["engine"], abs=0.2)
    jvm = out["jvm_only"]  # the same records, read (and decoded) without Python
    assert jvm["records"] == len(records) and jvm["decode_errors"] == 0
    assert jvm["read_per_s"] > 0 and jvm["decode_per_s"] > 0 and jvm["decode_first_per_s"] > 0
    lag = out["lag_ms"]
    assert lag["n"] >= 1 and 0 < lag["p50"] <= lag["max"]
