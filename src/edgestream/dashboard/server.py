"""The dashboard's web server (aiohttp): pages, JSON answers and push updates (SSE).

Pages are static HTML + JS under ``static/`` (charts: uPlot, vendored there: no CDN, gateways
and plants are often offline). ``/api/events`` is a Server-Sent Events stream: ``alert``
events carry each new alert as it is read from the cloud; ``changed`` events name what else
changed (``stats``, ``report``, ``sample``, ...), at most once a second per kind, and the pages
fetch the JSON again.

Every request passes :func:`guard`: on a loopback address the ``Host`` header must name
loopback (a page on another site cannot reach the dashboard through DNS rebinding); with a
token, the request must carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from importlib import resources
from typing import Any

from aiohttp import web

from edgestream.alerts.exceptions import AlertsError
from edgestream.alerts.filters import AlertFilter
from edgestream.dashboard.config import DashboardConfig, is_loopback
from edgestream.dashboard.fleet import FleetView

__all__ = ["COOKIE", "PAGES", "Hub", "make_app"]

COOKIE = "edgestream_dashboard"
#: path -> (page script, title)
PAGES = {
    "/": ("overview", "Fleet overview"),
    "/alerts": ("alerts", "Live alerts"),
    "/analytics": ("analytics", "Fleet analytics"),
    "/devices": ("device", "Devices"),
    "/models": ("models", "Models and rollout"),
}
STATIC = resources.files("edgestream.dashboard") / "static"
CONFIG_KEY = web.AppKey("config", DashboardConfig)
VIEW_KEY = web.AppKey("view", FleetView)
HUB_KEY = web.AppKey("hub", "Hub")


class Hub:
    """Fans records out to the open event streams; called from any thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue[tuple[str, Any]]] = set()
        self._pending: set[str] = set()

    def publish(self, kind: str, payload: Any = None) -> None:
        """Queue an event for every stream (thread-safe; a no-op before the server runs)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._publish, kind, payload)

    def _publish(self, kind: str, payload: Any) -> None:
        if kind != "alert":  # coalesced: flushed once a second
            self._pending.add(kind)
            return
        for queue in list(self.queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(("alert", payload))

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._pending:
                kinds, self._pending = sorted(self._pending), set()
                for queue in list(self.queues):
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(("changed", kinds))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _host_ok(request: web.Request, config: DashboardConfig) -> bool:
    if not is_loopback(config.host):
        return True
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return is_loopback(host)


def _token_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth[len("Bearer ") :]
    return request.query.get("token") or request.cookies.get(COOKIE)


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Loopback Host header on a loopback bind; the token when one is set (see module doc)."""
    config = request.app[CONFIG_KEY]
    if not _host_ok(request, config):
        raise web.HTTPForbidden(text="this dashboard answers to 127.0.0.1 / localhost only\n")
    if config.token is not None:
        given = _token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), config.token.encode()):
            raise web.HTTPUnauthorized(
                text="token required: open the dashboard URL with ?token=<token>, "
                "or send `Authorization: Bearer <token>`\n"
            )
    response = await handler(request)
    if config.token is not None and request.query.get("token"):
        response.set_cookie(COOKIE, config.token, httponly=True, samesite="Strict", path="/")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _shell(script: str, title: str) -> str:
    nav = "".join(
        f'<a href="{path}" data-nav="{page}">{name}</a>' for path, (page, name) in PAGES.items()
    )
    template = (STATIC / "shell.html").read_text()
    return template.format(title=title, nav=nav, script=script)


def _page(script: str, title: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=_shell(script, title), content_type="text/html")

    return handler


async def _overview(request: web.Request) -> web.Response:
    view = request.app[VIEW_KEY]
    body = {"now_ms": _now_ms(), "gateways": view.gateways(_now_ms()), "counts": dict(view.counts)}
    body["error"] = view.error
    return web.json_response(body)


async def _alerts(request: web.Request) -> web.Response:
    q = request.query
    try:
        wanted = AlertFilter.build(
            site=q.get("site") or None,
            device=q.get("device") or None,
            min_severity=q.get("min_severity") or None,
        )
    except AlertsError as error:
        raise web.HTTPBadRequest(text=f"{error}\n") from None
    view = request.app[VIEW_KEY]
    limit = min(int(q.get("limit", "200")), 2000)
    return web.json_response({"alerts": view.alerts(wanted, limit), **view.choices()})


async def _stats(request: web.Request) -> web.Response:
    stats = request.app[VIEW_KEY].stats
    body = {
        "site": stats.rates("site"),
        "device_type": stats.rates("device_type"),
        "worst": stats.worst(),
        "latest": stats.latest("fleet"),
    }
    return web.json_response(body)


async def _device(request: web.Request) -> web.Response:
    view = request.app[VIEW_KEY]
    device_id = request.match_info.get("device_id", "")
    found = view.device(device_id) if device_id else None
    if device_id and found is None:
        raise web.HTTPNotFound(text=f"no device {device_id!r} seen on the cloud topics yet\n")
    return web.json_response({"device": found, **view.choices()})


async def _models(request: web.Request) -> web.Response:
    view = request.app[VIEW_KEY]
    live = {row["gateway"]: row["models"] for row in view.gateways(_now_ms())}
    return web.json_response({"events": view.timeline.events(), "live": live})


async def _events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1000)
    hub.queues.add(queue)
    try:
        await response.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                kind, payload = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            data = json.dumps(payload, separators=(",", ":"))
            await response.write(f"event: {kind}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.queues.discard(queue)
    return response


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "counts": request.app[VIEW_KEY].counts})


def make_app(config: DashboardConfig, view: FleetView, hub: Hub) -> web.Application:
    """The aiohttp application (routes, guard, static files)."""
    app = web.Application(middlewares=[guard])
    app[CONFIG_KEY], app[VIEW_KEY], app[HUB_KEY] = config, view, hub
    for path, (script, title) in PAGES.items():
        app.router.add_get(path, _page(script, title))
    app.router.add_get("/devices/{device_id}", _page("device", "Device"))
    app.router.add_get("/api/overview", _overview)
    app.router.add_get("/api/alerts", _alerts)
    app.router.add_get("/api/stats", _stats)
    app.router.add_get("/api/devices", _device)
    app.router.add_get("/api/devices/{device_id}", _device)
    app.router.add_get("/api/models", _models)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/healthz", _health)
    app.router.add_static("/static", str(STATIC))

    async def flusher(app: web.Application) -> Any:
        hub.loop = asyncio.get_running_loop()
        task = asyncio.create_task(hub.flush_forever())
        yield
        task.cancel()
        hub.loop = None

    app.cleanup_ctx.append(flusher)
    return app
