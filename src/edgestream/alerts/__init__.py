"""Alert subscribers: the fleet's anomaly alerts, deduplicated and filtered, live or as a
snapshot, resuming where the previous subscriber of the same group stopped.

>>> from edgestream.alerts import subscribe
>>> # for alert in subscribe(site="plant-north", min_severity="critical"):   # live
>>> #     print(alert["device_id"], alert.severity)
>>> # async for alert in subscribe(follow=True): ...                        # asyncio

The CLI ``edgestream alerts`` is this function plus a printer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgestream.alerts.exceptions import AlertsError
from edgestream.alerts.filters import SEVERITIES, AlertFilter
from edgestream.alerts.subscriber import DEFAULT_GROUP, Alert, Subscription
from edgestream.core.topology import Topology
from edgestream.wire.topics import FLEET

__all__ = [
    "DEFAULT_GROUP",
    "SEVERITIES",
    "Alert",
    "AlertFilter",
    "AlertsError",
    "Subscription",
    "subscribe",
]


def subscribe(
    *,
    site: str | Iterable[str] | None = None,
    device: str | Iterable[str] | None = None,
    min_severity: str | None = None,
    since: str | int | None = None,
    follow: bool = True,
    group: str | None = DEFAULT_GROUP,
    from_start: bool = False,
    topology: Topology | str | Path | None = None,
    bootstrap: str | None = None,
    registry: str | None = None,
    topic: str | None = None,
) -> Subscription:
    """Subscribe to the fleet's alerts (an iterator and an async iterator of :class:`Alert`).

    Filters: ``site``/``device`` (a name or several), ``min_severity`` (info, warning,
    critical), ``since`` (a duration back from now: ``15m``, ``2h``). ``follow=False`` ends
    at the current end of the topic. ``group`` names the consumer group whose committed
    offsets are the resume point (None: read everything, commit nothing); ``from_start``
    ignores the committed offsets once. Endpoints: ``bootstrap``/``registry``, else the
    topology's, else the running embedded stack; ``topic`` defaults to the topology's
    ``forwarding.topics.alerts`` (``fleet.alerts``).
    """
    from edgestream.core.endpoints import cloud_endpoints
    from edgestream.core.topology import load_topology

    alert_filter = AlertFilter.build(site, device, min_severity, since)
    loaded = load_topology(topology) if isinstance(topology, str | Path) else topology
    endpoints = cloud_endpoints(bootstrap, registry, loaded)
    if topic is None:
        topic = loaded.forwarding.topics.alerts if loaded is not None else FLEET["alerts"]
    return Subscription(endpoints, topic, alert_filter, group, follow, from_start)
