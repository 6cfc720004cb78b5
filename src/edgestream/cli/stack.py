"""``edgestream stack start|status|stop``: the embedded brokers and schema registry."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgestream.cli.app import group, group_hook
from edgestream.core.stack import Stack, StackStatus

app = group("The embedded stack: a broker per gateway, a cloud broker, a registry.")

register = group_hook(app, "stack")


console = Console()

StackDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Stack state dir (default $EDGESTREAM_HOME/stack)."),
]


def _table(status: StackStatus) -> Table:
    table = Table(title="edgestream embedded stack")
    for column in ("component", "kind", "address", "pid", "RSS MB", "start s", "state"):
        table.add_column(column)
    for name, comp in status.components.items():
        state = "[green]ready[/]" if status.health[name] else "[red]down[/]"
        rss, took = comp.rss_mb(), comp.start_s
        table.add_row(name, comp.kind, comp.address, str(comp.pid or "-"),
                      "-" if rss is None else f"{rss:.0f}", "-" if took is None else f"{took:.1f}",
                      state)  # fmt: skip
    return table


@app.command()
def start(
    gateways: int = typer.Option(None, "--gateways", "-g", help="Edge brokers (default 1)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Leave it running and return."),
    port_base: int = typer.Option(None, "--port-base", help="Fixed ports from here on."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for each component."),
    tls: bool = typer.Option(
        False, "--tls", help="Cloud broker also on SSL and SASL_SSL/SCRAM listeners (own CA)."
    ),
    data_dir: StackDir = None,
) -> None:
    """Start the stack (idempotent: running components are kept)."""
    stack = Stack(data_dir)
    with console.status("starting brokers and registry..."):
        status = stack.start(gateways=gateways, port_base=port_base, timeout=timeout, tls=tls)
    console.print(_table(status))
    cloud_tls = status.endpoints().get("cloud_tls")
    if isinstance(cloud_tls, dict):
        console.print(
            f"cloud TLS: SSL {cloud_tls['ssl']}, SASL_SSL {cloud_tls['sasl_ssl']} "
            f"(CA {cloud_tls['ca_file']}, SCRAM user {cloud_tls['sasl_username']}, password in "
            f"{cloud_tls['sasl_password_file']})"
        )
    if detach:
        console.print("stop it with [bold]edgestream stack stop[/]")
        return
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    console.print("running; Ctrl-C stops the stack")
    try:
        while not stopping.wait(2.0):
            down = [n for n, ok in stack.status().health.items() if not ok]
            if down:
                console.print(f"[red]down:[/] {', '.join(down)} (see {stack.log_dir})")
                stopping.wait(10.0)
    except KeyboardInterrupt:
        pass
    stack.stop()
    console.print("stack stopped")


@app.command()
def status(
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object: the endpoints, and each process's RSS and start."
    ),
    data_dir: StackDir = None,
) -> None:
    """Show what runs where; exit code 1 when the stack is not fully running."""
    current = Stack(data_dir).status()
    if as_json:
        print(json.dumps({**current.endpoints(), "processes": current.processes()}))
    elif current.components:
        console.print(_table(current))
    else:
        console.print("the stack is not running: start it with [bold]edgestream stack start[/]")
    if not current.running:
        raise typer.Exit(1)


@app.command()
def stop(
    only: list[str] = typer.Option(None, "--only", help="Stop just these components."),
    purge: bool = typer.Option(
        False, "--purge", help="Also delete the stopped brokers' topics and records."
    ),
    data_dir: StackDir = None,
) -> None:
    """Stop the stack (or some components); waits until processes are gone and ports free.

    Brokers keep their data for the next start unless ``--purge`` is given."""
    stopped = Stack(data_dir).stop(only or None, purge=purge)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
