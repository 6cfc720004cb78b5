"""Retraining without a broker: training-set rules, refit and its evaluation, version history,
the rollout controller's decisions, the embedded sidecar."""

from __future__ import annotations

import importlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from edgestream.core.exceptions import SerdeError
from edgestream.core.topology import load_topology
from edgestream.loop.up import default_topology
from edgestream.ml.artifact import load_artifact, shipped_model_path
from edgestream.ml.exceptions import ArtifactError
from edgestream.retrain.refit import RefitParams, evaluate_holdout, holdout_mask, rank_correlation
from edgestream.retrain.trainset import OffsetRange, TrainingSet, build_training_set
from edgestream.rollout.control import RolloutController, canaries_by_model, decide
from edgestream.rollout.history import ModelHistory, action_update
from tests.support.doctests import run_doctests
from tests.support.retrain import sampled_readings


@pytest.mark.parametrize(
    "name",
    [
        "edgestream.rollout.history",
        "edgestream.rollout.control",
        "edgestream.retrain.refit",
        "edgestream.ml.drift",
    ],
)
def test_docstring_examples(name: str) -> None:
    run_doctests(importlib.import_module(name))


# --- training set ---------------------------------------------------------------------------

CHANNELS = ("a", "b")


def _reading(device: str, seq: int, kind: str = "reefer", **channels: float) -> dict:
    values = {"a": 1.0 + seq, "b": 2.0, **channels}
    return {"device_id": device, "seq": seq, "ts": 1000 + seq, "device_type": kind,
            "channels": values}  # fmt: skip


def _decode(value: object) -> dict:
    if value == "garbage":
        raise SerdeError("bad_magic", "not Avro")
    assert isinstance(value, dict)
    return value


def test_training_set_rules() -> None:
    rng = OffsetRange("fleet.samples", 0, 0, 9)
    records = [
        _reading("d1", 2),
        _reading("d1", 1),
        _reading("d1", 2),  # replay: same reading id
        _reading("d2", 1, kind="pump"),  # another model's readings
        _reading("d2", 5, a=math.nan),  # not finite
        {**_reading("d3", 1), "channels": {"a": 1.0}},  # b missing
        "garbage",  # undecodable
        _reading("d0", 7),
        None,  # tombstone
    ]
    raw = [(rng, i, r) for i, r in enumerate(records)]
    data = build_training_set(raw, _decode, "reefer", CHANNELS, CHANNELS)
    assert data.reading_ids() == ["d0|7", "d1|1", "d1|2"]  # per device, event-time order
    assert (data.fetched, data.duplicates, data.other_types, data.invalid) == (9, 1, 1, 4)
    assert data.values.tolist() == [[8.0, 2.0], [2.0, 2.0], [3.0, 2.0]]
    assert data.columns(["b"]).ravel().tolist() == [2.0, 2.0, 2.0]


def test_holdout_is_the_tail_of_every_device() -> None:
    ids = np.array(["a"] * 10 + ["b"] * 3)
    ts = np.r_[np.arange(10)[::-1], [5, 1, 3]]
    mask = holdout_mask(ids, ts, 0.2)
    assert sorted(ts[:10][mask[:10]].tolist()) == [8, 9]
    assert ts[10:][mask[10:]].tolist() == [5]


def test_rank_correlation_matches_scipy() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    a = rng.normal(size=500)
    b = a + rng.normal(size=500)
    b[:50] = np.round(b[:50])  # ties
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-9)
    assert math.isnan(rank_correlation(a, np.ones(500)))


# --- refit and evaluation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reefer_set() -> TrainingSet:
    rows = sampled_readings("reefer", devices=12, duration=300, seed=21, prefix="r")
    rng = OffsetRange("fleet.samples", 0, 0, len(rows))
    channels = tuple(rows[0]["channels"])
    return build_training_set(
        [(rng, i, r) for i, r in enumerate(rows)], _decode, "reefer", channels, channels[:4]
    )


