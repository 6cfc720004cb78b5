"""ONNX Runtime scoring of feature batches: one thread, CPU, checked against the sidecar.

Convention for models: one float32 input ``input`` of shape ``[N, n_features]``, one output
(``score``) of shape ``[N]`` or ``[N, 1]``, higher = more anomalous. Any ONNX model that
follows it works; ``load`` checks the input's name, rank, width and type and the output
against the sidecar and says which file did not match what.

Construction is blocking (session build ~0.1-4 s, plus ``warm()``): build the scorer off the
event loop (``await loop.run_in_executor(None, OnnxScorer.load, path)``), warm it, then swap
the reference between batches. ``score`` itself is also blocking (~1 ms per call).

>>> import numpy as np
>>> from edgestream.ml.artifact import shipped_model_path
>>> scorer = OnnxScorer.load(shipped_model_path("pump"))
>>> scorer.version, scorer.n_features
('pump-ae-v1', 15)
>>> scores = scorer.warm().score(np.zeros((3, 15), dtype=np.float32))
>>> scores.shape, scores.dtype.name, bool((scores < scorer.threshold).all())
((3,), 'float64', True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgestream.ml.artifact import ModelMeta, load_meta, sha256_hex
from edgestream.ml.exceptions import ArtifactError, ModelLoadError

INPUT_NAME = "input"
FLOAT_TYPES = ("tensor(float)",)


#: Every row is scored at the first position of its own group of ROW_STRIDE rows (the rest is
#: zero padding). ONNX Runtime's CPU GEMM kernels round differently depending on a row's
#: position within a group of rows (measured: shifting a batch by 1 row changed the last bits
#: of ~40% of the scores, shifting by 4 changed none). Without this a reading's score would
#: depend on how the stream was cut into batches, and a replay after a crash would not give
#: the same bytes. Cost: ONNX work x ROW_STRIDE (the shipped models still do > 1M rows/s).
ROW_STRIDE = 8
#: Rows per ONNX call: a large batch (a frame batch is thousands of readings) is scored in
#: parts, so the model's intermediate tensors stay a few MB (ONNX Runtime's memory arena is
#: off: it would keep the largest call's tensors for the process's life).
SCORE_CHUNK = 2048


class MetaFields:
    """What a pipeline reads off a scorer, from its sidecar ``meta`` (any scorer's base)."""

    meta: ModelMeta

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def sha256(self) -> str:
        return self.meta.sha256  # "": no file

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.meta.inputs

    @property
    def threshold(self) -> float:
        return self.meta.threshold


class OnnxScorer(MetaFields):
    """A loaded, validated model: ``score(features) -> scores`` (float64, higher = worse)."""

    def __init__(self, session: ort.InferenceSession, meta: ModelMeta, source: str) -> None:
        self.session = session
        self.meta = meta
        self.source = source
        self._input = session.get_inputs()[0].name
        self._output = _pick_output(session, meta, source)

    @property
    def n_features(self) -> int:
        return self.meta.n_features

    @classmethod
    def load(
        cls,
        model: Path | str | bytes,
        meta: ModelMeta | dict[str, Any] | None = None,
        input_name: str = INPUT_NAME,
    ) -> OnnxScorer:
        """Build a session for ``model`` (a path or the ONNX bytes) described by ``meta``.

        ``meta`` defaults to the sidecar beside a model path. Blocking: call it off the
        event loop. Raises :class:`ModelLoadError` when the model does not fit ``meta``.
        """
        if isinstance(model, bytes | bytearray):
            blob, source = bytes(model), f"<{len(model)} bytes of ONNX>"
        else:
            source = str(model)
            try:
                blob = Path(model).read_bytes()
            except OSError as error:
                raise ModelLoadError(f"cannot read model {source}: {error.strerror}") from None
        if meta is None:
            if isinstance(model, bytes | bytearray):
                raise ModelLoadError("scoring model bytes needs their meta (sidecar) too")
            meta = load_meta(Path(model))
        elif isinstance(meta, dict):
            meta = ModelMeta.from_dict(meta, f"meta of {source}")
        if meta.sha256 and sha256_hex(blob) != meta.sha256:
            raise ArtifactError(
                f"{source}: sha256 {sha256_hex(blob)} is not the sidecar's {meta.sha256} "
                f"(model {meta.version}): the file was changed or the sidecar is another's"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False  # an arena keeps the largest batch's tensors
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                blob, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{source} is not a loadable ONNX model: {error}") from None
        _check_input(session, meta, source, input_name)
        return cls(session, meta, source)

    def warm(self, rows: int = 64) -> OnnxScorer:
        """Run a dummy batch so the first real call is not slow; returns self."""
        self.score(np.zeros((rows, self.n_features), dtype=np.float32))
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Scores (float64, shape ``(n,)``) of a ``(n, n_features)`` feature batch."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelLoadError(
                f"model {self.version} ({self.source}) takes (rows, {self.n_features}) features "
                f"{list(self.inputs)}, got shape {x.shape}"
            )
        if not len(x):
            return np.zeros(0, dtype=np.float64)
        scores = np.empty(len(x), dtype=np.float64)
        spread = np.zeros((min(len(x), SCORE_CHUNK) * ROW_STRIDE, x.shape[1]), dtype=np.float32)
        for lo in range(0, len(x), SCORE_CHUNK):  # scores do not depend on the cut
            part = x[lo : lo + SCORE_CHUNK]
            rows = spread[: len(part) * ROW_STRIDE]
            rows[::ROW_STRIDE] = part
            (out,) = self.session.run([self._output], {self._input: rows})
            out = np.asarray(out, dtype=np.float64).reshape(-1)
            if out.shape[0] != rows.shape[0]:
                raise ModelLoadError(
                    f"model {self.version} ({self.source}) returned {out.shape[0]} scores for "
                    f"{rows.shape[0]} rows: its output must be [N] or [N, 1]"
                )
            scores[lo : lo + len(part)] = out[::ROW_STRIDE]
        return scores


def _check_input(
    session: ort.InferenceSession, meta: ModelMeta, source: str, input_name: str
) -> None:
    inputs = session.get_inputs()
    want = f"one float32 input {input_name!r} of shape [N, {meta.n_features}]"
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelLoadError(f"{source}: expected {want}, the model has inputs {names}")
    got = inputs[0]
    shape = list(got.shape)
    problems = []
    if got.name != input_name:
        problems.append(f"it is named {got.name!r}")
    if got.type not in FLOAT_TYPES:
        problems.append(f"its type is {got.type}")
    if len(shape) != 2:
        problems.append(f"its shape is {shape}")
    elif isinstance(shape[1], int) and shape[1] != meta.n_features:
        problems.append(f"it takes {shape[1]} features")
    if problems:
        raise ModelLoadError(
            f"{source}: expected {want} (sidecar of {meta.version} declares {meta.n_features} "
            f"inputs), but {', '.join(problems)}"
        )


def _pick_output(session: ort.InferenceSession, meta: ModelMeta, source: str) -> str:
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    chosen = meta.output if meta.output in names else (names[0] if len(names) == 1 else None)
    if chosen is None:
        raise ModelLoadError(
            f"{source}: expected an output {meta.output!r} (or a single output), got {names}"
        )
    out = outputs[names.index(chosen)]
    shape = list(out.shape)
    column = len(shape) == 2 and (shape[1] == 1 or not isinstance(shape[1], int))
    if out.type not in ("tensor(float)", "tensor(double)") or not (len(shape) == 1 or column):
        raise ModelLoadError(
            f"{source}: output {chosen!r} must be float scores of shape [N] or [N, 1], "
            f"got {out.type} {shape}"
        )
    return chosen
