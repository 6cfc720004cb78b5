"""Anomaly models: ONNX artifacts with sidecars, scoring, training and evaluation.

The gateway needs :class:`OnnxScorer` and the shipped models; features come from
:class:`edgestream.ml.features.FeatureExtractor` built from the model's sidecar.
Training (``python -m edgestream.ml.train``) needs the ``train`` extra.

>>> from edgestream.ml.features import FeatureExtractor
>>> scorer = OnnxScorer.load(shipped_model_path("reefer"))
>>> FeatureExtractor.from_config(scorer.meta.features).feature_names == scorer.inputs
True
"""

from edgestream.ml.artifact import ModelMeta, load_meta, shipped_model, shipped_model_path
from edgestream.ml.exceptions import ArtifactError, ModelError, ModelLoadError
from edgestream.ml.scorer import OnnxScorer

__all__ = [
    "ArtifactError",
    "ModelError",
    "ModelLoadError",
    "ModelMeta",
    "OnnxScorer",
    "load_meta",
    "shipped_model",
    "shipped_model_path",
]
