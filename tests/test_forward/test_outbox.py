"""The durable outbox: order, idempotent intake, budget (roll-ups, drops, reports), crash
safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgestream.cli.forward import app as forward_app
from edgestream.core.paths import schemas_dir
from edgestream.forward import budget, outbox
from edgestream.forward.budget import LOW_WATER, enforce_budget, write_report
from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig
from edgestream.forward.records import Entry
from edgestream.wire.codec import BodyCodec
from tests.support.doctests import run_doctests
from tests.support.records import CHANNELS, alert, random_windows

TUMBLING = frozenset({10_000})


def _box(tmp_path: Path, **changes) -> Outbox:
    cfg = OutboxConfig(tmp_path / "outbox.sqlite", tumbling_sizes=TUMBLING, **changes)
    return Outbox(cfg, "gw")


def _summaries(entries_of: list[dict], topic_offset: int = 0) -> list[Entry]:
    return [
        Entry.summary(s, ("edge.summaries", 0, topic_offset + i), TUMBLING)
        for i, s in enumerate(entries_of)
    ]


def _drain_all(box: Outbox) -> list[tuple[int, str, dict]]:
    out = []
    while batch := box.take(100):
        box.mark_sent(batch)
        out += [(p.seq, p.kind, box.codec.decode(p.kind, p.body)) for p in batch]
        box.ack(batch)
    return out


def test_alerts_drain_before_summaries_in_arrival_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sums, _ = random_windows(rng, devices=2, windows=3)
    box = _box(tmp_path)
    box.put(_summaries(sums[:3]))
    box.put([Entry.alert(alert("pump-0", 5)), Entry.alert(alert("pump-1", 6))])
    box.put(_summaries(sums[3:], 3))
    first = box.take(100)
    assert [p.kind for p in first] == ["alert", "alert"], "one priority per take"
    drained = _drain_all(box)
    kinds = [k for _, k, _ in drained]
    assert kinds == ["alert"] * 2 + ["summary"] * 6
    assert [r["summary_id"] for _, k, r in drained if k == "summary"] == [
        s["summary_id"] for s in sums
    ]
    assert all(r["gateway_seq"] == seq for seq, _, r in drained), "seq written into the record"


def test_intake_is_idempotent_and_seqs_are_never_reused(tmp_path: Path) -> None:
    box = _box(tmp_path)
    a = Entry.alert(alert("pump-0", 5), ("edge.alerts", 0, 0))
    assert box.put([a, a]) == [1, None]
    box.ack(box.take(10))
    assert box.put([a]) == [None], "a replay after delivery is still ignored"
    box.close()
    box = _box(tmp_path)
    assert box.put([Entry.alert(alert("pump-0", 9))]) == [2]
    assert box.offsets("edge") == {("edge.alerts", 0): 1}
    box.put([], skipped={("edge.alerts", 0): 0})
    assert box.offsets("edge") == {("edge.alerts", 0): 1}, "offsets never go back"


def test_a_reset_moves_offsets_back_and_what_is_read_again_is_dropped(tmp_path: Path) -> None:
    """The forwarder's reset policy (edgestream.forward.topic_guard): offsets go back to the
    log start with the topic's new id, and records read again are replays."""
    box = _box(tmp_path)
    alerts = [Entry.alert(alert(f"pump-{i}", 5), ("edge.alerts", 0, i)) for i in range(3)]
    assert box.put(alerts) == [1, 2, 3]
    box.reset_offsets("edge", {("edge.alerts", 0): 0}, {"edge.alerts": "id-2"})
    box.close()
    box = _box(tmp_path)
    assert box.offsets("edge") == {("edge.alerts", 0): 0}
    assert box.topic_ids("edge") == {"edge.alerts": "id-2"}
    new = Entry.alert(alert("pump-9", 7), ("edge.alerts", 0, 1))
    assert box.put([alerts[0], new]) == [None, 4], "read again: only the new record is taken"
    assert box.offsets("edge") == {("edge.alerts", 0): 2}
    box.close()


