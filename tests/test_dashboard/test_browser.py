"""The dashboard in a real browser against a real ``edgestream up`` run.

Headless Chromium (Debian's ``chromium``, installed by ``deploy/local/dev.sh test``; or
``EDGESTREAM_CHROMIUM``) driven by Playwright, no browser download. One ``up`` run serves
every page: each loads without console errors, its charts hold data points, and an alert
produced on a gateway during the test appears on the open alerts page within 2 s of reaching
``fleet.alerts``. A screenshot of each page goes to the test's tmp dir (and to
``EDGESTREAM_SCREENSHOTS`` when set).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: whole test: up start, ~3 min of data (fleet.stats windows are 1 min), pages, clean stop
DATA_DEADLINE_S = 420


def _chromium() -> str:
    found = os.environ.get("EDGESTREAM_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "chromium not found: `bash deploy/local/dev.sh test` installs it "
            "(or set EDGESTREAM_CHROMIUM to a Chromium binary)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ``edgestream up`` (two gateways, cloud jobs, retrainer) with its dashboard."""
    tmp = tmp_path_factory.mktemp("up")
    home, port = tmp / "home", _free_port()
    argv = [sys.executable, "-m", "edgestream.cli.main", "up", "--duration", "900"]
    argv += ["--dashboard-port", str(port), "--json"]
    log = tmp / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "EDGESTREAM_HOME": str(home)},
        )  # fmt: skip
    info = {"url": f"http://127.0.0.1:{port}/", "home": home, "log": log, "proc": proc}
    try:
        yield info
        proc.send_signal(signal.SIGINT)
        assert proc.wait(240) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _wait(what: str, check: Callable[[], Any], deadline: float, log: Path) -> Any:
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            found = None
        if found:
            return found
        time.sleep(2)
    pytest.fail(f"dashboard: {what} not seen in time; up log:\n{log.read_text()[-3000:]}")


def _ready(url: str) -> dict[str, Any] | None:
    """What the pages need, once the cloud holds it: a device with readings, scores and
    alerts; two fleet.stats windows; a model event; both gateways' forwarder reports."""
    get = httpx.Client(base_url=url, timeout=5).get
    stats, models = get("/api/stats").json(), get("/api/models").json()
    gateways = get("/api/overview").json()["gateways"]
    if len(stats["site"]["ts"]) < 2 or not stats["worst"] or not models["events"]:
        return None
    if len(gateways) < 2 or any(g["outbox_depth"] is None for g in gateways):
        return None
    for alert in get("/api/alerts").json()["alerts"]:
        device = get(f"/api/devices/{alert['device_id']}").json()["device"]
        if len(device["ts"]) >= 5 and device["scores"]:
            return {k: device[k] for k in ("device", "gateway", "site", "device_type")}
    return None


