"""``edgestream models keygen|list|publish|promote|rollback|evaluate|train``: signed models
for operators, their detection quality on labelled data, and training on recorded history.

Usage:

    edgestream models keygen --out ~/.edgestream/keys
    edgestream models list --topology topologies/default.yaml --json
    edgestream models publish model.onnx --version v7 -t topologies/default.yaml
    edgestream models promote reefer-ae v7
    edgestream models rollback reefer-ae v7
    edgestream models evaluate online --compare model.onnx --data labelled.csv -t T.yaml
    edgestream models train --device-type compressor --data history.csv -t T.yaml --out models/

Signing uses the topology's ``retraining.signing`` key (``$EDGESTREAM_SIGNING_KEY`` unless
set); cloud endpoints: options, then the topology, then the running embedded stack.
"""

# no `from __future__ import annotations`: the annotations of the promote and rollback
# commands (made by _operator_command) use its arguments, so they are evaluated at once

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgestream.cli.app import group, group_hook
from edgestream.cli.options import (
    CloudBootstrap,
    JsonLine,
    Mapping,
    Registry,
    TopologyOption,
    load_or_shipped,
)

app = group("Signed models: key pairs, versions on fleet.models, operator promote and rollback.")

register = group_hook(app, "models")


_out = Console()


@app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="Directory for the PEM key pair (created)."),
) -> None:
    """Write a new Ed25519 key pair (private key mode 0600) for signing model updates."""
    from edgestream.core.topology.cloud import Signing
    from edgestream.ml.signing import generate_key_pair, key_id, load_public_key

    private, public = generate_key_pair(out)
    fingerprint = key_id(load_public_key(Signing(public_key_file=public)))
    _out.print(f"private key: {private} (0600, keep it off gateways and out of git)")
    _out.print(f"public key:  {public}")
    _out.print(f"key_id:      {fingerprint}")


def _context(
    topology: Path | None, cloud_bootstrap: str | None, registry: str | None
) -> tuple[Any, Any]:
    from edgestream.core.endpoints import cloud_endpoints

    topo = load_or_shipped(topology)
    return topo, cloud_endpoints(cloud_bootstrap, registry, topo)


@app.command("list")
def list_cmd(
    topology: TopologyOption = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    as_json: JsonLine = False,
) -> None:
    """Versions on fleet.models, their state, and each gateway's rollout state."""
    from edgestream.rollout.operations import model_table

    topo, endpoints = _context(topology, cloud_bootstrap, registry)
    table = model_table(topo, endpoints)
    if as_json:
        print(json.dumps(table))
        return
    if not table["models"]:
        _out.print(f"no model versions on {topo.cloud.models_topic} yet (the shipped v1 serves)")
        return
    view = Table(title=f"models on {topo.cloud.models_topic}")
    for column in (
        "model",
        "version",
        "state",
        "parent",
        "sha256",
        "threshold",
        "gates",
        "gateways",
    ):
        view.add_column(column)
    for row in table["models"]:
        gates = row["metrics"].get("gates_pass")
        view.add_row(
            row["model_name"],
            row["version"],
            row["state"],
            row["parent_version"] or "-",
            (row["sha256"] or "")[:12],
            f"{row['threshold']:.4g}" if row["threshold"] is not None else "-",
            "-" if gates is None else ("pass" if gates else "FAIL"),
            ", ".join(f"{g}: {e}" for g, e in sorted(row["gateways"].items())) or "-",
        )
    _out.print(view)
    for gateway, models in sorted(table["live"].items()):
        live = ", ".join(f"{m} {v}" for m, v in sorted(models.items()))
        _out.print(f"{gateway} serves {live}")


