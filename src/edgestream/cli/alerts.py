"""``edgestream alerts``: the fleet's alerts as a live table or JSON lines.

edgestream alerts --site plant-north --min-severity critical --follow
edgestream alerts --since 1h --format json | jq .device_id
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from edgestream.cli.app import command_hook
from edgestream.cli.options import CloudBroker, Registry

#: (header, width) of the table columns.
_COLUMNS: tuple[tuple[str, int], ...] = (
    ("time (UTC)", 23),
    ("severity", 8),
    ("status", 8),
    ("site", 14),
    ("device", 14),
    ("gateway", 10),
    ("score", 7),
    ("rule", 20),
    ("model", 8),
)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def table_header() -> str:
    """The header line of the table format."""
    return " ".join(name.ljust(width) for name, width in _COLUMNS).rstrip()


def alert_cells(record: dict[str, Any], missing: str = "") -> dict[str, str]:
    """An alert's cells by column header, as this table and ``edgestream up`` show them.

    >>> alert_cells({"ts": 0, "severity": "info", "score": 0.5}, missing="-")["device"]
    '-'
    """
    return {
        "time (UTC)": _time(int(record.get("ts") or 0)),
        "severity": str(record.get("severity", missing)),
        "status": str(record.get("status", missing)),
        "site": str(record.get("site", missing)),
        "device": str(record.get("device_id", missing)),
        "gateway": str(record.get("gateway_id", missing)),
        "score": f"{float(record.get('score') or 0.0):.3f}",
        "rule": str(record.get("rule", missing)),
        "model": str(record.get("model_version") or "-"),
    }


def table_row(record: dict[str, Any]) -> str:
    """One alert as a table line (long values are cut to the column width).

    >>> table_row({"ts": 0, "severity": "critical", "status": "open", "site": "s",
    ...            "device_id": "d", "gateway_id": "g", "score": 0.91234, "rule": "threshold",
    ...            "model_version": "v1"})[:44]
    '1970-01-01 00:00:00.000 critical open     s '
    """
    cells = alert_cells(record)
    return " ".join(cells[name][:width].ljust(width) for name, width in _COLUMNS).rstrip()


def alerts_command(
    site: list[str] = typer.Option(None, "--site", help="Only this site (repeatable)."),
    device: list[str] = typer.Option(None, "--device", help="Only this device (repeatable)."),
    min_severity: str = typer.Option(
        None, "--min-severity", help="info, warning or critical: this level and above."
    ),
    since: str = typer.Option(None, "--since", help="Only alerts of the last 30s, 15m, 2h..."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new alerts."),
    output: str = typer.Option("table", "--format", help="table or json (JSON lines)."),
    group: str = typer.Option(
        "edgestream-alerts-cli",
        "--group",
        help="Consumer group whose committed offsets are the resume point.",
    ),
    from_start: bool = typer.Option(
        False, "--from-start", help="Ignore the group's committed offsets (read everything)."
    ),
    topology: Path = typer.Option(
        None, "--topology", "-t", help="Topology YAML (cloud broker, registry, alert topic)."
    ),
    topic: str = typer.Option(
        None, "--topic", help="Alert topic (default: the topology's, else fleet.alerts)."
    ),
    bootstrap: CloudBroker = None,
    registry: Registry = None,
) -> None:
    """Print the fleet's alerts (deduplicated): those already in the topic by event time
    (the reading's ts), oldest first; with --follow, new ones as they arrive (a late one may
    then be older than one printed before).

    A second run with the same --group prints only alerts that arrived since the first.
    """
    from edgestream.alerts import AlertsError, subscribe

    if output not in ("table", "json"):
        raise AlertsError(f"--format {output!r}: expected table or json")
    subscription = subscribe(
        site=site or None,
        device=device or None,
        min_severity=min_severity,
        since=since,
        follow=follow,
        group=group,
        from_start=from_start,
        topology=topology,
        bootstrap=bootstrap,
        registry=registry,
        topic=topic,
    )
    try:
        _print_alerts(subscription, output)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # e.g. piped into `head`
        pass
    finally:
        subscription.close()


register = command_hook("alerts", alerts_command)


def _print_alerts(alerts: Iterable[Any], output: str) -> None:
    """Each alert as a table line (under a header) or a JSON line, flushed as it comes."""
    out = sys.stdout
    if output == "table":
        out.write(table_header() + "\n")
        out.flush()
    for alert in alerts:
        line = table_row(alert.record) if output == "table" else json.dumps(alert.record)
        out.write(line + "\n")
        out.flush()
