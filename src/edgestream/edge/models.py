"""Loading the model a topology names for a device type, with or without a sidecar.

With a sidecar (``<model>.json``, as the shipped and retrained models have) the model reads the
sidecar's derived features; without one, any ONNX model works whose single float input takes
the topology's ``inputs`` (raw channel values, in order) and whose output gives one score per
row (higher = more anomalous); the topology must then give the ``threshold``.

>>> import numpy as np
>>> raw = RawFeatures(("a", "b"))
>>> raw.transform(["d"], [0], np.array([[1.0, 2.0]])).tolist(), raw.state()
([[1.0, 2.0]], b'')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.stateful import PartedState
from edgestream.core.topology import Topology
from edgestream.edge.online import KIND, OnlineDetector, online_scorer
from edgestream.ml.artifact import ModelMeta, sha256_hex, sidecar_path
from edgestream.ml.features import FeatureExtractor
from edgestream.ml.scorer import OnnxScorer


class Features(PartedState, Protocol):
    """What the pipeline needs from a feature extractor: features of a batch, and its state
    saved in parts (:class:`~edgestream.core.stateful.PartedState`)."""

    def transform(self, device_ids: Any, ts: Any, values: Any) -> np.ndarray: ...


class RawFeatures:
    """The identity: a model that reads raw channel values (no per-device state)."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = tuple(channels)

    def transform(self, device_ids: Any, ts: Any, values: Any) -> np.ndarray:
        return np.asarray(values, dtype=np.float32)

    def state(self) -> bytes:
        return b""

    def changed_parts(self) -> dict[str, bytes]:
        return {}

    def restore_parts(self, parts: dict[str, bytes]) -> None:
        return None

    def restore(self, blob: bytes) -> None:
        return None


def features_for(meta: ModelMeta) -> Features:
    """The feature extractor a model was trained with (raw channels when it names none)."""
    if meta.features.get("kind") == KIND:
        return OnlineDetector.from_config(meta.features)
    if meta.features:
        return FeatureExtractor.from_config(meta.features)
    return RawFeatures(meta.channels or meta.inputs)


def load_model(topology: Topology, device_type: str) -> tuple[OnnxScorer, float]:
    """The scorer of ``device_type`` and the threshold in force (the topology's, else the
    model's calibrated one). Blocking (session creation): call it off the event loop.
    A ``kind: online`` model is the in-stream detector of :mod:`edgestream.edge.online`."""
    spec = topology.models[device_type]
    if spec.kind == KIND:
        channels = topology.model_inputs(device_type)
        settings = spec.online.model_dump()
        online = online_scorer(channels, settings, str(spec.version), spec.threshold)
        return online, online.threshold  # type: ignore[return-value]  # OnnxScorer's shape
    path = topology.model_path(device_type)
    if sidecar_path(path).exists():
        scorer = OnnxScorer.load(path, input_name=spec.input_name)
    else:
        if spec.threshold is None:
            raise EdgestreamError(
                f"model {path} has no sidecar ({sidecar_path(path).name}): give "
                f"models.{device_type}.threshold in the topology"
            )
        blob = path.read_bytes()
        inputs = tuple(spec.inputs or topology.features_for(device_type))
        meta = ModelMeta(
            version=str(spec.version),
            sha256=sha256_hex(blob),
            inputs=inputs,
            threshold=float(spec.threshold),
            device_type=device_type,
            model_file=path.name,
            output=spec.output,
            channels=inputs,
        )
        scorer = OnnxScorer.load(blob, meta, input_name=spec.input_name)
    threshold = float(spec.threshold) if spec.threshold is not None else scorer.threshold
    return scorer.warm(), threshold
