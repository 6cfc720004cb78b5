"""``edgestream edge run TOPOLOGY --gateway ID``: a gateway's Faust worker in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir
from edgestream.core.stack import running_endpoints
from edgestream.core.topology import load_topology

if TYPE_CHECKING:
    from edgestream.edge.config import GatewayConfig

app = typer.Typer(help="Edge gateways: Faust agents for validation, inference and windows.")


def gateway_config(
    topology_path: Path,
    gateway_id: str,
    bootstrap: str | None = None,
    registry: str | None = None,
    data_dir: Path | None = None,
    sync: bool = True,
) -> GatewayConfig:
    """Resolve where a gateway runs: explicit options, then the topology, then the stack."""
    from edgestream.edge.config import GatewayConfig

    topology = load_topology(topology_path)
    try:
        gateway = topology.gateway(gateway_id)
    except KeyError as error:
        raise EdgestreamError(str(error.args[0])) from None
    bootstrap = bootstrap or gateway.bootstrap
    registry = registry or topology.registry
    if not bootstrap or not registry:
        endpoints = running_endpoints()
        edge = endpoints["edge"]
        if not bootstrap:
            if gateway_id not in edge:  # type: ignore[operator]
                raise EdgestreamError(
                    f"the embedded stack has no broker for {gateway_id}: start it with "
                    f"`edgestream stack start --gateways N` or pass --bootstrap"
                )
            bootstrap = edge[gateway_id]  # type: ignore[index]
        registry = registry or str(endpoints["registry"])
    return GatewayConfig(
        topology=topology,
        gateway_id=gateway_id,
        bootstrap=str(bootstrap),
        registry=str(registry),
        data_dir=data_dir or home_dir() / "gateways" / gateway_id,
        sync=sync,
    )


@app.command()
def run(
    topology: Path = typer.Argument(..., help="Topology YAML."),
    gateway: str = typer.Option(..., "--gateway", "-g", help="Gateway id from the topology."),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Edge broker HOST:PORT."),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    data_dir: Path = typer.Option(None, "--data-dir", help="State dir of this gateway."),
    no_sync: bool = typer.Option(False, "--no-sync", help="Do not fsync state commits."),
    loglevel: str = typer.Option("warning", "--loglevel"),
    metrics_port: int = typer.Option(
        None,
        "--metrics-port",
        help="Prometheus /metrics port (0: any free one, written to DATA_DIR/edge.metrics-port;"
        " -1: off). Default: $EDGESTREAM_METRICS_PORT, else 0.",
    ),
) -> None:
    """Run a gateway worker until Ctrl-C / SIGTERM (state survives crashes: kill -9 is fine)."""
    from edgestream.core.broker import ensure_topics, wait_broker
    from edgestream.core.metrics import resolve_port, serve_metrics
    from edgestream.edge.config import edge_topics, sensor_topic_configs
    from edgestream.edge.worker import run_gateway

    config = gateway_config(topology, gateway, bootstrap, registry, data_dir, not no_sync)
    wait_broker(config.bootstrap, timeout=10)
    ensure_topics(
        config.bootstrap,
        edge_topics(config.topology, gateway),
        topic_configs=sensor_topic_configs(config.topology, gateway),
    )
    typer.echo(f"gateway {gateway}: edge broker {config.bootstrap}, state in {config.data_dir}")
    serve_metrics("edge", config.data_dir, resolve_port(metrics_port), echo=typer.echo)
    run_gateway(config, loglevel=loglevel)
