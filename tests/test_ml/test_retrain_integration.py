"""The retrainer against a real cloud Kafka + registry: samples and a RetrainRequest in, a
signed candidate that loads in onnxruntime out; serve dedups requests and promotes after the
canary gateway reports ``promoted``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.stack import StackStatus
from edgestream.core.topology import load_topology
from edgestream.ml.artifact import shipped_model
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.package import sidecar_from_onnx
from edgestream.ml.scorer import OnnxScorer
from edgestream.ml.signing import load_public_key, verify_update
from edgestream.rollout.history import ModelHistory
from tests.support.retrain import (
    produce,
    reading_id,
    retrain_request,
    sampled_readings,
    topology_with_keys,
)

pytestmark = pytest.mark.integration

SAMPLES = "fleet.samples"
SKIP = 40  # records left out at the start and the end of every partition


@pytest.fixture(scope="module")
def setup(stack: StackStatus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Keys + topology, and fleet samples on the cloud broker with a pointer into them."""
    ends = stack.endpoints()
    bootstrap, registry = str(ends["cloud"]), str(ends["registry"])
    path, _private, public = topology_with_keys(tmp_path_factory.mktemp("retrain"))
    reefers = sampled_readings("reefer", devices=16, duration=400, seed=11, prefix="r")
    pumps = sampled_readings("pump", devices=3, duration=100, seed=12, prefix="p")
    records = sorted(reefers + pumps, key=lambda r: r["ts"])
    replays = [records[i] for i in range(100, len(records), 97)]  # forwarder re-sends
    records = records[: len(records) // 2] + replays + records[len(records) // 2 :]
    produced = produce(bootstrap, registry, SAMPLES, "SensorReading", records, "device_id")
    pointer = []
    for p in sorted({row[0] for row in produced.rows}):
        offsets = sorted(o for q, o, _ in produced.rows if q == p)
        pointer.append(
            {
                "topic": SAMPLES,
                "partition": p,
                "start_offset": offsets[SKIP],
                "end_offset": offsets[-SKIP],
            }
        )
    inside = [
        r
        for q, o, r in produced.rows
        if any(x["partition"] == q and x["start_offset"] <= o < x["end_offset"] for x in pointer)
    ]
    reefer_inside = [reading_id(r) for r in inside if r["device_type"] == "reefer"]
    return {
        "bootstrap": bootstrap,
        "registry": registry,
        "topology_path": path,
        "topology": load_topology(path),
        "public": public,
        "pointer": pointer,
        "expected_ids": set(reefer_inside),
        "duplicates": len(reefer_inside) - len(set(reefer_inside)),
        "other_types": sum(r["device_type"] != "reefer" for r in inside),
        "outside": len(produced.rows) - len(inside),
    }


def _history(setup: dict[str, Any]) -> ModelHistory:
    return ModelHistory.read(setup["bootstrap"], "fleet.models", setup["registry"])


def test_training_set_is_exactly_the_pointer(setup: dict[str, Any]) -> None:
    from edgestream.core.serde import AvroDeserializer
    from edgestream.retrain.trainset import OffsetRange, build_training_set, fetch_ranges

    assert setup["duplicates"] > 0 and setup["other_types"] > 0 and setup["outside"] > 0
    raw = fetch_ranges(setup["bootstrap"], [OffsetRange.from_record(r) for r in setup["pointer"]])
    assert len(raw) == sum(r["end_offset"] - r["start_offset"] for r in setup["pointer"])
    channels = ("supply_air_temp", "return_air_temp", "humidity", "compressor_current")
    data = build_training_set(
        raw, AvroDeserializer(setup["registry"]), "reefer", (*channels, "door_open"), channels
    )
    ids = data.reading_ids()
    assert len(ids) == len(set(ids)) == len(setup["expected_ids"])
    assert set(ids) == setup["expected_ids"]
    assert data.duplicates == setup["duplicates"]
    assert data.other_types == setup["other_types"]
    assert data.invalid == 0


def test_pointer_past_the_data_is_an_error(setup: dict[str, Any]) -> None:
    from edgestream.retrain.trainset import OffsetRange, TrainingSetError, fetch_ranges

    last = max(setup["pointer"], key=lambda r: r["end_offset"])
    beyond = OffsetRange(SAMPLES, last["partition"], 0, last["end_offset"] + 10_000)
    with pytest.raises(TrainingSetError, match="the partition ends at offset"):
        fetch_ranges(setup["bootstrap"], [beyond], timeout=60)


@pytest.fixture(scope="module")
def retrained(
    setup: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``edgestream retrain run`` once for the module: (request, its summary line)."""
    request = retrain_request("reefer-ae", "v1", setup["pointer"], "reefer-ae|drift|run-1")
    file = tmp_path_factory.mktemp("request") / "request.json"
    file.write_text(json.dumps(request))
    cmd = [sys.executable, "-m", "edgestream.cli.main", "retrain", "run", str(file)]
    cmd += ["--topology", str(setup["topology_path"]), "--cloud-bootstrap", setup["bootstrap"]]
    cmd += ["--registry", setup["registry"], "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return request, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_retrain_run_publishes_signed_candidate(
    setup: dict[str, Any], retrained: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    request, summary = retrained
    assert summary["training_readings"] == len(setup["expected_ids"])
    assert summary["training_duplicates"] == setup["duplicates"]
    assert summary["training_other_types"] == setup["other_types"]

    history = _history(setup)
    candidates = [u for u in history.of("reefer-ae") if u["action"] == "candidate"]
    assert [u["version"] for u in candidates] == ["v2"]
    update = candidates[0]
    assert update["parent_version"] == "v1"
    assert update["retrain_request_id"] == request["id"]
    assert update["device_type"] == "reefer"
    assert update["canary_fraction"] == setup["topology"].rollout.canary_fraction
    verify_update(update, load_public_key(setup["topology"].retraining.signing))

    # the artifact loads in onnxruntime with its embedded sidecar and scores features
    blob = update["artifact"]
    meta = sidecar_from_onnx(blob)
    shipped = shipped_model("reefer")
    assert meta.sha256 == update["sha256"] and meta.inputs == shipped.inputs
    assert tuple(update["inputs"]) == shipped.inputs
    assert meta.features == shipped.features  # same feature config: one extractor serves both
    assert update["threshold"] == meta.threshold > 0
    scorer = OnnxScorer.load(blob, meta)
    fx = FeatureExtractor.from_config(meta.features)
    rng = np.random.default_rng(0)
    values = rng.normal([-18, -15, 80, 10], [0.2, 0.2, 1, 0.5], (200, 4))
    scores = scorer.score(fx.transform(["d"] * 200, np.arange(200) * 100, values))
    assert scores.shape == (200,) and np.isfinite(scores).all()

    # baseline: every reefer channel, deciles over exactly the training readings
    channels = {b["channel"]: b for b in update["baseline"]}
    assert set(channels) == {
        "supply_air_temp",
        "return_air_temp",
        "humidity",
        "compressor_current",
        "door_open",
    }
    for base in channels.values():
        assert len(base["edges"]) == 9 and len(base["fractions"]) == 10
        assert base["count"] == summary["training_readings"]
        assert abs(sum(base["fractions"]) - 1) < 1e-6

    metrics = update["metrics"]
    for name in (
        "rank_correlation",
        "current_anomaly_rate",
        "candidate_anomaly_rate",
        "anomaly_rate_delta",
        "gates_pass",
        "candidate_score_p99",
        "current_score_p99",
    ):
        assert np.isfinite(metrics[name]), name
    assert metrics["holdout_rows"] + metrics["train_rows"] == summary["training_readings"]
    assert metrics["training_readings"] == summary["training_readings"]


@pytest.fixture(scope="module")
def served(
    setup: dict[str, Any], retrained: tuple[dict[str, Any], dict[str, Any]]
) -> dict[str, Any]:
    """``retrain serve`` once for the module, after ``retrain run`` published v2: a request
    sent twice gives one candidate (v3), and the canary's ``promoted`` event (sent twice)
    one promote. The models CLI test lists what it did, whatever order the tests run in."""
    from edgestream.ml.signing import load_private_key
    from edgestream.retrain.service import Retrainer

    topology = setup["topology"]
    endpoints = CloudEndpoints(setup["bootstrap"], setup["registry"])
    key = load_private_key(topology.retraining.signing)
    before = _history(setup).versions("reefer-ae")
    request = retrain_request("reefer-ae", "v1", setup["pointer"], "reefer-ae|drift|serve-1")
    produce(
        setup["bootstrap"], setup["registry"], "fleet.retrain", "RetrainRequest",
        [request, request], "id",
    )  # fmt: skip
    stop = threading.Event()
    retrainer = Retrainer(topology, endpoints, key, group="test-retrainer")
    thread = threading.Thread(target=retrainer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        version = _history(setup).next_version("reefer-ae", floor="v1")
        _wait(lambda: _history(setup).candidate("reefer-ae", version) is not None, 300)
        # the second copy of the request is read and dropped: both are committed
        _wait(lambda: _committed(setup["bootstrap"], "test-retrainer", "fleet.retrain") == 2, 60)
        results, errors = list(retrainer.results), retrainer.errors
        versions = _history(setup).versions("reefer-ae")

        canary = topology.canary_gateways()[0]
        event = {
            "event_id": f"{canary}|rollout|1",
            "gateway_id": canary,
            "event": "promoted",
            "model_name": "reefer-ae",
            "device_type": "reefer",
            "version": version,
            "live_version": version,
            "previous_version": "v1",
            "canary": True,
            "reason": "gates-passed",
            "created_at": int(time.time() * 1000),
        }
        produce(
            setup["bootstrap"], setup["registry"], "fleet.rollout", "RolloutEvent",
            [event, event], "gateway_id",
        )  # fmt: skip
        _wait(lambda: _history(setup).state("reefer-ae", version) == "promote", 120)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    return {"before": before, "version": version, "request": request, "results": results,
            "errors": errors, "versions": versions, "canary": canary}  # fmt: skip


@pytest.mark.slow
def test_serve_dedups_requests_and_promotes_after_the_canary(
    setup: dict[str, Any], served: dict[str, Any]
) -> None:
    from edgestream.ml.signing import load_private_key
    from edgestream.retrain.service import Retrainer

    topology = setup["topology"]
    before, version = served["before"], served["version"]
    assert len(served["results"]) == 1 and served["errors"] == 0
    assert served["versions"] == [*before, version]
    promotes = [u for u in _history(setup).of("reefer-ae") if u["action"] == "promote"]
    assert [u["version"] for u in promotes] == [version]  # once, despite the replayed event
    assert promotes[0]["artifact"] is None
    verify_update(promotes[0], load_public_key(topology.retraining.signing), require_artifact=False)

    assert _committed(setup["bootstrap"], "test-retrainer", "fleet.retrain") == 2

    # a restarted retrainer does not serve the committed request again. The positive sign
    # that it read past it: a marker in every partition (a new id whose dedup key already
    # led to a version, so it is skipped, not served) is read and committed
    markers = _markers(setup, served["request"])
    done = 2 + len(markers)
    endpoints = CloudEndpoints(setup["bootstrap"], setup["registry"])
    key = load_private_key(topology.retraining.signing)
    again = Retrainer(topology, endpoints, key, group="test-retrainer")
    stop2 = threading.Event()
    thread2 = threading.Thread(target=again.run, args=(stop2,), daemon=True)
    thread2.start()
    try:
        _wait(lambda: _committed(setup["bootstrap"], "test-retrainer", "fleet.retrain") == done,
              120)  # fmt: skip
    finally:
        stop2.set()
        thread2.join(60)
    assert again.results == [] and again.errors == 0
    assert _history(setup).versions("reefer-ae") == [*before, version]


def _markers(setup: dict[str, Any], request: dict[str, Any]) -> set[str]:
    """One copy of ``request`` under a new id in each partition of ``fleet.retrain``; their
    ids."""
    from confluent_kafka import Consumer, Producer

    from edgestream.core.broker import consumer_config, producer_config
    from edgestream.core.serde import AvroSerializer, subject_for

    probe = Consumer(consumer_config(setup["bootstrap"], f"probe-{time.time_ns()}"))
    try:
        parts = sorted(probe.list_topics("fleet.retrain", timeout=10).topics["fleet.retrain"]
                       .partitions)  # fmt: skip
    finally:
        probe.close()
    encode = AvroSerializer(setup["registry"], "RetrainRequest", subject_for("fleet.retrain"))
    producer = Producer(producer_config(setup["bootstrap"], **{"acks": "all"}))
    ids = set()
    for p in parts:
        marker = {**request, "id": f"{request['id']}|marker-{p}"}  # data.dedup_key unchanged
        producer.produce("fleet.retrain", encode(marker), marker["id"].encode(), partition=p)
        ids.add(marker["id"])
    assert producer.flush(30) == 0
    return ids


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group committed (sum over partitions)."""
    from confluent_kafka import Consumer, TopicPartition

    from edgestream.core.broker import consumer_config
    from edgestream.core.offsets import committed_offsets

    consumer = Consumer(consumer_config(bootstrap, group, **{"enable.auto.commit": False}))
    try:  # committed_offsets retries while the group coordinator is not ready
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        found = committed_offsets(consumer, [TopicPartition(topic, p) for p in parts])
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise AssertionError(f"condition not met within {timeout} s")


def _cli(setup: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    from edgestream.cli.main import main

    capsys.readouterr()
    where = ["--topology", str(setup["topology_path"]), "--cloud-bootstrap", setup["bootstrap"]]
    try:
        main([*args, *where, "--registry", setup["registry"], "--json"])
    except SystemExit as exit_:
        assert exit_.code in (0, None), capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_models_cli_publish_list_rollback(
    setup: dict[str, Any],
    retrained: tuple[dict[str, Any], dict[str, Any]],
    served: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The list shows the retrained reefer candidate (``retrained``) with its metrics, and the
    version ``served`` promoted with the canary's report."""
    import shutil

    from edgestream.cli.main import main
    from edgestream.ml.artifact import shipped_model_path

    onnx = shipped_model_path("pump")
    shutil.copy(onnx, tmp_path / onnx.name)
    shutil.copy(onnx.with_suffix(".json"), tmp_path / onnx.with_suffix(".json").name)
    published = _cli(setup, capsys, "models", "publish", str(tmp_path / onnx.name))
    assert published["model_name"] == "pump-ae" and published["version"] == "v2"
    assert published["action"] == "candidate" and published["parent_version"] == "v1"
    update = _history(setup).candidate("pump-ae", "v2")
    verify_update(update, load_public_key(setup["topology"].retraining.signing))
    assert sidecar_from_onnx(update["artifact"]).features == shipped_model("pump").features

    rolled = _cli(setup, capsys, "models", "rollback", "pump-ae", "v2")
    assert rolled["action"] == "rollback"
    table = _cli(setup, capsys, "models", "list")
    states = {(r["model_name"], r["version"]): r for r in table["models"]}
    assert states[("pump-ae", "v2")]["state"] == "rollback"
    reefer = [r for r in table["models"] if r["model_name"] == "reefer-ae"]
    assert (
        reefer and reefer[0]["state"] == "candidate" and "rank_correlation" in reefer[0]["metrics"]
    )
    promoted = [r for r in reefer if r["state"] == "promote"]
    assert [r["version"] for r in promoted] == [served["version"]]
    canary = served["canary"]  # the canary's report is listed per gateway
    assert promoted[0]["gateways"] == {canary: "promoted"}
    assert table["live"][canary]["reefer-ae"] == promoted[0]["version"]

    capsys.readouterr()
    where = ["--topology", str(setup["topology_path"]), "--cloud-bootstrap", setup["bootstrap"]]
    with pytest.raises(SystemExit) as exit_:
        main(["models", "promote", "pump-ae", "v77", *where, "--registry", setup["registry"]])
    assert exit_.value.code == 1
    assert "no candidate pump-ae v77" in capsys.readouterr().err


def test_serve_declines_a_request_with_too_few_samples(
    setup: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A pointer at 30 samples: one WARNING line naming the shortfall, counted as declined
    (not an error), committed, and the service goes on."""
    from edgestream.ml.signing import load_private_key
    from edgestream.retrain.service import Retrainer

    topology = setup["topology"]
    first = setup["pointer"][0]
    small = [{**first, "end_offset": first["start_offset"] + 30}]
    request = retrain_request("reefer-ae", "v1", small, "reefer-ae|drift|small-1")
    produce(setup["bootstrap"], setup["registry"], "fleet.retrain", "RetrainRequest",
            [request], "id")  # fmt: skip
    key = load_private_key(topology.retraining.signing)
    endpoints = CloudEndpoints(setup["bootstrap"], setup["registry"])
    retrainer = Retrainer(topology, endpoints, key, group="test-decline")
    stop = threading.Event()
    thread = threading.Thread(target=retrainer.run, args=(stop,), daemon=True)
    with caplog.at_level("WARNING", logger="edgestream"):
        thread.start()
        try:
            _wait(lambda: retrainer.declined >= 1 or retrainer.errors > 0, 120)
        finally:
            stop.set()
            thread.join(60)
    assert (retrainer.declined, retrainer.errors, retrainer.results) == (1, 0, [])
    lines = [r for r in caplog.records if "declined" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING" and lines[0].exc_info is None
    assert "point the request at more samples" in lines[0].getMessage()
