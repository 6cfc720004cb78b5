"""``edgestream cloud run``: the cloud Flink job (fleet analytics, drift, retraining triggers).

Usage:

    edgestream cloud run topologies/default.yaml
    edgestream cloud run topo.yaml --jobmanager flink-jm:8081 --cloud-bootstrap kafka:9092
    edgestream cloud run topologies/default.yaml --duration 120
"""

from __future__ import annotations

import signal
import threading

import typer

from edgestream.cli.app import group, group_hook
from edgestream.cli.options import (
    CloudBootstrap,
    Duration,
    JobManager,
    LogLevel,
    Registry,
    TopologyFile,
    apply_loglevel,
)

app = group("Cloud jobs: fleet analytics, drift detection and retraining triggers (PyFlink).")

register = group_hook(app, "cloud")


@app.callback()
def cloud() -> None:
    """Cloud jobs on a local Flink MiniCluster or a real Flink cluster."""


@app.command()
def run(
    topology: TopologyFile,
    jobmanager: JobManager = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    duration: Duration = None,
    loglevel: LogLevel = "info",
) -> None:
    """Run the fleet job until Ctrl-C / SIGTERM (or --duration): fleet.summaries,
    fleet.alerts, fleet.samples, fleet.models in; fleet.stats (JSON) and fleet.retrain
    (RetrainRequest CloudEvents) out."""
    from edgestream.cloud.job import run_jobs
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.core.topology import load_topology

    apply_loglevel(loglevel)
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