def test_refit_candidate_passes_and_a_worse_one_shows_in_the_metrics(
    reefer_set: TrainingSet,
) -> None:
    from edgestream.ml.features import FeatureExtractor
    from edgestream.ml.package import sidecar_from_onnx
    from edgestream.ml.scorer import OnnxScorer
    from edgestream.ml.train import export_autoencoder
    from edgestream.retrain.refit import refit

    blob, meta = load_artifact(shipped_model_path("reefer"))
    params = RefitParams("reefer-ae-v2")
    cand = refit(reefer_set, blob, meta, params)
    assert cand.train_rows + cand.holdout_rows == len(reefer_set)
    assert cand.meta.training["fit"] == "fine-tuned from the current weights"
    assert sidecar_from_onnx(cand.blob) == cand.meta
    m = cand.metrics
    assert m["gates_pass"] == 1.0, m
    assert m["rank_correlation"] >= params.min_rank_correlation
    assert m["anomaly_rate_delta"] <= params.max_anomaly_rate_delta
    assert m["holdout_rows"] == cand.holdout_rows

    # a deliberately worse model (random weights, same graph) on the same held-out rows
    rng = np.random.default_rng(0)
    sizes = [15, 16, 4, 16, 15]
    weights = [rng.normal(0, 1, (i, o)) for i, o in itertools.pairwise(sizes)]
    biases = [rng.normal(0, 1, o) for o in sizes[1:]]
    worse_blob = export_autoencoder(weights, biases, np.ones(15))
    worse = OnnxScorer.load(worse_blob, {**_meta_dict(meta), "sha256": ""})
    fx = FeatureExtractor.from_config(meta.features)
    feats = fx.transform(reefer_set.device_ids, reefer_set.ts, reefer_set.columns(fx.channels))[
        holdout_mask(reefer_set.device_ids, reefer_set.ts, params.holdout_fraction)
    ]
    current = OnnxScorer.load(blob, meta)
    bad = evaluate_holdout(current, meta.threshold, worse, 1e-6, feats, params)
    assert bad["gates_pass"] == 0.0
    assert bad["candidate_anomaly_rate"] > 0.5 and bad["anomaly_rate_delta"] > 0.1
    good = evaluate_holdout(current, meta.threshold, current, meta.threshold, feats, params)
    assert good["rank_correlation"] == 1.0 and good["anomaly_rate_delta"] == 0.0


def _meta_dict(meta: object) -> dict:
    from dataclasses import asdict

    return asdict(meta)  # type: ignore[arg-type]


def test_refit_refuses_too_little_data(reefer_set: TrainingSet) -> None:
    from dataclasses import replace

    from edgestream.retrain.refit import RefitError, refit

    blob, meta = load_artifact(shipped_model_path("reefer"))
    tiny = replace(
        reefer_set,
        device_ids=reefer_set.device_ids[:100],
        seqs=reefer_set.seqs[:100],
        ts=reefer_set.ts[:100],
        values=reefer_set.values[:100],
    )
    with pytest.raises(RefitError, match="point the request at more samples"):
        refit(tiny, blob, meta, RefitParams("reefer-ae-v2"))


def test_embedded_sidecar_round_trip() -> None:
    from edgestream.ml.package import embed_sidecar, sidecar_from_onnx

    blob, meta = load_artifact(shipped_model_path("pump"))
    with pytest.raises(ArtifactError, match=r"no 'edgestream\.sidecar'"):
        sidecar_from_onnx(blob)
    packed, packed_meta = embed_sidecar(blob, meta)
    got = sidecar_from_onnx(packed)
    assert got == packed_meta and got.features == meta.features and got.inputs == meta.inputs
    with pytest.raises(ArtifactError, match="not a loadable ONNX"):
        sidecar_from_onnx(b"not onnx")


# --- history and rollout decisions ----------------------------------------------------------


def _u(version: str, action: str = "candidate", **kw: object) -> dict:
    return {"model_name": "m", "version": version, "action": action, **kw}


def test_history_versions_and_live() -> None:
    h = ModelHistory([_u("v2"), _u("v3"), _u("v2", "promote"), _u("v3", "rollback")])
    assert h.next_version("m", floor="v1") == "v4"
    assert h.next_version("other", floor="v1") == "v2"
    assert h.state("m", "v3") == "rollback" and h.latest_live("m") == "v2"
    h.add(_u("v2", "rollback", parent_version="v1"))
    assert h.latest_live("m") == "v1"
    assert h.candidate("m", "v2")["action"] == "candidate"


