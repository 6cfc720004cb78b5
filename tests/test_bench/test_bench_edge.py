"""``edgestream bench edge``: pure parts without infrastructure, and one tiny real run whose
JSON must be complete and self-consistent (not fast: speed is not asserted)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgestream.bench import BenchError, EdgeBenchParams
from edgestream.bench.edge_input import bench_topology
from edgestream.bench.results import load_results, render_section, results_dir
from edgestream.cli.bench import app
from edgestream.core.topology import load_topology
from tests.support.doctests import run_doctests
from tests.support.procs import pids_of

MODULES = [
    "common",
    "edge_input",
    "profiling",
    "raw",
    "report",
    "results",
    "stages",
    "sustained",
    "worker",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(f"edgestream.bench.{name}")
    run_doctests(module)


@pytest.mark.parametrize("schema", ["SensorReading", "SensorFrame"])
def test_bench_topology_is_a_valid_topology(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(bench_topology("gw-b", "sensors.x", schema, 128, 50)))
    topo = load_topology(path)
    (topic,) = topo.sensors.topics
    assert topic.schema_ == schema and topic.partitions == 1
    assert topo.models["pump"].batch.size == 128 and topo.models["pump"].batch.max_wait == 50


def test_params_are_checked() -> None:
    with pytest.raises(BenchError, match="--readings"):
        EdgeBenchParams(readings=5, devices=10)
    assert EdgeBenchParams().duration_s == 200.0


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_run_gives_one_consistent_json_line(tmp_path: Path) -> None:
    work = tmp_path / "bench"
    args = ["edge", "--json", "-q", "-n", "5000", "-k", "10", "--devices", "10"]
    args += ["--rate", "1000", "--duration", "20", "--step-duration", "20", "--max-steps", "1"]
    out = CliRunner().invoke(app, [*args, "--workdir", str(work)])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout.strip().splitlines()[-1])

    assert r["bench"] == "edge" and r["params"]["readings"] == 5000
    assert {"cpu_count", "python", "platform", "versions"} <= r["machine"].keys()
    readings = r["input"]["readings"]["readings"]
    assert readings == r["input"]["frames"]["readings"] == 5001  # + the primer
    assert r["input"]["readings"]["messages"] == readings
    assert r["input"]["frames"]["messages"] < readings / 5

    raw = r["raw"]
    assert raw["confluent_readings"]["readings"] == raw["aiokafka_readings"]["readings"] == readings
    assert raw["confluent_frames"]["readings"] == readings
    for name in ("readings", "frames"):
        pipe, gw = r["pipeline"][name], r["gateway"][name]
        assert pipe["messages"] == r["input"][name]["messages"]
        assert pipe["readings"] == readings or pipe["rejected_messages"] > 0
        assert gw["expected_summaries"] == pipe["summaries"] > 0
        assert gw["summaries"] == gw["expected_summaries"] and gw["extra_summaries"] == 0
        assert gw["exit_code"] == 0
        assert 0 < gw["span_s"] < gw["wall_s"] and gw["readings_per_s"] > 0
        assert gw["cpu_s"] >= gw["cpu_span_s"] >= 0 and gw["cpu_s"] > 0 and gw["peak_rss_mb"] > 0
        assert set(pipe["stage_s"]) >= {"decode", "features", "score", "windows", "commit"}
    assert r["pipeline"]["readings"]["summaries"] == r["pipeline"]["frames"]["summaries"]

    ratios, gw = r["ratios"], r["gateway"]
    confluent = raw["confluent_readings"]["readings_per_s"]
    assert ratios["gateway_vs_confluent"] == round(gw["readings"]["readings_per_s"] / confluent, 3)
    speedup = gw["frames"]["readings_per_s"] / gw["readings"]["readings_per_s"]
    assert ratios["frames_speedup"] == round(speedup, 3)
    model = r["model"]
    assert model["score_rows_per_s"] > 0 and model["score_p99_ms"] >= model["score_p50_ms"]
    assert r["resources"]["broker_rss_mb"] > 0 and r["resources"]["worker_peak_rss_mb"] > 0

    # sustained load (live, 1000 readings/s for 20 s), alone and with the worker on one core
    by_mode = r["resources"]["worker_peak_rss_mb_by_mode"]
    assert set(by_mode) == {
        "readings",
        "frames",
        "pinned_readings",
        "sustained",
        "pinned_sustained",
    }
    assert r["resources"]["worker_peak_rss_mb"] == max(by_mode.values())
    pinned = r["pinned"]
    assert 0 <= pinned["cpu"] < r["machine"]["cpu_count"]
    raw_pinned, gw_pinned = pinned["confluent_readings"], pinned["gateway_readings"]
    assert (
        raw_pinned["readings"] == readings and gw_pinned["summaries"] == gw["readings"]["summaries"]
    )
    assert gw_pinned["extra_summaries"] == 0 and gw_pinned["exit_code"] == 0
    assert pinned["gateway_vs_confluent"] == round(
        gw_pinned["readings_per_s"] / raw_pinned["readings_per_s"], 3
    )
    for sus, cpu in ((r["sustained"], None), (pinned["sustained"], pinned["cpu"])):
        assert sus["rate"] == 1000 and sus["cpu"] == cpu and sus["peak_rss_mb"] > 0
        assert sus["produced"] == 20_000 and sus["caught_up"]
        times = [t for t, _ in sus["lag"]]  # sampled every 0.5 s over the whole run
        assert times == sorted(times) and times[0] < 2 and times[-1] > 18 and len(times) > 20
        assert sus["lag_growth"] is not None and sus["lag_growth"] >= 0
        if sus["alerts"]:
            assert sus["p99_reading_to_alert_ms"] >= sus["p50_reading_to_alert_ms"] > 0
        assert sus["summaries"] > 0
        assert sus["p99_reading_to_summary_ms"] >= sus["p50_reading_to_summary_ms"]
        (step,) = sus["steps"]  # --max-steps 1: the search's first probe, at --rate
        assert step["rate"] == 1000 and "lag" not in step
        assert sus["max_rate"] == (1000 if step["sustainable"] else None)

    assert not pids_of(str(work)), "the benchmark left processes running"

    # the JSON line is saved as the last edge result, and the README table is made from it
    saved = json.loads((results_dir() / "edge.json").read_text())
    assert {k: v for k, v in saved.items() if k != "saved_at"} == json.loads(json.dumps(r))
    section = render_section(load_results())
    assert (
        f"| edge | gateway readings/s (SensorReading) | {gw['readings']['readings_per_s']:,.0f} |"
        in section
    )
