"""``edgestream retrain run|serve``: retrain a model from a RetrainRequest, sign, publish.

Usage:

    edgestream retrain run request.json --topology topologies/default.yaml
    edgestream retrain run '{"id": "...", "data": {...}}' --no-publish --json
    edgestream retrain serve topologies/default.yaml

The signing key comes from the topology's ``retraining.signing`` (default: the PEM in
``$EDGESTREAM_SIGNING_KEY``; make one with ``edgestream models keygen --out DIR``).
Training needs scikit-learn and onnx (``pip install 'edgestream[train]'``).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from edgestream.core.exceptions import EdgestreamError

app = typer.Typer(
    help="Retraining: RetrainRequest -> training set -> signed candidate on fleet.models.",
    no_args_is_help=True,
)
_out = Console()


def _topology(path: Path | None) -> Any:
    from edgestream.core.topology import load_topology
    from edgestream.loop.up import default_topology

    return load_topology(path or default_topology())


def _need_training_packages() -> None:
    try:
        import onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as error:
        raise EdgestreamError(
            f"retraining needs {error.name}: install the train extra "
            "(pip install 'edgestream[train]', included in deploy/local/dev.sh)"
        ) from None


@app.command("run")
def run(
    request: str = typer.Argument(..., help="RetrainRequest as JSON text or a JSON file."),
    topology: Path = typer.Option(None, "--topology", "-t", help="Topology YAML."),
    cloud_bootstrap: str = typer.Option(None, "--cloud-bootstrap", help="Cloud broker."),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Publish the candidate."),
    seed: int = typer.Option(0, "--seed", help="Model initialisation seed."),
    as_json: bool = typer.Option(False, "--json", help="Last line: the result as JSON."),
) -> None:
    """Serve one RetrainRequest now (no dedup: the operator asked for it)."""
    _need_training_packages()
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.ml.signing import load_private_key
    from edgestream.retrain.candidate import parse_request, retrain
    from edgestream.rollout.history import publish_updates

    topo = _topology(topology)
    parsed = parse_request(request)
    endpoints = cloud_endpoints(cloud_bootstrap, registry, topo)
    key = load_private_key(topo.retraining.signing)
    result = retrain(parsed, topo, endpoints, key, seed=seed)
    if publish:
        publish_updates(endpoints, topo.cloud.models_topic, [result.update])
    update = result.update
    summary = {
        "model_name": update["model_name"],
        "version": update["version"],
        "parent_version": update["parent_version"],
        "sha256": update["sha256"],
        "key_id": update["key_id"],
        "artifact_bytes": len(result.candidate.blob),
        "artifact_uri": update["artifact_uri"],
        "threshold": update["threshold"],
        "training_readings": len(result.training),
        "training_fetched": result.training.fetched,
        "training_duplicates": result.training.duplicates,
        "training_other_types": result.training.other_types,
        "training_invalid": result.training.invalid,
        "metrics": update["metrics"],
        "published": publish,
        "topic": topo.cloud.models_topic,
        "seconds": round(result.seconds, 2),
    }
    if as_json:
        print(json.dumps(summary))
        return
    where = f"published to {summary['topic']}" if publish else "not published (--no-publish)"
    _out.print(
        f"{summary['model_name']} {summary['version']} (parent {summary['parent_version']}): "
        f"{summary['training_readings']} readings, {where} in {summary['seconds']} s"
    )
    for name, value in sorted(update["metrics"].items()):
        _out.print(f"  {name:24s} {value:.6g}")


@app.command("serve")
def serve_cmd(
    topology: Path = typer.Argument(None, help="Topology YAML (default: the shipped one)."),
    cloud_bootstrap: str = typer.Option(None, "--cloud-bootstrap", help="Cloud broker."),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    loglevel: str = typer.Option("info", "--loglevel", help="debug, info, warning, error."),
) -> None:
    """Consume fleet.retrain and fleet.rollout until SIGTERM / Ctrl-C."""
    _need_training_packages()
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.retrain.service import serve

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    topo = _topology(topology)
    endpoints = cloud_endpoints(cloud_bootstrap, registry, topo)
    from edgestream.core.metrics import resolve_port, serve_metrics

    serve_metrics("retrain", None, resolve_port(None), echo=typer.echo)  # Prometheus /metrics
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(topo, endpoints.bootstrap, endpoints.registry, stop, endpoints.client_settings)
    except KeyboardInterrupt:
        stop.set()
