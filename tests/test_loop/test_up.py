"""``edgestream up`` on the embedded default: the loop's parts, its figures, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.metrics import read_port
from edgestream.core.stack import Stack
from edgestream.loop.watch import gateway_figures, parse_metrics, scrape, total
from tests.conftest import pids_of

WORKER_PAGE = """# TYPE edgestream_readings counter
edgestream_readings_total{gateway="gw-1",topic="sensors.pump"} 90.0
edgestream_readings_total{gateway="gw-1",topic="sensors.reefer"} 10.0
# TYPE edgestream_dlq_records counter
edgestream_dlq_records_total{gateway="gw-1",topic="sensors.pump",reason="decode"} 2.0
edgestream_dlq_records_total{gateway="gw-1",topic="sensors.reefer",reason="decode"} 1.0
# TYPE edgestream_model_info gauge
edgestream_model_info{gateway="gw-1",topic="sensors.pump",model="pump-ae",version="v2"} 1.0
"""
FORWARDER_PAGE = """# TYPE edgestream_outbox_depth gauge
edgestream_outbox_depth{gateway="gw-1"} 7.0
# TYPE edgestream_forward_bytes counter
edgestream_forward_bytes_total{gateway="gw-1",direction="in"} 5000.0
edgestream_forward_bytes_total{gateway="gw-1",direction="out"} 1200.0
# TYPE edgestream_sensor_bytes counter
edgestream_sensor_bytes_total{gateway="gw-1"} 100000.0
"""


def test_gateway_figures_from_metrics_pages() -> None:
    figures = gateway_figures(parse_metrics(WORKER_PAGE), parse_metrics(FORWARDER_PAGE))
    assert figures["processed"] == 100 and figures["dlq"] == 3
    assert figures["dlq_reasons"] == {"decode": 3} and figures["models"] == {"pump": "v2"}
    assert figures["outbox_depth"] == 7 and figures["cloud_bytes"] == 1200
    assert figures["sensor_bytes"] == 100_000
    assert gateway_figures(None, None) == {}


def test_scaled_topology_keeps_models_and_one_canary(tmp_path: Path) -> None:
    from edgestream.core.exceptions import EdgestreamError
    from edgestream.core.topology import load_topology
    from edgestream.loop.up import default_topology, scaled_topology

    three = load_topology(scaled_topology(default_topology(), 3, tmp_path))
    assert [(g.id, g.canary) for g in three.gateways] == [
        ("gw-1", True), ("gw-2", False), ("gw-3", False)
    ]  # fmt: skip
    assert three.gateway("gw-3").device_types == three.gateway("gw-2").device_types
    assert Path(three.models["pump"].path).is_file()  # resolved from the original's folder
    one = load_topology(scaled_topology(default_topology(), 1, tmp_path))
    assert [g.id for g in one.gateways] == ["gw-1"]
    with pytest.raises(EdgestreamError, match="--gateways"):
        scaled_topology(default_topology(), 0, tmp_path)


@pytest.mark.integration
@pytest.mark.slow
def test_up_runs_gateway_and_forwarder_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    """The CLI as a user runs it (one gateway, no cloud job): readings flow through the
    worker and the forwarder to the cloud; Ctrl-C (SIGINT) stops everything and prints the
    summary; no process of the run is left."""
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "edgestream.cli.main", "up", "--gateways", "1"]
    argv += ["--devices", "4", "--no-cloud", "--json"]
    env = {**os.environ, "EDGESTREAM_HOME": str(home)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300  # generous: a shared 2-core machine
        delivered = 0.0
        while time.monotonic() < deadline and proc.poll() is None:
            ports = sorted(home.glob("runs/*/gw-1/forward.metrics-port"))
            page = (
                scrape(f"http://127.0.0.1:{read_port(ports[0].parent, 'forward')}/metrics")
                if ports
                else None
            )
            delivered = total(page or {}, "edgestream_forward_bytes_total", direction="out")
            if delivered > 0 and _cloud_records(home, "fleet.summaries") > 0:
                break  # a positive sign: the first summaries are in the cloud broker
            time.sleep(2)
        assert delivered > 0, log.read_text()[-3000:]
        time.sleep(6)  # the loop reads the metrics pages every 2 s
        proc.send_signal(signal.SIGINT)
        assert proc.wait(180) == 0, log.read_text()[-3000:]
    finally:
        _reap(proc)
    summary = _summary(log)
    assert summary["gateways"] == 1 and not summary["errors"], summary
    assert summary["readings_in"] >= summary["readings_processed"] > 0
    assert 0 < summary["summaries_cloud"] <= summary["summaries_edge"]
    assert summary["alerts_cloud"] <= summary["alerts_edge"]
    assert summary["raw_sensor_bytes"] > summary["cloud_bytes"] > 0, json.dumps(summary)
    assert summary["worker_restarts"] == summary["forwarder_restarts"] == 0
    _assert_nothing_left(home)
    assert not Stack(home / "stack").status().running


def _cloud_records(home: Path, topic: str) -> int:
    """Records in ``topic`` on the run's cloud broker (0 while the stack or topic is not up)."""
    from edgestream.core.offsets import exact_end_offsets

    status = Stack(home / "stack").status()
    cloud = status.endpoints()["cloud"]
    if not status.running or not cloud:
        return 0
    try:
        return sum(exact_end_offsets(str(cloud), topic, timeout=10).values())
    except EdgestreamError:
        return 0


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def _summary(log: Path) -> dict:
    """The run summary: the last line of ``up --json``."""
    return json.loads(log.read_text().strip().splitlines()[-1])


def _assert_nothing_left(home: Path) -> None:
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in pids_of(str(home))}
    assert not left, f"up left processes running: {left}"


@pytest.mark.integration
@pytest.mark.slow
def test_up_duration_180_closes_the_whole_loop(tmp_path: Path) -> None:
    """Issue 8's acceptance, as the README's main command runs it (default topology, cloud
    job, retrainer, default drift injection): within ``--duration 180`` alerts arrive at the
    cloud, fleet stats are written, one retrain is published and promoted on the gateways;
    the run exits 0 and leaves no process behind."""
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "edgestream.cli.main", "up", "--duration", "180", "--json"]
    env = {**os.environ, "EDGESTREAM_HOME": str(home)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        assert proc.wait(600) == 0, log.read_text()[-3000:]
    finally:
        _reap(proc)
    summary = _summary(log)
    assert not summary["errors"], summary
    assert summary["alerts_cloud"] == summary["alerts_edge"] > 0, summary
    assert summary["fleet_stats_windows"] > 0, summary
    assert summary["retrain_requests"] >= 1 and summary["retrains"] >= 1, summary
    assert summary["model_promotions"] >= 1 and summary["gateway_promotions"] >= 1, summary
    assert summary["rollbacks"] == 0, summary
    _assert_nothing_left(home)
