"""``edgestream forward run|status``: a gateway's forwarder and its durable outbox.

Usage:

    edgestream forward run topologies/default.yaml --gateway gw-1
    edgestream forward run topo.yaml -g gw-1 --cloud-bootstrap kafka:9093 --data-dir /var/lib/es
    edgestream forward status --gateway gw-1 --data-dir /var/lib/es --json
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgestream.cli.app import group, group_hook
from edgestream.cli.app import run as run_app
from edgestream.cli.gateway import gateway_data_dir, gateway_place
from edgestream.cli.options import (
    CloudBootstrap,
    DataDir,
    Gateway,
    JsonOnly,
    LogLevel,
    MetricsPort,
    Registry,
    TopologyFile,
    apply_loglevel,
)

app = group("Forwarding: the durable outbox between a gateway's edge broker and the cloud.")

register = group_hook(app, "forward")


@app.command()
def run(
    topology: TopologyFile,
    gateway: Gateway,
    edge_bootstrap: Annotated[
        str | None, typer.Option("--edge-bootstrap", help="Edge broker HOST:PORT.")
    ] = None,
    cloud_bootstrap: CloudBootstrap = None,
    registry: Registry = None,
    data_dir: DataDir = None,
    report_interval: float = typer.Option(
        60.0, "--report-interval", help="Seconds between ForwarderReports (0: drops only)."
    ),
    loglevel: LogLevel = "info",
    metrics_port: MetricsPort = None,
) -> None:
    """Forward a gateway's alerts and summaries to the cloud until Ctrl-C / SIGTERM.

    Survives kill -9 and cloud outages: records wait in the outbox on disk (alerts first),
    summaries are rolled up past the byte budget, drops are counted and reported.
    """
    from edgestream.core.metrics import resolve_port, serve_metrics
    from edgestream.core.security import redact, resolve_security
    from edgestream.forward.config import ForwarderConfig
    from edgestream.forward.forwarder import run_forwarder

    apply_loglevel(loglevel)
    place = gateway_place(
        topology, gateway, edge=edge_bootstrap, registry=registry, data_dir=data_dir,
        cloud=cloud_bootstrap, forwarder=True, edge_flag="--edge-bootstrap",
    )  # fmt: skip
    config = ForwarderConfig(
        topology=place.topology,
        gateway_id=gateway,
        edge_bootstrap=place.edge,
        cloud_bootstrap=str(place.cloud),
        registry=place.registry,
        data_dir=place.data_dir,
        security=resolve_security(place.topology),
        report_interval_s=report_interval,
    )
    typer.echo(
        f"forwarder {gateway}: edge {config.edge_bootstrap} -> cloud {config.cloud_bootstrap} "
        f"({config.security.protocol}), outbox {config.outbox_config().path}"
    )
    logging.getLogger("edgestream.forward").info(
        "cloud client settings %s", redact(config.security.client_config())
    )
    serve_metrics("forward", config.data_dir, resolve_port(metrics_port), echo=typer.echo)
    run_forwarder(config)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


@app.command()
def status(
    gateway: Gateway,
    data_dir: DataDir = None,
    topology: Path = typer.Option(None, "--topology", help="Topology (for a custom path)."),
    json_out: JsonOnly = False,
) -> None:
    """Outbox depth, oldest age, bytes, drops, roll-ups and bytes in/out of a forwarder."""
    from edgestream.core.topology import load_topology
    from edgestream.forward.outbox import Outbox
    from edgestream.forward.outbox_config import OutboxConfig, outbox_path

    topo = load_topology(topology) if topology else None
    path = outbox_path(topo, gateway, data_dir or gateway_data_dir(gateway))
    box = Outbox(OutboxConfig(path), gateway, readonly=True)
    try:
        stats = box.stats()
    finally:
        box.close()
    if topo is not None:
        stats.max_bytes = topo.forwarding.outbox.max_bytes
    data = {"gateway": gateway, "outbox": str(path), **stats.as_dict()}
    if json_out:
        typer.echo(json.dumps(data, separators=(",", ":")))
        return
    table = Table(title=f"forwarder {gateway}: {path}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    ratio = data["cloud_vs_sensor_bytes"]
    rows = [
        ("waiting records", f"{stats.depth:,}  {stats.waiting or ''}"),
        ("waiting bytes", _human(stats.bytes)),
        ("oldest waiting", f"{stats.oldest_age_ms / 1000:,.1f} s"),
        ("delivered", f"{stats.delivered:,}"),
        ("dropped", f"{sum(stats.dropped.values()):,}  {stats.dropped or ''}"),
        ("dropped, not yet reported", f"{stats.dropped_unreported:,}"),
        ("roll-ups (summaries merged)", f"{stats.rollups:,} ({stats.rolled_up:,})"),
        ("refused: id taken by another record", f"{stats.id_conflicts:,}"),
        ("reports written", f"{stats.reports:,}"),
        ("raw sensor bytes in", _human(stats.sensor_bytes)),
        ("cloud bytes out (wire)", _human(stats.cloud_bytes)),
        ("cloud / sensor bytes", "-" if ratio is None else f"{ratio:.3%}"),
        ("next gateway_seq", f"{stats.next_seq:,}"),
    ]
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    """``python -m edgestream.cli.forward``: this group on its own, errors as one line."""
    run_app(app, argv)


if __name__ == "__main__":
    main()
