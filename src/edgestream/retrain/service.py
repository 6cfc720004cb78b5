"""The retrainer: a RetrainRequest in, a signed candidate ModelUpdate on ``fleet.models`` out.

For one request (:func:`retrain`): find the model slot (``data.model_name`` is a topology
``models.<type>.name``), load the current model (``data.model_version``: the topology's own
file, or an earlier signed version from ``fleet.models``, verified), rebuild the training set
exactly from ``data.data_pointer`` (:mod:`edgestream.retrain.trainset`), retrain and evaluate
(:mod:`edgestream.retrain.refit`), take the per-channel drift baseline
(:func:`edgestream.ml.drift.training_baseline`), sign (:mod:`edgestream.ml.signing`) and
publish ``action="candidate"`` with the artifact inline. The version is ``v<N+1>`` for the
highest N seen on ``fleet.models`` for the model (or the topology's version).

:class:`Retrainer` (``edgestream retrain serve``, :func:`serve`) consumes ``fleet.retrain``
with a committed consumer group, drops a request whose ``data.dedup_key`` (or id) was handled
before (also across restarts: ``retrain_request_id`` on ``fleet.models``), and runs the
rollout controller (:mod:`edgestream.rollout.control`) on ``fleet.rollout``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.offsets import committed_offsets
from edgestream.core.topology import Topology
from edgestream.ml.artifact import ModelMeta
from edgestream.ml.exceptions import ModelError
from edgestream.retrain.refit import Candidate
from edgestream.retrain.trainset import TrainingSet
from edgestream.rollout.history import (
    ModelHistory,
    action_update,
    candidate_update,
    publish_updates,
)

__all__ = [
    "CurrentModel",
    "RetrainError",
    "RetrainResult",
    "Retrainer",
    "action_update",
    "current_model",
    "model_slot",
    "parse_request",
    "publish_updates",
    "retrain",
    "serve",
]

log = logging.getLogger("edgestream.retrainer")


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
    :func:`publish_updates`). The artifact is inline unless larger than
    :data:`~edgestream.ml.package.INLINE_LIMIT` (then in ``store_dir``, see
    :func:`~edgestream.ml.package.attach_artifact`)."""
    from edgestream.core.serde import AvroDeserializer
    from edgestream.ml.drift import training_baseline
    from edgestream.ml.package import attach_artifact
    from edgestream.ml.signing import sign_update
    from edgestream.retrain.refit import RefitParams, refit
    from edgestream.retrain.trainset import OffsetRange, build_training_set, fetch_ranges

    t0 = time.perf_counter()
    data = request["data"]
    device_type = model_slot(topology, data["model_name"])
    spec = topology.models[device_type]
    if history is None:
        history = ModelHistory.read(
            endpoints.bootstrap,
            topology.cloud.models_topic,
            endpoints.registry,
            endpoints.client_settings,
        )
    current = current_model(
        topology, device_type, data["model_version"], history, private_key.public_key()
    )
    ranges = [OffsetRange.from_record(r) for r in data["data_pointer"]]
    if not ranges:
        raise RetrainError(f"RetrainRequest {request['id']} has an empty data_pointer")
    raw = fetch_ranges(endpoints.bootstrap, ranges, endpoints.client_settings)
    channels = _channels(topology, device_type)
    features = tuple(current.meta.features.get("channels") or current.meta.channels)
    training = build_training_set(
        raw, AvroDeserializer(endpoints.registry), device_type, channels, features
    )
    version = history.next_version(spec.name, floor=spec.version)
    retraining = topology.retraining
    gates = topology.rollout.shadow
    candidate = refit(
        training,
        current.blob,
        current.meta,
        RefitParams(
            version=f"{spec.name}-{version}",
            holdout_fraction=retraining.holdout_fraction,
            seed=seed,
            max_anomaly_rate_delta=gates.max_anomaly_rate_delta,
            min_rank_correlation=gates.min_rank_correlation,
        ),
    )
    meta = candidate.meta
    metrics = {
        **candidate.metrics,
        "training_readings": float(len(training)),
        "training_duplicates": float(training.duplicates),
        "training_invalid": float(training.invalid),
    }
    baseline = training_baseline(training.channels, training.values)
    update = candidate_update(
        spec.name,
        version,
        device_type,
        meta,
        candidate.blob,
        metrics,
        baseline,
        current.version,
        topology.rollout.canary_fraction,
        request["id"],
    )
    signed = sign_update(attach_artifact(update, candidate.blob, store_dir), private_key)
    return RetrainResult(signed, training, candidate, time.perf_counter() - t0)


def _channels(topology: Topology, device_type: str) -> tuple[str, ...]:
    """Every declared channel of the device type's sensor topics (the baseline covers them)."""
    seen: dict[str, None] = {}
    for topic in topology.topics_for(device_type):
        seen.update(dict.fromkeys(topic.channels))
    return tuple(seen) or topology.features_for(device_type)


