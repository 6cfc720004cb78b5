"""``edgestream bench edge|e2e|cloud``: benchmarks on real processes, one JSON line with --json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from edgestream.bench.common import Phases, emit_json, interrupt_on_sigterm
from edgestream.bench.report import edge_rows, result_table, swap_rows
from edgestream.cli.app import group, group_hook
from edgestream.cli.options import AnomalyRate, JsonLine, Quiet, Rate, Seed, Workdir

app = group("Benchmarks on real processes (ratios measured in the same run).")

register = group_hook(app, "bench")


@app.callback()
def bench(
    save_dir: Path = typer.Option(
        None,
        "--save-dir",
        help="Save each --json result as DIR/<bench>.json (default: $EDGESTREAM_HOME/bench).",
    ),
) -> None:
    """Benchmarks on real processes; with --json the last stdout line is one JSON object,
    also saved for `edgestream bench report`."""
    if save_dir is not None:
        import os

        from edgestream.bench.results import SAVE_DIR_ENV

        os.environ[SAVE_DIR_ENV] = str(save_dir)


@app.command("report")
def report(
    readme: Path = typer.Option(
        None, "--readme", help="Rewrite this file's <!-- bench:start/end --> section."
    ),
    results: Path = typer.Option(
        None, "--results", help="Dir of saved results (default: the save dir)."
    ),
) -> None:
    """The saved results (last run of each bench) as a Markdown table with the machine.

    Usage:

        edgestream bench edge --json && edgestream bench e2e --json

        edgestream bench report --readme README.md
    """
    from edgestream.bench.results import load_results, render_section, replace_section

    target = readme.as_posix() if readme is not None else "README.md"
    section = render_section(load_results(results), target)
    if readme is None:
        typer.echo(section)
        return
    readme.write_text(replace_section(readme.read_text(), section))
    typer.echo(f"{readme}: bench section rewritten")


# long: a typer command whose length is its option list (inputs, load, agent, profiling)
@app.command("edge")
def edge(
    json_out: JsonLine = False,
    readings: int = typer.Option(100_000, "--readings", "-n", help="Readings per input."),
    frames: int = typer.Option(50, "--frames", "-k", help="Readings per SensorFrame (K)."),
    devices: int = typer.Option(50, "--devices", help="Simulated pumps."),
    rate: float = typer.Option(
        10.0, "--device-rate", help="Readings per second per device (throughput input)."
    ),
    load_rate: float = typer.Option(
        10_000.0, "--rate", help="Sustained load: readings/s produced live."
    ),
    load_duration: float = typer.Option(
        60.0, "--duration", help="Sustained load: seconds at --rate."
    ),
    step_duration: float = typer.Option(
        20.0, "--step-duration", help="Seconds per step of the search for the highest rate."
    ),
    max_steps: int = typer.Option(5, "--max-steps", help="Steps of that search (0: none)."),
    no_sustained: bool = typer.Option(
        False, "--no-sustained", help="Skip the sustained-load runs."
    ),
    no_pinned: bool = typer.Option(False, "--no-pinned", help="Skip the one-core runs."),
    batch: int = typer.Option(256, "--batch", help="Agent micro-batch (model batch size)."),
    max_wait: int = typer.Option(20, "--max-wait", help="Agent take window, ms (max_wait)."),
    no_sync: bool = typer.Option(False, "--no-sync", help="Workers do not fsync commits."),
    no_aiokafka: bool = typer.Option(False, "--no-aiokafka", help="Skip the aiokafka baseline."),
    seed: Seed = 7,
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds allowed per gateway run."),
    profile: Path = typer.Option(
        None, "--profile", help="Run the workers under cProfile (all threads); stats go here."
    ),
    workdir: Workdir = None,
    quiet: Quiet = False,
) -> None:
    """Gateway throughput vs raw Kafka consumers, frames vs readings, model cost.

    A fresh embedded stack (1 gateway broker + registry); pump readings sent
    as single messages and as frames of K; raw confluent-kafka and aiokafka
    consumers, the pipeline in process, then the real `edgestream edge run`
    worker until every window summary is out. Everything it starts is
    stopped at the end, on errors and on Ctrl-C.

    Usage:

        edgestream bench edge              # 100k readings + 100k in frames

        edgestream bench edge --json | tail -1 | jq .ratios

        edgestream bench edge -n 20000 --profile /tmp/prof --workdir /tmp/b
    """
    from edgestream.bench.edge import run_edge_bench
    from edgestream.bench.edge_input import EdgeBenchParams

    params = EdgeBenchParams(
        readings=readings,
        frames=frames,
        devices=devices,
        rate=rate,
        batch=batch,
        max_wait_ms=max_wait,
        sync=not no_sync,
        aiokafka=not no_aiokafka,
        seed=seed,
        timeout=timeout,
        profile_dir=profile,
        workdir=workdir,
        sustained=not no_sustained,
        load_rate=load_rate,
        load_duration=load_duration,
        step_duration=step_duration,
        max_steps=max_steps,
        pinned=not no_pinned,
    )
    _run(run_edge_bench, params, "bench edge (readings/s unless noted)", edge_rows, quiet, json_out)


# -- bench e2e (forwarding; src/edgestream/bench/e2e.py) ---------------------------------------
@app.command("e2e")
def e2e(
    json_out: JsonLine = False,
    devices: int = typer.Option(50, "--devices", help="Simulated pumps."),
    rate: Rate = 10.0,
    anomaly_rate: AnomalyRate = 0.01,
    live: float = typer.Option(90.0, "--live", help="Seconds of the live phase."),
    outage: float = typer.Option(45.0, "--outage", help="Seconds the cloud broker is down."),
    seed: Seed = 7,
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds allowed per waiting phase."),
    workdir: Workdir = None,
    quiet: Quiet = False,
) -> None:
    """Sensors -> gateway -> forwarder -> cloud with a cloud outage: bandwidth, drain, latency.

    Reports cloud_bytes / raw_sensor_bytes (goal <= 1 %), the drain rate after the outage
    vs the live rate (goal >= 10x) and the p99 reading-to-cloud-alert latency (goal <= 300 ms).

    Usage:

        edgestream bench e2e --json | tail -1 | jq '{cloud_to_raw_ratio, drain_rate_vs_live}'

        edgestream bench e2e --devices 20 --live 60 --outage 30 --workdir /tmp/e2e
    """
    from edgestream.bench.e2e import E2EBenchParams, run_e2e_bench
    from edgestream.bench.e2e_result import e2e_rows

    params = E2EBenchParams(
        devices=devices,
        rate=rate,
        anomaly_rate=anomaly_rate,
        live_s=live,
        outage_s=outage,
        seed=seed,
        timeout=timeout,
        workdir=workdir,
    )
    _run(run_e2e_bench, params, "bench e2e", e2e_rows, quiet, json_out)


@app.command("swap")
def swap(
    json_out: JsonLine = False,
    devices: int = typer.Option(20, "--devices", help="Simulated pumps."),
    rate: Rate = 25.0,
    swaps: int = typer.Option(3, "--swaps", help="Hot swaps (candidate, then promote)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds allowed per waiting phase."),
    workdir: Workdir = None,
    quiet: Quiet = False,
) -> None:
    """Hot swap of a gateway's model under load: events dropped, pause, publish-to-live.

    Goals: 0 readings dropped or counted twice across the swaps, processing pause <= 50 ms,
    ``promote`` published on the cloud -> first batch done with the new version <= 2 s.

    Usage:

        edgestream bench swap --json | tail -1 | jq '{pause_ms, publish_to_live_ms}'
    """
    from edgestream.bench.swap import SwapBenchParams, run_swap_bench

    params = SwapBenchParams(
        devices=devices, rate=rate, swaps=swaps, timeout=timeout, workdir=workdir
    )
    _run(run_swap_bench, params, "bench swap", swap_rows, quiet, json_out)


@app.command("cloud")
def cloud(
    json_out: JsonLine = False,
    summaries: int = typer.Option(
        400_000, "--summaries", "-n", help="Device summaries (fewer: mostly the JVM warm-up)."
    ),
    devices: int = typer.Option(100, "--devices", help="Devices in the fleet."),
    lag_windows: int = typer.Option(8, "--lag-windows", help="Windows of the lag phase."),
    seed: Seed = 7,
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds allowed per phase."),
    workdir: Workdir = None,
    quiet: Quiet = False,
) -> None:
    """The fleet Flink job at parallelism 1: summaries/s (bounded run) and end-to-end lag.

    Usage:

        edgestream bench cloud --json | tail -1 | jq '{throughput, lag_ms}'
    """
    from edgestream.bench.cloud import CloudBenchParams, run_cloud_bench

    params = CloudBenchParams(
        summaries=summaries, devices=devices, lag_windows=lag_windows, seed=seed,
        timeout=timeout, workdir=workdir,
    )  # fmt: skip
    _run(run_cloud_bench, params, "bench cloud", _cloud_rows, quiet, json_out)


def _run(
    bench: Callable[[Any, Phases], dict[str, Any]],
    params: Any,
    title: str,
    rows: Callable[[dict[str, Any]], list[tuple[str, str, str]]],
    quiet: bool,
    json_out: bool,
) -> None:
    """Run one bench (Ctrl-C and SIGTERM stop what it started), print its table (on stderr
    with --json) and, with --json, its result as the last stdout line."""
    with interrupt_on_sigterm(), Phases(quiet=quiet) as phases:
        result = bench(params, phases)
    Console(stderr=json_out).print(result_table(title, rows(result)))
    if json_out:
        emit_json(result)


def _cloud_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    t, lag, jvm = result["throughput"], result["lag_ms"], result["jvm_only"]
    first, warm = t["runs"]["first"], t["runs"]["warm"]
    return [
        ("summaries/s in the job, warm JVM", f"{t['summaries_per_s']:,}",
         f"goal {t['goal_per_s']:,}; {warm['span_s']} s"),
        ("  first run, fresh JVM", f"{t['first_run_per_s']:,}",
         f"{first['span_s']} s; second half {first['second_half_per_s']:,}/s"),
        ("records read", f"{t['records']:,}", "per run"),
        ("µs per record: decode, statistics, rest",
         " + ".join(str(warm["us_per_record"][k]) for k in ("decode", "engine", "other")),
         f"warm run; statistics thread on a CPU {warm['cpu_share']:.0%} of the span"),
        ("JVM only: raw read /s", f"{jvm['read_per_s']:,}", f"the job: {jvm['job_vs_read']}x"),
        ("JVM only: Java Avro decode /s", f"{jvm['decode_per_s']:,}",
         f"{jvm['decode_vs_job']}x the job"),
        ("  its first pass", f"{jvm['decode_first_per_s']:,}", ""),
        ("bounded run wall time", f"{first['wall_s']} s, {warm['wall_s']} s",
         "first, warm; MiniCluster start included"),
        ("end-to-end lag p50", f"{lag['p50']} ms", f"p95 {lag['p95']} ms, max {lag['max']} ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    app()
