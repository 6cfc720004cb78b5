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
import signal
import threading

import typer
from rich.console import Console

from edgestream.cli.app import group, group_hook
from edgestream.cli.options import (
    CloudBootstrap,
    JsonLine,
    LogLevel,
    Registry,
    ShippedTopology,
    TopologyOption,
    apply_loglevel,
    load_or_shipped,
)
from edgestream.core.exceptions import EdgestreamError

app = group("Retraining: RetrainRequest -> training set -> signed candidate on fleet.models.")

register = group_hook(app, "retrain")


_out = Console()


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
    topology: TopologyOption = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Publish the candidate."),
    seed: int = typer.Option(0, "--seed", help="Model initialisation seed."),
    as_json: JsonLine = False,
) -> None:
    """Serve one RetrainRequest now (no dedup: the operator asked for it)."""
    _need_training_packages()
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.ml.signing import load_private_key
    from edgestream.retrain.candidate import parse_request, retrain
    from edgestream.rollout.history import publish_updates

    topo = load_or_shipped(topology)
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
    topology: ShippedTopology = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    loglevel: LogLevel = "info",
) -> None:
    """Consume fleet.retrain and fleet.rollout until SIGTERM / Ctrl-C."""
    _need_training_packages()
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.retrain.service import serve

    apply_loglevel(loglevel)
    topo = load_or_shipped(topology)
    endpoints = cloud_endpoints(cloud_bootstrap, registry, topo)
    from edgestream.core.metrics import resolve_port, serve_metrics

    serve_metrics("retrain", None, resolve_port(None), echo=typer.echo)  # Prometheus /metrics
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(topo, endpoints.bootstrap, endpoints.registry, stop, endpoints.client_settings)
    except KeyboardInterrupt:
        stop.set()
