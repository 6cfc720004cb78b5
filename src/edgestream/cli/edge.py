"""``edgestream edge run TOPOLOGY --gateway ID``: a gateway's Faust worker in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from edgestream.cli.app import group, group_hook
from edgestream.cli.gateway import gateway_place
from edgestream.cli.options import DataDir, Gateway, LogLevel, MetricsPort, Registry, TopologyFile

app = group("Edge gateways: Faust agents for validation, inference and windows.")

register = group_hook(app, "edge")


@app.command()
def run(
    topology: TopologyFile,
    gateway: Gateway,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", help="Edge broker HOST:PORT.")
    ] = None,
    registry: Registry = None,
    data_dir: DataDir = None,
    no_sync: bool = typer.Option(False, "--no-sync", help="Do not fsync state commits."),
    loglevel: LogLevel = "warning",
    metrics_port: MetricsPort = None,
) -> None:
    """Run a gateway worker until Ctrl-C / SIGTERM (state survives crashes: kill -9 is fine)."""
    from edgestream.core.broker import ensure_topics, wait_broker
    from edgestream.core.metrics import resolve_port, serve_metrics
    from edgestream.edge.config import GatewayConfig, edge_topics, sensor_topic_configs
    from edgestream.edge.worker import run_gateway

    place = gateway_place(topology, gateway, edge=bootstrap, registry=registry, data_dir=data_dir)
    config = GatewayConfig(
        topology=place.topology,
        gateway_id=gateway,
        bootstrap=place.edge,
        registry=place.registry,
        data_dir=place.data_dir,
        sync=not no_sync,
    )
    wait_broker(config.bootstrap, timeout=10)
    ensure_topics(
        config.bootstrap,
        edge_topics(config.topology, gateway),
        topic_configs=sensor_topic_configs(config.topology, gateway),
    )
    typer.echo(f"gateway {gateway}: edge broker {config.bootstrap}, state in {config.data_dir}")
    serve_metrics("edge", config.data_dir, resolve_port(metrics_port), echo=typer.echo)
    run_gateway(config, loglevel=loglevel)
