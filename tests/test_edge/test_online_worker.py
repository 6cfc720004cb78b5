"""The online detector (``kind: online``) in a real gateway worker: a real Faust worker
process and a real Kafka broker, a NAB series from the project's test data. The worker's
alerts equal the alerts of the in-process replay ``eval nab`` runs (same detection code),
also when the worker is restarted mid-series (the per-device detector state survives)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from confluent_kafka import Producer

from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.paths import topologies_dir
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.stack import Stack
from edgestream.core.topology import load_topology
from edgestream.evaluation.corpus import read_csv_columns
from edgestream.evaluation.replay import GATEWAY as REPLAY_GATEWAY
from edgestream.evaluation.replay import Recording, replay
from edgestream.evaluation.windows import probation_rows
from edgestream.wire.topics import ALERTS_TOPIC
from tests.support import gateway as gr

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERIES = Path(__file__).parent.parent / "data" / "nab" / "data" / "realTraffic" / "speed_7578.csv"
GATEWAY, SITE, TOPIC, DEVICE = "gw-nab", "replay", "sensors.metric", "speed_7578"
RESTART_AT = 600  # rows before the restart: after calibration, before most detections


@pytest.fixture
def env(tmp_path: Path):
    stack = Stack(tmp_path / "stack")
    status = stack.start(gateways=1)
    ends = status.endpoints()
    yield {"bootstrap": ends["edge"]["gw-1"], "registry": str(ends["registry"]),
           "dir": tmp_path}  # fmt: skip
    stack.stop()


def _series() -> tuple[np.ndarray, np.ndarray]:
    """Event times (epoch ms) and values of the test series."""
    columns = read_csv_columns(SERIES, ["timestamp", "value"])
    return columns["timestamp"].astype("datetime64[ms]").astype(np.int64), columns["value"]


def _topology(path: Path, calibration: int) -> Path:
    """topologies/nab.yaml with the series' calibration (as ``eval nab`` sets it)."""
    doc = yaml.safe_load((topologies_dir() / "nab.yaml").read_text())
    doc["models"]["metric"]["online"]["calibration"] = calibration
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _produce(env: dict[str, Any], ts: np.ndarray, values: np.ndarray, rows: range) -> None:
    ensure_topics(env["bootstrap"], {TOPIC: 1})
    serialize = AvroSerializer(env["registry"], "SensorReading", subject_for(TOPIC))
    producer = Producer(producer_config(env["bootstrap"]))
    for i in rows:
        record = {"device_id": DEVICE, "site": SITE, "device_type": "metric", "ts": int(ts[i]),
                  "seq": i, "channels": {"value": float(values[i])}, "tags": {}}  # fmt: skip
        producer.produce(TOPIC, serialize(record), DEVICE.encode())
    assert producer.flush(30) == 0, "readings not delivered"


def _alerts(env: dict[str, Any]) -> list[dict[str, Any]]:
    decode = AvroDeserializer(env["registry"])
    by_id = {}
    for msg in gr.read_topic(env["bootstrap"], ALERTS_TOPIC):
        alert = decode(msg.value())
        by_id[alert["alert_id"]] = alert  # a replayed alert carries the same id
    return [by_id[k] for k in sorted(by_id)]


def _comparable(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert without what differs by design: when it was sent and the gateway's id (the
    replay runs as gateway ``replay``; ids start with the gateway's)."""
    out = {k: v for k, v in alert.items() if k not in ("emitted_at", "gateway_id")}
    for key in ("alert_id", "incident_id"):
        out[key] = out[key].split("|", 1)[1]
    return out


def test_worker_alerts_equal_eval_nab_replay_across_a_restart(env):
    ts, values = _series()
    topology = _topology(env["dir"] / "nab.yaml", max(probation_rows(len(values)), 10))
    offline = replay(load_topology(topology), Recording.one_device(DEVICE, ts, values))
    expected = sorted((_comparable(a) for a in offline.alerts), key=lambda a: a["alert_id"])
    opened = [int(np.searchsorted(ts, a["ts"])) for a in expected if a["status"] == "open"]
    assert len(opened) >= 3 and sum(i >= RESTART_AT for i in opened) >= 2, opened

    data = env["dir"] / "gw"
    worker = gr.Worker(topology, GATEWAY, env["bootstrap"], env["registry"], data).start()
    try:
        _produce(env, ts, values, range(RESTART_AT))
        gr.wait_processed(worker, data, RESTART_AT, 120)
        assert worker.stop() == 0, worker.log_text()[-2000:]
        worker = gr.Worker(topology, GATEWAY, env["bootstrap"], env["registry"], data).start()
        _produce(env, ts, values, range(RESTART_AT, len(values)))
        gr.wait_processed(worker, data, len(values) - RESTART_AT, 120)  # counts restart at 0
        sent = _alerts(env)
    finally:
        worker.stop()
    assert {a["gateway_id"] for a in sent} == {GATEWAY}
    assert {a["gateway_id"] for a in offline.alerts} == {REPLAY_GATEWAY}
    got = [_comparable(a) for a in sent]
    assert [a["alert_id"] for a in got] == [a["alert_id"] for a in expected]
    assert got == expected
