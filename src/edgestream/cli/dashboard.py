"""``edgestream dashboard [TOPOLOGY]``: the web dashboard against any deployment.

It reads the cloud side (cloud broker + schema registry, resolved like ``edgestream alerts``:
options, then the topology, then the running embedded stack) and serves on 127.0.0.1; a
``--host`` beyond loopback needs ``--token`` (or ``EDGESTREAM_DASHBOARD_TOKEN``).
"""

from __future__ import annotations

import os
import threading

import typer
from rich.console import Console

from edgestream.cli.app import command_hook
from edgestream.cli.options import CloudBroker, Registry, ShippedTopology, load_or_shipped

console = Console()


def dashboard_command(
    topology: ShippedTopology = None,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Listen here; beyond loopback needs --token."
    ),
    port: int = typer.Option(8787, "--port", help="Port (0: any free one)."),
    token: str = typer.Option(
        None, "--token", help="Every request must carry it (env EDGESTREAM_DASHBOARD_TOKEN)."
    ),
    bootstrap: CloudBroker = None,
    registry: Registry = None,
    stale_after: float = typer.Option(
        120.0, "--stale-after", help="A gateway not heard from this many seconds is down."
    ),
) -> None:
    """Serve the fleet dashboard (overview, alerts, analytics, devices, models)."""
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.dashboard import Dashboard, DashboardConfig
    from edgestream.dashboard.config import TOKEN_ENV
    from edgestream.deploy.plan import cloud_topics

    loaded = load_or_shipped(topology)
    config = DashboardConfig(
        host=host, port=port, token=token or os.environ.get(TOKEN_ENV) or None,
        stale_after_s=stale_after,
    )  # fmt: skip
    ends = cloud_endpoints(bootstrap, registry, loaded)
    board = Dashboard(config).start()
    board.attach(ends.bootstrap, ends.registry, cloud_topics(loaded), ends.client_settings)
    hint = "?token=<token>" if config.token else ""
    console.print(f"dashboard: {board.url}{hint}  (cloud {ends.bootstrap}; Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        board.stop()


register = command_hook("dashboard", dashboard_command)
