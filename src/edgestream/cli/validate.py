"""``edgestream validate TOPOLOGY``: check a topology and summarise it, or list its problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgestream.cli.app import command_hook
from edgestream.core.topology import Topology, TopologyError, format_duration, load_topology
from edgestream.ml.inputs import check_model_inputs

_out = Console(highlight=False)


def validate_command(
    topologies: list[Path] = typer.Argument(..., help="Topology YAML file(s).", show_default=False),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object per file (summary or problems)."
    ),
    check_files: bool = typer.Option(
        True,
        "--check-files/--no-check-files",
        help="Check that model and TLS files exist (and ONNX inputs fit).",
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail on ${VAR} references to unset variables (as deploy does) instead of "
        "listing them as needed at deploy time.",
    ),
) -> None:
    """Validate topologies: types, unknown keys, references, schemas, model files.

    Exits 0 with a short summary of each, or 1 listing every problem as FILE:LINE: path:
    message. ``${VAR}`` references to unset variables (secrets, cloud endpoints) are listed
    as needed at deploy time, where they must be set; ``--strict`` makes them problems.
    """
    results = [_validate(path, as_json, check_files, strict) for path in topologies]
    if not all(results):
        raise typer.Exit(1)


register = command_hook("validate", validate_command)


def _validate(topology: Path, as_json: bool, check_files: bool, strict: bool) -> bool:
    """Check one file and print its summary or problems; True when it is valid."""
    try:
        loaded = load_topology(topology, check_files=check_files, defer_env=not strict)
        if check_files:
            check_model_inputs(loaded)  # each model reads the features of its device type
    except TopologyError as error:
        if as_json:
            problems = [p.to_dict() for p in error.problems]
            typer.echo(json.dumps({"ok": False, "file": str(topology), "problems": problems}))
        else:
            for problem in error.problems:
                typer.echo(str(problem))
            count = len(error.problems)
            typer.echo(f"{count} problem{'s' if count != 1 else ''} in {topology}", err=True)
        return False
    if as_json:
        needed = [n.to_dict() for n in loaded.needed_env]
        facts = {"ok": True, "file": str(topology), **summary(loaded), "needed_at_deploy": needed}
        typer.echo(json.dumps(facts))
    else:
        _print_summary(loaded, topology)
        _print_needed(loaded)
    return True


def summary(topology: Topology) -> dict[str, Any]:
    """The facts the summary shows, as JSON-able values."""
    return {
        "name": topology.name,
        "version": topology.version,
        "fingerprint": topology.fingerprint(),
        "gateways": [
            {
                "id": g.id,
                "sites": list(g.sites),
                "device_types": list(g.device_types),
                "canary": g.id in topology.canary_gateways(),
            }
            for g in topology.gateways
        ],
        "topics": [
            {
                "name": t.name,
                "schema": t.schema_,
                "partitions": t.partitions,
                "device_type": t.device_type,
                "channels": list(t.channels),
            }
            for t in topology.sensors.topics
        ],
        "models": [
            {
                "device_type": device_type,
                "name": m.name,
                "version": m.version,
                "path": str(m.path),
                "inputs": list(topology.model_inputs(device_type)),
                "threshold": m.threshold,
                "batch": m.batch.size,
            }
            for device_type, m in topology.models.items()
        ],
        "windows": [_window(w) for w in topology.windows],
        "cloud_jobs": _jobs(topology),
    }


def _window(window: Any) -> str:
    kind = "tumbling" if window.tumbling else f"hop {format_duration(window.step)}"
    lateness = format_duration(window.allowed_lateness)
    return f"{format_duration(window.size)} {kind}, lateness {lateness}, {'+'.join(window.scopes)}"


def _jobs(topology: Topology) -> dict[str, str]:
    jobs, cloud = topology.cloud.jobs, topology.cloud
    stats = jobs.fleet_stats
    drift = jobs.drift
    return {
        "fleet_stats": f"{format_duration(stats.window)} windows, lateness "
        f"{format_duration(stats.allowed_lateness)}, worst {stats.worst_n} -> {cloud.stats_topic}",
        "drift": f"{format_duration(drift.window)} windows, PSI > {drift.psi_major:g} major / "
        f"> {drift.psi_minor:g} minor, KS > {drift.ks_threshold:g}",
        "retrain": f"anomaly rate > {jobs.retrain.anomaly_rate_threshold:g}, cooldown "
        f"{format_duration(jobs.retrain.cooldown)} -> {cloud.retrain_topic}",
    }


def _print_needed(topology: Topology) -> None:
    if not topology.needed_env:
        return
    names = sorted({n.variable for n in topology.needed_env})
    _out.print(f"[yellow]needed at deploy time[/] (unset now): {', '.join(names)}", soft_wrap=True)
    for need in topology.needed_env:
        _out.print(f"  {need}", markup=False, emoji=False, soft_wrap=True)


def _print_summary(topology: Topology, path: Path) -> None:
    facts = summary(topology)
    _out.print(
        f"[green]✓[/] {path}: topology [bold]{topology.name}[/] v{topology.version} is valid "
        f"(fingerprint {facts['fingerprint'][:12]})"
    )
    gateways = Table("gateway", "sites", "device types", "canary", title="gateways")
    for g in facts["gateways"]:
        canary = "yes" if g["canary"] else ""
        gateways.add_row(g["id"], ", ".join(g["sites"]), ", ".join(g["device_types"]), canary)
    topics = Table("topic", "schema", "partitions", "device type", "channels", title="topics")
    for t in facts["topics"]:
        channels = str(len(t["channels"]))
        topics.add_row(t["name"], t["schema"], str(t["partitions"]), t["device_type"], channels)
    models = Table("device type", "model", "inputs", "threshold", "batch", title="models")
    for m in facts["models"]:
        name = f"{m['name']} {m['version']}"
        threshold = "model's" if m["threshold"] is None else f"{m['threshold']:g}"
        models.add_row(m["device_type"], name, str(len(m["inputs"])), threshold, str(m["batch"]))
    windows = Table("window", title="windows")
    for w in facts["windows"]:
        windows.add_row(w)
    jobs = Table("cloud job", "settings", title="cloud jobs")
    for name, text in facts["cloud_jobs"].items():
        jobs.add_row(name, text)
    for table in (gateways, topics, models, windows, jobs):
        _out.print(table)
