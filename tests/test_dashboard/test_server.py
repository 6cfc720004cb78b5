"""The dashboard's web server on a real socket: pages, JSON, push updates, who may read."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from edgestream.dashboard import Dashboard, DashboardConfig
from edgestream.dashboard.server import COOKIE, PAGES
from tests.support.dashboard_records import T0, alert, fleet_records

TOKEN = "a-long-enough-test-token"


@pytest.fixture(scope="module")
def board() -> Iterator[Dashboard]:
    board = Dashboard(DashboardConfig(port=0)).start()
    for kind, record in fleet_records():
        board.feed(kind, record, now_ms=T0 + 60_000)
    try:
        yield board
    finally:
        board.stop()


def test_pages_load_offline_assets_only(board: Dashboard) -> None:
    """Every page and every script or stylesheet it names is served here: no CDN."""
    with httpx.Client(base_url=board.url, timeout=5) as client:
        for path in [*PAGES, "/devices/gw-1-pump-0"]:
            page = client.get(path)
            assert page.status_code == 200 and "<nav>" in page.text, path
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
            assert any("uPlot.iife.min.js" in a for a in assets)
            assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text), path
            for asset in assets:
                assert client.get(asset).status_code == 200, asset
        licence = client.get("/static/vendor/uplot/LICENSE").text
        assert "MIT License" in licence


def test_json_answers(board: Dashboard) -> None:
    with httpx.Client(base_url=board.url, timeout=5) as client:
        gateways = client.get("/api/overview").json()["gateways"]
        assert [g["gateway"] for g in gateways] == ["gw-1", "gw-2"]
        alerts = client.get("/api/alerts", params={"min_severity": "critical"}).json()
        assert [a["device_id"] for a in alerts["alerts"]] == ["gw-1-pump-0"]
        assert alerts["sites"] == ["site-1", "site-3"]
        assert client.get("/api/alerts", params={"min_severity": "loud"}).status_code == 400
        stats = client.get("/api/stats").json()
        assert len(stats["site"]["ts"]) == 3 and stats["worst"][0]["device_id"] == "gw-1-pump-0"
        device = client.get("/api/devices/gw-1-pump-0").json()["device"]
        assert len(device["ts"]) == 30 and len(device["scores"]) == 3
        assert client.get("/api/devices/nope").status_code == 404
        events = client.get("/api/models").json()["events"]
        assert [e["kind"] for e in events] == ["retrain", "candidate", "promoted"]


def test_a_new_alert_is_pushed(board: Dashboard) -> None:
    """The events stream carries a new alert as soon as it is fed (well within 2 s)."""
    got: list[tuple[float, dict]] = []
    ready = threading.Event()

    def read() -> None:
        with httpx.stream("GET", board.url + "api/events", timeout=10) as stream:
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    ready.set()
                elif line.startswith("data: ") and event == "alert":
                    got.append((time.monotonic(), json.loads(line[6:])))
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(5)
    sent = time.monotonic()
    board.feed("alert", alert("gw-1-pump-9", T0 + 99_000, "critical"))
    reader.join(5)
    assert got and got[0][1]["device_id"] == "gw-1-pump-9"
    assert got[0][0] - sent < 2.0


def test_loopback_dashboard_answers_only_to_loopback_hosts(board: Dashboard) -> None:
    """A page on another site cannot read the dashboard by rebinding its name to 127.0.0.1."""
    with httpx.Client(base_url=board.url, timeout=5) as client:
        assert client.get("/api/overview", headers={"Host": "evil.example"}).status_code == 403
        assert client.get("/api/overview", headers={"Host": "localhost:1"}).status_code == 200


def test_with_a_token_every_request_carries_it() -> None:
    board = Dashboard(DashboardConfig(port=0, token=TOKEN)).start()
    try:
        with httpx.Client(base_url=board.url, timeout=5) as client:
            for path in ("/", "/api/overview", "/api/events", "/static/app.js"):
                assert client.get(path).status_code == 401, path
            assert client.get("/", params={"token": "wrong-token-value"}).status_code == 401
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert client.get("/api/overview", headers=bearer).status_code == 200
            first = client.get("/alerts", params={"token": TOKEN})  # the URL a user opens
            assert first.status_code == 200 and COOKIE in first.cookies
            assert client.get("/api/alerts").status_code == 200  # the cookie carries it now
    finally:
        board.stop()
