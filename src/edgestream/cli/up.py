"""``edgestream up``: the whole loop on the embedded default, with a live console."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from edgestream.cli.alerts import alert_cells
from edgestream.cli.app import command_hook
from edgestream.cli.options import Duration, JsonLine, Rate, Seed, ShippedTopology

if TYPE_CHECKING:
    from edgestream.loop import LoopConfig, LoopState

console = Console()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:,.0f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


def _gateways(state: LoopState) -> Table:
    table = Table(title="gateways", expand=True)
    columns = ("gateway", "worker", "forwarder", "sent", "readings/s", "summaries", "alerts")
    columns += ("outbox", "models")
    for column in columns:
        left = column in ("gateway", "worker", "forwarder", "models")
        table.add_column(column, justify="left" if left else "right")
    for gw in state.gateways.values():
        worker = "[green]up[/]" if gw.worker_alive else "[red]down[/]"
        fwd = gw.forwarder
        forwarder = "-" if fwd is None else ("[green]up[/]" if fwd.alive else "[red]down[/]")
        if fwd is not None and fwd.restarts:
            forwarder += f" ({fwd.restarts} restarts)"
        models = gw.figures.get("models", {})
        table.add_row(
            gw.name,
            f"{worker} pid {gw.worker_pid}" + (f" ({gw.restarts} restarts)" if gw.restarts else ""),
            forwarder,
            f"{gw.readings:,}",
            f"{gw.rate:,.0f}",
            f"{gw.summaries:,}",
            f"{gw.alerts:,}",
            f"{gw.figures.get('outbox_depth', '-')}",
            " ".join(f"{t}={v}" for t, v in sorted(models.items())) or "-",
        )
    return table


def _alerts(state: LoopState) -> Table:
    cloud = state.cloud.figures if state.cloud is not None else None
    latest = list(cloud.latest_alerts) if cloud and cloud.latest_alerts else []
    where = "cloud, deduplicated" if latest else "edge"
    latest = latest or list(state.latest_alerts)
    alerts = Table(title=f"latest alerts ({where})", expand=True)
    columns = ("gateway", "status", "severity", "device", "site", "score", "model")
    for column in columns:
        alerts.add_column(column)
    for alert in latest[:6]:
        cells = alert_cells(alert, missing="-")
        alerts.add_row(*(cells[column] for column in columns))
    return alerts


def _fleet(state: LoopState) -> Table:
    table = Table(title="fleet stats (cloud, latest window per site)", expand=True)
    for column in ("site", "window end", "devices", "readings", "anomaly rate", "models"):
        table.add_column(column, justify="left" if column in ("site", "models") else "right")
    figures = state.cloud.figures if state.cloud is not None else None
    rows = sorted((figures.fleet_stats if figures else {}).items())
    for _key, row in [r for r in rows if r[1].get("scope") == "site"][:6]:
        end = row.get("window_end")
        table.add_row(
            str(row.get("scope_key")),
            time.strftime("%H:%M:%S", time.gmtime(end / 1000)) if isinstance(end, int) else "-",
            f"{row.get('device_count', 0):,}",
            f"{row.get('reading_count', 0):,}",
            f"{row.get('anomaly_rate') or 0:.2%}",
            " ".join(f"{k}:{v}" for k, v in sorted((row.get("model_versions") or {}).items())),
        )
    return table


def _cloud_line(state: LoopState) -> str:
    s = state.summary()
    saved = "-" if s["bytes_saved"] is None else f"{s['bytes_saved']:.1%}"
    line = (
        f"cloud: alerts {s['alerts_cloud']:,}  summaries {s['summaries_cloud']:,}  "
        f"fleet-stats windows {s['fleet_stats_windows']:,}  bytes saved {saved}\n"
        f"models: retrain requests {s['retrain_requests']}  retrains {s['retrains']}  "
        f"promotions {s['model_promotions']} (gateways {s['gateway_promotions']})  "
        f"rollbacks {s['rollbacks']}"
    )
    for name, managed in state.services.items():
        up = "[green]up[/]" if managed.alive else "[red]down[/]"
        line += f"\n{name}: {up} pid {managed.pid}"
    for missing in state.missing:
        line += f"\n[yellow]not started:[/] {missing}"
    return line


def _metrics(state: LoopState) -> str:
    urls = [f"{m.name}: {m.metrics_url}" for m in state.processes() if m.metrics_url]
    return "\n".join(urls) or "(starting)"


def _view(state: LoopState, duration: float | None, dashboard: str | None = None) -> Group:
    until = f" / {duration:.0f}s" if duration else ""
    ends = state.endpoints
    head = (
        f"[bold]{state.phase}[/] {state.elapsed:5.0f}s{until}   "
        f"cloud {ends.get('cloud', '-')}   registry {ends.get('registry', '-')}"
        + (f"   dashboard {dashboard}" if dashboard else "")
        + "\n"
        + _cloud_line(state)
    )
    return Group(
        Panel(head, title="edgestream up"),
        _gateways(state),
        _alerts(state),
        _fleet(state),
        Panel(_metrics(state), title="Prometheus metrics", title_align="left"),
    )


def up_command(
    topology: ShippedTopology = None,
    duration: Duration = None,
    gateways: int = typer.Option(
        None, "--gateways", help="Run N gateways (default: the topology's)."
    ),
    devices: int = typer.Option(6, "--devices", help="Simulated devices per gateway."),
    rate: Rate = 10.0,
    seed: Seed = 1,
    keep_stack: bool = typer.Option(False, "--keep-stack", help="Leave the stack running."),
    cloud: bool = typer.Option(
        True, "--cloud/--no-cloud", help="Start the cloud Flink job and the retrainer."
    ),
    as_json: JsonLine = False,
    until_loop_closed: bool = typer.Option(
        False,
        "--until-loop-closed",
        help="Stop once a retrained model is live on every gateway (or --duration passes).",
    ),
    dashboard: bool = typer.Option(
        True, "--dashboard/--no-dashboard", help="Serve the web dashboard (127.0.0.1)."
    ),
    dashboard_port: int = typer.Option(
        8787, "--dashboard-port", help="Dashboard port (taken: any free one)."
    ),
) -> None:
    """Start the whole loop on the embedded default; Ctrl-C (or --duration) stops it cleanly."""
    from edgestream.loop import LoopConfig, LoopState
    from edgestream.loop.up import default_topology

    config = LoopConfig(
        topology=topology or default_topology(),
        duration=duration,
        devices_per_gateway=devices,
        gateways=gateways,
        rate=rate,
        seed=seed,
        keep_stack=keep_stack,
        cloud=cloud,
        until_loop_closed=until_loop_closed,
    )
    state = LoopState()
    _watch(config, state, dashboard_port if dashboard else None)
    if state.error is not None:
        raise state.error
    _print_summary(state.summary(), as_json)


register = command_hook("up", up_command)


def _watch(config: LoopConfig, state: LoopState, dashboard_port: int | None) -> None:
    """Run the loop on a thread and show it live until it ends, or Ctrl-C / SIGTERM stop
    it (cleanly: the view stays until everything it started is stopped)."""
    stop, finished = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Ctrl-C works even when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    board = None
    if dashboard_port is not None:
        from edgestream.dashboard.run import serve_for_loop

        board = serve_for_loop(lambda: state.endpoints, config.topology, dashboard_port, finished)
        console.print(f"dashboard: {board.url}", soft_wrap=True)
    url = board.url if board is not None else None
    runner = threading.Thread(target=_run, args=(config, stop, state, finished), daemon=True)
    runner.start()
    # wait on an Event, not Thread.join: a join interrupted by KeyboardInterrupt can return
    # early afterwards (CPython), and the exiting interpreter would cut the clean stop short
    duration = config.duration
    try:
        with Live(_view(state, duration, url), console=console, refresh_per_second=2) as live:
            while not finished.wait(0.5):
                live.update(_view(state, duration, url))
    except KeyboardInterrupt:
        stop.set()
        console.print("stopping...")
        while not finished.wait(0.5):
            pass
    finally:
        if board is not None:
            board.stop()


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    table = Table(title="summary")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key not in ("errors", "not_started"):
            shown = f"{value:,}" if isinstance(value, int) else str(value)
            table.add_row(key.replace("_", " "), shown)
    console.print(table)
    for error in summary["errors"]:
        console.print(f"[red]error:[/] {error}")
    for missing in summary["not_started"]:
        console.print(f"[yellow]not started:[/] {missing}")
    if as_json:
        print(json.dumps(summary))


def _run(
    config: LoopConfig, stop: threading.Event, state: LoopState, finished: threading.Event
) -> None:
    from edgestream.loop import run_loop

    try:
        run_loop(config, stop=stop, state=state)
    except BaseException as error:  # re-raised on the main thread
        state.error = error
    finally:
        finished.set()
