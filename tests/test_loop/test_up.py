"""``edgestream up`` on the embedded default: the loop's parts, its figures, a clean stop."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.metrics import read_port
from edgestream.core.stack import Stack
from edgestream.loop.watch import gateway_figures, parse_metrics, scrape, total
from tests.support.procs import pids_of
from tests.support.sockets import Listener, beyond_loopback, cmdline, listeners, process_tree

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
    from edgestream.loop.launch import scaled_topology
    from edgestream.loop.up import default_topology

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


LISTENING_CHILD = """
import socket, sys
held = [socket.socket(), socket.socket()]
for s, host in zip(held, ("0.0.0.0", "127.0.0.1")):
    s.bind((host, 0))
    s.listen()
print(*(s.getsockname()[1] for s in held), flush=True)
sys.stdin.read()
"""


def test_listeners_of_a_process_tree() -> None:
    """The socket lister the ``up`` test uses, on a child of this process: both its
    listeners are found, with its command line; only the wildcard one is beyond loopback."""
    child = subprocess.Popen(
        [sys.executable, "-c", LISTENING_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        wildcard, loopback = map(int, child.stdout.readline().split())
        found = [s for s in listeners(os.getpid()) if s.pid == child.pid]
        assert {(s.address, s.port) for s in found} == {
            ("0.0.0.0", wildcard), ("127.0.0.1", loopback)
        }  # fmt: skip
        assert [s.port for s in beyond_loopback(found)] == [wildcard]
        assert "held = " in found[0].cmdline and str(child.pid) in str(found[0])
    finally:
        child.kill()
        child.wait(10)


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
    """The run summary: the last JSON line of ``up --json`` (librdkafka may still log a
    failed connect to the stopped stack after it)."""
    lines = log.read_text().strip().splitlines()
    return json.loads([line for line in lines if line.startswith("{")][-1])


def _assert_nothing_left(home: Path) -> None:
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in pids_of(str(home))}
    assert not left, f"up left processes running: {left}"


@pytest.mark.integration
@pytest.mark.slow
def test_up_closes_the_whole_loop(tmp_path: Path) -> None:
    """Issue 8's acceptance, as the README's main command runs it (default topology, cloud
    job, retrainer, default drift injection): alerts arrive at the cloud, fleet stats are
    written, one retrain is published and promoted on every gateway; the run exits 0 and
    leaves no process behind. ``--until-loop-closed`` ends the run on that positive sign
    (``--duration 900`` only bounds it): the loop fits in 180 s on an idle machine, not
    always on a loaded one.

    Issue 23 item 7's acceptance too: once the cloud job has written fleet stats (its Flink
    job and Python functions are running), no process of the run listens beyond loopback,
    and the local Flink REST API says web submit/cancel are off and refuses a jar upload."""
    home = tmp_path / "home"
    argv = [sys.executable, "-m", "edgestream.cli.main", "up", "--until-loop-closed"]
    argv += ["--duration", "900", "--json"]
    env = {**os.environ, "EDGESTREAM_HOME": str(home)}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 600
        while _cloud_records(home, "fleet.stats") == 0:  # a positive sign: the job runs
            assert proc.poll() is None and time.monotonic() < deadline, (
                "no fleet.stats record while up ran: the listening sockets were not checked\n"
                + log.read_text()[-3000:]
            )
            time.sleep(2)
        problems = _exposed(proc.pid)
        code = proc.wait(1200)  # the run ends and stops its processes before any failure
        assert not problems, "\n".join(problems)
        assert code == 0, log.read_text()[-3000:]
    finally:
        _reap(proc)
    summary = _summary(log)
    assert not summary["errors"], summary
    assert summary["alerts_cloud"] == summary["alerts_edge"] > 0, summary
    assert summary["fleet_stats_windows"] > 0, summary
    assert summary["retrain_requests"] >= 1 and summary["retrains"] >= 1, summary
    assert summary["model_promotions"] >= 1, summary
    assert summary["gateway_promotions"] >= summary["gateways"] == 2, summary
    assert summary["seconds"] < 890, "ended by the closed loop, not by --duration"
    assert summary["rollbacks"] == 0, summary
    _assert_nothing_left(home)


def _exposed(root: int) -> list[str]:
    """What of ``root``'s process tree others on the network could reach or use: every socket
    listening beyond loopback (with its process), and a local Flink REST API that takes jars.

    Not checked: a cancel (``PATCH /jobs/<id>?mode=cancel``). Flink 2.0's ``web.cancel.enable``
    only hides the web UI's cancel button (``/v1/config`` features); the REST API still
    cancels (202, measured), so what keeps others from it is the loopback bind checked here."""
    found = listeners(root)
    problems = [f"listens beyond loopback: {s}" for s in beyond_loopback(found)]
    rest = _flink_rest(root, found)
    if rest is None:
        listed = "\n".join(map(str, found))
        return [*problems, f"no Flink REST endpoint among the run's listeners:\n{listed}"]
    features = httpx.get(f"{rest}/v1/config", timeout=10).json()["features"]
    for feature in ("web-submit", "web-cancel"):
        if features.get(feature) is not False:
            problems.append(f"Flink REST {rest}: {feature} is {features.get(feature)}")
    upload = httpx.post(f"{rest}/jars/upload", files={"jarfile": _empty_jar()}, timeout=30)
    if upload.is_success:
        problems.append(f"Flink REST {rest} took a jar: {upload.status_code} {upload.text}")
    return problems


def _flink_rest(root: int, found: list[Listener]) -> str | None:
    """The URL of the Flink REST API among ``found``: a JVM under ``edgestream cloud run``
    answering ``/v1/config`` (the local cluster picks a free port)."""
    runs = [pid for pid in process_tree(root) if " cloud run " in cmdline(pid)]
    cloud = set().union(*(process_tree(pid) for pid in runs))
    for s in found:
        if s.pid not in cloud or Path(s.cmdline.split(" ", 1)[0]).name != "java":
            continue
        url = f"http://127.0.0.1:{s.port}"
        try:
            if "flink-version" in httpx.get(f"{url}/v1/config", timeout=5).json():
                return url
        except (httpx.HTTPError, ValueError):
            continue  # another of the JVM's servers (RPC, blob, data)
    return None


def _empty_jar() -> tuple[str, bytes, str]:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return "job.jar", data.getvalue(), "application/x-java-archive"