def test_action_update_keeps_the_signed_fields() -> None:
    cand = _u("v2", sha256="0" * 64, artifact=b"x", signature=b"s", metrics={"a": 1.0})
    promote = action_update(cand, "promote", now_ms=5)
    assert promote["action"] == "promote" and promote["artifact"] is None
    assert promote["signature"] == b"s" and promote["sha256"] == "0" * 64
    assert promote["created_at"] == 5 and promote["metrics"] == {}
    with pytest.raises(ValueError, match="promote or rollback"):
        action_update(cand, "retire")


def _ev(gateway: str, event: str, version: str = "v2", n: int = 1) -> dict:
    return {"event_id": f"{gateway}|r|{n}", "gateway_id": gateway, "event": event,
            "model_name": "m", "version": version}  # fmt: skip


def test_decide() -> None:
    h = ModelHistory([_u("v2")])
    two = {"m": {"gw-1", "gw-2"}}
    assert decide(h, [], two) == []
    assert decide(h, [_ev("gw-1", "promoted")], two) == []  # one canary of two
    assert decide(h, [_ev("gw-1", "verified"), _ev("gw-2", "shadow-progress")], two) == []
    both = [_ev("gw-1", "promoted"), _ev("gw-2", "promoted")]
    assert [d.action for d in decide(h, both, two)] == ["promote"]
    assert [d.action for d in decide(h, [_ev("gw-3", "promoted")], {"m": {"gw-3"}})] == ["promote"]
    for bad in ("rolled_back", "rejected"):
        decisions = decide(h, [_ev("gw-1", "promoted"), _ev("gw-2", bad)], two)
        assert [(d.action, d.reason) for d in decisions] == [("rollback", f"canary gw-2 {bad}")]
    # a pending (non-canary) gateway's report does not count; decided versions stay decided
    assert decide(h, [_ev("gw-9", "promoted")], {"m": {"gw-1"}}) == []
    done = ModelHistory([_u("v2"), _u("v2", "promote")])
    assert decide(done, both, two) == []
    assert decide(h, both, {"m": set()}) == []


def test_controller_publishes_once() -> None:
    topology = load_topology(default_topology())
    canaries = canaries_by_model(topology)
    assert canaries == {"pump-ae": {"gw-1"}, "reefer-ae": {"gw-1"}}
    ctl = RolloutController(topology)
    ctl.observe_history(ModelHistory([{**_u("v2"), "model_name": "reefer-ae"}]))
    event = {**_ev("gw-1", "promoted"), "model_name": "reefer-ae"}
    ctl.observe_events([event, event])
    actions = ctl.actions()
    assert [(a["model_name"], a["version"], a["action"]) for a in actions] == [
        ("reefer-ae", "v2", "promote")
    ]
    ctl.published(actions)
    assert ctl.actions() == []


def test_large_artifacts_go_to_the_store_and_load_back(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgestream.ml.exceptions import ModelRejected
    from edgestream.ml.package import attach_artifact, embed_sidecar
    from edgestream.ml.signing import sign_update, verify_update
    from edgestream.retrain.candidate import current_model

    key = Ed25519PrivateKey.generate()
    blob, meta = embed_sidecar(*load_artifact(shipped_model_path("pump")))
    update = {"model_name": "pump-ae", "version": "v5", "action": "candidate",
              "device_type": "pump", "sha256": meta.sha256, "inputs": list(meta.inputs),
              "threshold": meta.threshold}  # fmt: skip
    inline = attach_artifact(update, blob, tmp_path, inline_limit=len(blob))
    assert inline["artifact"] == blob and inline["artifact_uri"] is None
    stored = sign_update(attach_artifact(update, blob, tmp_path, inline_limit=100), key)
    assert stored["artifact"] is None
    path = Path(stored["artifact_uri"].removeprefix("file://"))
    assert path == tmp_path / f"{meta.sha256}.onnx" and path.read_bytes() == blob
    verify_update(stored, key.public_key(), artifact=path.read_bytes())

    topology = load_topology(default_topology())
    got = current_model(topology, "pump", "v5", ModelHistory([stored]), key.public_key())
    assert got.blob == blob and got.meta.features == meta.features and got.version == "v5"
    path.write_bytes(blob + b"\x00")
    with pytest.raises(ModelRejected) as caught:
        current_model(topology, "pump", "v5", ModelHistory([stored]), key.public_key())
    assert caught.value.reason == "hash-mismatch"
