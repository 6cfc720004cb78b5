"""``edgestream up``: the whole loop on the embedded default, with a live console."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    from edgestream.loop import LoopConfig, LoopState

console = Console()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


def _view(state: LoopState, duration: float | None) -> Group:
    table = Table(title="gateways", expand=True)
    columns = ("gateway", "worker", "readings", "readings/s", "sensor bytes", "summaries", "alerts")
    for column in columns:
        table.add_column(column, justify="left" if column in ("gateway", "worker") else "right")
    elapsed = max(state.elapsed, 1e-6)
    for gw in state.gateways.values():
        worker = "[green]up[/]" if gw.worker_alive else "[red]down[/]"
        table.add_row(
            gw.name,
            f"{worker} pid {gw.worker_pid}",
            f"{gw.readings:,}",
            f"{gw.readings / elapsed:,.0f}",
            _human(gw.bytes),
            f"{gw.summaries:,}",
            f"{gw.alerts:,}",
        )
    alerts = Table(title="latest alerts (edge)", expand=True)
    for column in ("status", "severity", "device", "site", "rule", "score", "readings"):
        alerts.add_column(column)
    for alert in list(state.latest_alerts):
        alerts.add_row(
            alert["status"],
            alert["severity"],
            alert["device_id"],
            alert["site"],
            alert["rule"],
            f"{alert['score']:.3f}",
            str(alert["reading_count"]),
        )
    until = f" / {duration:.0f}s" if duration else ""
    ends = state.endpoints
    head = (
        f"[bold]{state.phase}[/] {state.elapsed:5.0f}s{until}   "
        f"cloud {ends.get('cloud', '-')}   registry {ends.get('registry', '-')}"
    )
    return Group(Panel(head, title="edgestream up"), table, alerts)


def register(app: typer.Typer) -> None:
    """Add the ``up`` command to the root app."""

    @app.command()
    def up(
        topology: Path = typer.Argument(None, help="Topology YAML (default: the shipped one)."),
        duration: float = typer.Option(None, "--duration", help="Run this many seconds."),
        devices: int = typer.Option(6, "--devices", help="Simulated devices per gateway."),
        rate: float = typer.Option(10.0, "--rate", help="Readings/s per device."),
        seed: int = typer.Option(1, "--seed"),
        keep_stack: bool = typer.Option(False, "--keep-stack", help="Leave the stack running."),
        as_json: bool = typer.Option(False, "--json", help="Last line: the summary as JSON."),
    ) -> None:
        """Start the whole loop on the embedded default; Ctrl-C (or --duration) stops it cleanly."""
        from edgestream.loop import LoopConfig, LoopState
        from edgestream.loop.up import default_topology

        config = LoopConfig(
            topology=topology or default_topology(),
            duration=duration,
            devices_per_gateway=devices,
            rate=rate,
            seed=seed,
            keep_stack=keep_stack,
        )
        stop = threading.Event()
        state = LoopState()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        runner = threading.Thread(target=_run, args=(config, stop, state), daemon=True)
        runner.start()
        try:
            with Live(_view(state, duration), console=console, refresh_per_second=2) as live:
                while runner.is_alive():
                    runner.join(0.5)
                    live.update(_view(state, duration))
        except KeyboardInterrupt:
            stop.set()
            console.print("stopping...")
            runner.join()
        if state.error is not None:
            raise state.error
        summary = state.summary()
        table = Table(title="summary")
        table.add_column("")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if key != "errors":
                shown = f"{value:,}" if isinstance(value, int) else str(value)
                table.add_row(key.replace("_", " "), shown)
        console.print(table)
        for error in summary["errors"]:  # type: ignore[union-attr]
            console.print(f"[red]error:[/] {error}")
        if as_json:
            print(json.dumps(summary))


def _run(config: LoopConfig, stop: threading.Event, state: LoopState) -> None:
    from edgestream.loop import run_loop

    try:
        run_loop(config, stop=stop, state=state)
    except BaseException as error:  # re-raised on the main thread
        state.error = error
