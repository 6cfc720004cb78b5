"""The simulator keeps producing when its broker restarts with its log dirs purged (a real
embedded Kafka broker): librdkafka's producer stopped delivering for good there, and a paced
run sent nothing for minutes while it looked alive."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgestream.core.offsets import exact_end_offsets
from edgestream.core.stack import Stack
from edgestream.sim import simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _records(bootstrap: str, topic: str) -> int:
    return sum(exact_end_offsets(bootstrap, topic).values())


def _wait(condition: Any, timeout: float, what: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert thread.is_alive(), f"the simulator stopped before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.5)


def test_a_paced_run_keeps_producing_after_a_purged_broker_restart(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    ends = stack.start(gateways=1).endpoints()
    bootstrap, registry = ends["edge"]["gw-1"], str(ends["registry"])
    stop, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["result"] = simulate(bootstrap=bootstrap, registry=registry, devices=4,
                                         rate=10.0, duration=900, seed=3, labels=None,
                                         device_types=("pump",), topic="sensors.pump",
                                         fast=False, stop=stop)  # fmt: skip
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    feeder = threading.Thread(target=run)
    feeder.start()
    try:
        _wait(lambda: _records(bootstrap, "sensors.pump") >= 50, 60, "records", feeder)
        stack.stop(only=["gw-1"], purge=True)  # topics and records gone
        stack.start()
        assert _records(bootstrap, "sensors.pump") == 0
        # the positive sign: records produced after the restart are on the broker
        _wait(lambda: _records(bootstrap, "sensors.pump") >= 100, 120, "records after the "
              "restart", feeder)  # fmt: skip
    finally:
        stop.set()
        feeder.join(120)
        stack.stop()
    assert not feeder.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].stopped