@app.command("publish")
def publish_cmd(
    model: Path = typer.Argument(..., help="ONNX file; its sidecar JSON lies beside it."),
    device_type: str = typer.Option(None, "--device-type", help="Model slot (default: sidecar)."),
    version: str = typer.Option(None, "--version", help="Version label (default: next vN)."),
    parent: str = typer.Option(None, "--parent", help="Version it replaces (default: live)."),
    topology: TopologyOption = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    as_json: JsonLine = False,
) -> None:
    """Sign an ONNX model + sidecar and publish it as a candidate (canaries shadow it)."""
    from edgestream.ml.signing import load_private_key
    from edgestream.rollout.operations import publish_file

    topo, endpoints = _context(topology, cloud_bootstrap, registry)
    key = load_private_key(topo.retraining.signing)
    update = publish_file(topo, endpoints, key, model, device_type, version, parent)
    _report(update, as_json)


def _operator_command(action: str, version_help: str, doc: str) -> None:
    """``models promote`` and ``models rollback``: one operator action on a published version."""

    def command(
        model_name: Annotated[
            str, typer.Argument(help="Model name (topology models.<type>.name).")
        ],
        version: Annotated[str, typer.Argument(help=version_help)],
        topology: TopologyOption = None,
        cloud_bootstrap: CloudBootstrap = None,
        registry: Registry = None,
        as_json: JsonLine = False,
    ) -> None:
        from edgestream.rollout.operations import operator_action

        topo, endpoints = _context(topology, cloud_bootstrap, registry)
        _report(operator_action(topo, endpoints, model_name, version, action), as_json)

    command.__doc__ = doc
    app.command(action)(command)


_operator_command(
    "promote",
    "Version to make live on every gateway.",
    "Make a published version live on all gateways (skips the canary decision).",
)
_operator_command(
    "rollback",
    "Version to drop (candidate) or leave (live).",
    "Drop a candidate, or return gateways from a live version to its parent.",
)


def _report(update: dict[str, Any], as_json: bool) -> None:
    shown = {
        "model_name": update["model_name"],
        "version": update["version"],
        "action": update["action"],
        "parent_version": update.get("parent_version"),
        "sha256": update["sha256"],
        "key_id": update.get("key_id"),
    }
    if as_json:
        print(json.dumps(shown))
        return
    _out.print(
        f"published {shown['action']} {shown['model_name']} {shown['version']} "
        f"(parent {shown['parent_version']}, key {shown['key_id']})"
    )


@app.command("evaluate")
def evaluate(
    model: str = typer.Argument(..., help="An ONNX file (sidecar beside it) or 'online'."),
    data: list[Path] = typer.Option(..., "--data", help="Labelled CSV file(s); repeatable."),
    compare: str = typer.Option(None, "--compare", help="A second model, side by side."),
    topology: TopologyOption = None,
    device_type: str = typer.Option(None, "--device-type", help="Device type the model scores."),
    mapping: Mapping = None,
    as_json: JsonLine = False,
) -> None:
    """Replay labelled data through the gateway's detection path with MODEL and measure it."""
    from edgestream.evaluation.labelled import evaluate_model
    from edgestream.sim.history import parse_mapping

    topo = load_or_shipped(topology)
    models = [model] + ([compare] if compare else [])
    renames = parse_mapping(mapping or [])
    results = [evaluate_model(topo, m, data, device_type, renames) for m in models]
    _out.print(_quality_table([r.as_dict() for r in results]))
    if as_json:
        doc = {"topology": topo.name, "files": [str(p) for p in data]}
        doc["models"] = [r.as_dict() for r in results]
        print(json.dumps(doc, separators=(",", ":")))


_QUALITY_ROWS = (
    ("version", ("version",)),
    ("threshold", ("threshold",)),
    ("readings", ("readings",)),
    ("us per reading", ("us_per_reading",)),
    ("point precision", ("point", "precision")),
    ("point recall", ("point", "recall")),
    ("point F1", ("point", "f1")),
    ("false-alarm rate", ("point", "false_alarm_rate")),
    ("missed-alarm rate", ("point", "missed_alarm_rate")),
    ("episodes", ("event", "episodes")),
    ("episodes detected", ("event", "detected")),
    ("event recall", ("event", "recall")),
    ("incidents", ("event", "incidents")),
    ("false alerts", ("event", "false_alerts")),
    ("incident precision", ("event", "precision")),
    ("event F1", ("event", "f1")),
    ("delay mean (ms)", ("delay_ms", "mean")),
    ("delay median (ms)", ("delay_ms", "median")),
)


