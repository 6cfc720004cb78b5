"""``edgestream up`` on the embedded default: the loop's parts, its figures, a clean stop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from edgestream.core.metrics import read_port
from edgestream.core.stack import Stack
from edgestream.loop import LoopConfig, LoopState, run_loop
from edgestream.loop.procs import Managed
from edgestream.loop.watch import gateway_figures, parse_metrics
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


def test_managed_process_restarts_and_stops(tmp_path: Path) -> None:
    m = Managed("x", ["--help"], tmp_path / "x.log", tmp_path / "d", "edge").start()
    assert m.proc is not None and m.proc.wait(60) == 0 and "Usage" in m.log.read_text()
    assert not m.check() and m.restarts == 1 and m.last_exit == 0  # restarted
    m.stop()
    assert not m.alive and read_port(tmp_path / "d", "edge") is None


@pytest.mark.integration
@pytest.mark.slow
def test_up_runs_gateways_and_forwarders_and_stops_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = LoopConfig(duration=240.0, run_dir=run_dir, cloud=False, devices_per_gateway=4)
    stack, state, stop = Stack(tmp_path / "stack"), LoopState(), threading.Event()
    runner = threading.Thread(target=run_loop, args=(config, stop, state, stack), daemon=True)
    runner.start()
    deadline = time.monotonic() + 240
    while runner.is_alive() and time.monotonic() < deadline:  # until summaries reach the cloud
        cloud = state.cloud.figures if state.cloud else None
        if (
            cloud
            and cloud.summaries
            and all(g.figures.get("processed") for g in state.gateways.values())
        ):
            break
        time.sleep(2)
    urls = {m.name: m.metrics_url for m in state.processes()}
    stop.set()
    runner.join(120)
    assert not runner.is_alive()
    summary = state.summary()
    print(json.dumps(summary))
    assert set(urls) == {"gw-1 worker", "gw-1 forwarder", "gw-2 worker", "gw-2 forwarder"}
    assert all(u and u.startswith("http://127.0.0.1:") for u in urls.values()), urls
    assert summary["readings_in"] >= summary["readings_processed"] > 0
    assert 0 < summary["summaries_cloud"] <= summary["summaries_edge"]
    assert summary["alerts_cloud"] <= summary["alerts_edge"]
    assert summary["raw_sensor_bytes"] > summary["cloud_bytes"] > 0
    assert summary["worker_restarts"] == summary["forwarder_restarts"] == 0, summary["errors"]
    assert not summary["errors"]
    assert not pids_of(str(run_dir)), "up left processes running"
    assert not stack.status().running