def test_dashboard_pages_in_chromium(run: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, log = run["url"], run["log"]
    deadline = time.monotonic() + DATA_DEADLINE_S
    _wait("the printed URL", lambda: f"dashboard: {url}" in log.read_text(), deadline, log)
    ready = _wait("data for every page", lambda: _ready(url), deadline, log)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            pages = PageChecks(context, url, shots)
            pages.overview()
            pages.analytics()
            pages.device(ready["device"])
            pages.models()
            latency = pages.alerts(run["home"], ready)
        finally:
            browser.close()
    print(f"alert on the page {latency['cloud_to_page_ms']} ms after it reached fleet.alerts, "
          f"{latency['edge_to_page_ms']} ms after it was produced on the gateway")  # fmt: skip
    assert latency["cloud_to_page_ms"] <= 2000, latency
    copy_to = os.environ.get("EDGESTREAM_SCREENSHOTS")
    if copy_to:
        shutil.copytree(shots, copy_to, dirs_exist_ok=True)
    assert sorted(p.name for p in shots.iterdir()) == [
        "alerts.png", "analytics.png", "device.png", "models.png", "overview.png"
    ]  # fmt: skip


# chart id -> least data points (non-null values of any series) it must plot
POINTS = (
    "(id) => { const u = window.edgestreamCharts[id]; if (!u) return 0; return u.data"
    ".slice(1).reduce((n, s) => n + s.filter((v) => v !== null && v !== undefined).length, 0); }"
)


class PageChecks:
    """Open each page in a fresh tab, check it, screenshot it."""

    def __init__(self, context: Any, url: str, shots: Path) -> None:
        self.context, self.url, self.shots = context, url, shots

    def open(self, path: str) -> tuple[Any, list[str]]:
        page = self.context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(self.url.rstrip("/") + path, wait_until="load")
        page.wait_for_selector("#live.on", timeout=10_000)  # the push stream is connected
        return page, errors

    def finish(self, page: Any, errors: list[str], name: str) -> None:
        page.wait_for_timeout(500)
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        assert not errors, f"{name}: console errors {errors}"
        page.close()

    def charts(self, page: Any, least: dict[str, int]) -> None:
        for chart, n in least.items():
            page.wait_for_function(f"({POINTS})('{chart}') >= {n}", timeout=15_000)

    def overview(self) -> None:
        page, errors = self.open("/")
        page.wait_for_selector("#gateways tbody tr td.up", timeout=15_000)
        assert page.locator("#gateways tbody tr").count() == 2
        self.finish(page, errors, "overview")

    def analytics(self) -> None:
        page, errors = self.open("/analytics")
        self.charts(page, {"chart-site": 2, "chart-device-type": 2, "chart-worst": 1})
        self.finish(page, errors, "analytics")

    def device(self, device_id: str) -> None:
        page, errors = self.open(f"/devices/{device_id}")
        self.charts(page, {"chart-readings": 5, "chart-scores": 1})
        assert page.locator("#device-alerts-table tbody tr").count() >= 1
        self.finish(page, errors, "device")

    def models(self) -> None:
        page, errors = self.open("/models")
        self.charts(page, {"chart-timeline": 1})
        self.finish(page, errors, "models")

    def alerts(self, home: Path, ready: dict[str, Any]) -> dict[str, int]:
        """Produce an alert on the gateway's edge.alerts while the alerts page is open; the
        page shows it without a reload. Returns the latencies."""
        page, errors = self.open("/alerts")
        page.wait_for_selector("#alerts tbody tr", timeout=15_000)
        alert_id, produced_ms = _produce_alert(home, ready)
        row = page.locator(f'#alerts tbody tr[data-alert-id="{alert_id}"]')
        row.wait_for(timeout=30_000)
        seen_ms = int(row.get_attribute("data-seen-ms") or 0)
        reached_ms = _cloud_timestamp(home, alert_id)
        self.finish(page, errors, "alerts")
        return {"cloud_to_page_ms": seen_ms - reached_ms, "edge_to_page_ms": seen_ms - produced_ms}


def _endpoints(home: Path) -> dict[str, Any]:
    from edgestream.core.stack import Stack

    return Stack(home / "stack").status().endpoints()


def _produce_alert(home: Path, where: dict[str, str]) -> tuple[str, int]:
    """One critical AnomalyAlert of a device on its gateway's edge.alerts, as the gateway's
    worker writes them."""
    from confluent_kafka import Producer

    from edgestream.core.broker import producer_config
    from edgestream.core.serde import AvroSerializer, subject_for

    ends = _endpoints(home)
    gateway, device = where["gateway"], where["device"]
    now = int(time.time() * 1000)
    alert_id = f"{gateway}|{device}|browser-test|{now}|0"
    alert = {
        "alert_id": alert_id, "incident_id": alert_id[:-2], "status": "open",
        "gateway_id": gateway, "site": where["site"], "device_id": device,
        "device_type": where["device_type"],
        "severity": "critical", "ts": now, "first_ts": now, "last_ts": now, "score": 9.99,
        "threshold": 0.5, "rule": "browser-test", "model_version": "v1",
        "channels": {"pressure": 3.0}, "readings": [{"seq": 1, "ts": now, "score": 9.99}],
        "reading_count": 1, "gateway_seq": None, "emitted_at": now,
    }  # fmt: skip
    producer = Producer(producer_config(str(ends["edge"][gateway])))
    serialize = AvroSerializer(str(ends["registry"]), "AnomalyAlert", subject_for("edge.alerts"))
    producer.produce("edge.alerts", serialize(alert), alert_id.encode())
    assert producer.flush(20) == 0
    return alert_id, now


def _cloud_timestamp(home: Path, alert_id: str) -> int:
    """When the forwarder produced the alert to fleet.alerts (its record timestamp)."""
    from confluent_kafka import Consumer, TopicPartition

    from edgestream.core.broker import consumer_config
    from edgestream.core.serde import AvroDeserializer

    ends = _endpoints(home)
    decode = AvroDeserializer(str(ends["registry"]))
    consumer = Consumer(consumer_config(str(ends["cloud"]), f"browser-test-{time.time_ns()}"))
    try:
        parts = consumer.list_topics("fleet.alerts", timeout=10).topics["fleet.alerts"].partitions
        consumer.assign([TopicPartition("fleet.alerts", p, 0) for p in parts])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1):
                if msg.error() is None and decode(msg.value()).get("alert_id") == alert_id:
                    return int(msg.timestamp()[1])
    finally:
        consumer.close()
    pytest.fail(f"alert {alert_id} not found on fleet.alerts")
