"""Train a device type's anomaly model on simulated normal operation and export it to ONNX.

Pipeline (every step seeded, so a rerun gives the same bytes and sidecar):

1. simulate ``devices`` devices of the type for ``duration_s`` at ``rate_hz`` without
   anomalies (seed ``train_seed``) and, for calibration, another fleet (``calib_seed``);
2. features with :class:`~edgestream.ml.features.FeatureExtractor` (its ``prior_scale``
   is the median per-device noise of each channel in the training data);
3. fit the model: ``ae`` (default) a small ReLU autoencoder (scikit-learn ``MLPRegressor``)
   on ``|features| / q99.9``, scored by its mean squared reconstruction error; or
   ``iforest`` an IsolationForest (skl2onnx), scored by its negated decision function;
4. export one ONNX graph: input ``input`` ``[N, n_features]`` float32 -> output ``score``
   ``[N]``, higher = more anomalous (the preprocessing and the error are in the graph);
5. threshold = the ``quantile`` of the calibration fleet's scores; evaluate event-level
   recall/precision on a labelled run (``eval_seed``, never used for training);
6. write ``<type>-<family>-v<version>.onnx`` and its JSON sidecar (see :mod:`.artifact`).

Why an autoencoder by default: IsolationForest cannot rank points beyond its training
envelope (every such point gets the same path length), so extreme anomalies score like the
most extreme normal readings; measured on the simulator (pump, 10 devices, 10 min) it found
at most 30% of the episodes at the precision the product needs. The autoencoder's error
keeps growing with the deviation.

Run: ``python -m edgestream.ml.train --device-type pump --out DIR`` (~30 s per type).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.ml.artifact import ModelMeta, decile_baseline, sha256_hex, write_artifact
from edgestream.ml.data import SimReadings, extract, simulate_readings
from edgestream.ml.evaluate import IncidentRule, evaluate_readings
from edgestream.ml.features import GAUSS_MAD, FeatureExtractor
from edgestream.ml.scorer import OnnxScorer
from edgestream.sim.config import SimConfig
from edgestream.sim.devices import DEVICE_TYPES

START_TIME = 1718000000000  # 2024-06-10T06:13:20Z: fixed, so training data never changes
OPSET = 15


@dataclass(frozen=True)
class TrainParams:
    """Everything a trained model depends on (stored in the sidecar's ``training``)."""

    device_type: str
    family: str = "ae"  # ae | iforest
    version: int = 1
    seed: int = 0  # model initialisation
    train_seed: int = 101
    calib_seed: int = 102
    eval_seed: int = 7
    devices: int = 40
    duration_s: float = 600.0
    rate_hz: float = 10.0
    window: int = 64
    median: int = 9
    novel_runs: bool = False
    hidden: tuple[int, ...] = (16, 4, 16)
    max_iter: int = 30
    subsample: int = 3  # fit on every n-th training row
    n_estimators: int = 100  # iforest
    max_samples: int = 256  # iforest
    quantile: float = 0.99998
    consecutive: int = 1
    gap: int = 5
    eval_devices: int = 20
    eval_duration_s: float = 600.0
    tolerance_readings: int = 3

    @property
    def name(self) -> str:
        return f"{self.device_type}-{self.family}-v{self.version}"


@dataclass(frozen=True)
class Trained:
    blob: bytes
    meta: ModelMeta


def feature_channels(device_type: str) -> tuple[str, ...]:
    """Channels the model looks at: those that can be anomalous (not e.g. a door switch)."""
    return tuple(c.name for c in DEVICE_TYPES[device_type].channels if c.anomalies)


def prior_scales(device_ids: np.ndarray, values: np.ndarray) -> list[float]:
    """Median over devices of each channel's noise (mean |first difference| / 1.128)."""
    out = []
    for c in range(values.shape[1]):
        per_device = [
            float(np.mean(np.abs(np.diff(values[device_ids == d, c])))) / GAUSS_MAD
            for d in np.unique(device_ids)
        ]
        out.append(round(float(np.median(per_device)), 9))
    return out


def fit_onnx(features: np.ndarray, params: TrainParams) -> bytes:
    """Fit the model family on (normal) features and return the ONNX bytes."""
    x = np.asarray(features, dtype=np.float32)[:: params.subsample]
    if params.family == "ae":
        return _fit_autoencoder(x, params)
    if params.family == "iforest":
        return _fit_iforest(x, params)
    raise ValueError(f"unknown model family {params.family!r} (ae, iforest)")


def draft_meta(
    version: str,
    blob: bytes,
    extractor: FeatureExtractor,
    device_type: str,
    family: str,
    **more: Any,
) -> ModelMeta:
    """The sidecar of a freshly fitted model before calibration (threshold 0): its version,
    sha256, the extractor's feature columns and config; ``more``: other sidecar fields."""
    return ModelMeta(
        version=version,
        sha256=sha256_hex(blob),
        inputs=extractor.feature_names,
        threshold=0.0,
        device_type=device_type,
        model_file=f"{version}.onnx",
        family=family,
        channels=extractor.channels,
        features=extractor.config(),
        **more,
    )


def _fit_autoencoder(x: np.ndarray, params: TrainParams) -> bytes:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    a = np.abs(x).astype(np.float64)
    scale = np.maximum(np.quantile(a, 0.99999, axis=0), 1.0)  # features are in sigmas or nats
    xs = a / scale
    mlp = MLPRegressor(
        hidden_layer_sizes=params.hidden,
        max_iter=params.max_iter,
        batch_size=512,
        random_state=params.seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(xs, xs)
    return export_autoencoder(mlp.coefs_, mlp.intercepts_, 1.0 / scale)


def export_autoencoder(
    weights: list[np.ndarray], biases: list[np.ndarray], inv_scale: np.ndarray
) -> bytes:
    """ONNX graph: score = mean((mlp(|x| * s) - |x| * s)^2, axis=1), ReLU hidden layers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f = len(inv_scale)
    inits = [numpy_helper.from_array(np.asarray(inv_scale, np.float32), "inv_scale")]
    nodes = [
        helper.make_node("Abs", ["input"], ["abs"]),
        helper.make_node("Mul", ["abs", "inv_scale"], ["xs"]),
    ]
    h = "xs"
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits += [
            numpy_helper.from_array(np.asarray(w, np.float32), f"w{i}"),
            numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [h, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        h = f"a{i}"
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"r{i}"]))
            h = f"r{i}"
    nodes += [
        helper.make_node("Sub", [h, "xs"], ["err"]),
        helper.make_node("Mul", ["err", "err"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["score"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "edgestream_autoencoder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", f])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgestream"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _fit_iforest(x: np.ndarray, params: TrainParams) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(
        n_estimators=params.n_estimators,
        max_samples=params.max_samples,
        random_state=params.seed,
    ).fit(x)
    model = convert_sklearn(
        forest,
        initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    graph = model.graph
    graph.name = "edgestream_iforest"  # skl2onnx draws a random one: keep the bytes seeded
    scores = next(o.name for o in graph.output if o.name == "scores")
    graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"))
    graph.node.extend(
        [
            helper.make_node("Neg", [scores], ["neg_scores"]),
            helper.make_node("Reshape", ["neg_scores", "flat_shape"], ["score"]),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _sim(params: TrainParams, seed: int, devices: int, duration: float, **kw: Any) -> SimConfig:
    return SimConfig(
        devices=devices,
        rate=params.rate_hz,
        duration=duration,
        seed=seed,
        start_time=START_TIME + kw.pop("offset_h", 0) * 3_600_000,
        labels=None,
        **kw,
    )


def normal_readings(params: TrainParams, seed: int, offset_h: int = 0) -> SimReadings:
    """A fleet of ``params.device_type`` devices without anomalies."""
    cfg = _sim(
        params,
        seed,
        params.devices,
        params.duration_s,
        device_types=(params.device_type,),
        anomaly_rate=0.0,
        offset_h=offset_h,
    )
    return simulate_readings(cfg, params.device_type)


def train(params: TrainParams, log: Any = None) -> Trained:
    """Train, calibrate and evaluate one model (see the module docstring)."""
    say = log or (lambda *_: None)
    t0 = time.perf_counter()
    channels = feature_channels(params.device_type)
    data = normal_readings(params, params.train_seed)
    prior = prior_scales(data.device_ids, data.columns(channels))
    config = FeatureExtractor(
        channels, params.window, prior, median=params.median, novel_runs=params.novel_runs
    ).config()
    features = extract(data, FeatureExtractor.from_config(config))
    say(f"{params.name}: {len(features)} training rows, {features.shape[1]} features")
    blob = fit_onnx(features, params)
    names = FeatureExtractor.from_config(config).feature_names
    meta = ModelMeta(
        version=params.name,
        sha256=sha256_hex(blob),
        inputs=names,
        threshold=0.0,
        device_type=params.device_type,
        model_file=f"{params.name}.onnx",
        family=params.family,
        channels=channels,
        features=config,
        rule={"consecutive": params.consecutive, "gap": params.gap},
        baseline={name: decile_baseline(data.values[:, i]) for i, name in enumerate(data.channels)},
        training={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
    )
    scorer = OnnxScorer.load(blob, meta)
    calib = normal_readings(params, params.calib_seed, offset_h=6)
    calib_scores = scorer.score(extract(calib, FeatureExtractor.from_config(config)))
    threshold = round(float(np.quantile(calib_scores, params.quantile)), 9)
    meta = replace(meta, threshold=threshold, score_baseline=decile_baseline(calib_scores))
    say(f"{params.name}: threshold {threshold:.6g} (q{params.quantile} of calibration)")

    labelled = simulate_readings(
        _sim(params, params.eval_seed, params.eval_devices, params.eval_duration_s, offset_h=3),
        params.device_type,
    )
    rule = IncidentRule(threshold, params.consecutive, params.gap)
    tolerance = round(params.tolerance_readings * 1000 / params.rate_hz)
    found = evaluate_readings(
        labelled, scorer, FeatureExtractor.from_config(config), rule, tolerance
    )
    metrics = {
        "calibration": {
            "readings": len(calib_scores),
            "false_readings": int((calib_scores > threshold).sum()),
        },
        f"eval_seed_{params.eval_seed}": found.as_dict(),
    }
    meta = replace(meta, metrics=metrics)
    say(
        f"{params.name}: recall {found.recall:.3f} precision {found.precision:.3f} "
        f"({found.detected}/{found.episodes} episodes, {found.false_alerts} false alerts) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return Trained(blob, meta)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m edgestream.ml.train --device-type pump --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m edgestream.ml.train", description=__doc__)
    parser.add_argument("--device-type", required=True, choices=sorted(DEVICE_TYPES))
    parser.add_argument("--out", required=True, type=Path, help="directory for .onnx + .json")
    parser.add_argument("--family", default="ae", choices=["ae", "iforest"])
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="model initialisation seed")
    parser.add_argument("--devices", type=int, default=40, help="training fleet size")
    parser.add_argument("--duration", type=float, default=600.0, help="training seconds")
    parser.add_argument("--novel-runs", action="store_true", help="see FeatureExtractor")
    parser.add_argument("--quantile", type=float, default=TrainParams.quantile, help="threshold")
    args = parser.parse_args(argv)
    params = TrainParams(
        device_type=args.device_type,
        family=args.family,
        version=args.version,
        seed=args.seed,
        devices=args.devices,
        duration_s=args.duration,
        novel_runs=args.novel_runs,
        quantile=args.quantile,
    )
    trained = train(params, log=lambda msg: print(msg, file=sys.stderr))
    path = write_artifact(args.out, trained.blob, trained.meta)
    print(json.dumps({"model": str(path), "sha256": trained.meta.sha256}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#: epochs of a fit: about this many row-epochs, at most MAX_EPOCHS (shared by the retrainer
#: and ``models train``)
ROW_EPOCHS = 2_400_000
MAX_EPOCHS = 400


def holdout_mask(device_ids: np.ndarray, ts: np.ndarray, fraction: float) -> np.ndarray:
    """True for the last ``fraction`` of each device's readings in event time.

    >>> holdout_mask(np.array(["a"] * 5 + ["b"] * 5), np.arange(10), 0.4).astype(int).tolist()
    [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    """
    mask = np.zeros(len(ts), dtype=bool)
    for device in np.unique(device_ids):
        rows = np.flatnonzero(device_ids == device)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        keep = len(rows) - math.ceil(fraction * len(rows))
        mask[rows[keep:]] = True
    return mask


def holdout_split(
    device_ids: np.ndarray, ts: np.ndarray, fraction: float, need: tuple[int, int]
) -> tuple[np.ndarray, str | None]:
    """:func:`holdout_mask` and, when it leaves fewer than ``need`` (training, held-out) rows,
    what is short (for the caller's error; None when enough).

    >>> held, short = holdout_split(np.array(["a"] * 5), np.arange(5), 0.4, (4, 1))
    >>> held.astype(int).tolist(), short
    ([0, 0, 0, 1, 1], '3 training / 2 held-out rows; need >= 4 / 1')
    """
    held = holdout_mask(device_ids, ts, fraction)
    n_train, n_hold = int((~held).sum()), int(held.sum())
    if n_train >= need[0] and n_hold >= need[1]:
        return held, None
    return held, f"{n_train} training / {n_hold} held-out rows; need >= {need[0]} / {need[1]}"
