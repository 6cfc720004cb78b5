"""One retrain request: a RetrainRequest in, a signed candidate ModelUpdate out.

For one request (:func:`retrain`): find the model slot (``data.model_name`` is a topology
``models.<type>.name``), load the current model (``data.model_version``: the topology's own
file, or an earlier signed version from ``fleet.models``, verified), rebuild the training set
exactly from ``data.data_pointer`` (:mod:`edgestream.retrain.trainset`), retrain and evaluate
(:mod:`edgestream.retrain.refit`), take the per-channel drift baseline
(:func:`edgestream.ml.drift.training_baseline`), sign (:mod:`edgestream.ml.signing`) and
attach the artifact (inline, or stored when large); publishing it (``action="candidate"``) is
the caller's (:func:`edgestream.rollout.history.publish_updates`). The version is ``v<N+1>``
for the highest N seen on ``fleet.models`` for the model (or the topology's version).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.topology import Topology
from edgestream.ml.artifact import ModelMeta
from edgestream.ml.exceptions import ModelError
from edgestream.retrain.refit import Candidate, RefitParams
from edgestream.retrain.trainset import TrainingSet
from edgestream.rollout.history import ModelHistory, candidate_update

__all__ = [
    "CurrentModel",
    "RetrainError",
    "RetrainResult",
    "current_model",
    "model_history",
    "model_slot",
    "parse_request",
    "retrain",
]


class RetrainError(ModelError, ValueError):
    """A RetrainRequest that cannot be served (unknown model, missing version...)."""


@dataclass(frozen=True)
class CurrentModel:
    """The model a request wants replaced: ModelUpdate version label, bytes, sidecar."""

    version: str
    blob: bytes
    meta: ModelMeta
    sha256: str


@dataclass(frozen=True)
class RetrainResult:
    """A published (or publishable) candidate and how it was made."""

    update: dict[str, Any]
    training: TrainingSet
    candidate: Candidate
    seconds: float


def model_slot(topology: Topology, model_name: str) -> str:
    """The device type whose model is ``model_name`` (RetrainError listing the names)."""
    for device_type, spec in topology.models.items():
        if spec.name == model_name:
            return device_type
    names = sorted(spec.name for spec in topology.models.values())
    raise RetrainError(f"no model named {model_name!r} in topology {topology.name!r} ({names})")


def current_model(
    topology: Topology,
    device_type: str,
    version: str,
    history: ModelHistory,
    public_key: Any,
) -> CurrentModel:
    """The bytes and sidecar of ``version``: the topology's file or a verified fleet.models one."""
    from edgestream.ml.artifact import load_artifact
    from edgestream.ml.package import sidecar_from_onnx
    from edgestream.ml.signing import verify_update

    spec = topology.models[device_type]
    if version == spec.version:
        blob, meta = load_artifact(topology.model_path(device_type))
        return CurrentModel(version, blob, meta, meta.sha256)
    record = history.candidate(spec.name, version)
    if record is None:
        raise RetrainError(
            f"model {spec.name} version {version!r} is neither the topology's ({spec.version}) "
            f"nor on fleet.models (seen: {history.versions(spec.name)})"
        )
    blob = record.get("artifact")
    uri = record.get("artifact_uri") or ""
    if blob is None:
        try:
            blob = Path(uri.removeprefix("file://")).read_bytes()
        except OSError as error:
            raise RetrainError(
                f"model {spec.name} {version}: cannot read its artifact {uri!r} ({error.strerror})"
            ) from None
    blob = bytes(blob)
    verify_update(record, public_key, artifact=blob)
    return CurrentModel(version, blob, sidecar_from_onnx(blob), record["sha256"])


def parse_request(text: str) -> dict[str, Any]:
    """A RetrainRequest from JSON text or a JSON file path (RetrainError says what is wrong)."""
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise RetrainError(
                f"{source!r} is neither RetrainRequest JSON nor a readable file ({error.strerror})"
            ) from None
    try:
        request = json.loads(text)
    except json.JSONDecodeError as error:
        raise RetrainError(f"RetrainRequest {source[:60]!r} is not JSON: {error}") from None
    data = request.get("data") if isinstance(request, dict) else None
    if not isinstance(data, dict):
        raise RetrainError("a RetrainRequest is a CloudEvent with a 'data' object")
    missing = [k for k in ("model_name", "model_version", "data_pointer") if k not in data]
    if missing:
        raise RetrainError(f"RetrainRequest data lacks {missing}")
    request.setdefault("id", data.get("dedup_key") or f"manual-{time.time_ns()}")
    return request


