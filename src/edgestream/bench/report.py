"""Human tables of benchmark results (the JSON object is the machine-readable form).

>>> rows = [("raw", "", ""), ("confluent-kafka", "35,000", "readings/s")]
>>> result_table("bench", rows).row_count
2
"""

from __future__ import annotations

from typing import Any

from rich.table import Table


def result_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    """A three-column (what, value, note) table; a row with an empty value is a section."""
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note", style="dim")
    for what, value, note in rows:
        if value == "" and note == "":
            table.add_section()
            table.add_row(f"[bold]{what}[/]", "", "")
        else:
            table.add_row(what, value, note)
    return table


def _n(x: Any, unit: str = "") -> str:
    return "-" if x is None else f"{x:,}{unit}"


def edge_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of the human table (see :func:`result_table`)."""
    raw, pipe, gw, model = result["raw"], result["pipeline"], result["gateway"], result["model"]
    res, k = result["resources"], result["params"]["frames"]
    rows = [("raw consumers (decode every record)", "", "")]
    rows.append(("confluent-kafka, readings", _n(raw["confluent_readings"]["readings_per_s"]), ""))
    if "aiokafka_readings" in raw:
        rows.append(
            ("aiokafka getmany, readings", _n(raw["aiokafka_readings"]["readings_per_s"]), "")
        )
    rows.append(
        ("confluent-kafka, frames", _n(raw["confluent_frames"]["readings_per_s"]), f"K={k}")
    )
    rows.append(("pipeline in process (no Faust/Kafka)", "", ""))
    for name in ("readings", "frames"):
        shares = sorted(pipe[name]["stage_share"].items(), key=lambda kv: -kv[1])[:3]
        note = ", ".join(f"{stage} {share:.0%}" for stage, share in shares)
        rows.append((name, _n(pipe[name]["readings_per_s"]), note))
    rows.append(("gateway worker (Faust subprocess)", "", ""))
    for name in ("readings", "frames"):
        g = gw[name]
        done = f"{g['summaries']:,}/{g['expected_summaries']:,} summaries"
        rows.append(
            (f"{name}: first->last output", _n(g["readings_per_s"]), f"{g['span_s']} s, {done}")
        )
        start = f"{g['wall_s']} s, start-up ~{g['startup_s_est']} s"
        rows.append((f"{name}: wall incl. start-up", _n(g["wall_readings_per_s"]), start))
        cpu = f"us/reading; main thread {g['cpu_span_main_s']} of {g['cpu_span_s']} CPU s"
        rows.append((f"{name}: worker CPU", _n(g["cpu_us_per_reading"]), cpu))
    rows.append(("ratios (same run)", "", ""))
    rows += [(key, _n(value, "x"), "") for key, value in result["ratios"].items()]
    pinned = result.get("pinned")
    if pinned:
        raw_rps = pinned["confluent_readings"]["readings_per_s"]
        note = f"gateway {_n(pinned['gateway_readings']['readings_per_s'])} / raw {_n(raw_rps)}"
        rows.append((f"one core (CPU {pinned['cpu']}): gateway_vs_confluent",
                     _n(pinned["gateway_vs_confluent"], "x"), note))  # fmt: skip
    for label, sus in (("sustained", result.get("sustained")), ("sustained, one core",
                       (pinned or {}).get("sustained"))):  # fmt: skip
        if sus:
            rows += _sustained_rows(label, sus)
    rows.append(("model (shipped pump AE)", "", ""))
    lat = f"rows/s; p50 {model.get('score_p50_ms')} ms, p99 {model.get('score_p99_ms')} ms/call"
    rows.append(("ONNX scoring, batch 1024", _n(model.get("score_rows_per_s")), lat))
    rows.append(("features", _n(model.get("features_rows_per_s")), "rows/s"))
    rows.append(("resources", "", ""))
    cpu = f"CPU {res['worker_cpu_s']} s (both runs)"
    rows.append(("worker peak RSS", _n(res["worker_peak_rss_mb"], " MB"), cpu))
    for mode, mb in res.get("worker_peak_rss_mb_by_mode", {}).items():
        rows.append((f"worker peak RSS: {mode}", _n(mb, " MB"), ""))
    peak = f"peak {res['broker_peak_rss_mb']} MB"
    rows.append(("broker RSS (Kafka, apart)", _n(res["broker_rss_mb"], " MB"), peak))
    return rows


def swap_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, goal) rows of the console table."""

    def worst(key: str) -> str:
        stats = result.get(key) or {}
        return f"max {stats.get('max')} / p50 {stats.get('p50')}" if stats else "-"

    return [
        ("swaps", str(result["swaps"]), ""),
        ("publish -> live, ms", worst("publish_to_live_ms"), "<= 2000"),
        ("pause across the swap, ms", worst("pause_ms"), "<= 50"),
        ("normal gap between batches, ms", worst("normal_gap_ms"), ""),
        ("pause beyond the normal gap, ms", worst("pause_over_normal_ms"), ""),
        (
            "readings (in closed windows)",
            f"{result['readings']} ({result['readings_in_closed_windows']})",
            "",
        ),
        (
            "events dropped / duplicated",
            f"{result['events_dropped']} / {result['events_duplicated']}",
            "0 / 0",
        ),
    ]


def _sustained_rows(label: str, sus: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of one sustained-load run (:mod:`edgestream.bench.sustained`)."""
    rate = f"{sus['rate']:,.0f} readings/s for {sus['duration_s']:g} s"
    alert = f"p50 {sus['p50_reading_to_alert_ms']} ms, {sus['alerts']} alerts"
    summary = f"p50 {sus['p50_reading_to_summary_ms']} ms, after the window's wait"
    lag = f"lag growth {sus['lag_growth']}, max lag {sus['lag_max']:,} readings"
    return [
        (f"{label}: {rate}", "", ""),
        ("p99 reading -> edge alert", _n(sus["p99_reading_to_alert_ms"], " ms"), alert),
        ("p99 reading -> window summary", _n(sus["p99_reading_to_summary_ms"], " ms"), summary),
        ("lag, last 10 s mean", _n(sus["lag_last_mean"]), lag),
        ("highest sustainable rate", _n(sus["max_rate"]), f"{len(sus['steps'])} steps"),
    ]
