"""The cloud wire form of AnomalyAlert v2 (ids travel; first_ts/last_ts equal to ts null,
restored by complete_alert)
and the NearDecimal form of summary sums (WindowSummary v3)."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from fastavro import schemaless_reader, schemaless_writer

from edgestream.core.avro_schema import fastavro_schema
from edgestream.core.paths import schemas_dir
from edgestream.core.topology.detection import AnomalyRule, AnomalySpec, Suppression
from edgestream.edge.incidents import IncidentTracker
from edgestream.forward.records import Entry
from edgestream.rollout.slots import rejection_alert
from edgestream.wire.codec import BodyCodec
from edgestream.wire.dedup import Deduplicator
from edgestream.wire.forms import (
    compact_double,
    complete_alert,
    complete_record,
    expand_double,
    wire_alert,
)
from edgestream.wire.ids import record_id

CHANNELS = ("bearing_temp", "pressure")


def tracked_alerts(consecutive: int) -> list[dict[str, Any]]:
    """Alerts of the gateway's own IncidentTracker: two incidents on one device (open,
    updates, resolved) and one on another, with sensor values of 3 decimals."""
    rule = AnomalyRule(name="pump-anomaly", consecutive=consecutive)
    spec = AnomalySpec(rules=(rule,), suppression=Suppression(cooldown=3_000, update_interval=500))
    tracker = IncidentTracker(spec, "gw-7", thresholds={"pump": 0.095867721})
    rng = np.random.default_rng(5)
    n = 200
    ts = 1_795_315_476_000 + np.arange(n) * 100
    scores = rng.uniform(0.0, 0.05, n)
    scores[20:45] = rng.uniform(0.2, 0.9, 25)  # incident 1: open, updates
    scores[120:126] = 0.5  # incident 2 after incident 1 resolved
    devices = ["pump-0029" if i % 5 else "pump-0003" for i in range(n)]
    values = np.round(rng.uniform(0, 100, (n, len(CHANNELS))), 3)
    alerts = tracker.process(devices, ["site-2"] * n, ["pump"] * n, ts, np.arange(n), scores,
                             values=values, channels=CHANNELS,
                             model_version="pump-ae-v1")  # fmt: skip
    return [{**a, "gateway_seq": 100 + i} for i, a in enumerate(alerts)]


@pytest.mark.parametrize("consecutive", [1, 3])
def test_alert_wire_form_round_trips_exactly_with_the_same_dedup_key(consecutive: int) -> None:
    alerts = tracked_alerts(consecutive)
    statuses = {a["status"] for a in alerts}
    assert statuses == {"open", "update", "resolved"}, statuses
    codec = BodyCodec()
    v1 = fastavro_schema(json.loads((schemas_dir() / "history/AnomalyAlert/1.avsc").read_text()))
    for alert in alerts:
        wire = wire_alert(alert)
        assert (wire["alert_id"], wire["incident_id"]) == (
            alert["alert_id"],
            alert["incident_id"],
        ), "ids travel"
        assert wire["last_ts"] is None or alert["status"] == "resolved"
        body = codec.encode("alert", wire)
        decoded = codec.decode("alert", body)
        number = int(alert["alert_id"].rsplit("|", 1)[1]) if alert["status"] == "update" else None
        assert decoded["update_number"] == number
        assert complete_alert(decoded) == {**alert, "update_number": number}, "exact round trip"
        assert complete_record(decoded) == complete_alert(decoded)
        # the dedup key is the gateway's alert_id, completed or not, in and out of the outbox
        assert record_id(decoded) == record_id(alert) == alert["alert_id"]
        assert Entry.alert(wire).record_id == Entry.alert(alert).record_id == alert["alert_id"]
        old = BytesIO()
        schemaless_writer(old, v1, alert)
        assert len(body) < len(old.getvalue()), "smaller on the wire"


def test_v1_alerts_and_v2_copies_of_them_are_one_alert_to_consumers() -> None:
    alert = tracked_alerts(1)[0]
    v1 = fastavro_schema(json.loads((schemas_dir() / "history/AnomalyAlert/1.avsc").read_text()))
    v2 = fastavro_schema(json.loads((schemas_dir() / "anomaly_alert.avsc").read_text()))
    out = BytesIO()
    schemaless_writer(out, v1, alert)
    old = schemaless_reader(BytesIO(out.getvalue()), v1, v2)  # v1 data, v2 reader
    assert complete_alert(old) == {**alert, "update_number": None}
    dedup = Deduplicator()
    new = BodyCodec().decode("alert", BodyCodec().encode("alert", wire_alert(alert)))
    assert dedup.accept(None, None, record_id(old)) is True
    assert dedup.accept(None, None, record_id(new)) is False, "same key: a replay"


def test_ids_travel_as_the_gateway_assigned_them() -> None:
    rejected = rejection_alert("gw-1", "s1", "pump", "pump-ae", "v9", "v1", 4, 1_000)
    odd = {**tracked_alerts(1)[0], "alert_id": "custom-id", "incident_id": "custom-incident"}
    codec = BodyCodec()
    for alert in (rejected, odd):
        wire = wire_alert(alert)
        assert (wire["alert_id"], wire["incident_id"]) == (alert["alert_id"], alert["incident_id"])
        back = complete_alert(codec.decode("alert", codec.encode("alert", wire)))
        assert back["alert_id"] == alert["alert_id"]
        assert back["incident_id"] == alert["incident_id"]
    unset = {**tracked_alerts(1)[0], "alert_id": None, "incident_id": None}
    assert wire_alert(unset)["alert_id"] == tracked_alerts(1)[0]["alert_id"], "derived"


def test_near_decimal_sums_are_bit_exact_and_shorter() -> None:
    rng = np.random.default_rng(3)
    near = 0
    for _ in range(3000):
        n = int(rng.integers(1, 400))
        scale = int(rng.integers(0, 4))
        values = np.round(rng.uniform(-80, 120, n), scale)
        total = float(np.add.reduce(values))  # a float sum: often a few ulps off
        for x in (total, -total, total * 1e-7, total * 1e9):
            packed = compact_double(x, near=True)
            assert np.float64(expand_double(packed)).tobytes() == np.float64(x).tobytes(), x
            near += isinstance(packed, dict) and "ulps" in packed
    assert near > 1000, "float sums of decimal readings get the NearDecimal form"
    for x in (0.1 + 0.2, 5e-324, 1e300, float(np.nextafter(1.0, 2.0)), 2.0 - 2**-52):
        assert expand_double(compact_double(x, near=True)) == x
    codec = BodyCodec()
    summary = {
        "summary_id": None, "gateway_id": "gw", "scope": "device", "scope_key": "p1",
        "site": "s", "device_type": "pump", "window_start": 0, "window_end": 10_000,
        "count": 2, "first_ts": 0, "last_ts": 1,
        "channels": {"t": {"count": 2, "sum": compact_double(0.1 + 0.2, near=True),
                           "min": 0.1, "max": 0.2, "m2": 0.005}},
    }  # fmt: skip
    back = codec.decode("summary", codec.encode("summary", summary))
    assert back["channels"]["t"]["sum"] == {"unscaled": 3, "scale": 1, "ulps": 1}
    assert complete_record(back)["channels"]["t"]["sum"] == 0.1 + 0.2
