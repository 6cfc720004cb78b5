"""OnnxScorer: loads the shipped models, scores finitely, rejects what does not fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgestream.ml.artifact import ModelMeta, load_meta, sha256_hex
from edgestream.ml.data import simulate_readings
from edgestream.ml.exceptions import ArtifactError, ModelLoadError
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.scorer import OnnxScorer
from edgestream.sim.config import SimConfig


def _tiny_model(name: str = "input", width: int = 3, out_shape: list | None = None) -> bytes:
    """score = sum of the inputs: any model that follows the convention must work."""
    node = helper.make_node("ReduceSum", [name, "axes"], ["score"], keepdims=1)
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, out_shape or ["N", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model.SerializeToString()


def _meta(blob: bytes, inputs: int = 3) -> ModelMeta:
    return ModelMeta("tiny-v1", sha256_hex(blob), tuple(f"f{i}" for i in range(inputs)), 1.0)


def test_shipped_models_score_simulated_readings(shipped: Path) -> None:
    scorer = OnnxScorer.load(shipped).warm()
    meta = load_meta(shipped)
    assert (scorer.version, scorer.sha256) == (meta.version, meta.sha256)
    assert scorer.inputs == meta.inputs
    assert scorer.threshold == meta.threshold > 0
    options = scorer.session.get_session_options()
    assert options.intra_op_num_threads == options.inter_op_num_threads == 1
    assert scorer.session.get_providers() == ["CPUExecutionProvider"]
    cfg = SimConfig(
        devices=4, rate=10.0, duration=20, seed=5, start_time=0, labels=None, anomaly_rate=0.0
    )
    readings = simulate_readings(cfg, meta.device_type)
    extractor = FeatureExtractor.from_config(meta.features)
    assert extractor.feature_names == meta.inputs
    features = extractor.transform(
        readings.device_ids, readings.ts, readings.columns(extractor.channels)
    )
    scores = scorer.score(features)
    assert scores.dtype == np.float64 and scores.shape == (len(readings.ts),)
    assert np.isfinite(scores).all()
    assert (scores < scorer.threshold).all()  # normal operation stays below
    assert np.isfinite(scorer.score(np.full((2, scorer.n_features), 1e6, np.float32))).all()


def test_any_model_following_the_convention_works() -> None:
    for shape in (["N", 1], ["N"]):
        blob = _tiny_model(out_shape=shape) if shape == ["N", 1] else _flat_model()
        scorer = OnnxScorer.load(blob, _meta(blob))
        assert scorer.score(np.ones((4, 3), np.float32)).tolist() == [3.0] * 4


def _flat_model() -> bytes:
    model = onnx.load_from_string(_tiny_model())
    model.graph.node[0].attribute[0].i = 0  # keepdims=0 -> [N]
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]))
    return model.SerializeToString()


def test_input_validation_names_the_model_and_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "wrong.onnx"
    path.write_bytes(_tiny_model(name="features"))
    with pytest.raises(ModelLoadError, match=r"wrong\.onnx: expected one float32 input 'input'"):
        OnnxScorer.load(path, _meta(path.read_bytes()))
    blob = _tiny_model(width=5)
    with pytest.raises(ModelLoadError, match=r"declares 3 inputs.*takes 5 features"):
        OnnxScorer.load(blob, _meta(blob, inputs=3))
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        OnnxScorer.load(b"not onnx", _meta(b"not onnx"))
    with pytest.raises(ModelLoadError, match="needs their meta"):
        OnnxScorer.load(_tiny_model())
    scorer = OnnxScorer.load(_tiny_model(), _meta(_tiny_model()))
    with pytest.raises(ModelLoadError, match=r"takes \(rows, 3\) features"):
        scorer.score(np.ones((2, 4), np.float32))


def test_tampered_model_is_rejected(shipped: Path) -> None:
    meta = load_meta(shipped)
    blob = bytearray(shipped.read_bytes())
    blob[-1] ^= 0xFF
    with pytest.raises(ArtifactError, match="sha256"):
        OnnxScorer.load(bytes(blob), meta)
    other = dataclasses.replace(meta, sha256="0" * 64)
    with pytest.raises(ArtifactError, match="not the sidecar's"):
        OnnxScorer.load(shipped, other)


def test_scores_do_not_depend_on_how_rows_are_batched() -> None:
    """Replays after a crash re-score readings in other batches: scores must be bit-identical."""
    import numpy as np

    from edgestream.ml.artifact import shipped_model_path
    from edgestream.ml.scorer import OnnxScorer

    scorer = OnnxScorer.load(shipped_model_path("pump"))
    rows = np.random.default_rng(3).normal(size=(500, scorer.n_features)).astype(np.float32)
    whole = scorer.score(rows)
    for size in (1, 3, 7, 64, 333):
        parts = np.concatenate([scorer.score(rows[i : i + size]) for i in range(0, 500, size)])
        assert (parts == whole).all(), f"batch size {size} changed scores"


def test_a_batch_of_several_chunks_scores_like_rows_one_by_one() -> None:
    """A batch larger than SCORE_CHUNK (a frames batch) is scored in parts through one
    reused buffer: each row's score is its own, whatever part and position it lands in."""
    from edgestream.ml.artifact import shipped_model_path
    from edgestream.ml.scorer import SCORE_CHUNK

    scorer = OnnxScorer.load(shipped_model_path("pump"))
    n = 2 * SCORE_CHUNK + 17  # two full parts and a short last one
    rows = np.random.default_rng(5).normal(size=(n, scorer.n_features)).astype(np.float32)
    whole = scorer.score(rows)
    picks = [0, SCORE_CHUNK - 1, SCORE_CHUNK, 2 * SCORE_CHUNK, n - 1]
    singles = np.concatenate([scorer.score(rows[i : i + 1]) for i in picks])
    assert whole.shape == (n,) and (whole[picks] == singles).all()
    assert (scorer.score(rows[SCORE_CHUNK:]) == whole[SCORE_CHUNK:]).all()
