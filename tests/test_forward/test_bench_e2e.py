"""``edgestream bench e2e`` end to end on a small fleet (the documented run is bigger)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgestream.bench import e2e, e2e_parts, e2e_result
from edgestream.bench.common import emit_json
from edgestream.bench.e2e import E2EBenchParams, run_e2e_bench
from edgestream.bench.e2e_result import e2e_rows
from tests.support.doctests import run_doctests


def test_docstring_examples_run() -> None:
    run_doctests(e2e)
    run_doctests(e2e_parts)
    run_doctests(e2e_result)


@pytest.mark.integration
@pytest.mark.slow
def test_bench_e2e_reports_the_three_numbers(tmp_path: Path, capsys) -> None:
    params = E2EBenchParams(devices=8, live_s=20, outage_s=10, workdir=tmp_path / "w")
    result = run_e2e_bench(params)
    emit_json(result)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(line)
    assert data["bench"] == "e2e"
    assert 0 < data["cloud_to_raw_ratio"] < 0.2
    assert data["raw_sensor_bytes"] == data["bandwidth"]["raw_sensor_bytes_sent"], (
        "the forwarder's meter counts what the sensors sent"
    )
    assert data["drain"]["arrived"] == data["drain"]["backlog_records"] > 0
    bw = data["bandwidth"]
    kinds = bw["cloud_bytes_by_kind"]
    assert {"alerts", "summaries", "samples"} <= set(kinds), kinds
    assert 0 <= data["cloud_bytes"] - sum(kinds.values()) <= 10, "a split of the total"
    # every device's reading seq 0 is sampled (every 500): at least one sample per device
    assert bw["delivered_by_kind"]["samples"] >= params.devices
    assert data["drain_rate_vs_live"] > 1
    lat = data["latency_ms"]
    assert lat["guard_s"] == 5.0 and lat["excluded_in_guard"] >= 0
    halves = [lat[h].get("samples", 0) for h in ("live_first_half", "live_second_half")]
    assert sum(halves) == lat.get("samples", 0)
    probe = lat["edge_broker_tail_fetch_ms"]
    assert probe["live_start"] > 0 and probe["live_end"] > 0
    assert set(data["goals"]) == {
        "cloud_to_raw_ratio<=0.01", "drain_rate_vs_live>=10", "p99_alert_ms<=300",
    }  # fmt: skip
    assert [row[0] for row in e2e_rows(result)][:2] == ["bandwidth", "raw sensor bytes"]
