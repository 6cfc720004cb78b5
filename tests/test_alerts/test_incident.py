"""A real incident, end to end: simulated pumps -> gateway worker -> forwarder -> cloud broker
-> a subscriber started before it. Each alert arrives once; a restarted subscriber of the same
group prints nothing old."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from edgestream.alerts import subscribe
from edgestream.core.broker import producer_config
from edgestream.core.serde import AvroSerializer, subject_for
from tests.support.pipeline import Pipeline
from tests.support.records import alert

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_subscriber_gets_a_real_incident_once(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    try:
        p.worker.start()
        p.forwarder.start()
        p.collector.start()
        where = {"bootstrap": p.cloud, "registry": p.registry, "group": "ops"}
        live = subscribe(**where)  # before anything happened (the topic does not exist yet)
        p.simulate(seconds=40, paced=False, anomaly_rate=0.05,
                   start_time=(int(time.time()) - 60) * 1000)  # fmt: skip
        edge = p.wait_cloud_has_edge(timeout=150)
        want = sorted(r["alert_id"] for r, _ in edge.get("alert", []))
        assert want, "the simulated anomalies raised no alert"
        got: list[str] = []
        deadline = time.monotonic() + 60
        while len(got) < len(want) and time.monotonic() < deadline:
            got += [a.alert_id for a in live.poll(1.0)]
        got += [a.alert_id for a in live.poll(2.0)]
        live.close()
        assert sorted(got) == want  # every alert of the incident(s), each once
        # a restarted subscriber of the group: a marker alert produced now is the positive
        # sign that it reads; it must be the only alert it prints (nothing old again)
        marker = alert("pump-marker", int(time.time() * 1000), gateway="gw-marker")
        ser = AvroSerializer(p.registry, "AnomalyAlert", subject_for("fleet.alerts"))
        with subscribe(**where) as restarted:
            producer = Producer(producer_config(p.cloud))
            producer.produce("fleet.alerts", ser(marker), marker["device_id"].encode())
            assert producer.flush(20) == 0
            seen: list[str] = []
            deadline = time.monotonic() + 60
            while marker["alert_id"] not in seen and time.monotonic() < deadline:
                seen += [a.alert_id for a in restarted.poll(1.0)]
            seen += [a.alert_id for a in restarted.poll(1.0)]
        assert seen == [marker["alert_id"]], "only the marker: nothing old printed again"
    finally:
        p.close()
