"""Train a model for a device type on recorded history (``edgestream models train``).

The same model the simulator-trained ones are (:mod:`edgestream.ml.train`: features of
:class:`~edgestream.ml.features.FeatureExtractor`, :func:`~edgestream.ml.train.fit_onnx`,
an ONNX file + sidecar written by :func:`~edgestream.ml.artifact.write_artifact`), fitted on
a user's normal operation instead of a simulated fleet:

1. read the history files (:mod:`edgestream.sim.history`) with the channels of the device
   type's sensor topic; keep the **normal rows** (label 0; every row of a file when
   ``all_normal``). A device of one file is kept apart from a device of another;
2. per device in event time, the last ``holdout_fraction`` of its normal rows is held out
   (:func:`~edgestream.ml.train.holdout_mask`), the rest trains;
3. features of the topology's ``features`` of the type (the model's channels, in order),
   per device and streaming, as the gateway computes them; ``prior_scale`` is the median
   per-device noise of each channel in the training rows. The baseline is the median of the
   last ``median`` (41) readings and the noise scale spans ``window`` (256) readings, so an
   episode shorter than ``median / 2`` readings never becomes its own baseline (a level
   shift or a drift stays visible to its last reading, the readings after it score against
   the normal level) and a noise burst hardly widens the scale it is measured in;
4. fit the family (``ae`` by default, see below) on the training rows;
5. **threshold**: ``q + (margin - 1) * (q - median)`` of the held-out normal rows' scores
   (``q``: their ``quantile``, by default the largest): readings the model never saw, so the
   threshold is what normal operation it was not trained on scores, not what it memorised,
   with a margin in the scores' own spread (scores of any family, any offset);
6. sidecar: version, sha256, inputs, threshold, feature config, per-channel decile drift
   baselines of the normal rows, the score baseline of the held-out rows (what retraining
   uses to carry the threshold over), the training parameters and the report.

Why the autoencoder (``ae``): measured in one run on a simulator export (pump columns as a
compressor, 10 devices x 10 min, ``docs/byos.md``; 2-core machine, one ONNX thread, batch
1024): the 16-4-16 autoencoder is 3,276 bytes and scores 2.36M rows/s; a 100-tree
IsolationForest is 686,687 bytes (over the 512 KB a ModelUpdate carries inline) and scores
6.4k rows/s. And it cannot rank readings beyond its training envelope (see
:mod:`edgestream.ml.train`): with its threshold calibrated the same way it found none of the
episodes (event F1 0.0 on its own export and on unseen incidents, the autoencoder 0.99 and
0.88; per-point F1 0.92 and 0.83). ``family="iforest"`` remains available.

Why a median of 41 over a window of 256 (``median=9, window=64`` before): on the project
test's export (6 pumps x 10 min, seed 5) per-point F1 went from 0.61 to 0.92 and event F1
from 0.99 to 1.0, on an export it was not trained on (seed 6) from 0.55 to 0.91 and 0.91 to
1.0. With 9 readings the median took over an episode after 5 of them: a level shift or drift
was unseen from its sixth reading, and the 5 normal readings after every episode scored
against its level (they were every false positive). The median costs the gateway about
twice the feature time of the 9-reading one; the state is 256 values per channel and device.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.core.topology import Topology
from edgestream.ml.artifact import ModelMeta, decile_baseline
from edgestream.ml.exceptions import ModelError
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.scorer import OnnxScorer
from edgestream.ml.train import (
    MAX_EPOCHS,
    ROW_EPOCHS,
    TrainParams,
    draft_meta,
    fit_onnx,
    holdout_split,
    prior_scales,
)
from edgestream.sim.history import History, read_history

__all__ = ["HistoryParams", "HistoryTraining", "TrainDataError", "train_on_history"]

MIN_TRAIN_ROWS = 500
MIN_HOLDOUT_ROWS = 100
BATCH = 2048  # readings per feature call (a gateway-sized micro-batch)
SPEED_ROWS = 1024  # batch of the inference speed measurement


class TrainDataError(ModelError, ValueError):
    """The history files cannot train a model (no normal rows, too few, no labels)."""


@dataclass(frozen=True)
class HistoryParams:
    """How a model is trained on history (stored in the sidecar's ``training``)."""

    device_type: str
    version: str = ""  # default: <device_type>-<family>-v1
    family: str = "ae"  # ae | iforest
    all_normal: bool = False  # every row is normal operation (labels ignored)
    holdout_fraction: float = 0.2
    quantile: float = 1.0  # the largest held-out score
    margin: float = 1.5
    window: int = 256  # readings of the noise scale (module docstring: the features)
    median: int = 41  # readings of the baseline median
    hidden: tuple[int, ...] = (16, 4, 16)
    seed: int = 0

    @property
    def name(self) -> str:
        return self.version or f"{self.device_type}-{self.family}-v1"


@dataclass
class HistoryTraining:
    """A trained model (ONNX bytes + sidecar) and what the report shows."""

    blob: bytes
    meta: ModelMeta
    report: dict[str, Any] = field(default_factory=dict)


def _normal_rows(
    files: Sequence[Path], topology: Topology, params: HistoryParams, mapping: Mapping[str, str]
) -> tuple[History, list[dict[str, Any]]]:
    """The normal rows of every file as one history (devices as ``<file#>:<id>``)."""
    try:
        channels = tuple(topology.sensor_topic_of(params.device_type).channels)
    except ValueError as error:
        raise TrainDataError(f"{error}: add one before training its model") from None
    features = topology.features_for(params.device_type)
    parts, per_file = [], []
    for k, path in enumerate(files):
        history = read_history(
            path, channels=channels, required=features, mapping=mapping, device_id=Path(path).stem
        )
        if params.all_normal:
            keep = np.ones(len(history), dtype=bool)
        elif history.labels is None:
            raise TrainDataError(
                f"{Path(path).name}: no label column: mark normal rows with label 0, or pass "
                "--all-normal if every row of the files is normal operation"
            )
        else:
            keep = ~history.labels
        per_file.append({"file": str(path), "rows": len(history), "normal_rows": int(keep.sum())})
        parts.append((k, history, keep))
    names = tuple(dict.fromkeys(c for _, h, _ in parts for c in h.channels))
    ids, ts, values = [], [], []
    for k, history, keep in parts:
        ids.append(np.array([f"{k}:{d}" for d in history.device_id[keep]], dtype=object))
        ts.append(history.ts[keep])
        cols = np.full((int(keep.sum()), len(names)), np.nan)
        for j, c in enumerate(history.channels):
            cols[:, names.index(c)] = history.values[keep, j]
        values.append(cols)
    all_ts = np.concatenate(ts)
    order = np.argsort(all_ts, kind="stable")  # event time: each device's history in order
    merged = History(
        ",".join(str(f) for f in files),
        np.concatenate(ids)[order],
        None,
        all_ts[order],
        np.concatenate(values)[order],
        names,
        None,
    )
    return merged, per_file


def _features(extractor: FeatureExtractor, data: History) -> np.ndarray:
    values = data.columns(extractor.channels)
    parts = [
        extractor.transform(
            data.device_id[i : i + BATCH], data.ts[i : i + BATCH], values[i : i + BATCH]
        )
        for i in range(0, len(data), BATCH)
    ]
    return np.concatenate(parts)


def inference_speed(scorer: OnnxScorer, features: np.ndarray, seconds: float = 1.0) -> float:
    """Rows per second of ``scorer`` on ``features`` in batches of 1024 (one thread)."""
    batch = np.resize(np.asarray(features, np.float32), (SPEED_ROWS, features.shape[1]))
    scorer.score(batch)
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        scorer.score(batch)
        rows += SPEED_ROWS
    return rows / (time.perf_counter() - started)


def _channel_stats(data: History) -> dict[str, dict[str, float]]:
    out = {}
    for j, channel in enumerate(data.channels):
        x = data.values[:, j]
        x = x[np.isfinite(x)]
        if len(x):
            out[channel] = {
                "mean": round(float(x.mean()), 6),
                "std": round(float(x.std()), 6),
                "min": round(float(x.min()), 6),
                "max": round(float(x.max()), 6),
            }
    return out


def train_on_history(
    files: Sequence[Path | str],
    topology: Topology,
    params: HistoryParams,
    mapping: Mapping[str, str] | None = None,
) -> HistoryTraining:
    """Train, calibrate and describe a model of ``params.device_type`` (module docstring)."""
    started = time.perf_counter()
    files = [Path(f) for f in files]
    data, per_file = _normal_rows(files, topology, params, mapping or {})
    held, short = holdout_split(
        data.device_id, data.ts, params.holdout_fraction, (MIN_TRAIN_ROWS, MIN_HOLDOUT_ROWS)
    )
    if short:
        raise TrainDataError(f"{len(data)} normal rows give {short} (give more normal operation)")
    extractor = _extractor(topology, params, data, held)
    features = _features(FeatureExtractor.from_config(extractor.config()), data)
    blob, epochs = _fit(features[~held], params)
    meta = draft_meta(params.name, blob, extractor, params.device_type, params.family,
                      rule={"consecutive": 1, "gap": 5},
                      baseline={c: decile_baseline(data.values[:, j])
                                for j, c in enumerate(data.channels)})  # fmt: skip
    scorer = OnnxScorer.load(blob, meta)
    held_scores = scorer.score(features[held])
    threshold, method = _calibrate(held_scores, params)
    train_scores = scorer.score(features[~held])
    report = {
        "model": params.name,
        "family": params.family,
        "device_type": params.device_type,
        "files": per_file,
        "normal_rows": len(data),
        "train_rows": int((~held).sum()),
        "holdout_rows": int(held.sum()),
        "devices": len(np.unique(data.device_id)),
        "channels": _channel_stats(data),
        "features": len(extractor.feature_names),
        "epochs": epochs,
        "threshold": threshold,
        "threshold_method": method,
        "holdout_above_threshold": int((held_scores > threshold).sum()),
        "train_above_threshold": int((train_scores > threshold).sum()),
        "model_bytes": len(blob),
        "rows_per_s": round(inference_speed(scorer, features[held])),
    }
    meta = _calibrated_meta(meta, params, files, held_scores, report)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return HistoryTraining(blob, meta, report)


def _extractor(
    topology: Topology, params: HistoryParams, data: History, held: np.ndarray
) -> FeatureExtractor:
    """The features of the type's channels; ``prior_scale`` from the training rows."""
    channels = topology.features_for(params.device_type)
    prior = prior_scales(data.device_id[~held], data.columns(channels)[~held])
    return FeatureExtractor(channels, params.window, prior, median=params.median)


def _fit(features: np.ndarray, params: HistoryParams) -> tuple[bytes, int]:
    """The family fitted on the training rows' features: ONNX bytes and epochs."""
    epochs = int(min(MAX_EPOCHS, max(30, ROW_EPOCHS // len(features))))
    fit = TrainParams(
        device_type=params.device_type,
        family=params.family,
        seed=params.seed,
        hidden=params.hidden,
        max_iter=epochs,
        subsample=1,
        window=params.window,
        median=params.median,
        quantile=params.quantile,
    )
    return fit_onnx(features, fit), epochs


def _calibrate(held_scores: np.ndarray, params: HistoryParams) -> tuple[float, str]:
    """The threshold of the held-out normal rows' scores (module docstring, step 5) and how."""
    quantile = float(np.quantile(held_scores, params.quantile))
    median = float(np.median(held_scores))
    threshold = round(quantile + (params.margin - 1.0) * (quantile - median), 9)
    method = (
        f"q{params.quantile:g} + {params.margin - 1:g} x (q{params.quantile:g} - median) of the "
        f"scores of {len(held_scores):,} held-out normal rows (the last "
        f"{params.holdout_fraction:.0%} of each device's normal rows)"
    )
    return threshold, method


def _calibrated_meta(
    meta: ModelMeta,
    params: HistoryParams,
    files: Sequence[Path],
    held_scores: np.ndarray,
    report: dict[str, Any],
) -> ModelMeta:
    """The draft sidecar with the threshold, score baseline, training parameters, metrics."""
    return replace(
        meta,
        threshold=report["threshold"],
        score_baseline=decile_baseline(held_scores),
        training={
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
            "source": "history",
            "files": [f.name for f in files],
            "threshold_method": report["threshold_method"],
            "max_iter": report["epochs"],
        },
        metrics={"training": {k: report[k] for k in ("normal_rows", "train_rows",
                                                     "holdout_rows", "devices",
                                                     "holdout_above_threshold")}},
    )  # fmt: skip
