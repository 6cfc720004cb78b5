"""Which alerts a subscriber wants: site, device, minimum severity, age.

>>> f = AlertFilter.build(site="plant-a", min_severity="warning")
>>> f.matches({"site": "plant-a", "device_id": "p-1", "severity": "critical", "ts": 0})
True
>>> f.matches({"site": "plant-a", "device_id": "p-1", "severity": "info", "ts": 0})
False
>>> f.matches({"site": "plant-b", "device_id": "p-1", "severity": "critical", "ts": 0})
False
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgestream.alerts.exceptions import AlertsError
from edgestream.core.topology import parse_duration

__all__ = ["SEVERITIES", "AlertFilter", "severity_rank"]

#: Severity levels, least severe first.
SEVERITIES = ("info", "warning", "critical")


def severity_rank(level: str) -> int:
    """Position of ``level`` in :data:`SEVERITIES` (unknown levels rank as ``warning``, the
    schema's default)."""
    return SEVERITIES.index(level) if level in SEVERITIES else 1


def _names(value: str | Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    return frozenset(names) or None


@dataclass(frozen=True)
class AlertFilter:
    """An alert passes when every given criterion holds (``None`` = any).

    ``sites``/``devices`` are sets of names; ``min_severity`` one of :data:`SEVERITIES`;
    ``since_ms`` an event-time lower bound (epoch ms) on the alert's ``ts``.
    """

    sites: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    min_severity: str | None = None
    since_ms: int | None = None

    @classmethod
    def build(
        cls,
        site: str | Iterable[str] | None = None,
        device: str | Iterable[str] | None = None,
        min_severity: str | None = None,
        since: str | int | None = None,
        now_ms: int | None = None,
    ) -> AlertFilter:
        """A filter from user input: ``since`` is a duration back from now (``15m``, ``2h``,
        milliseconds as an int); a bad value is an :class:`AlertsError` saying what to give.

        >>> AlertFilter.build(since="1m", now_ms=100_000).since_ms
        40000
        """
        if min_severity is not None and min_severity not in SEVERITIES:
            raise AlertsError(
                f"--min-severity {min_severity!r}: expected one of {', '.join(SEVERITIES)}"
            )
        since_ms = None
        if since is not None:
            try:
                span = parse_duration(since)
            except (TypeError, ValueError) as error:
                raise AlertsError(
                    f"--since {since!r}: expected a duration like 30s, 15m, 2h or 1d ({error})"
                ) from None
            now = int(time.time() * 1000) if now_ms is None else now_ms
            since_ms = now - span
        return cls(_names(site), _names(device), min_severity, since_ms)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        """True when the decoded AnomalyAlert ``alert`` passes the filter."""
        if self.sites is not None and alert.get("site") not in self.sites:
            return False
        if self.devices is not None and alert.get("device_id") not in self.devices:
            return False
        if self.min_severity is not None and severity_rank(
            str(alert.get("severity"))
        ) < severity_rank(self.min_severity):
            return False
        return self.since_ms is None or int(alert.get("ts") or 0) >= self.since_ms