def model_history(topology: Topology, endpoints: CloudEndpoints) -> ModelHistory:
    """Every version on the topology's ``fleet.models`` topic, read now."""
    return ModelHistory.read(
        endpoints.bootstrap,
        topology.cloud.models_topic,
        endpoints.registry,
        endpoints.client_settings,
    )


def retrain(
    request: dict[str, Any],
    topology: Topology,
    endpoints: CloudEndpoints,
    private_key: Any,
    history: ModelHistory | None = None,
    seed: int = 0,
    store_dir: Path | None = None,
) -> RetrainResult:
    """Build, evaluate and sign a candidate for ``request`` (not published: see
    :func:`~edgestream.rollout.history.publish_updates`). The artifact is inline unless larger
    than :data:`~edgestream.ml.package.INLINE_LIMIT` (then in ``store_dir``, see
    :func:`~edgestream.ml.package.attach_artifact`)."""
    from edgestream.ml.package import attach_artifact
    from edgestream.ml.signing import sign_update
    from edgestream.retrain.refit import refit

    t0 = time.perf_counter()
    data = request["data"]
    device_type = model_slot(topology, data["model_name"])
    spec = topology.models[device_type]
    if history is None:
        history = model_history(topology, endpoints)
    current = current_model(
        topology, device_type, data["model_version"], history, private_key.public_key()
    )
    training = _training_set(request, topology, endpoints, device_type, current.meta)
    version = history.next_version(spec.name, floor=spec.version)
    params = _refit_params(topology, f"{spec.name}-{version}", seed)
    candidate = refit(training, current.blob, current.meta, params)
    update = _update(topology, device_type, version, current, candidate, training, request["id"])
    signed = sign_update(attach_artifact(update, candidate.blob, store_dir), private_key)
    return RetrainResult(signed, training, candidate, time.perf_counter() - t0)


def _training_set(
    request: dict[str, Any],
    topology: Topology,
    endpoints: CloudEndpoints,
    device_type: str,
    meta: ModelMeta,
) -> TrainingSet:
    """The readings ``data.data_pointer`` names, fetched from the cloud topics and decoded."""
    from edgestream.core.serde import AvroDeserializer
    from edgestream.retrain.trainset import OffsetRange, build_training_set, fetch_ranges

    ranges = [OffsetRange.from_record(r) for r in request["data"]["data_pointer"]]
    if not ranges:
        raise RetrainError(f"RetrainRequest {request['id']} has an empty data_pointer")
    raw = fetch_ranges(endpoints.bootstrap, ranges, endpoints.client_settings)
    channels = _channels(topology, device_type)
    features = tuple(meta.features.get("channels") or meta.channels)
    return build_training_set(
        raw, AvroDeserializer(endpoints.registry), device_type, channels, features
    )


def _refit_params(topology: Topology, version: str, seed: int) -> RefitParams:
    """The topology's holdout and shadow gates for a refit to ``version``."""
    gates = topology.rollout.shadow
    return RefitParams(
        version=version,
        holdout_fraction=topology.retraining.holdout_fraction,
        seed=seed,
        max_anomaly_rate_delta=gates.max_anomaly_rate_delta,
        min_rank_correlation=gates.min_rank_correlation,
    )


def _update(
    topology: Topology,
    device_type: str,
    version: str,
    current: CurrentModel,
    candidate: Candidate,
    training: TrainingSet,
    request_id: str,
) -> dict[str, Any]:
    """The unsigned candidate ModelUpdate: metrics with the training set's counts, baseline."""
    from edgestream.ml.drift import training_baseline

    metrics = {
        **candidate.metrics,
        "training_readings": float(len(training)),
        "training_duplicates": float(training.duplicates),
        "training_invalid": float(training.invalid),
    }
    baseline = training_baseline(training.channels, training.values)
    return candidate_update(
        topology.models[device_type].name,
        version,
        device_type,
        candidate.meta,
        candidate.blob,
        metrics,
        baseline,
        current.version,
        topology.rollout.canary_fraction,
        request_id,
    )


def _channels(topology: Topology, device_type: str) -> tuple[str, ...]:
    """Every declared channel of the device type's sensor topics (the baseline covers them)."""
    seen: dict[str, None] = {}
    for topic in topology.topics_for(device_type):
        seen.update(dict.fromkeys(topic.channels))
    return tuple(seen) or topology.features_for(device_type)
