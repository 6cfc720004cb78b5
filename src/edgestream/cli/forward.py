"""``edgestream forward run|status``: a gateway's forwarder and its durable outbox.

Usage:

    edgestream forward run topologies/default.yaml --gateway gw-1
    edgestream forward run topo.yaml -g gw-1 --cloud-bootstrap kafka:9093 --data-dir /var/lib/es
    edgestream forward status --gateway gw-1 --data-dir /var/lib/es --json
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.paths import home_dir

if TYPE_CHECKING:  # imported when a command runs: `edgestream --help` stays fast
    from edgestream.forward.config import ForwarderConfig

app = typer.Typer(
    help="Forwarding: the durable outbox between a gateway's edge broker and the cloud.",
    no_args_is_help=True,
)


def default_data_dir(gateway_id: str) -> Path:
    """A gateway's data dir when none is given (shared with ``edgestream edge run``)."""
    return home_dir() / "gateways" / gateway_id


def forwarder_config(
    topology_path: Path,
    gateway_id: str,
    edge_bootstrap: str | None = None,
    cloud_bootstrap: str | None = None,
    registry: str | None = None,
    data_dir: Path | None = None,
    report_interval: float = 60.0,
) -> ForwarderConfig:
    """Resolve where a forwarder runs: options, then the topology, then the embedded stack."""
    from edgestream.core.security import resolve_security
    from edgestream.core.stack import running_endpoints
    from edgestream.core.topology import load_topology
    from edgestream.forward.config import ForwarderConfig

    topology = load_topology(topology_path)
    try:
        gateway = topology.gateway(gateway_id)
    except KeyError as error:
        raise EdgestreamError(str(error.args[0])) from None
    edge = edge_bootstrap or gateway.bootstrap
    cloud = cloud_bootstrap or topology.forwarding.bootstrap
    registry = registry or topology.registry
    if not (edge and cloud and registry):
        endpoints = running_endpoints()
        stack_edge: dict[str, str] = endpoints["edge"]  # type: ignore[assignment]
        if not edge:
            if gateway_id not in stack_edge:
                raise EdgestreamError(
                    f"the embedded stack has no broker for {gateway_id}: start it with "
                    "`edgestream stack start` or pass --edge-bootstrap"
                )
            edge = stack_edge[gateway_id]
        cloud = cloud or str(endpoints["cloud"])
        registry = registry or str(endpoints["registry"])
    return ForwarderConfig(
        topology=topology,
        gateway_id=gateway_id,
        edge_bootstrap=str(edge),
        cloud_bootstrap=str(cloud),
        registry=str(registry),
        data_dir=data_dir or default_data_dir(gateway_id),
        security=resolve_security(topology),
        report_interval_s=report_interval,
    )


@app.command()
def run(
    topology: Path = typer.Argument(..., help="Topology YAML."),
    gateway: str = typer.Option(..., "--gateway", "-g", help="Gateway id from the topology."),
    edge_bootstrap: str = typer.Option(None, "--edge-bootstrap", help="Edge broker HOST:PORT."),
    cloud_bootstrap: str = typer.Option(
        None, "--cloud-bootstrap", help="Cloud broker HOST:PORT[,...] (default: topology)."
    ),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Gateway data dir (the outbox)."),
    report_interval: float = typer.Option(
        60.0, "--report-interval", help="Seconds between ForwarderReports (0: drops only)."
    ),
    loglevel: str = typer.Option("info", "--loglevel", help="debug, info, warning, error."),
    metrics_port: int = typer.Option(
        None,
        "--metrics-port",
        help="Prometheus /metrics port (0: any free one, written to DATA_DIR/forward.metrics-port;"
        " -1: off). Default: $EDGESTREAM_METRICS_PORT, else 0.",
    ),
) -> None:
    """Forward a gateway's alerts and summaries to the cloud until Ctrl-C / SIGTERM.

    Survives kill -9 and cloud outages: records wait in the outbox on disk (alerts first),
    summaries are rolled up past the byte budget, drops are counted and reported.
    """
    from edgestream.core.security import redact
    from edgestream.forward.forwarder import run_forwarder

    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpx2", "httpcore"):  # the registry client logs every request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = forwarder_config(
        topology, gateway, edge_bootstrap, cloud_bootstrap, registry, data_dir, report_interval
    )
    typer.echo(
        f"forwarder {gateway}: edge {config.edge_bootstrap} -> cloud {config.cloud_bootstrap} "
        f"({config.security.protocol}), outbox {config.outbox_config().path}"
    )
    logging.getLogger("edgestream.forward").info(
        "cloud client settings %s", redact(config.security.client_config())
    )
    from edgestream.core.metrics import resolve_port, serve_metrics

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
    gateway: str = typer.Option(..., "--gateway", "-g", help="Gateway id."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Gateway data dir (the outbox)."),
    topology: Path = typer.Option(None, "--topology", help="Topology (for a custom path)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Outbox depth, oldest age, bytes, drops, roll-ups and bytes in/out of a forwarder."""
    from edgestream.core.topology import load_topology
    from edgestream.forward.outbox import Outbox
    from edgestream.forward.outbox_config import OutboxConfig, outbox_path

    topo = load_topology(topology) if topology else None
    path = outbox_path(topo, gateway, data_dir or default_data_dir(gateway))
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
    try:
        app(args=argv, standalone_mode=True)
    except EdgestreamError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
