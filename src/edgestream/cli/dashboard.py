"""``edgestream dashboard [TOPOLOGY]``: the web dashboard against any deployment.

It reads the cloud side (cloud broker + schema registry, resolved like ``edgestream alerts``:
options, then the topology, then the running embedded stack) and serves on 127.0.0.1; a
``--host`` beyond loopback needs ``--token`` (or ``EDGESTREAM_DASHBOARD_TOKEN``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Add the ``dashboard`` command to the root app."""
    app.command("dashboard")(dashboard_command)


def dashboard_command(
    topology: Path = typer.Argument(None, help="Topology YAML (default: the shipped one)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Listen here; beyond loopback needs --token."
    ),
    port: int = typer.Option(8787, "--port", help="Port (0: any free one)."),
    token: str = typer.Option(
        None, "--token", help="Every request must carry it (env EDGESTREAM_DASHBOARD_TOKEN)."
    ),
    bootstrap: str = typer.Option(None, "--bootstrap", help="Cloud broker HOST:PORT."),
    registry: str = typer.Option(None, "--registry", help="Schema registry URL."),
    stale_after: float = typer.Option(
        120.0, "--stale-after", help="A gateway not heard from this many seconds is down."
    ),
) -> None:
    """Serve the fleet dashboard (overview, alerts, analytics, devices, models)."""
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.core.topology import load_topology
    from edgestream.dashboard import Dashboard, DashboardConfig, dashboard_topics
    from edgestream.dashboard.config import TOKEN_ENV
    from edgestream.loop.up import default_topology

    loaded = load_topology(topology or default_topology())
    config = DashboardConfig(
        host=host, port=port, token=token or os.environ.get(TOKEN_ENV) or None,
        stale_after_s=stale_after,
    )  # fmt: skip
    ends = cloud_endpoints(bootstrap, registry, loaded)
    board = Dashboard(config).start()
    board.attach(ends.bootstrap, ends.registry, dashboard_topics(loaded), ends.client_settings)
    hint = "?token=<token>" if config.token else ""
    console.print(f"dashboard: {board.url}{hint}  (cloud {ends.bootstrap}; Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        board.stop()
