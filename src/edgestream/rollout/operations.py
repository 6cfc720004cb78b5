"""Operator actions on models (``edgestream models list|publish|promote|rollback``).

* :func:`model_table`: every version on ``fleet.models`` with its state, and what each
  gateway reported about it on ``fleet.rollout``;
* :func:`publish_file`: sign and publish an ONNX file + sidecar as a ``candidate``;
* :func:`operator_action`: publish ``promote`` / ``rollback`` for a published version.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgestream.core.endpoints import CloudEndpoints
from edgestream.core.offsets import read_to_end
from edgestream.core.topology import Topology
from edgestream.ml.exceptions import ModelError
from edgestream.rollout.history import (
    ModelHistory,
    action_update,
    candidate_update,
    publish_updates,
)

__all__ = ["OperatorError", "model_table", "operator_action", "publish_file", "rollout_events"]


class OperatorError(ModelError, ValueError):
    """An operator command names a model or version that does not exist."""


def _history(topology: Topology, endpoints: CloudEndpoints) -> ModelHistory:
    return ModelHistory.read(
        endpoints.bootstrap,
        topology.cloud.models_topic,
        endpoints.registry,
        endpoints.client_settings,
    )


def rollout_events(topology: Topology, endpoints: CloudEndpoints) -> list[dict[str, Any]]:
    """RolloutEvents on ``fleet.rollout`` in topic order, replays (same event_id) dropped."""
    from edgestream.core.serde import AvroDeserializer

    decode = AvroDeserializer(endpoints.registry)
    topic = topology.forwarding.topics.rollout
    seen: dict[str, dict[str, Any]] = {}
    for msg in read_to_end(endpoints.bootstrap, topic, endpoints.client_settings):
        event = decode(msg.value())
        seen.setdefault(event["event_id"], event)
    return list(seen.values())


def model_table(topology: Topology, endpoints: CloudEndpoints) -> dict[str, Any]:
    """Versions per model (state, parent, sha256, metrics) and per-gateway rollout state."""
    history = _history(topology, endpoints)
    events = rollout_events(topology, endpoints)
    per_version: dict[tuple[str, str], dict[str, str]] = {}
    live: dict[str, dict[str, str]] = {}
    for event in events:
        key = (event["model_name"], event["version"])
        per_version.setdefault(key, {})[event["gateway_id"]] = event["event"]
        if event.get("live_version"):
            live.setdefault(event["gateway_id"], {})[event["model_name"]] = event["live_version"]
    rows = []
    names = [spec.name for spec in topology.models.values()]
    extra = sorted({u["model_name"] for u in history.updates} - set(names))
    for name in [*names, *extra]:
        for version in history.versions(name):
            cand = history.candidate(name, version) or {}
            metrics = cand.get("metrics") or {}
            rows.append(
                {
                    "model_name": name,
                    "version": version,
                    "state": history.state(name, version),
                    "parent_version": cand.get("parent_version"),
                    "created_at": cand.get("created_at"),
                    "sha256": cand.get("sha256"),
                    "key_id": cand.get("key_id"),
                    "threshold": cand.get("threshold"),
                    "retrain_request_id": cand.get("retrain_request_id"),
                    "metrics": {k: v for k, v in metrics.items() if not _nan(v)},
                    "gateways": per_version.get((name, version), {}),
                }
            )
    return {"models": rows, "live": live}


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def publish_file(
    topology: Topology,
    endpoints: CloudEndpoints,
    private_key: Any,
    model_path: Path,
    device_type: str | None = None,
    version: str | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """Sign and publish ``model_path`` (ONNX, sidecar beside it) as a candidate; returns it.

    The sidecar is embedded in the published bytes (:mod:`edgestream.ml.package`) so a
    gateway gets the feature config with the model.
    """
    from edgestream.ml.artifact import load_artifact
    from edgestream.ml.package import attach_artifact, embed_sidecar
    from edgestream.ml.signing import sign_update

    blob, meta = load_artifact(model_path)
    device_type = device_type or meta.device_type
    if device_type not in topology.models:
        raise OperatorError(
            f"{model_path}: device type {device_type!r} has no model slot in topology "
            f"{topology.name!r} ({sorted(topology.models)}); pass --device-type"
        )
    spec = topology.models[device_type]
    history = _history(topology, endpoints)
    version = version or history.next_version(spec.name, floor=spec.version)
    if version in history.versions(spec.name) or version == spec.version:
        raise OperatorError(f"{spec.name} {version} exists already: choose another --version")
    blob, meta = embed_sidecar(blob, meta)
    update = candidate_update(
        spec.name,
        version,
        device_type,
        meta,
        blob,
        _flat_metrics(meta.metrics),
        [{"channel": c, **b} for c, b in meta.baseline.items()],
        parent or history.latest_live(spec.name) or spec.version,
        topology.rollout.canary_fraction,
    )
    signed = sign_update(attach_artifact(update, blob), private_key)
    publish_updates(endpoints, topology.cloud.models_topic, [signed])
    return signed


def operator_action(
    topology: Topology, endpoints: CloudEndpoints, model_name: str, version: str, action: str
) -> dict[str, Any]:
    """Publish ``promote`` or ``rollback`` of a published version; returns the record."""

    history = _history(topology, endpoints)
    candidate = history.candidate(model_name, version)
    if candidate is None:
        seen = history.versions(model_name)
        raise OperatorError(
            f"no candidate {model_name} {version} on {topology.cloud.models_topic} "
            f"(versions: {seen or 'none'}); `edgestream models list` shows them"
        )
    update = action_update(candidate, action)
    publish_updates(endpoints, topology.cloud.models_topic, [update])
    return update


def _flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict as ``a.b.c`` -> float."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out
