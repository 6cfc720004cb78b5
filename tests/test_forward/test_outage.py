"""Acceptance: a real gateway worker, a real forwarder process and the simulator, with the
cloud broker killed and started again with its data, the forwarder killed with
SIGKILL during an outage, and a tiny outbox budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edgestream.wire.ids import record_id
from tests.support.pipeline import CLOUD_TOPICS, Pipeline, by_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _caught_up(p: Pipeline) -> bool:
    """The outbox is empty and the collector has read every record the forwarder delivered."""
    stats = p.outbox_stats()
    return stats.depth == 0 and len(p.collector.delivered) >= stats.delivered


def _stop_cloud_when_caught_up(p: Pipeline) -> float:
    """Kill the cloud broker once the collector has read all the forwarder delivered (what
    an in-memory broker holds is lost when it stops: only a reader can have seen it)."""

    _wait(lambda: _caught_up(p), 60, "the collector to read what was delivered")
    down = time.time() * 1000
    p.kill_cloud()
    p.collector.pause()
    delivered = p.outbox_stats().delivered
    assert len(p.collector.delivered) >= delivered, "test race: delivered just before the kill"
    return down


def _assert_exactly_once_in_order(p: Pipeline, edge: dict) -> None:
    first = [d.record for d in p.collector.delivered if d.topic in CLOUD_TOPICS[:2]]
    ids = [record_id(r) for r in first]
    assert len(ids) == len(set(ids)), "no duplicate visible after dedup"
    want = {record_id(r) for rs in edge.values() for r, _ in rs}
    assert set(ids) == want, "every record produced at the edge arrived"
    edge_order = by_key([r for kind in ("alert", "summary") for r, _ in edge[kind]])
    assert by_key(first) == edge_order, "per-device order preserved"


@pytest.mark.parametrize("outage_s", [60])
def test_cloud_outage_loses_nothing_and_drains_alerts_first(tmp_path: Path, outage_s) -> None:
    p = Pipeline(tmp_path)
    try:
        p.worker.start()
        p.forwarder.start()
        p.collector.start()
        p.simulate(seconds=outage_s + 50)
        _wait(lambda: len(p.collector.of("fleet.summaries")) >= 8, 120, "summaries in the cloud")
        down = _stop_cloud_when_caught_up(p)
        _wait(
            lambda: p.outbox_stats().oldest_age_ms >= outage_s * 1000,
            outage_s + 60,
            f"a backlog {outage_s} s old",
        )
        backlog = p.outbox_stats()
        p.stack.start()
        up = time.time() * 1000
        p.collector.start()
        assert backlog.depth > 0 and backlog.oldest_age_ms > (outage_s - 15) * 1000
        assert p.sim is not None
        p.sim.join(outage_s + 120)
        assert not p.sim_error, p.sim_error
        edge = p.wait_cloud_has_edge(timeout=180)
        _assert_exactly_once_in_order(p, edge)

        # the backlog of the outage: alerts were delivered before any of its summaries
        during = {
            kind: {record_id(r) for r, ts in edge[kind] if down <= ts <= up}
            for kind in ("alert", "summary")
        }
        assert during["alert"] and during["summary"], "the outage produced both kinds"
        sent = {record_id(d.record): d.timestamp_ms for d in p.collector.delivered}
        last_alert = max(sent[i] for i in during["alert"])
        first_summary = min(sent[i] for i in during["summary"])
        assert last_alert <= first_summary, "alerts from the outage before its summaries"
        # samples go last: the outbox empties after the alerts and summaries arrived
        _wait(lambda: p.outbox_stats().depth == 0, 120, "the outbox to drain")
        assert p.outbox_stats().dropped == {}
        print(f"outage {outage_s}s: backlog {backlog.depth} records, "
              f"{p.collector.dedup.stats['duplicates']} replays dropped by dedup")  # fmt: skip
    finally:
        p.close()


def test_kill_9_during_an_outage_loses_nothing(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    try:
        p.worker.start()
        p.forwarder.start()
        p.collector.start()
        p.simulate(seconds=75)
        _wait(lambda: len(p.collector.of("fleet.summaries")) >= 4, 120, "summaries in the cloud")
        _stop_cloud_when_caught_up(p)
        _wait(lambda: p.outbox_stats().depth >= 8, 60, "a backlog in the outbox")
        p.forwarder.kill()
        killed = p.outbox_stats()
        p.forwarder = p.new_forwarder().start()  # restarted while the cloud is still down
        # the positive sign that the restarted forwarder works on the outbox: it queued more
        _wait(lambda: p.outbox_stats().next_seq > killed.next_seq, 120, "the restart to queue")
        assert p.outbox_stats().depth >= killed.depth, "the backlog survived SIGKILL"
        p.stack.start()
        p.collector.start()
        assert p.sim is not None
        p.sim.join(120)
        edge = p.wait_cloud_has_edge(timeout=180)
        _assert_exactly_once_in_order(p, edge)
    finally:
        p.close()


TEN_S = [{"size": "10s", "allowed_lateness": "1s", "max_out_of_orderness": "1s",
          "scopes": ["device"]}]  # fmt: skip


def test_tiny_budget_rolls_up_exactly_and_reports_drops(tmp_path: Path) -> None:
    budget = 8_000
    quiet = {"rules": [{"name": "pump", "consecutive": 2}],  # few alerts: summaries must fit
             "suppression": {"cooldown": "10m", "update_interval": "10m"}}  # fmt: skip
    forwarding = {"outbox": {"max_bytes": budget}, "samples": {"enabled": False}}  # summaries
    p = Pipeline(tmp_path, windows=TEN_S, anomaly=quiet, forwarding=forwarding)
    try:
        p.stack.stop(only=["cloud"])  # a long outage: 10 minutes of event time arrive
        p.worker.start()
        p.forwarder.start()
        p.simulate(seconds=600, paced=False, start_time=(int(time.time()) - 700) * 1000)
        assert p.sim is not None
        p.sim.join(120)

        def all_in_outbox() -> bool:
            edge = sum(len(v) for v in p.edge_records().values())
            stats = p.outbox_stats()
            return edge > 200 and stats.next_seq - 1 - stats.rollups - stats.reports >= edge

        _wait(all_in_outbox, 180, "the gateway's output in the outbox")
        during = p.outbox_stats()
        assert during.rollups > 0 and during.bytes <= budget, "rolled up to fit the budget"
        p.stack.start()
        p.collector.start()
        _wait(lambda: _caught_up(p), 120, "the outbox to drain into the collector")
        edge = p.edge_records()
        stats = p.outbox_stats()
        reports = p.collector.of("fleet.forwarder")
        fields = {"alert": "dropped_alerts", "summary": "dropped_summaries"}
        dropped = {k: sum(r[f] for r in reports) for k, f in fields.items()}
        assert dropped == {k: stats.dropped.get(k, 0) for k in dropped}, "drops reported"
        cloud = p.collector.of("fleet.summaries")
        assert any(s["rollup_level"] >= 1 for s in cloud)
        dropped_readings = sum(r["dropped_readings"] for r in reports)
        edge_count = sum(s["count"] for s, _ in edge["summary"])
        assert sum(s["count"] for s in cloud) + dropped_readings == edge_count, "counts exact"
        _assert_summaries_delivered_or_dropped(edge["summary"], cloud, reports)
        alerts = {record_id(a) for a in p.collector.of("fleet.alerts")}
        edge_alerts = {record_id(a) for a, _ in edge["alert"]}
        assert alerts <= edge_alerts and len(edge_alerts - alerts) == dropped["alert"]
        print(f"budget {budget} B: {stats.rollups} roll-ups of {stats.rolled_up} summaries, "
              f"dropped {stats.dropped}")  # fmt: skip
    finally:
        p.close()


def _assert_summaries_delivered_or_dropped(
    edge: list[tuple[dict[str, Any], int]], cloud: list[dict[str, Any]], reports: list[dict]
) -> None:
    """Every edge summary reached the cloud as itself, or inside exactly one roll-up, or was
    dropped and reported: each roll-up equals (count, and per channel count, sum, min, max)
    the edge summaries it covers, and the uncovered ones hold exactly the reported dropped
    readings, inside the reported event-time range. A roll-up covers an edge summary of its
    key whose window and readings (first_ts..last_ts) lie inside its own; the simulator's
    readings are in order, so two roll-ups of one window never overlap in time."""
    delivered = {s["summary_id"] for s in cloud}
    assert len(delivered) == len(cloud), "no summary twice"
    rollups = [s for s in cloud if s["rollup_level"] >= 1]
    parts: dict[str, list[dict[str, Any]]] = {s["summary_id"]: [] for s in rollups}
    dropped: list[dict[str, Any]] = []
    originals = {s["summary_id"] for s, _ in edge}
    assert {s["summary_id"] for s in cloud if s["rollup_level"] == 0} <= originals
    for s, _ in edge:
        if s["summary_id"] in delivered:
            continue
        covers = [
            r["summary_id"]
            for r in rollups
            if r["scope_key"] == s["scope_key"]
            and r["window_start"] <= s["window_start"] < s["window_end"] <= r["window_end"]
            and r["first_ts"] <= s["first_ts"] <= s["last_ts"] <= r["last_ts"]
        ]
        assert len(covers) <= 1, f"{s['summary_id']} inside several roll-ups: {covers}"
        (parts[covers[0]] if covers else dropped).append(s)
    for r in rollups:
        merged = parts[r["summary_id"]]
        assert r["count"] == sum(s["count"] for s in merged), r["summary_id"]
        for channel, got in r["channels"].items():
            want = [s["channels"][channel] for s in merged if s["channels"][channel]["count"]]
            assert got["count"] == sum(c["count"] for c in want), (r["summary_id"], channel)
            if not want:
                continue
            assert got["sum"] == pytest.approx(sum(c["sum"] for c in want), rel=1e-9)
            assert got["min"] == min(c["min"] for c in want), (r["summary_id"], channel)
            assert got["max"] == max(c["max"] for c in want), (r["summary_id"], channel)
        assert set(r["channels"]) == set(merged[0]["channels"]), "every channel rolled up"
    assert sum(s["count"] for s in dropped) == sum(r["dropped_readings"] for r in reports)
    if dropped:
        first = min(r["first_dropped_ts"] for r in reports if r["first_dropped_ts"] is not None)
        last = max(r["last_dropped_ts"] for r in reports if r["last_dropped_ts"] is not None)
        assert all(first <= s["window_start"] and s["window_end"] <= last for s in dropped)
    # the claim per device and channel: edge = cloud + dropped, whatever was dropped
    for device in {s["scope_key"] for s, _ in edge}:
        for channel in edge[0][0]["channels"]:
            want = sum(s["channels"][channel]["sum"] for s, _ in edge if s["scope_key"] == device)
            got = sum(s["channels"][channel]["sum"] for s in cloud if s["scope_key"] == device)
            lost = sum(s["channels"][channel]["sum"] for s in dropped if s["scope_key"] == device)
            assert got + lost == pytest.approx(want, rel=1e-9), (device, channel)
