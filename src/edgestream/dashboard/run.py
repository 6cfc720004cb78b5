"""Run the dashboard: the web server in a thread, fed by a reader of the cloud topics.

The reader is :class:`edgestream.loop.watch.CloudWatch` (the one ``edgestream up`` uses:
Avro decoded against the registry, forwarded records deduplicated and completed) with a sink
that feeds a :class:`~edgestream.dashboard.fleet.FleetView` and pushes to the open pages.

``edgestream dashboard`` starts both at once; ``edgestream up`` starts the server first (its
URL is printed before the stack is up) and attaches the reader once the cloud broker runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from edgestream.dashboard.config import DashboardConfig
from edgestream.dashboard.exceptions import DashboardError
from edgestream.dashboard.fleet import FleetView, alert_row
from edgestream.dashboard.server import Hub, make_app
from edgestream.loop.watch import CloudWatch

__all__ = ["KINDS", "Dashboard", "serve_for_loop"]

log = logging.getLogger("edgestream.dashboard")

#: topic role (``deploy.plan.cloud_topics``) -> record kind (``FleetView.add``)
KINDS = {
    "alerts": "alert", "summaries": "summary", "samples": "sample", "reports": "report",
    "rollout": "rollout", "retrain": "retrain", "models": "model", "stats": "stats",
}  # fmt: skip


class Dashboard:
    """The dashboard of one deployment: :meth:`start` serves, :meth:`attach` reads the cloud.

    >>> board = Dashboard(DashboardConfig(port=0)).start()
    >>> board.url.startswith("http://127.0.0.1:")
    True
    >>> board.stop()
    """

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.view = FleetView(stale_after_s=config.stale_after_s)
        self.hub = Hub()
        self.watch: CloudWatch | None = None
        self._kinds: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self.port = config.port

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> Dashboard:
        """Bind (errors now, on this thread) and serve in a background thread."""
        try:
            self._sock = socket.create_server(
                (self.config.host, self.config.port),
                family=socket.AF_INET6 if ":" in self.config.host else socket.AF_INET,
            )
        except OSError as error:
            raise DashboardError(
                f"cannot listen on {self.config.host}:{self.config.port} ({error}): pick "
                "another --port (0: any free one)"
            ) from None
        self.port = self._sock.getsockname()[1]
        ready = threading.Event()
        thread = threading.Thread(target=self._serve, args=(ready,), name="dashboard", daemon=True)
        thread.start()
        self._threads.append(thread)
        ready.wait(10)
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = make_app(self.config, self.view, self.hub)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            assert self._sock is not None
            site = web.SockSite(runner, self._sock)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def attach(
        self,
        bootstrap: str,
        registry: str,
        topics: dict[str, str],
        client_settings: dict[str, object] | None = None,
    ) -> None:
        """Start reading the cloud topics (``deploy.plan.cloud_topics``) into the view."""
        self._kinds = {topic: KINDS[role] for role, topic in topics.items() if role in KINDS}
        watch = self.watch = CloudWatch(bootstrap, registry, topics, self._sink, client_settings)

        def read() -> None:
            try:
                watch.run(self._stop)
            except Exception as error:  # e.g. the cloud broker does not answer at start
                watch.error = f"cloud reader stopped: {error}"
                log.exception("dashboard: cloud reader stopped")
            self.view.error = watch.error  # shown on the overview page

        thread = threading.Thread(target=read, name="dashboard-cloud", daemon=True)
        thread.start()
        self._threads.append(thread)

    def feed(self, kind: str, record: dict[str, Any], now_ms: int | None = None) -> None:
        """Show one record of ``kind`` (see :data:`KINDS`) and push it to the open pages."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self.view.add(kind, record, now)
        self.hub.publish(kind, alert_row(record, now) if kind == "alert" else None)

    def _sink(self, topic: str, record: dict[str, Any]) -> None:
        kind = self._kinds.get(topic)
        if kind is None:
            return
        try:
            self.feed(kind, record)
        except Exception:  # one odd record must not stop the reader
            log.exception("dashboard: %s record not shown", topic)

    def stop(self) -> None:
        """Stop the reader and the server (open event streams are closed)."""
        self._stop.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=15)


def serve_for_loop(
    endpoints: Callable[[], dict[str, Any]], topology: Path, port: int, done: threading.Event
) -> Dashboard:
    """The dashboard of ``edgestream up``: served on 127.0.0.1 now (at ``port``, or any free
    port when that one is taken), reading the cloud once ``endpoints()`` (the loop's, filled
    when its stack runs) names the cloud broker and the registry; gives up when ``done``."""
    from edgestream.core.topology import load_topology
    from edgestream.deploy.plan import cloud_topics

    try:
        board = Dashboard(DashboardConfig(port=port)).start()
    except DashboardError:
        board = Dashboard(DashboardConfig(port=0)).start()
    topics = cloud_topics(load_topology(topology))

    def attach_when_up() -> None:
        while not (done.is_set() or board.stopped):
            ends = endpoints()
            if ends.get("cloud") and ends.get("registry"):
                board.attach(str(ends["cloud"]), str(ends["registry"]), topics)
                return
            done.wait(0.5)

    threading.Thread(target=attach_when_up, name="dashboard-attach", daemon=True).start()
    return board
