"""Facts about files a topology refers to: Avro schemas on disk and ONNX model signatures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["OnnxSignature", "model_sidecar", "onnx_signature", "schema_records"]


def schema_records(directory: Path) -> dict[str, Path]:
    """Record name -> ``.avsc`` file of the schemas in ``directory`` (unparsable files skipped)."""
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.avsc")):
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            found[schema["name"].rsplit(".", 1)[-1]] = path
    return found


def model_sidecar(model_path: Path) -> dict[str, Any] | None:
    """The JSON sidecar beside ``x.onnx`` (``x.json``), or None if there is none.

    Only ``channels`` (what the model's feature extractor reads) and ``inputs`` (the derived
    columns of the ONNX input) are used here. Raises :class:`ValueError` if it is not JSON.
    """
    path = model_path.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable JSON sidecar: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
        raise ValueError(f"{path} is not a model sidecar (no 'inputs' list)")
    return data


@dataclass(frozen=True)
class OnnxSignature:
    """Inputs and outputs of an ONNX model: name -> (element type, shape)."""

    inputs: dict[str, tuple[str, tuple[int | str | None, ...]]]
    outputs: dict[str, tuple[str, tuple[int | str | None, ...]]]


def onnx_signature(path: Path) -> OnnxSignature:
    """Read a model's signature with onnxruntime (cached per file version).

    Raises :class:`ValueError` with onnxruntime's reason if the file is not a loadable model.
    """
    stat = path.stat()
    return _signature(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _signature(path: str, mtime_ns: int, size: int) -> OnnxSignature:
    import onnxruntime  # lazy: only topologies whose model files exist pay for it

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own untyped errors
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(first_line) from None

    def describe(args: list) -> dict[str, tuple[str, tuple[int | str | None, ...]]]:
        return {a.name: (a.type, tuple(a.shape)) for a in args}

    return OnnxSignature(describe(session.get_inputs()), describe(session.get_outputs()))
