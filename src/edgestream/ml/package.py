"""A self-describing model artifact (the sidecar JSON embedded in the ONNX bytes), inline in
a ModelUpdate or in a content-addressed store.

A ModelUpdate carries one artifact (the ONNX bytes) whose sha256 is signed. Everything a
gateway needs besides the graph (the feature extractor config, the incident rule, the
baseline) travels *inside* those bytes as the ONNX ``metadata_props`` entry
``edgestream.sidecar``, so it is covered by the hash and the signature. The embedded sidecar
has an empty ``sha256`` (a hash cannot contain itself); :func:`sidecar_from_onnx` fills it in
from the bytes. Embedding needs the ``onnx`` package (``train`` extra); reading needs only
onnxruntime, which every gateway has.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgestream.ml.artifact import ModelMeta, sha256_hex
from edgestream.ml.exceptions import ArtifactError

__all__ = [
    "INLINE_LIMIT",
    "SIDECAR_KEY",
    "attach_artifact",
    "embed_sidecar",
    "sidecar_from_onnx",
    "store_artifact",
]

SIDECAR_KEY = "edgestream.sidecar"


def embed_sidecar(blob: bytes, meta: ModelMeta) -> tuple[bytes, ModelMeta]:
    """The ONNX bytes with ``meta`` embedded, and ``meta`` with the new bytes' sha256."""
    import onnx

    model = onnx.load_from_string(blob)
    kept = [p for p in model.metadata_props if p.key != SIDECAR_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = SIDECAR_KEY, replace(meta, sha256="").to_json()
    out = model.SerializeToString()
    return out, replace(meta, sha256=sha256_hex(out))


def sidecar_from_onnx(blob: bytes) -> ModelMeta:
    """The sidecar embedded in ONNX bytes (sha256 = the bytes' hash).

    Raises :class:`ArtifactError` when the bytes are not ONNX or carry no sidecar.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ArtifactError(f"artifact is not a loadable ONNX model: {error}") from None
    text = session.get_modelmeta().custom_metadata_map.get(SIDECAR_KEY)
    if text is None:
        raise ArtifactError(
            f"ONNX artifact has no {SIDECAR_KEY!r} metadata: pass the sidecar JSON beside it"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArtifactError(f"embedded sidecar is not JSON: {error}") from None
    data["sha256"] = sha256_hex(blob)
    return ModelMeta.from_dict(data, f"embedded {SIDECAR_KEY}")


#: Artifacts above this size go to the content-addressed store instead of inline (Kafka's
#: default max message is 1 MB; an autoencoder is ~8 KB, a 100-tree IsolationForest ~1 MB).
INLINE_LIMIT = 512 * 1024


def store_artifact(blob: bytes, directory: Path) -> str:
    """Write ``blob`` to ``<directory>/<sha256>.onnx`` (atomically, once); its ``file://`` URI.

    Content-addressed: the name is the hash, so a URI never points at other bytes (and the
    gateway checks the hash anyway).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{sha256_hex(blob)}.onnx"
    if not target.exists():
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
    return f"file://{target.resolve()}"


def attach_artifact(
    update: dict[str, Any],
    blob: bytes,
    store_dir: Path | None = None,
    inline_limit: int = INLINE_LIMIT,
) -> dict[str, Any]:
    """``update`` with the artifact inline, or (larger than ``inline_limit``) in the store.

    ``store_dir`` defaults to ``$EDGESTREAM_HOME/artifacts``: a shared path in a single-host
    deployment; elsewhere mount one or keep artifacts inline.
    """
    if len(blob) <= inline_limit:
        return {**update, "artifact": blob, "artifact_uri": None}
    from edgestream.core.paths import home_dir

    uri = store_artifact(blob, store_dir or home_dir() / "artifacts")
    return {**update, "artifact": None, "artifact_uri": uri}
