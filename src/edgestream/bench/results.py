"""Saved benchmark results and the README table made from them.

Every ``edgestream bench NAME --json`` run also writes its JSON object to
``$EDGESTREAM_HOME/bench/NAME.json`` (or ``DIR/NAME.json`` with ``edgestream bench --save-dir
DIR``); ``edgestream bench report --readme README.md`` rewrites the part of the README between
``<!-- bench:start -->`` and ``<!-- bench:end -->`` from those files, so the table there is
produced by the bench commands, never typed.

>>> import json, tempfile
>>> d = Path(tempfile.mkdtemp())
>>> result = {"bench": "e2e", "machine": {"cpu_model": "Xeon", "cpu_count": 2,
...           "memory_mb": 7900, "load_avg_1m": 1.5}, "params": {"devices": 50},
...           "cloud_to_raw_ratio": 0.0198, "drain_rate_vs_live": 35.6,
...           "p99_reading_to_cloud_alert_ms": 249.0, "goals": {"drain_rate_vs_live>=10": True}}
>>> save_result(result, d).name
'e2e.json'
>>> print(render_table(load_results(d)))  # doctest: +NORMALIZE_WHITESPACE
| bench | measure | value | goal |
|---|---|---|---|
| e2e | cloud bytes / raw sensor bytes | 0.0198 | <= 0.01 |
| e2e | drain rate after outage vs live | 35.6x | >= 10x: met |
| e2e | p99 reading -> cloud alert | 249 ms | <= 300 ms |
>>> text = "intro\\n<!-- bench:start -->\\nold\\n<!-- bench:end -->\\nrest\\n"
>>> new = replace_section(text, "NEW")
>>> new.splitlines()
['intro', '<!-- bench:start -->', 'NEW', '<!-- bench:end -->', 'rest']
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir

__all__ = [
    "load_results",
    "render_section",
    "render_table",
    "replace_section",
    "results_dir",
    "save_result",
]

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
ORDER = ("edge", "e2e", "cloud", "swap")
SAVE_DIR_ENV = "EDGESTREAM_BENCH_DIR"

# (bench, path in the result, label, format, goal text, goal key in result["goals"])
HEADLINES: list[tuple[str, str, str, str, str, str | None]] = [
    ("edge", "gateway.readings.readings_per_s", "gateway readings/s (SensorReading)",
     "{:,.0f}", "", None),
    ("edge", "gateway.frames.readings_per_s", "gateway readings/s (SensorFrame)",
     "{:,.0f}", "", None),
    ("edge", "ratios.gateway_vs_confluent", "gateway vs raw confluent-kafka consumer",
     "{:.2f}x", "", None),
    ("edge", "ratios.frames_speedup", "frames vs single readings", "{:.1f}x", "", None),
    ("edge", "gateway.readings.cpu_us_per_reading", "worker CPU per reading",
     "{:,.0f} us", "", None),
    ("edge", "model.score_rows_per_s", "ONNX scoring rows/s (batch 1024)", "{:,.0f}", "", None),
    ("edge", "resources.worker_peak_rss_mb", "worker peak RSS", "{:,.0f} MB", "", None),
    ("e2e", "cloud_to_raw_ratio", "cloud bytes / raw sensor bytes", "{}", "<= 0.01",
     "cloud_to_raw_ratio<=0.01"),
    ("e2e", "drain_rate_vs_live", "drain rate after outage vs live", "{:.1f}x", ">= 10x",
     "drain_rate_vs_live>=10"),
    ("e2e", "p99_reading_to_cloud_alert_ms", "p99 reading -> cloud alert", "{:,.0f} ms",
     "<= 300 ms", "p99_alert_ms<=300"),
    ("cloud", "throughput.summaries_per_s", "Flink job summaries/s (warm JVM)", "{:,.0f}",
     ">= 50,000", None),
    ("cloud", "throughput.first_run_per_s", "Flink job summaries/s (first run, fresh JVM)",
     "{:,.0f}", "", None),
    ("cloud", "throughput.runs.warm.us_per_record.decode", "Avro decode per summary (Java)",
     "{:,.1f} µs", "", None),
    ("cloud", "throughput.runs.warm.us_per_record.engine", "fleet statistics per summary (Java)",
     "{:,.1f} µs", "", None),
    ("cloud", "jvm_only.read_per_s", "JVM only: raw read of the same topic /s", "{:,.0f}", "",
     None),
    ("cloud", "jvm_only.decode_per_s", "JVM only: Java Avro decode /s (second pass)",
     "{:,.0f}", "", None),
    ("cloud", "lag_ms.p95", "p95 job lag", "{:,.0f} ms", "", None),
]  # fmt: skip


def results_dir() -> Path:
    """Where bench results are saved: ``$EDGESTREAM_BENCH_DIR``, else
    ``$EDGESTREAM_HOME/bench``."""
    override = os.environ.get(SAVE_DIR_ENV)
    return Path(override) if override else home_dir() / "bench"


def save_result(result: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``result`` (one bench's JSON object) to ``DIR/<bench>.json``; returns the path."""
    name = str(result.get("bench") or "unnamed")
    directory = directory or results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    saved_at = result.get("saved_at") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    stamped = {**result, "saved_at": saved_at}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamped, default=str) + "\n")
    tmp.replace(path)
    return path


