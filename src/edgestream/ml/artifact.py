"""Model artifacts: an ONNX file plus a JSON sidecar describing it.

The sidecar (``<version>.json`` beside ``<version>.onnx``) holds everything a consumer needs
besides the graph: ``version``, ``sha256`` of the ONNX bytes, the model ``inputs`` (feature
names, in column order), ``threshold`` (score > threshold = anomalous reading), the feature
extractor's ``features`` config, the recommended incident ``rule``, the per-channel decile
``baseline`` of the training data (for drift), the ``training`` parameters and ``metrics``.

Decile baseline of a channel: ``edges`` are the 9 inner deciles; bin ``i`` of a value ``x``
is ``numpy.searchsorted(edges, x, side="left")`` (so bin 0 is ``x <= edges[0]``, bin 9 is
``x > edges[8]``); ``fractions`` are the shares of training values per bin (10, sum 1).

>>> import numpy as np
>>> base = decile_baseline(np.arange(1000.0))
>>> len(base["edges"]), len(base["fractions"]), base["count"]
(9, 10, 1000)
>>> shipped_model("pump").version
'pump-ae-v1'
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestream.ml.exceptions import ArtifactError

MODELS_DIR = Path(__file__).parent / "models"
SIDE_FORMAT = 1


@dataclass(frozen=True)
class ModelMeta:
    """What a model sidecar says about its ONNX file (see the module docstring)."""

    version: str
    sha256: str
    inputs: tuple[str, ...]
    threshold: float
    device_type: str = ""
    model_file: str = ""
    output: str = "score"
    family: str = "iforest"
    channels: tuple[str, ...] = ()
    features: dict[str, Any] = field(default_factory=dict)
    rule: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    score_baseline: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: int = SIDE_FORMAT

    @property
    def n_features(self) -> int:
        return len(self.inputs)

    def to_json(self) -> str:
        """Deterministic JSON text (same meta = same bytes)."""
        data = asdict(self)
        data["inputs"] = list(self.inputs)
        data["channels"] = list(self.channels)
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "sidecar") -> ModelMeta:
        """Validate and build; errors name ``where`` (the sidecar path)."""
        missing = [k for k in ("version", "sha256", "inputs", "threshold") if k not in data]
        if missing:
            raise ArtifactError(f"{where}: missing {missing} (expected a model sidecar JSON)")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["inputs"] = tuple(str(x) for x in data["inputs"])
        kwargs["channels"] = tuple(str(x) for x in data.get("channels", ()))
        try:
            kwargs["threshold"] = float(data["threshold"])
        except (TypeError, ValueError):
            raise ArtifactError(f"{where}: threshold must be a number") from None
        if not kwargs["inputs"]:
            raise ArtifactError(f"{where}: inputs must list the model's feature names")
        return cls(**kwargs)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sidecar_path(model_path: Path | str) -> Path:
    """``x.onnx`` -> ``x.json``."""
    return Path(model_path).with_suffix(".json")


def load_meta(path: Path | str) -> ModelMeta:
    """Read a sidecar (``.json``; an ``.onnx`` path means the sidecar beside it)."""
    path = Path(path)
    if path.suffix == ".onnx":
        path = sidecar_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ArtifactError(f"cannot read model sidecar {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ArtifactError(f"model sidecar {path} is not JSON: {error}") from None
    return ModelMeta.from_dict(data, str(path))


def load_artifact(path: Path | str) -> tuple[bytes, ModelMeta]:
    """ONNX bytes and sidecar of ``x.onnx``, with the sha256 checked."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise ArtifactError(f"cannot read model {path}: {error.strerror}") from None
    meta = load_meta(path)
    verify(blob, meta, str(path))
    return blob, meta


def verify(blob: bytes, meta: ModelMeta, where: str = "model") -> None:
    """Raise if the bytes are not the ones the sidecar describes."""
    digest = sha256_hex(blob)
    if digest != meta.sha256:
        raise ArtifactError(
            f"{where}: sha256 {digest} does not match the sidecar's {meta.sha256} "
            "(the model file was changed or belongs to another sidecar)"
        )


def write_artifact(directory: Path | str, blob: bytes, meta: ModelMeta) -> Path:
    """Write ``<version>.onnx`` and ``<version>.json`` atomically; returns the ONNX path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if meta.sha256 != sha256_hex(blob):
        raise ArtifactError(f"meta of {meta.version} has a sha256 that is not the model's")
    model = directory / f"{meta.version}.onnx"
    for target, data in ((model, blob), (sidecar_path(model), meta.to_json().encode())):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return model


def shipped_model(device_type: str, version: int = 1) -> ModelMeta:
    """The sidecar of a model shipped with edgestream (``models/<type>-<family>-v<N>``)."""
    return load_meta(shipped_model_path(device_type, version))


def shipped_model_path(device_type: str, version: int = 1) -> Path:
    """Path of the shipped ONNX model of a device type; the error lists what is shipped."""
    found = sorted(MODELS_DIR.glob(f"{device_type}-*-v{version}.onnx"))
    if len(found) != 1:
        have = sorted(p.stem for p in MODELS_DIR.glob("*.onnx"))
        raise ArtifactError(
            f"no single shipped model {device_type}-<family>-v{version} in {MODELS_DIR} "
            f"(shipped: {have})"
        )
    return found[0]


def decile_baseline(values: np.ndarray) -> dict[str, Any]:
    """Decile edges, bin fractions, mean, std and count of finite ``values``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if not len(x):
        raise ArtifactError("no finite values for a decile baseline")
    edges = np.quantile(x, np.arange(1, 10) / 10.0)
    bins = np.searchsorted(edges, x, side="left")
    fractions = np.bincount(bins, minlength=10) / len(x)
    return {
        "edges": [round(float(e), 9) for e in edges],
        "fractions": [round(float(f), 9) for f in fractions],
        "mean": round(float(x.mean()), 9),
        "std": round(float(x.std()), 9),
        "count": len(x),
    }
