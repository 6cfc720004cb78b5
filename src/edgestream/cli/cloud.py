"""``edgestream cloud run``: the cloud Flink job (fleet analytics, drift, retraining triggers).

Usage:

    edgestream cloud run topologies/default.yaml
    edgestream cloud run topo.yaml --jobmanager flink-jm:8081 --cloud-bootstrap kafka:9092
    edgestream cloud run topologies/default.yaml --duration 120
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import typer

app = typer.Typer(
    help="Cloud jobs: fleet analytics, drift detection and retraining triggers (PyFlink).",
    no_args_is_help=True,
)


@app.callback()
def cloud() -> None:
    """Cloud jobs on a local Flink MiniCluster or a real Flink cluster."""


@app.command()
def run(
    topology: Path = typer.Argument(..., help="Topology YAML."),
    jobmanager: str = typer.Option(
        None,
        "--jobmanager",
        help="HOST:PORT of a Flink cluster's REST endpoint (default: "
        "topology cloud.jobmanager, else a local MiniCluster).",
    ),
    cloud_bootstrap: str = typer.Option(
        None, "--cloud-bootstrap", help="Cloud broker HOST:PORT[,...] (default: topology)."
    ),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    duration: float = typer.Option(
        None, "--duration", help="Stop after this many seconds (default: until Ctrl-C)."
    ),
    loglevel: str = typer.Option("info", "--loglevel", help="debug, info, warning, error."),
) -> None:
    """Run the fleet job until Ctrl-C / SIGTERM (or --duration): fleet.summaries,
    fleet.alerts, fleet.samples, fleet.models in; fleet.stats (JSON) and fleet.retrain
    (RetrainRequest CloudEvents) out."""
    from edgestream.cloud.job import run_jobs
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.core.topology import load_topology

    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    topo = load_topology(topology)
    endpoints = cloud_endpoints(cloud_bootstrap, registry, topo)
    target = jobmanager or topo.cloud.jobmanager
    typer.echo(
        f"cloud job {topo.name}: {endpoints.bootstrap} (registry {endpoints.registry}) on "
        f"{target or 'a local MiniCluster'}"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if duration:
        threading.Timer(duration, stop.set).start()
    from edgestream.core.metrics import resolve_port, serve_metrics

    serve_metrics("cloud", None, resolve_port(None), echo=typer.echo)  # Prometheus /metrics
    run_jobs(topo, endpoints.bootstrap, endpoints.registry, stop, jobmanager=target)