class Retrainer:
    """``retrain serve``: requests from ``fleet.retrain``, rollout events from ``fleet.rollout``.

    Blocking; :meth:`run` returns when ``stop_event`` is set.
    """

    def __init__(
        self,
        topology: Topology,
        endpoints: CloudEndpoints,
        private_key: Any,
        group: str = "edgestream-retrainer",
    ) -> None:
        from edgestream.rollout.control import RolloutController

        self.topology = topology
        self.endpoints = endpoints
        self.private_key = private_key
        self.group = group
        self.handled: set[str] = set()
        self.results: list[RetrainResult] = []
        self.controller = RolloutController(topology)
        self.errors = 0
        self.declined = 0  # requests it could not serve (ModelError: bad or too little data)

    def _history(self) -> ModelHistory:
        return ModelHistory.read(
            self.endpoints.bootstrap,
            self.topology.cloud.models_topic,
            self.endpoints.registry,
            self.endpoints.client_settings,
        )

    def handle(self, request: dict[str, Any]) -> RetrainResult | None:
        """Serve one request unless it was handled before; publishes the candidate."""
        keys = {request.get("id"), (request.get("data") or {}).get("dedup_key")} - {None}
        if keys & self.handled:
            log.info("retrain request %s: already handled, skipped", request.get("id"))
            return None
        history = self._history()
        if keys & history.request_ids():
            self.handled.update(keys)
            log.info("retrain request %s: a version on fleet.models has it", request.get("id"))
            return None
        result = retrain(request, self.topology, self.endpoints, self.private_key, history)
        publish_updates(self.endpoints, self.topology.cloud.models_topic, [result.update])
        self.handled.update(keys)
        self.results.append(result)
        metrics = result.update["metrics"]
        log.info(
            "published %s %s (parent %s): %d readings, rank corr %.3f, anomaly rate %.4f vs "
            "%.4f, %.1f s",
            result.update["model_name"],
            result.update["version"],
            result.update["parent_version"],
            len(result.training),
            metrics.get("rank_correlation", float("nan")),
            metrics.get("candidate_anomaly_rate", float("nan")),
            metrics.get("current_anomaly_rate", float("nan")),
            result.seconds,
        )
        return result

    def run(self, stop_event: threading.Event, poll: float = 0.5) -> None:
        """Consume requests and rollout events until ``stop_event`` is set."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        from edgestream.core.broker import consumer_config, ensure_topics
        from edgestream.core.exceptions import ServiceUnavailable
        from edgestream.core.serde import AvroDeserializer

        retrain_topic = self.topology.cloud.retrain_topic
        rollout_topic = self.topology.forwarding.topics.rollout
        models_topic = self.topology.cloud.models_topic
        ensure_topics(self.endpoints.bootstrap, {retrain_topic: 1, rollout_topic: 1})
        decode = AvroDeserializer(self.endpoints.registry)
        conf = consumer_config(
            self.endpoints.bootstrap,
            self.group,
            **{"enable.auto.commit": False, "fetch.wait.max.ms": 100},
        )
        conf.update(self.endpoints.client_settings)
        requests = Consumer(conf)
        events = Consumer({**conf, "group.id": f"{self.group}-rollout-{time.time_ns()}"})
        try:
            parts = [
                TopicPartition(retrain_topic, p, OFFSET_BEGINNING)
                for p in _partitions(requests, retrain_topic)
            ]
            committed = committed_offsets(requests, parts)
            requests.assign(
                [
                    TopicPartition(
                        c.topic, c.partition, c.offset if c.offset >= 0 else OFFSET_BEGINNING
                    )
                    for c in committed
                ]
            )
            events.assign(
                [
                    TopicPartition(rollout_topic, p, OFFSET_BEGINNING)
                    for p in _partitions(events, rollout_topic)
                ]
            )
            log.info(
                "retrainer: requests from %s (group %s), rollout events from %s, models to %s",
                retrain_topic,
                self.group,
                rollout_topic,
                models_topic,
            )
            while not stop_event.is_set():
                for msg in requests.consume(10, timeout=poll):
                    if msg.error() is not None:
                        continue
                    try:
                        self.handle(decode(msg.value()))
                    except ServiceUnavailable as error:  # transient: the same request again
                        log.warning("retrain request at offset %d: %s", msg.offset(), error)
                        requests.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                        stop_event.wait(5.0)
                        break
                    except ModelError as error:  # a request we cannot serve (too few
                        # samples, a pointer past the data, a model without a sidecar): the
                        # cloud job's data, not our failure; one line, and on to the next
                        self.declined += 1
                        log.warning("retrain request at offset %d declined: %s", msg.offset(),
                                    error)  # fmt: skip
                    except Exception:  # a bug must not stop the service either
                        self.errors += 1
                        log.exception("retrain request at offset %d failed", msg.offset())
                    requests.commit(message=msg, asynchronous=False)
                fresh = [
                    decode(m.value()) for m in events.consume(1000, timeout=0) if m.error() is None
                ]
                if fresh or self.controller.needs_history:
                    self.controller.observe_events(fresh)
                    self.controller.observe_history(self._history())
                    actions = self.controller.actions()
                    if actions:
                        publish_updates(self.endpoints, models_topic, actions)
                        self.controller.published(actions)
        finally:
            requests.close()
            events.close()


def _partitions(consumer: Any, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    return sorted(meta.partitions) if meta is not None and meta.partitions else [0]


def serve(
    topology: Topology,
    cloud_bootstrap: str,
    registry_url: str,
    stop_event: threading.Event,
    client_settings: dict[str, object] | None = None,
    private_key: Any = None,
) -> Retrainer:
    """Run the retrainer + rollout controller until ``stop_event`` (entry point of ``up``).

    The signing key is ``private_key`` or the one the topology's ``retraining.signing``
    names. Returns the retrainer (its ``results`` and ``controller.decisions``).
    """
    from edgestream.ml.signing import load_private_key

    endpoints = CloudEndpoints(cloud_bootstrap, registry_url, dict(client_settings or {}))
    key = private_key or load_private_key(topology.retraining.signing)
    retrainer = Retrainer(topology, endpoints, key)
    # scikit-learn takes 15-30 s to import on a busy 2-core gateway host: pay it while
    # waiting for the first request, not after it arrives
    threading.Thread(target=_preload_trainer, name="preload-sklearn", daemon=True).start()
    retrainer.run(stop_event)
    return retrainer


def _preload_trainer() -> None:
    # without the train extra the first request says what to install
    with contextlib.suppress(ImportError):
        import sklearn.neural_network  # noqa: F401
