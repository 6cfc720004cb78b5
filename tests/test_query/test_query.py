"""Flink SQL over the fleet's streams on a real stack and a real MiniCluster: bounded results
equal offline references (replays dropped, exact ends), bad SQL is one readable block.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.stack import StackStatus
from edgestream.query import query
from tests.support.cli import cli_output
from tests.support.records import alert, summary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITES = ("plant-a", "plant-b", "plant-c")
SEVERITIES = ("info", "warning", "critical")


class Fleet:
    """Forwarded summaries and alerts (with replays) and fleet.stats rows on the cloud broker,
    and the offline truth about them."""

    def __init__(self, status: StackStatus) -> None:
        ends = status.endpoints()
        self.bootstrap, self.registry = str(ends["cloud"]), str(ends["registry"])
        ensure_topics(self.bootstrap, {"fleet.summaries": 2, "fleet.alerts": 2, "fleet.stats": 1})
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        rng = np.random.default_rng(7)
        self.summaries: list[dict[str, Any]] = []
        seqs: Counter[str] = Counter()
        for i in range(120):
            gateway = ("gw-a", "gw-b")[i % 2]
            scope = ("device", "site")[(i // 2) % 2]
            seqs[gateway] += 1
            record = summary(f"dev-{i % 7}", 1_700_000_000_000 + (i // 4) * 10_000,
                             {"pressure": rng.normal(3.0, 0.5, 16)}, gateway=gateway,
                             scope=scope, anomalies=int(rng.integers(0, 5)))  # fmt: skip
            record.update(site=SITES[i % 3], gateway_seq=seqs[gateway])
            if scope == "site":
                record["scope_key"] = record["site"]
            self.summaries.append(record)
        self.alerts: list[dict[str, Any]] = []
        for i in range(30):
            seqs["gw-a"] += 1
            record = {**alert(f"dev-{i % 5}", 1_700_000_000_000 + i * 1000, "gw-a", i),
                      "site": SITES[i % 3], "severity": SEVERITIES[i % 3],
                      "gateway_seq": seqs["gw-a"]}  # fmt: skip
            self.alerts.append(record)
        self.stats = [self._stats_row(site, n) for n, site in enumerate(SITES)]
        self.stats.append(self._stats_row("plant-a", 99))  # a later version of the same key
        self._send()

    @staticmethod
    def _stats_row(site: str, anomalies: int) -> dict[str, Any]:
        return {"window_start": 1_700_000_000_000, "window_end": 1_700_000_060_000,
                "scope": "site", "scope_key": site, "device_count": 3, "reading_count": 100,
                "anomaly_count": anomalies, "alert_count": 0, "anomaly_rate": anomalies / 100,
                "channels": {"pressure": {"count": 100, "mean": 3.0, "std": 0.5}},
                "worst_devices": [{"device_id": "dev-1", "anomaly_count": 1, "max_score": 0.9}],
                "model_versions": {"v1": 100}, "late_count": 0, "computed_at": 1}  # fmt: skip

    def _send(self) -> None:
        summaries = AvroSerializer(self.registry, "WindowSummary", subject_for("fleet.summaries"))
        alerts = AvroSerializer(self.registry, "AnomalyAlert", subject_for("fleet.alerts"))
        batches = (1, 1, 10, 5, 100)  # many small batches: a short ListOffsets would stop early
        start = 0
        for size in batches:
            for record in self.summaries[start : start + size]:
                self.producer.produce(
                    "fleet.summaries", summaries(record), record["scope_key"].encode()
                )
            self.producer.flush(10)
            start += size
        for record in self.summaries[start:] + self.summaries[10:20]:  # + forwarder replays
            self.producer.produce("fleet.summaries", summaries(record), b"replay")
        for record in self.alerts + self.alerts[:4]:
            self.producer.produce("fleet.alerts", alerts(record), record["device_id"].encode())
        for row in self.stats:
            key = f"{row['window_start']}|{row['scope']}|{row['scope_key']}".encode()
            self.producer.produce("fleet.stats", json.dumps(row).encode(), key)
        assert self.producer.flush(10) == 0


@pytest.fixture(scope="module")
def fleet(stack: StackStatus) -> Fleet:
    return Fleet(stack)


SITE_SQL = ("SELECT site, SUM(anomalies) AS anomalies, COUNT(*) AS summaries "
            "FROM fleet.summaries WHERE `scope` = 'site' GROUP BY site")  # fmt: skip


def _site_reference(fleet: Fleet) -> dict[str, tuple[int, int]]:
    ref: dict[str, list[int]] = {}
    for s in fleet.summaries:
        if s["scope"] == "site":
            acc = ref.setdefault(s["site"], [0, 0])
            acc[0] += s["anomaly_count"]
            acc[1] += 1
    return {site: (a, n) for site, (a, n) in ref.items()}


def test_group_by_site_equals_the_offline_reference(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    args = ["--format", "json", "--bootstrap", fleet.bootstrap, "--registry", fleet.registry]
    code, lines, err = cli_output(capsys, "query", SITE_SQL, *args)
    seconds = time.monotonic() - started
    assert code == 0, err
    rows = [json.loads(line) for line in lines]
    got = {r["site"]: (r["anomalies"], r["summaries"]) for r in rows}
    assert got == _site_reference(fleet)
    with capsys.disabled():
        print(f"\n[query] GROUP BY site over {len(fleet.summaries)} summaries: {seconds:.1f} s "
              "(MiniCluster start included)")  # fmt: skip


def test_alerts_and_latest_stats_as_a_dataframe(fleet: Fleet) -> None:
    sql = ("SELECT 'alerts' AS t, severity AS k, COUNT(*) AS n FROM fleet.alerts GROUP BY severity "
           "UNION ALL SELECT 'stats', scope_key, SUM(anomaly_count) FROM fleet.stats "
           "WHERE `scope` = 'site' GROUP BY scope_key")  # fmt: skip
    frame = query(sql, bootstrap=fleet.bootstrap, registry=fleet.registry, as_pandas=True)
    assert list(frame.columns) == ["t", "k", "n"]
    got = {(r.t, r.k): int(r.n) for r in frame.itertuples()}
    severities = Counter(a["severity"] for a in fleet.alerts)  # the 4 replays are not counted
    expected = {("alerts", s): n for s, n in severities.items()}
    expected.update({("stats", "plant-a"): 99, ("stats", "plant-b"): 1, ("stats", "plant-c"): 2})
    assert got == expected


def test_bad_sql_prints_flinks_message_in_one_block(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    ends = ["--bootstrap", fleet.bootstrap, "--registry", fleet.registry]
    code, lines, err = cli_output(capsys, "query", "SELECT nope FROM fleet.summaries", *ends)
    assert code == 1 and lines == []
    assert "Column 'nope' not found in any table" in err
    assert err.startswith("error: ")
    assert "\tat " not in err and "java." not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 6


def test_follow_streams_new_rows(fleet: Fleet) -> None:
    from edgestream.query import follow

    sql = "SELECT scope_key, anomaly_count FROM fleet.stats_log WHERE scope_key = 'plant-z'"
    rows = follow(sql, bootstrap=fleet.bootstrap, registry=fleet.registry)
    row = {**fleet._stats_row("plant-z", 5), "scope": "device_type"}  # not in other tests' rows
    fleet.producer.produce("fleet.stats", json.dumps(row).encode(), b"plant-z")
    fleet.producer.flush(10)
    try:
        change, first = next(rows)  # the job starts reading from the beginning
        assert (change, first) == ("+I", {"scope_key": "plant-z", "anomaly_count": 5})
        later = {**row, "window_start": row["window_start"] + 60_000, "anomaly_count": 6}
        fleet.producer.produce("fleet.stats", json.dumps(later).encode(), b"plant-z")
        fleet.producer.flush(10)
        assert next(rows) == ("+I", {"scope_key": "plant-z", "anomaly_count": 6})
    finally:
        rows.close()
