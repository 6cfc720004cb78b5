"""The local deployment supervises its processes: a gateway worker killed with SIGKILL comes
back by itself (no second ``deploy``), the restart shows in ``deploy --status`` and in the
worker's metrics, and every reading is counted exactly once across the crash: the per-device
10 s window summaries, counted record by record against the sensor topic, hold each reading
once (replays are byte-identical copies). Real broker, registry and processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgestream.cli.main import app
from edgestream.core.metrics import read_port
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.core.topology import load_topology
from edgestream.deploy import apply_local, process_states, stop_local
from edgestream.deploy.local import run_dir
from edgestream.deploy.supervise import SupervisorStatus
from edgestream.loop.watch import scrape, total
from tests.support import gateway as gr
from tests.support.gateway import GATEWAY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKER = f"edge-{GATEWAY}"
WINDOW = 10_000  # gr.write_topology's tumbling window, ms


def _readings_per_window(bootstrap: str, registry: str) -> Counter[tuple[str, int]]:
    """(device, 10 s window start) -> readings on the sensor topic."""
    decode = AvroDeserializer(registry)
    records = [decode(m.value()) for m in gr.read_topic(bootstrap, "sensors.pump")]
    return Counter((r["device_id"], r["ts"] // WINDOW * WINDOW) for r in records)


def _counted_per_window(
    bootstrap: str, registry: str, messages: list | None = None
) -> Counter[tuple[str, int]]:
    """(device, 10 s window start) -> the count of its summary (in ``messages``, else all of
    edge.summaries); a summary emitted again (a replay after the crash) must be a
    byte-identical copy and is counted once."""
    if messages is None:
        messages = gr.read_topic(bootstrap, "edge.summaries", settle=1.0)
    by_id: dict[bytes, set[bytes]] = {}
    for msg in messages:
        by_id.setdefault(msg.key(), set()).add(msg.value())
    changed = [key for key, values in by_id.items() if len(values) > 1]
    assert not changed, f"a replayed summary differs from its first copy: {changed[:3]}"
    decode = AvroDeserializer(registry)
    out: Counter[tuple[str, int]] = Counter()
    for values in by_id.values():
        s = decode(next(iter(values)))
        if s["scope"] == "device" and s["window_end"] - s["window_start"] == WINDOW:
            out[s["scope_key"], s["window_start"]] += s["count"]
    return out


def _wait(what: str, check, timeout: float):  # -> check's first truthy result
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_a_killed_worker_is_restarted_counted_and_loses_nothing(tmp_path: Path) -> None:
    path = gr.write_topology(tmp_path / "topology.yaml", GATEWAY)
    topology = load_topology(path)
    try:
        apply_local(topology, cloud_jobs=False)
        ends = Stack().status().endpoints()
        env = {
            "bootstrap": ends["edge"][GATEWAY],
            "registry": str(ends["registry"]),
            "dir": tmp_path,
            "topology": path,
        }
        start = int(time.time()) * 1000  # paced from now: 120 s of readings in 60 s
        feed = {"fast": False, "speed": 2.0, "duration": 120.0, "late_fraction": 0.0}
        feed["start_time"] = start
        feeder = threading.Thread(target=gr.simulate_pumps, args=(env,), kwargs=feed)
        feeder.start()
        first = gr.wait_for(env["bootstrap"], "edge.summaries", 1, 180)  # the feed goes on 60 s
        assert first, "the worker must be under way before it is killed"
        before = process_states(topology)[WORKER]
        assert before.state == "running" and before.pid and before.restarts == 0
        os.kill(before.pid, signal.SIGKILL)  # mid-stream: the feeder keeps producing

        def restarted() -> SupervisorStatus | None:
            now = process_states(topology)[WORKER]
            return now if now.state == "running" and now.pid not in (None, before.pid) else None

        after = _wait("the supervisor to restart the worker", restarted, 120)
        assert after.restarts == 1 and after.last_exit == -signal.SIGKILL, after
        assert after.last_restart is not None and after.last_restart > time.time() - 130

        status = CliRunner().invoke(app, ["deploy", str(path), "--status"])
        assert status.exit_code == 0, status.output
        row = next(line for line in status.output.splitlines() if line.startswith(WORKER))
        assert row.split()[1:5] == ["running", str(after.pid), "1", "-9"], status.output

        data = run_dir(topology) / "gateways" / GATEWAY

        def restarts_metric() -> float:
            port = read_port(data, "edge")  # the restarted worker rewrites its port file
            page = scrape(f"http://127.0.0.1:{port}/metrics") if port else None
            return total(page or {}, "edgestream_restarts_total", component=WORKER)

        assert _wait("edgestream_restarts_total of the restarted worker", restarts_metric, 120)
        assert restarts_metric() == 1.0

        feeder.join(400)
        assert not feeder.is_alive()
        readings = _readings_per_window(env["bootstrap"], env["registry"])
        assert sum(readings.values()) >= 1000
        # windows the watermark has closed for sure (lateness 2 s + out-of-orderness 1 s); the
        # last ones may wait for more readings
        horizon = max(start for _, start in readings) - 2 * WINDOW
        closed = {k for k in readings if k[1] + WINDOW <= horizon}
        before_kill = set(_counted_per_window(env["bootstrap"], env["registry"], first))
        assert len(closed - before_kill) >= 10, "windows closed after the restart are checked"
        missing: list[tuple[str, int]] = []

        def all_counted() -> Counter[tuple[str, int]] | None:
            counted = _counted_per_window(env["bootstrap"], env["registry"])
            missing[:] = sorted(closed - counted.keys())
            return None if missing else counted

        try:
            counted = _wait("a summary of every closed 10 s window", all_counted, 240)
        except AssertionError as error:
            raise AssertionError(f"{error}: {len(missing)} missing, {missing[:5]}") from None
        assert counted.keys() <= readings.keys(), "a window of no reading"
        lost_or_twice = {k: (readings[k], n) for k, n in counted.items() if n != readings[k]}
        assert not lost_or_twice, f"(device, window): (readings, counted) {lost_or_twice}"
        assert process_states(topology)[WORKER].restarts == 1, "it restarted once, not again"
    finally:
        stop_local(topology)
        Stack().stop()
    assert not any(s.pid for s in process_states(topology).values())
