"""``edgestream bench swap``: one small real run (4 pumps, 2 swaps). Its JSON must say what
happened: recounted here from the run's own brokers (the stack's data stays in the workdir),
not only present. Speed is not asserted (a shared machine)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgestream.bench.swap import GATEWAY
from edgestream.cli.bench import app
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.ml.artifact import shipped_model
from tests.support.gateway import read_topic
from tests.support.procs import pids_of

DEVICES, RATE, SWAPS = 4, 10.0, 2


def _recount(work: Path) -> dict[str, Any]:
    """Start the run's stopped stack again from its data and count, with this test's code,
    the readings, the 10 s device summaries and the gateway's rollout events."""
    stack = Stack(work / "stack")
    try:
        ends = stack.start(gateways=1).endpoints()
        edge, registry = str(ends["edge"]["gw-1"]), str(ends["registry"])
        decode = AvroDeserializer(registry)
        readings = [decode(m.value()) for m in read_topic(edge, "sensors.pump")]
        summaries = [decode(m.value()) for m in read_topic(edge, "edge.summaries")]
        events = [decode(m.value()) for m in read_topic(edge, "edge.rollout")]
    finally:
        stack.stop()
    tens = [
        s
        for s in summaries
        if s["scope"] == "device" and s["window_end"] - s["window_start"] == 10_000
    ]
    counted: Counter[tuple[str, int]] = Counter()
    for s in tens:
        counted[(s["scope_key"], s["window_start"])] += s["count"]
    last = {d: w for (d, w) in sorted(counted)}  # the last closed window of each device
    inside = Counter(
        (r["device_id"], r["ts"] - r["ts"] % 10_000)
        for r in readings
        if r["device_id"] in last and r["ts"] - r["ts"] % 10_000 <= last[r["device_id"]]
    )
    return {
        "readings": len(readings),
        "inside": inside,
        "counted": counted,
        "versions": {s["model_version"] for s in tens},
        "live": [e for e in events if e["event"] == "live"],
    }


@pytest.mark.integration
@pytest.mark.slow
def test_small_swap_run_reports_what_happened(tmp_path: Path) -> None:
    work = tmp_path / "bench"
    args = ["swap", "--json", "-q", "--devices", str(DEVICES), "--rate", str(RATE)]
    args += ["--swaps", str(SWAPS), "--timeout", "240", "--workdir", str(work)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert not pids_of(str(work)), "the bench left processes running"

    versions = [f"pump-ae-bench{i + 2}" for i in range(SWAPS)]
    assert r["bench"] == "swap" and r["swaps"] == SWAPS
    assert (r["devices"], r["rate_per_device"]) == (DEVICES, RATE)
    assert [x["version"] for x in r["rounds"]] == versions
    for x in r["rounds"]:  # each: verified after it was published, live after the promote
        assert 0 < x["candidate_to_verified_ms"] < 240_000, x
        assert 0 < x["publish_to_live_ms"] < 240_000, x
        assert x["pause_ms"] is not None and x["pause_ms"] >= 0, x
    p2l = sorted(x["publish_to_live_ms"] for x in r["rounds"])
    assert r["publish_to_live_ms"]["max"] == round(p2l[-1], 1)  # the summary's rounding
    assert r["pause_ms"]["max"] == round(max(x["pause_ms"] for x in r["rounds"]), 1)

    got = _recount(work)
    # the readings and the verdict, recounted from the brokers
    assert r["readings"] == got["readings"] > 0
    assert r["readings_in_closed_windows"] == sum(got["inside"].values()) > 0
    dropped = sum(max(0, n - got["counted"][k]) for k, n in got["inside"].items())
    twice = sum(max(0, n - got["inside"][k]) for k, n in got["counted"].items())
    assert (r["events_dropped"], r["events_duplicated"]) == (dropped, twice) == (0, 0)
    assert r["goals"]["events_dropped_0"] is True
    # the windows' versions: the shipped one before the first swap, the last swap's in the
    # tail (30 s: whole 10 s windows), "mixed" for a window a swap cuts. An earlier swap's
    # version serves a few seconds (settle 3 s), maybe only in mixed windows: its live
    # event (below) says it served
    shipped = shipped_model("pump").version
    assert set(r["versions_seen"]) == {str(v) for v in got["versions"]}
    assert {shipped, versions[-1]} <= got["versions"] <= {shipped, *versions, "mixed"}
    # the rounds' figures are the gateway's own live events
    live = {e["version"]: e for e in got["live"]}
    for x in r["rounds"]:
        assert x["pause_ms"] == live[x["version"]]["swap_pause_ms"]
        assert x["swap_ms"] == live[x["version"]]["swap_ms"]
    assert all(e["gateway_id"] == GATEWAY for e in got["live"])
