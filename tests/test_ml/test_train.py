"""Training: a small retrain gives a valid ONNX model and sidecar; the shipped ones reproduce."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgestream.ml.artifact import load_artifact, shipped_model_path, write_artifact
from edgestream.ml.scorer import OnnxScorer
from edgestream.ml.train import TrainParams, export_autoencoder, main, train

SMALL = {
    "devices": 4,
    "duration_s": 60.0,
    "eval_devices": 4,
    "eval_duration_s": 60.0,
    "max_iter": 5,
    "n_estimators": 10,
}


@pytest.mark.parametrize("family", ["ae", "iforest"])
def test_small_retrain_gives_a_valid_model(tmp_path: Path, family: str) -> None:
    params = TrainParams("reefer", family=family, version=9, **SMALL)  # type: ignore[arg-type]
    trained = train(params)
    onnx.checker.check_model(onnx.load_from_string(trained.blob))
    path = write_artifact(tmp_path, trained.blob, trained.meta)
    assert path.name == f"reefer-{family}-v9.onnx"
    _, meta = load_artifact(path)
    assert meta.family == family and meta.channels[-1] == "compressor_current"
    assert meta.training["devices"] == 4 and "eval_seed_7" in meta.metrics
    scorer = OnnxScorer.load(path).warm()
    normal = scorer.score(np.zeros((5, scorer.n_features), np.float32))
    odd = scorer.score(np.full((5, scorer.n_features), 50.0, np.float32))
    assert np.isfinite(normal).all() and (odd > normal).all() and (odd > meta.threshold).all()
    again = train(params)
    assert again.blob == trained.blob and again.meta == trained.meta  # seeded


def test_autoencoder_graph_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)), rng.normal(size=(4, 3))]
    biases = [rng.normal(size=4), rng.normal(size=3)]
    inv = np.array([1.0, 0.5, 2.0])
    blob = export_autoencoder(weights, biases, inv)
    meta = {"version": "t", "sha256": "", "inputs": ["a", "b", "c"], "threshold": 1}
    x = rng.normal(size=(6, 3)).astype(np.float32)
    xs = np.abs(x) * inv
    recon = np.maximum(xs @ weights[0] + biases[0], 0) @ weights[1] + biases[1]
    expected = ((recon - xs) ** 2).mean(axis=1)
    got = OnnxScorer.load(blob, meta).score(x)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.slow
def test_training_script_regenerates_the_shipped_model(tmp_path: Path) -> None:
    assert main(["--device-type", "pump", "--out", str(tmp_path)]) == 0
    shipped = shipped_model_path("pump")
    fresh = tmp_path / shipped.name
    assert fresh.read_bytes() == shipped.read_bytes()
    assert fresh.with_suffix(".json").read_text() == shipped.with_suffix(".json").read_text()


def test_unknown_family_is_rejected() -> None:
    from edgestream.ml.train import fit_onnx

    with pytest.raises(ValueError, match="unknown model family"):
        fit_onnx(np.zeros((4, 3)), dataclasses.replace(TrainParams("pump"), family="svm"))
