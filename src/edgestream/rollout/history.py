"""What ``fleet.models`` says (every ModelUpdate, versions per model, next version), and
publishing to it.

:class:`ModelHistory` folds the ModelUpdates of a cloud topic, read from its beginning up to
its exact end (:func:`edgestream.core.offsets.read_to_end`).

>>> h = ModelHistory([{"model_name": "m", "version": "v2", "action": "candidate"},
...                   {"model_name": "m", "version": "v2", "action": "promote"}])
>>> h.next_version("m", floor="v1"), h.state("m", "v2"), h.latest_live("m")
('v3', 'promote', 'v2')
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.exceptions import ServiceUnavailable
from edgestream.core.offsets import read_to_end

__all__ = ["ModelHistory", "action_update", "publish_updates", "version_number"]

_VERSION = re.compile(r"v(\d+)$")


def version_number(version: str | None) -> int:
    """The N of a ``vN`` version label (a ``name-vN`` form too); 0 for anything else.

    >>> version_number("v12"), version_number("reefer-ae-v3"), version_number("x")
    (12, 3, 0)
    """
    found = _VERSION.search(version or "")
    return int(found.group(1)) if found else 0


@dataclass
class ModelHistory:
    """ModelUpdates in topic order (one partition per model name keeps them ordered)."""

    updates: list[dict[str, Any]] = field(default_factory=list)

    def add(self, update: dict[str, Any]) -> None:
        self.updates.append(update)

    def of(self, model_name: str) -> list[dict[str, Any]]:
        return [u for u in self.updates if u.get("model_name") == model_name]

    def candidate(self, model_name: str, version: str) -> dict[str, Any] | None:
        """The last ``candidate`` record of a version (the one with the artifact)."""
        found = None
        for u in self.of(model_name):
            if u.get("version") == version and u.get("action", "candidate") == "candidate":
                found = u
        return found

    def state(self, model_name: str, version: str) -> str | None:
        """The last action published for a version."""
        found = None
        for u in self.of(model_name):
            if u.get("version") == version:
                found = u.get("action", "candidate")
        return found

    def versions(self, model_name: str) -> list[str]:
        """Versions in first-published order."""
        return list(dict.fromkeys(u["version"] for u in self.of(model_name)))

    def next_version(self, model_name: str, floor: str | None = None) -> str:
        """``v<N+1>`` for the highest N seen on the topic (and in ``floor``)."""
        numbers = [version_number(v) for v in self.versions(model_name)]
        return f"v{max([version_number(floor), *numbers]) + 1}"

    def latest_live(self, model_name: str) -> str | None:
        """The version the last ``promote`` made live, or the ``rollback`` returned to."""
        live = None
        for u in self.of(model_name):
            action = u.get("action", "candidate")
            if action == "promote":
                live = u["version"]
            elif action == "rollback" and live == u["version"]:
                live = u.get("parent_version")
        return live

    def request_ids(self) -> set[str]:
        """RetrainRequest ids that already led to a version."""
        return {u["retrain_request_id"] for u in self.updates if u.get("retrain_request_id")}

    @classmethod
    def read(
        cls,
        bootstrap: str,
        topic: str,
        registry: Any,
        client_settings: dict[str, object] | None = None,
    ) -> ModelHistory:
        """Everything on ``topic`` now (an empty history when the topic does not exist)."""
        from edgestream.core.serde import AvroDeserializer

        decode = AvroDeserializer(registry)
        return cls([decode(m.value()) for m in read_to_end(bootstrap, topic, client_settings)])


def candidate_update(
    model_name: str,
    version: str,
    device_type: str,
    meta: Any,
    artifact: bytes,
    metrics: dict[str, float],
    baseline: list[dict[str, Any]],
    parent_version: str | None,
    canary_fraction: float | None,
    retrain_request_id: str | None = None,
) -> dict[str, Any]:
    """An unsigned ``candidate`` ModelUpdate of an ONNX artifact and its sidecar ``meta``
    (:class:`edgestream.ml.artifact.ModelMeta`: sha256, inputs, threshold); sign it with
    :func:`edgestream.ml.signing.sign_update` after placing the artifact."""
    return {
        "model_name": model_name,
        "version": version,
        "action": "candidate",
        "device_type": device_type,
        "created_at": int(time.time() * 1000),
        "framework": "onnx",
        "sha256": meta.sha256,
        "artifact": artifact,
        "artifact_uri": None,
        "signature": None,
        "signature_alg": "ed25519",
        "key_id": None,
        "inputs": list(meta.inputs),
        "threshold": meta.threshold,
        "metrics": metrics,
        "baseline": baseline,
        "parent_version": parent_version,
        "canary_fraction": canary_fraction,
        "retrain_request_id": retrain_request_id,
    }


def action_update(
    candidate: dict[str, Any], action: str, now_ms: int | None = None
) -> dict[str, Any]:
    """A ``promote`` / ``rollback`` record for a published candidate.

    It repeats the candidate's signed fields and signature (no artifact), so a gateway can
    check it names exactly the version it verified (``verify_update(...,
    require_artifact=False)``).
    """
    if action not in ("promote", "rollback"):
        raise ValueError(f"action must be promote or rollback, got {action!r}")
    return {
        **candidate,
        "action": action,
        "artifact": None,
        "created_at": now_ms if now_ms is not None else int(time.time() * 1000),
        "metrics": {},
        "baseline": [],
    }


def publish_updates(
    endpoints: CloudEndpoints, topic: str, updates: list[dict[str, Any]], timeout: float = 30.0
) -> None:
    """Produce ModelUpdates (key = model name, so one model's updates stay in order)."""
    from confluent_kafka import Producer

    from edgestream.core.broker import ensure_topics, producer_config
    from edgestream.core.serde import AvroSerializer, subject_for

    if not updates:
        return
    ensure_topics(endpoints.bootstrap, {topic: 1})
    encode = AvroSerializer(endpoints.registry, "ModelUpdate", subject_for(topic))
    conf = producer_config(endpoints.bootstrap, **{"message.max.bytes": 16 * 1024 * 1024})
    conf.update(endpoints.client_settings)
    producer = Producer(conf)
    errors: list[str] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            errors.append(str(error))

    for update in updates:
        producer.produce(
            topic, key=update["model_name"].encode(), value=encode(update), on_delivery=delivered
        )
    left = producer.flush(timeout)
    if left or errors:
        raise ServiceUnavailable(
            f"{left} ModelUpdate(s) not delivered to {topic} at {endpoints.bootstrap} "
            f"within {timeout:g} s {errors[:1]}: is the cloud broker up?"
        )
