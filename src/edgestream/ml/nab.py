"""NAB as a detection-quality check of the ML path: fit features and an autoencoder on a
Numenta Anomaly Benchmark series' anomaly-free start, then count the labelled windows its
incidents find (:func:`evaluate_nab`). Scoring a whole corpus the NAB way is
:mod:`edgestream.evaluation`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.ml.artifact import ModelMeta, sha256_hex
from edgestream.ml.data import BATCH, Episode
from edgestream.ml.evaluate import IncidentRule, event_metrics, incidents_from_scores
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.scorer import OnnxScorer
from edgestream.ml.train import TrainParams, fit_onnx, prior_scales
from edgestream.sim.replay import read_series, read_windows

__all__ = ["NabModel", "NabResult", "evaluate_nab", "fit_nab"]


@dataclass
class NabResult:
    """Labelled NAB windows found by a model fitted on the series' anomaly-free start."""

    windows: int
    found: int
    incidents: int
    false_alerts: int
    threshold: float
    train_readings: int
    found_windows: list[int] = field(default_factory=list)  # 0-based, in time order

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NabModel:
    """A model fitted on a NAB series' anomaly-free start, and the series scored by it.

    ``blob`` + ``meta`` load with :meth:`OnnxScorer.load`; ``meta.features`` is the
    extractor's config and ``meta.threshold`` the calibrated threshold, so the gateway path
    (``FeatureExtractor.from_config(meta.features)`` -> scorer -> incidents) can replay it.
    """

    blob: bytes
    meta: ModelMeta
    ts: np.ndarray
    values: np.ndarray
    scores: np.ndarray  # offline scores of every reading, in file order
    windows: list[tuple[int, int]]
    train_readings: int

    @property
    def threshold(self) -> float:
        return float(self.meta.threshold)


def fit_nab(csv_path: Path | str, windows_path: Path | str, seed: int = 0) -> NabModel:
    """Fit features and an autoencoder on the readings before the first labelled window
    (see :func:`evaluate_nab`); the threshold is the highest score there. Needs the
    ``train`` extra (scikit-learn, onnx)."""
    ts, values = read_series(Path(csv_path))
    windows = read_windows(Path(windows_path), Path(csv_path))
    cut = int(np.searchsorted(ts, min(a for a, _ in windows)))
    ids = np.full(len(ts), "nab")
    head = values[:cut]
    level = [(float(np.median(head)), float(np.std(head)))]
    prior = prior_scales(ids[:cut], head[:, None])
    extractor = FeatureExtractor(["value"], window=64, prior_scale=prior, median=9, level=level)
    config = extractor.config()
    features = np.concatenate(
        [
            extractor.transform(ids[i : i + BATCH], ts[i : i + BATCH], values[i : i + BATCH, None])
            for i in range(0, len(ts), BATCH)
        ]
    )
    params = TrainParams("nab", hidden=(8, 2, 8), max_iter=200, subsample=1, seed=seed)
    blob = fit_onnx(features[:cut], params)
    names = extractor.feature_names
    meta = ModelMeta("nab-ae", sha256_hex(blob), names, 0.0, channels=("value",), features=config)
    scores = OnnxScorer.load(blob, meta).score(features)
    threshold = float(scores[:cut].max())
    return NabModel(blob, replace(meta, threshold=threshold), ts, values, scores, windows, cut)


def evaluate_nab(
    csv_path: Path | str, windows_path: Path | str, gap: int = 36, seed: int = 0
) -> NabResult:
    """Replay a NAB series as one device (channel ``value``) and count windows found.

    Protocol (no tuning on the labels): features and an autoencoder are fitted on the
    readings before the first labelled window; the threshold is the highest score there;
    incidents use ``consecutive=1`` and ``gap`` readings (36 = 3 h at NAB's 5 minutes).
    The extractor adds a ``level`` feature (value against the training part's median and
    standard deviation): NAB's anomalies are slow excursions, not sensor glitches.
    Needs the ``train`` extra (scikit-learn, onnx).
    """
    model = fit_nab(csv_path, windows_path, seed)
    ts, windows = model.ts, model.windows
    ids = np.full(len(ts), "nab")
    rule = IncidentRule(model.threshold, 1, gap)
    incidents = incidents_from_scores(ids, ts, model.scores, rule)
    episodes = [Episode("nab", "nab_window", a, b) for a, b in windows]
    metrics = event_metrics(episodes, incidents)
    hit = [
        i
        for i, (a, b) in enumerate(windows)
        if any(x.first_ts <= b and x.last_ts >= a for x in incidents)
    ]
    return NabResult(
        windows=len(windows),
        found=metrics.detected,
        incidents=metrics.incidents,
        false_alerts=metrics.false_alerts,
        threshold=round(model.threshold, 9),
        train_readings=model.train_readings,
        found_windows=hit,
    )