def load_results(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """bench name -> its last saved result (known benches first, in pipeline order)."""
    directory = directory or results_dir()
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise EdgestreamError(f"{path} is not a bench result ({error}): re-run it") from None
        found[str(data.get("bench") or path.stem)] = data
    order = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return {n: found[n] for n in order}


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _rows(name: str, result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    goals = result.get("goals") or {}
    known = [h for h in HEADLINES if h[0] == name]
    for _bench, path, label, fmt, goal, key in known:
        value = _get(result, path)
        if value is None:
            continue
        if key is not None and key in goals:
            goal = f"{goal}: {'met' if goals[key] else 'not met'}"
        elif path == "throughput.summaries_per_s" and _get(result, "throughput.goal_per_s"):
            want = _get(result, "throughput.goal_per_s")
            goal = f">= {want:,}: {'met' if value >= want else 'not met'}"
        rows.append((label, fmt.format(value), goal))
    if not known:  # a bench without a headline list: its ratios, scalars and goals
        for key, value in sorted((result.get("ratios") or {}).items()):
            if isinstance(value, int | float):
                rows.append((key.replace("_", " "), f"{value:.3g}x", ""))
        skip = {"bench", "saved_at", "params", "machine", "ratios", "goals"}
        for key, value in result.items():
            if key not in skip and isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((key.replace("_", " "), f"{value:,.4g}", ""))
        for key, met in sorted(goals.items()):
            rows.append(("goal", key, "met" if met else "not met"))
    return rows


def render_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the headline numbers and ratios of every saved bench."""
    lines = ["| bench | measure | value | goal |", "|---|---|---|---|"]
    for name, result in results.items():
        for label, value, goal in _rows(name, result):
            lines.append(f"| {name} | {label} | {value} | {goal} |")
    return "\n".join(lines)


def _machine(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, result in results.items():
        m = result.get("machine") or {}
        cores = m.get("cpu_usable") or m.get("cpu_count")
        ram = m.get("memory_mb")
        ram_text = f"{ram / 1024:.1f} GB RAM" if isinstance(ram, int | float) else "RAM unknown"
        lines.append(
            f"- `{name}`: {result.get('saved_at', 'date unknown')}, "
            f"{m.get('cpu_model') or 'CPU unknown'}, {cores} cores, {ram_text}, "
            f"load average {m.get('load_avg_1m', '?')} at the start"
        )
    return "\n".join(lines)


def render_section(results: dict[str, dict[str, Any]], target: str = "README.md") -> str:
    """The section of ``target`` (a README): where each bench ran, then the table."""
    if not results:
        raise EdgestreamError(
            f"no saved bench results in {results_dir()}: run `edgestream bench edge --json` "
            "(and e2e, cloud) first"
        )
    commands = ", ".join(f"`edgestream bench {n} --json`" for n in results)
    return (
        f"Produced by {commands} and `edgestream bench report --readme {target}` "
        "(not typed by hand). Machines:\n\n"
        f"{_machine(results)}\n\n{render_table(results)}"
    )


def replace_section(text: str, section: str) -> str:
    """``text`` with what lies between the bench markers replaced by ``section``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise EdgestreamError(
            f"the README has no {START} ... {END} section: add both markers where the table goes"
        )
    return text[: start + len(START)] + "\n" + section + "\n" + text[end:]