def test_a_different_record_with_a_taken_id_is_refused_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The guard against ids that do not tell records apart: a replay (same body) is
    silent, a different body under a taken id is counted (stats, status, metric) and logged."""
    rng = np.random.default_rng(3)
    sums, _ = random_windows(rng, devices=1, windows=1)
    first = dict(sums[0], device_type="pump", count=60)
    other = dict(first, device_type="reefer", count=59)  # what two site engines gave one id
    box = _box(tmp_path)
    with caplog.at_level("ERROR", logger="edgestream.forward"):
        assert box.put(_summaries([first, first])) == [1, None]
        assert box.stats().id_conflicts == 0, "a replay is not a conflict"
        assert box.put(_summaries([other], 2)) == [None]
    assert box.stats().id_conflicts == 1
    assert [r for r in caplog.records if first["summary_id"] in r.getMessage()]
    box.close()
    (tmp_path / "outbox-gw.sqlite").symlink_to(tmp_path / "outbox.sqlite")
    args = ["status", "-g", "gw", "--data-dir", str(tmp_path)]
    out = CliRunner().invoke(forward_app, [*args, "--json"])
    assert json.loads(out.output.strip().splitlines()[-1])["id_conflicts"] == 1
    table = CliRunner().invoke(forward_app, args).output
    row = next(line for line in table.splitlines() if "id taken by another record" in line)
    assert row.split()[-2:] == ["1", "│"], row


def test_an_outbox_from_before_digests_opens_and_keeps_deduplicating(tmp_path: Path) -> None:
    box = _box(tmp_path)
    a = Entry.alert(alert("pump-0", 5))
    box.put([a])
    box.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite")  # the seen table as an older release made it
    db.executescript(
        "CREATE TABLE seen_old (record_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
        "at_ms INTEGER NOT NULL) WITHOUT ROWID; INSERT INTO seen_old SELECT record_id, seq, "
        "at_ms FROM seen; DROP TABLE seen; ALTER TABLE seen_old RENAME TO seen;"
    )
    db.close()
    box = _box(tmp_path)
    assert box.put([a]) == [None] and box.stats().id_conflicts == 0
    assert box.put([Entry.alert(alert("pump-0", 6))]) == [2]


def test_in_flight_records_are_not_taken_again_until_retry(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.put([Entry.alert(alert("pump-0", t)) for t in range(5)])
    batch = box.take(3)
    box.mark_sent(batch)
    assert [p.seq for p in box.take(10)] == [4, 5]
    box.retry()
    assert [p.seq for p in box.take(10)] == [1, 2, 3, 4, 5]
    box.close()
    box = _box(tmp_path)  # a new process: everything unconfirmed is due again
    assert len(box.take(10)) == 5


@pytest.mark.parametrize(("policy", "level"), [("always", 2), ("batch", 2), ("never", 0)])
def test_fsync_policy_sets_sqlite_synchronous(tmp_path: Path, policy: str, level: int) -> None:
    box = _box(tmp_path, fsync=policy)
    assert box.db.execute("PRAGMA synchronous").fetchone()[0] == level
    assert box.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_budget_rolls_up_exactly_before_dropping(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    sums, raw = random_windows(rng, devices=4, windows=12)  # 2 minutes, 48 summaries
    box = _box(tmp_path, max_bytes=10**9)
    box.put(_summaries(sums))
    full = box.bytes
    box.close()
    box = _box(tmp_path, max_bytes=full // 3)
    result = enforce_budget(box)
    assert result.rollups >= 4 and result.rolled_up == 6 * result.rollups
    assert not result.dropped
    assert box.bytes <= box.config.max_bytes * LOW_WATER, "rolled up until under the budget"
    drained = [r for _, _, r in _drain_all(box)]
    for device in raw:
        mine = [r for r in drained if r["scope_key"] == device]
        starts = [r["window_start"] for r in mine]
        assert starts == sorted(starts), "window order per device"
        for r in mine:
            i, n = r["window_start"] // 10_000, (r["window_end"] - r["window_start"]) // 10_000
            assert r["rollup_level"] == (1 if n == 6 else 0)
            for c in CHANNELS:
                v = np.concatenate(raw[device][c][i : i + n])
                stats = r["channels"][c]
                assert stats["count"] == len(v)
                assert stats["sum"] == pytest.approx(v.sum(), rel=1e-12)
                assert stats["m2"] == pytest.approx(((v - v.mean()) ** 2).sum(), rel=1e-9)
    assert sum(r["count"] for r in drained) == sum(s["count"] for s in sums), "counts exact"
    assert box.stats().rollups == result.rollups
    oldest_first = [r["window_start"] for r in drained if r["rollup_level"]]
    assert min(oldest_first) == 0, "the oldest windows are rolled up first"


def _released(name: str, version: int) -> dict:
    return json.loads((schemas_dir() / "history" / name / f"{version}.avsc").read_text())


def test_bodies_written_by_an_earlier_release_drain_in_the_current_schema(tmp_path) -> None:
    """An outbox filled by a release with older wire forms (AnomalyAlert 1, WindowSummary 2)
    and drained after an upgrade: every body goes out in the current schemas, roll-ups merge
    old and new bodies exactly."""
    rng = np.random.default_rng(3)
    sums, raw = random_windows(rng, devices=2, windows=12)
    earlier = BodyCodec(
        {"alert": _released("AnomalyAlert", 1), "summary": _released("WindowSummary", 2)}
    )
    assert earlier.writers["alert"] != BodyCodec().writers["alert"]
    old = Outbox(
        OutboxConfig(tmp_path / "outbox.sqlite", tumbling_sizes=TUMBLING), "gw", codec=earlier
    )
    sent = alert("pump-0", 5)
    old.put([Entry.alert(sent), *_summaries(sums[:12])])
    old.close()
    box = _box(tmp_path, max_bytes=10**9)  # this release
    box.put(_summaries(sums[12:], 12))
    box.close()
    box = _box(tmp_path, max_bytes=box.bytes // 3)
    assert enforce_budget(box).rollups >= 2
    drained = _drain_all(box)  # decoded with the current schemas only
    (got,) = [r for _, k, r in drained if k == "alert"]
    assert {k: v for k, v in got.items() if k not in ("gateway_seq", "update_number")} == {
        k: v for k, v in sent.items() if k != "gateway_seq"
    }
    summaries = [r for _, k, r in drained if k == "summary"]
    assert sum(r["count"] for r in summaries) == sum(s["count"] for s in sums), "counts exact"
    for r in summaries:
        i, n = r["window_start"] // 10_000, (r["window_end"] - r["window_start"]) // 10_000
        for c in CHANNELS:
            v = np.concatenate(raw[r["scope_key"]][c][i : i + n])
            assert r["channels"][c]["count"] == len(v)
            assert r["channels"][c]["sum"] == pytest.approx(v.sum(), rel=1e-12)


def test_drops_are_counted_alerts_last_and_reported_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sums, _ = random_windows(rng, devices=3, windows=4)
    box = _box(tmp_path, max_bytes=10**9)
    box.put([Entry.alert(alert("pump-0", t)) for t in range(4)])
    box.put(_summaries(sums))
    alert_bytes = box.db.execute("SELECT SUM(bytes) FROM records WHERE kind='alert'").fetchone()
    box.close()
    box = _box(tmp_path, max_bytes=int(alert_bytes[0] * 0.8))  # not even the alerts fit
    result = enforce_budget(box)
    assert (result.rollups, result.rolled_up) == (3, 12), "summaries are rolled up first"
    assert result.dropped[("summary", "budget")] == 3, "then every summary is dropped"
    assert 0 < result.dropped[("alert", "budget")] < 4, "then the oldest alerts"
    left = _drain_all(box)
    assert [r["ts"] for _, _, r in left] == list(range(4 - result.dropped[("alert", "budget")], 4))
    stats = box.stats()
    assert stats.dropped == {"alert": result.dropped[("alert", "budget")], "summary": 3}
    assert stats.dropped_unreported == sum(result.dropped.values())
    assert write_report(box) is not None
    assert write_report(box) is None, "each drop is reported once"
    (report,) = [r for _, k, r in _drain_all(box) if k == "report"]
    assert report["dropped_summaries"] == 3
    assert (report["rollups"], report["rolled_up"]) == (3, 12)
    assert report["dropped_alerts"] == result.dropped[("alert", "budget")]
    assert report["dropped_readings"] == sum(s["count"] for s in sums)
    assert report["dropped_by_reason"] == {"budget": sum(result.dropped.values())}
    assert report["report_id"] == "gw|report|1" and report["gateway_seq"] is not None


def test_old_records_are_dropped_by_age_and_attempted_ones_never_rolled_up(tmp_path) -> None:
    rng = np.random.default_rng(5)
    sums, _ = random_windows(rng, devices=1, windows=6)
    box = _box(tmp_path, max_age_ms=60_000)
    now = int(time.time() * 1000)
    box.put(_summaries(sums[:2]), now=now - 120_000)
    box.put(_summaries(sums[2:], 2), now=now)
    in_flight = box.take(1)
    box.mark_sent(in_flight)
    result = enforce_budget(box, now)
    assert result.dropped[("summary", "age")] == 1, "expired, except the one in flight"
    box.retry()  # the attempted one is due again: it may already be in the cloud
    box.config = OutboxConfig(box.config.path, max_bytes=1, tumbling_sizes=TUMBLING)
    result = enforce_budget(box, now)
    assert (result.rollups, result.rolled_up) == (1, 4), "the attempted one is not merged"
    assert result.dropped[("summary", "budget")] == 2, "then dropped: the budget is 1 byte"
    assert box.stats().depth == 0


def test_status_cli_reports_the_outbox(tmp_path: Path) -> None:
    box = _box(tmp_path)
    box.put([Entry.alert(alert("pump-0", 1))])
    box.close()
    (tmp_path / "outbox-gw.sqlite").symlink_to(tmp_path / "outbox.sqlite")
    args = ["status", "-g", "gw", "--data-dir", str(tmp_path)]
    out = CliRunner().invoke(forward_app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output.strip().splitlines()[-1])
    assert data["depth"] == 1 and data["waiting"] == {"alert": 1}
    table = CliRunner().invoke(forward_app, args)
    assert "waiting records" in table.output
    missing = CliRunner().invoke(forward_app, ["status", "-g", "nope", "--data-dir", str(tmp_path)])
    assert missing.exit_code != 0


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edgestream.forward.outbox import Outbox
    from edgestream.forward.outbox_config import OutboxConfig
    from edgestream.forward.records import Entry
    from tests.support.records import alert
    box = Outbox(OutboxConfig(Path(sys.argv[1]), fsync=sys.argv[2]), "gw")
    i = 0
    while True:
        batch = [Entry.alert(alert(f"pump-{i % 7}", i + k), ("edge.alerts", 0, i + k))
                 for k in range(50)]
        box.put(batch)
        i += 50
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("policy", ["batch", "always"])
def test_kill_9_while_writing_loses_nothing_that_was_committed(tmp_path, policy) -> None:
    path = tmp_path / "crash.sqlite"
    root = Path(__file__).parents[2]  # this checkout's code, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), policy], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    acked = 0
    while acked < 1500:
        acked = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    box = Outbox(OutboxConfig(path), "gw")
    depth = box.stats().depth
    assert depth >= acked, "every record reported as committed is there"
    seqs = [r[0] for r in box.db.execute("SELECT seq FROM records ORDER BY seq")]
    assert seqs == list(range(1, depth + 1)), "no gap, no duplicate"
    assert box.offsets("edge")[("edge.alerts", 0)] == depth, "offsets match the records"
    assert box.put([Entry.alert(alert("pump-0", 0))]) == [None], "ids survived too"


def test_docstring_examples_run() -> None:
    run_doctests(outbox)
    run_doctests(budget)