def _quality_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Detection quality through the gateway's path (streaming replay)")
    table.add_column("measure", no_wrap=True)
    for r in results:
        table.add_column(str(r["model"]), justify="right")
    for label, path in _QUALITY_ROWS:
        cells = []
        for r in results:
            value: Any = r
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            cells.append(
                "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
            )
        table.add_row(label, *cells)
    return table


@app.command("train")
def train_cmd(
    device_type: str = typer.Option(..., "--device-type", help="Device type of the model."),
    data: list[Path] = typer.Option(
        ..., "--data", help="History file (CSV/Parquet); repeatable. Normal rows: label 0."
    ),
    out: Path = typer.Option(..., "--out", help="Directory for <version>.onnx + .json."),
    topology: TopologyOption = None,
    mapping: Mapping = None,
    all_normal: bool = typer.Option(
        False, "--all-normal", help="Every row of the files is normal operation."
    ),
    version: str = typer.Option(None, "--version", help="Version label (<type>-<family>-v1)."),
    family: str = typer.Option("ae", "--family", help="ae (autoencoder) or iforest."),
    quantile: float = typer.Option(1.0, "--quantile", help="Threshold: held-out quantile q."),
    margin: float = typer.Option(1.5, "--margin", help="q + (margin - 1) x (q - median)."),
    as_json: JsonLine = False,
) -> None:
    """Train DEVICE_TYPE's model on the normal rows of recorded history (the topology's
    features of the type), calibrate its threshold on held-out normal rows, write ONNX +
    sidecar for the gateway and `models publish`."""
    from edgestream.ml.artifact import write_artifact
    from edgestream.ml.train_history import HistoryParams, train_on_history
    from edgestream.sim.history import parse_mapping

    if family not in ("ae", "iforest"):
        raise typer.BadParameter(f"{family!r}: ae or iforest", param_hint="--family")
    topo = load_or_shipped(topology, check_files=False)
    params = HistoryParams(
        device_type, version or "", family, all_normal, quantile=quantile, margin=margin
    )
    trained = train_on_history(data, topo, params, parse_mapping(mapping or []))
    path = write_artifact(out, trained.blob, trained.meta)
    report = {**trained.report, "onnx": str(path), "sha256": trained.meta.sha256}
    _print_training(report)
    if as_json:
        print(json.dumps(report, separators=(",", ":")))


def _print_training(r: dict[str, Any]) -> None:
    for f in r["files"]:
        _out.print(f"{f['file']}: {f['rows']:,} rows, {f['normal_rows']:,} normal")
    _out.print(
        f"trained {r['model']} ({r['family']}, {r['features']} features of "
        f"{len(r['channels'])} channels) on {r['train_rows']:,} normal rows of "
        f"{r['devices']} devices, {r['epochs']} epochs; {r['holdout_rows']:,} held out"
    )
    view = Table(title="normal rows per channel")
    for column in ("channel", "mean", "std", "min", "max"):
        view.add_column(column, justify="left" if column == "channel" else "right")
    for channel, st in r["channels"].items():
        view.add_row(channel, *(f"{st[k]:.4g}" for k in ("mean", "std", "min", "max")))
    _out.print(view)
    _out.print(f"threshold {r['threshold']:.6g} = {r['threshold_method']}")
    _out.print(
        f"above it: {r['holdout_above_threshold']} held-out rows, "
        f"{r['train_above_threshold']} training rows"
    )
    _out.print(
        f"inference {r['rows_per_s']:,.0f} rows/s (1 thread, batch 1024), "
        f"model {r['model_bytes']:,} bytes; wrote {r['onnx']} + sidecar in {r['seconds']:g} s"
    )
