"""The root of a topology: one frozen, validated object built from one YAML file."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr

from edgestream.core.topology.cloud import Cloud, Retraining, Rollout
from edgestream.core.topology.detection import AnomalySpec, ModelSpec, Window
from edgestream.core.topology.edge import Gateway, Sensors, SensorTopic
from edgestream.core.topology.errors import NeededEnv
from edgestream.core.topology.fields import Frozen, Name, deferrable, resolve_env
from edgestream.core.topology.forwarding import Forwarding

__all__ = ["Topology"]

_URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def _version(value: object) -> object:
    """``version: 2`` and ``version: 1.2`` are fine: numbers become strings."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _url(value: str) -> str:
    if not _URL_RE.match(value):
        raise ValueError("an http:// or https:// URL of a Confluent-compatible schema registry")
    return value.rstrip("/")


#: A schema registry URL; ``${VAR}`` references are resolved.
RegistryUrl = Annotated[str, BeforeValidator(resolve_env), AfterValidator(deferrable(_url))]


class Topology(Frozen):
    """A deployable stream topology: edge gateways, forwarding, cloud jobs and model rollout.

    Build one with :func:`edgestream.core.topology.load_topology`. Two topologies are equal
    when their configuration is; :meth:`fingerprint` identifies a configuration. Top-level
    keys starting with ``x-`` are ignored (YAML anchors shared by several sections).
    """

    name: Name
    """The topology's name: deploy state, k8s and systemd names derive from it."""
    version: Annotated[str, BeforeValidator(_version)] = "1"
    """The configuration's version, yours to bump (numbers are read as strings)."""
    description: str = ""
    """Free text for people."""
    gateways: tuple[Gateway, ...] = Field(min_length=1)
    """The edge gateways, at least one."""
    sensors: Sensors
    """The sensor topics on the edge brokers and the input limits readings are checked against."""
    features: dict[Name, tuple[Name, ...]] = Field(default_factory=dict)
    """Device type -> channel names in model input order (omitted: the type's topic's
    required channels in file order)."""
    models: dict[Name, ModelSpec] = Field(default_factory=dict)
    """Device type -> the model that scores its readings (a type without one is not scored)."""
    windows: tuple[Window, ...] = Field((Window(size=10_000),), min_length=1)
    """The event-time windows every gateway computes summaries for."""
    anomaly: AnomalySpec = AnomalySpec()
    """When scores become incidents and alerts: rules, severity bands, suppression."""
    forwarding: Forwarding = Forwarding()
    """What goes from each gateway to the cloud broker, and how."""
    cloud: Cloud = Cloud()
    """The cloud's Flink jobs (fleet statistics, drift, retraining triggers) and topics."""
    retraining: Retraining = Retraining()
    """How new models are trained and signed."""
    rollout: Rollout = Rollout()
    """How new models reach the gateways: canaries, shadow gates, rollback."""
    registry: RegistryUrl | None = None
    """URL of a Confluent-compatible schema registry (omitted: the embedded stack's)."""

    _source: Path | None = PrivateAttr(default=None)
    _needed_env: tuple[NeededEnv, ...] = PrivateAttr(default=())

    def __eq__(self, other: object) -> bool:  # the source file is not part of the config
        return type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # dict-valued fields are not hashable

    # --- where it came from ---------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """The file this topology was loaded from (None when built in code)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Relative paths in the topology are relative to this folder."""
        return self._source.parent if self._source is not None else Path.cwd()

    @property
    def needed_env(self) -> tuple[NeededEnv, ...]:
        """Variables left unresolved by ``load_topology(..., defer_env=True)`` (else empty).

        Such a topology holds those values as written (``${VAR}``): it is for reading, not
        for deploying.
        """
        return self._needed_env

    def with_needed_env(self, needed: tuple[NeededEnv, ...]) -> Topology:
        """A copy that records ``needed`` as :attr:`needed_env`."""
        copy = self.model_copy()
        copy._needed_env = needed
        return copy

    def resolve_path(self, path: str | Path) -> Path:
        """``path`` resolved against :attr:`base_dir`."""
        return (self.base_dir / Path(path)).resolve()

    def with_source(self, source: str | Path | None) -> Topology:
        """A copy that resolves relative paths against ``source``'s folder."""
        copy = self.model_copy()
        copy._source = None if source is None else Path(source).resolve()
        return copy

    # --- lookups the stages use -------------------------------------------------------------

    @property
    def device_types(self) -> tuple[str, ...]:
        """Every device type a gateway serves, in first-seen order."""
        seen: dict[str, None] = {}
        for gateway in self.gateways:
            seen.update(dict.fromkeys(gateway.device_types))
        return tuple(seen)

    def gateway(self, gateway_id: str) -> Gateway:
        """The gateway with ``gateway_id`` (KeyError naming the known ids otherwise)."""
        for gateway in self.gateways:
            if gateway.id == gateway_id:
                return gateway
        known = ", ".join(g.id for g in self.gateways)
        raise KeyError(f"no gateway {gateway_id!r} in topology {self.name!r} (known: {known})")

    def topics_for(self, device_type: str) -> tuple[SensorTopic, ...]:
        """The sensor topics carrying ``device_type``."""
        return tuple(t for t in self.sensors.topics if t.device_type == device_type)

    def sensor_topic_of(self, device_type: str) -> SensorTopic:
        """The first sensor topic carrying ``device_type`` (ValueError naming the types)."""
        topics = self.topics_for(device_type)
        if not topics:
            known = ", ".join(sorted({t.device_type for t in self.sensors.topics}))
            raise ValueError(
                f"topology {self.name!r} has no sensor topic for device type {device_type!r} "
                f"(device types: {known})"
            )
        return topics[0]

    def features_for(self, device_type: str) -> tuple[str, ...]:
        """Model input channels of ``device_type`` in order (declared, else required channels)."""
        if device_type in self.features:
            return self.features[device_type]
        topics = self.topics_for(device_type)
        return topics[0].required_channels if topics else ()

    def model_inputs(self, device_type: str) -> tuple[str, ...]:
        """The columns of ``device_type``'s model input tensor."""
        model = self.models[device_type]
        return model.inputs if model.inputs is not None else self.features_for(device_type)

    def model_path(self, device_type: str) -> Path:
        """Absolute path of ``device_type``'s ONNX file (ValueError for an online model)."""
        path = self.models[device_type].path
        if path is None:
            raise ValueError(f"the model of {device_type!r} is kind: online: it has no file")
        return self.resolve_path(path)

    def canary_gateways(self) -> tuple[str, ...]:
        """Gateways in the first rollout stage: the marked ones, else a fraction in order."""
        marked = tuple(g.id for g in self.gateways if g.canary)
        if marked:
            return marked
        count = max(1, math.ceil(self.rollout.canary_fraction * len(self.gateways)))
        return tuple(g.id for g in self.gateways[:count])

    # --- identity and serialisation ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain YAML/JSON values, every default filled in.

        Durations and sizes are written in units (``10s``, ``64MB``); secrets as their
        ``${ENV_VAR}`` reference (or ``**********``), never as values.
        """
        return self.model_dump(mode="json", by_alias=True)

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML; loading it again gives an equal topology."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def fingerprint(self) -> str:
        """sha256 of the normalised configuration (hex): equal configs, equal fingerprints.

        Independent of key order, units (``60s`` = ``1m``), defaults written or omitted and
        the file's location; secret values are not part of it (their references are).
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
