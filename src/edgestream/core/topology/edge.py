"""What runs on the gateways: sensor topics, features, models, windows and anomaly rules."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edgestream.core.topology.fields import (
    Bool,
    ByteSize,
    Duration,
    EnvStr,
    Frozen,
    Name,
    Number,
    PositiveDuration,
    PositiveInt,
    TopicName,
)

__all__ = [
    "AnomalyRule",
    "AnomalySpec",
    "Batch",
    "Channel",
    "DeviceIdPolicy",
    "Gateway",
    "InputLimits",
    "ModelSpec",
    "MuteWhen",
    "OnlineDetector",
    "SensorTopic",
    "Sensors",
    "Severity",
    "Suppression",
    "Window",
]

SCOPES = ("device", "site")
INPUT_SCHEMAS = ("SensorReading", "SensorFrame")


def _one_or_many(value: object) -> object:
    """Accept ``site: plant-a`` as well as ``sites: [plant-a, plant-b]``."""
    return (value,) if isinstance(value, str) else value


class Gateway(Frozen):
    """One edge gateway: its own broker, the sites and device types it serves.

    ``bootstrap`` is the edge broker (``host:port[,host:port]``); omitted, the gateway runs on
    the embedded stack's broker of the same name. ``devices`` optionally restricts the gateway
    to listed device ids; empty means every device of ``device_types`` at ``sites``.
    ``canary: true`` puts the gateway in the first stage of every model rollout.
    """

    id: Name
    """The gateway's id (unique): its worker, forwarder, outbox and embedded broker use it."""
    sites: Annotated[tuple[Name, ...], BeforeValidator(_one_or_many)] = Field(min_length=1)
    """The sites it serves (one name or a list); site summaries are computed per site."""
    device_types: tuple[Name, ...] = Field(min_length=1)
    """The device types it serves; each needs a sensor topic."""
    devices: tuple[Name, ...] = ()
    """Only these device ids (empty: every device of its types at its sites)."""
    bootstrap: EnvStr | None = None
    """The edge broker, ``host:port[,host:port]`` (omitted: the embedded stack's broker of
    the gateway's id)."""
    canary: Bool = False
    """Put the gateway in the first stage of every model rollout."""


class Channel(Frozen):
    """An expected channel of a device type: unit and valid range (inclusive).

    A reading outside ``[min, max]`` is invalid and goes to the DLQ. ``required: false`` lets
    readings omit the channel (it is then not a model feature).
    """

    unit: str = ""
    """The unit, for people and dashboards (``mm/s``, ``degC``)."""
    min: Number | None = None
    """Smallest valid value, inclusive (null: no bound); below it a reading goes to the DLQ."""
    max: Number | None = None
    """Largest valid value, inclusive (null: no bound); above it a reading goes to the DLQ."""
    required: Bool = True
    """Every reading must carry it; ``false``: optional, and then not a model feature."""


class SensorTopic(Frozen):
    """A sensor topic on the edge brokers and the device type whose readings it carries.

    ``schema`` is the Avro record of its messages: ``SensorReading`` (one reading per message)
    or ``SensorFrame`` (many readings of one device per message). ``channels`` maps channel
    name to unit and range. Invalid records go to ``<name>.dlq``, too-late ones to
    ``<name>.late``.
    """

    name: TopicName
    """The Kafka topic on each edge broker (``<name>.dlq`` and ``<name>.late`` go with it)."""
    device_type: Name
    """The device type whose readings it carries."""
    schema_: Literal["SensorReading", "SensorFrame"] = Field("SensorReading", alias="schema")
    """The Avro record of its messages: one reading, or many readings of one device."""
    partitions: PositiveInt = 1
    """Partitions, when deploy creates the topic (an existing topic is never changed)."""
    replication: PositiveInt = 1
    """Replication factor, when deploy creates the topic."""
    channels: dict[Name, Channel] = Field(min_length=1)
    """Channel name -> unit and valid range, in the order features default to."""
    retention: Duration = 86_400_000
    """How long the edge broker keeps readings (with ``retention_bytes``, whichever is
    reached first: a gateway's disk stays bounded)."""
    retention_bytes: ByteSize = 1 << 30
    """At most this many bytes per partition on the edge broker."""
    configs: dict[str, str] = Field(default_factory=dict)
    """Any other Kafka topic configs; they win over ``retention``/``retention_bytes``."""

    def kafka_configs(self) -> dict[str, str]:
        """The topic's Kafka configs: retention from the typed keys, then ``configs``
        (which win).

        >>> t = SensorTopic(name="s", device_type="pump", channels={"x": {}}, retention="2h")
        >>> t.kafka_configs()
        {'retention.ms': '7200000', 'retention.bytes': '1073741824'}
        """
        base = {"retention.ms": str(self.retention), "retention.bytes": str(self.retention_bytes)}
        return {**base, **self.configs}

    @property
    def dlq(self) -> str:
        """The dead-letter topic of invalid records."""
        return f"{self.name}.dlq"

    @property
    def late(self) -> str:
        """The topic of records later than the windows' allowed lateness."""
        return f"{self.name}.late"

    @property
    def required_channels(self) -> tuple[str, ...]:
        """Channels every reading must carry."""
        return tuple(name for name, ch in self.channels.items() if ch.required)


#: The largest ``max_payload_bytes``: a rejected record is copied whole to ``<topic>.dlq`` and
#: a late one to ``<topic>.late``, with its key and headers, and Kafka takes records of about
#: 1 MB by default (broker ``message.max.bytes``, the gateway producer's max request size).
MAX_PAYLOAD_CEILING = 900_000
#: A week: what the outbox keeps by default (``forwarding.outbox.max_age``).
DEFAULT_MAX_AGE = 7 * 86_400_000


def _payload_ceiling(value: int) -> int:
    if value > MAX_PAYLOAD_CEILING:
        raise ValueError(
            "a size of at most 900KB (rejected and late records are copied whole to the "
            "edge broker, which takes records of about 1 MB)"
        )
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"a regular expression ({error})") from None
    return value


class DeviceIdPolicy(Frozen):
    """What a device id may look like: 1 to ``max_length`` characters that ``pattern`` (a
    regular expression) matches whole. A record breaking it goes to the DLQ with reason
    ``bad_device_id``: ids travel into keys, state, summaries and alerts.

    >>> policy = DeviceIdPolicy()
    >>> policy.allows("pump-0001"), policy.allows("pump 1"), policy.allows("x" * 129)
    (True, False, False)
    """

    max_length: Annotated[PositiveInt, Field(le=4096)] = 128
    """Longest device id, in characters (at most 4096)."""
    pattern: Annotated[str, AfterValidator(_regex)] = "[A-Za-z0-9._:-]+"
    """A regular expression a device id must match whole."""

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    def allows(self, device_id: str) -> bool:
        """True when ``device_id`` is 1 to ``max_length`` characters and ``pattern`` matches
        it whole."""
        return 0 < len(device_id) <= self.max_length and bool(self._compiled.fullmatch(device_id))


class InputLimits(Frozen):
    """Limits every sensor record is validated against before inference.

    A record whose event time is more than ``max_clock_skew`` ahead of the gateway clock
    (``future_timestamp``) or more than ``max_age`` behind it (``too_old``; ``null``: no
    limit, for replays of recorded data), whose payload exceeds ``max_payload_bytes``
    (``oversize``; at most 900KB) or whose device id breaks ``device_id``
    (``bad_device_id``) goes to the DLQ with that reason.
    """

    max_clock_skew: Duration = 300_000
    """How far a reading's event time may be ahead of the gateway clock (``future_timestamp``)."""
    max_age: Duration | None = DEFAULT_MAX_AGE
    """How far it may be behind (``too_old``); null: no limit, for replays of recorded data."""
    max_payload_bytes: Annotated[ByteSize, AfterValidator(_payload_ceiling)] = MAX_PAYLOAD_CEILING
    """Largest record value (``oversize``); at most 900KB."""
    device_id: DeviceIdPolicy = DeviceIdPolicy()
    """What a device id may look like (``bad_device_id``)."""


class Sensors(Frozen):
    """The sensor topics and the input limits they share."""

    topics: tuple[SensorTopic, ...] = Field(min_length=1)
    """The sensor topics, at least one per device type a gateway serves."""
    validation: InputLimits = InputLimits()
    """Limits every record is checked against before inference."""


class Batch(Frozen):
    """Inference micro-batching: run when ``size`` readings are queued or after ``max_wait``."""

    size: PositiveInt = 256
    """Readings per inference call at most."""
    max_wait: Duration = 20
    """How long the first queued reading waits for the batch to fill."""


class OnlineDetector(Frozen):
    """Settings of the in-stream detector (``kind: online``): learns per device as it runs.

    See :mod:`edgestream.edge.online` for what each setting does. ``calibration``: readings
    a new device only learns from (scores 0) before it is scored.
    """

    calibration: Annotated[int, Field(ge=10)] = 750
    """Readings a new device only learns from (score 0); they fix its range per channel."""
    levels: Annotated[int, Field(ge=2, le=64)] = 6
    """Bins the calibrated range is cut into (values beyond it get bins of their own)."""
    order: Annotated[int, Field(ge=1, le=4)] = 2
    """Previous bins the sequence model predicts the next bin from."""
    tod: Annotated[int, Field(ge=0, le=288)] = 96
    """Time-of-day buckets per day of the daily-pattern model (0: off)."""
    recent: Annotated[int, Field(ge=0)] = 100
    """About how many recent readings the recent-level model's mean and variance cover
    (0: off)."""
    history: Annotated[int, Field(ge=0)] = 8000
    """About how many readings the long-run level model's mean and variance cover: a value
    stays unusual after the recent level has followed it (0: off)."""
    tolerance: Annotated[float, Field(ge=0.0)] = 0.05
    """A value beyond the range seen so far by more than this share of its width scores 1."""
    average: Annotated[int, Field(ge=2, le=100)] = 20
    """Raw scores averaged before the anomaly likelihood compares them with their history."""
    horizon: Annotated[int, Field(ge=10)] = 8640
    """Readings of history the likelihood weighs equally (older ones fade exponentially)."""
    rest: Annotated[int, Field(ge=0)] = 25
    """Readings that score 0 after a detection: one detection per event (0: off)."""


class ModelSpec(Frozen):
    """The model that scores one device type: an ONNX file (``kind: onnx``, the default) or
    the gateway's in-stream detector (``kind: online``, settings in ``online``; no file).

    ``path`` is relative to the topology file. ``inputs`` are the channels the model reads,
    in order; they must equal the device type's ``features`` (omitted: the features). The
    model takes one float tensor named ``input_name`` of shape ``[N, width]`` and gives one
    score per row in the output ``output`` (higher = more anomalous). ``width`` is
    ``len(inputs)``, unless a sidecar ``<model>.json`` lies beside the ONNX file: then the
    model consumes the sidecar's derived ``inputs`` computed from its ``channels`` (which
    must equal the features). A reading is anomalous when its score exceeds ``threshold``;
    omitted, the model's own calibrated threshold (from its sidecar / ModelUpdate) is used,
    which follows retrained versions.
    """

    name: Name
    """The model's name: versions, signatures and rollouts are per name."""
    kind: Literal["onnx", "online"] = "onnx"
    """``onnx``: a model file; ``online``: the gateway's in-stream detector, learned per device."""
    path: Path | None = None
    """The ONNX file, relative to the topology file (required for ``kind: onnx``)."""
    online: OnlineDetector = OnlineDetector()
    """Settings of the in-stream detector (``kind: online``)."""
    version: EnvStr = "1"
    """The version of a model without a sidecar, and of an online model (a sidecar's wins)."""
    inputs: tuple[Name, ...] | None = None
    """The channels the model reads, in order; must equal the type's features (omitted: them)."""
    input_name: str = "input"
    """Name of the model's float input tensor ``[N, width]``."""
    output: str = "score"
    """Name of the output with one score per row (higher = more anomalous)."""
    threshold: Number | None = None
    """Anomalous above this score (omitted: the model's calibrated threshold, which follows
    retrained versions)."""
    batch: Batch = Batch()
    """Inference micro-batching."""
    intra_op_threads: PositiveInt = 1
    """ONNX Runtime threads per inference call."""

    @model_validator(mode="after")
    def _file_for_onnx(self) -> ModelSpec:
        if self.kind == "onnx" and self.path is None:
            raise ValueError("a path to the ONNX file (or kind: online, which needs none)")
        return self


class Window(Frozen):
    """An event-time window: tumbling (no ``hop``) or hopping (``hop`` divides ``size``).

    The watermark of a partition trails its largest event time by ``max_out_of_orderness``;
    a partition silent for ``idle_timeout`` stops holding it back. A window is emitted once
    the watermark passes its end plus ``allowed_lateness``; later readings go to the late
    topic. ``scopes`` are the keys windows are computed for.
    """

    size: PositiveDuration
    """The window's length."""
    hop: PositiveDuration | None = None
    """Time between window starts of a hopping window; must divide ``size`` (null: tumbling)."""
    allowed_lateness: Duration = 0
    """How long after its end a window still takes readings (later ones go to the late topic)."""
    max_out_of_orderness: Duration = 1_000
    """How far a partition's watermark trails its largest event time."""
    idle_timeout: PositiveDuration | None = 30_000
    """A partition silent this long stops holding the watermark back (null: never)."""
    scopes: tuple[Literal["device", "site"], ...] = Field(SCOPES, min_length=1)
    """The keys windows are computed for: per device, per site."""

    @property
    def step(self) -> int:
        """Milliseconds between window starts (the hop, or the size when tumbling)."""
        return self.hop or self.size

    @property
    def tumbling(self) -> bool:
        """True when windows do not overlap (no hop, or hop == size)."""
        return self.hop is None or self.hop == self.size


class MuteWhen(Frozen):
    """Mute a rule while a channel is above/below a value, and for ``hold`` after.

    Example (cold chain): ``{channel: door_open, above: 0.5, hold: 5m}`` ignores the warm
    air of an open door until five minutes after it closes.
    """

    channel: Name
    """The channel watched."""
    above: Number | None = None
    """Mute while the channel is above this value."""
    below: Number | None = None
    """Mute while the channel is below this value."""
    hold: Duration = 0
    """Stay muted this long after the condition ends."""


class Severity(Frozen):
    """Score bands: below ``warning`` is info, from ``warning`` warning, from ``critical``
    critical."""

    warning: Number
    """Scores from this one are ``warning`` (below: ``info``)."""
    critical: Number
    """Scores from this one are ``critical``."""


class AnomalyRule(Frozen):
    """When scored readings become an incident.

    ``threshold`` overrides the model's; an incident opens after ``consecutive`` anomalous
    readings spanning at least ``min_duration``. ``device_types`` restricts the rule (empty:
    every type). ``mute_when`` conditions silence it (e.g. door open).
    """

    name: Name
    """The rule's name, carried by its alerts."""
    device_types: tuple[Name, ...] = ()
    """Only these device types (empty: every type)."""
    threshold: Number | None = None
    """Anomalous above this score (omitted: the model's threshold)."""
    consecutive: PositiveInt = 1
    """Anomalous readings in a row that open an incident."""
    min_duration: Duration = 0
    """How long those readings must span at least."""
    mute_when: tuple[MuteWhen, ...] = ()
    """Conditions that silence the rule (e.g. a reefer's door open)."""
    severity: Severity | None = None
    """Score bands of this rule's alerts (omitted: ``anomaly.severity``)."""


class Suppression(Frozen):
    """One incident, one alert: after an alert a (device, rule) stays quiet for ``cooldown``
    (the dedup window) except for updates at most every ``update_interval``; an alert lists
    at most ``max_trigger_ids`` triggering readings."""

    cooldown: Duration = 300_000
    """An incident takes anomalous readings within this of its last one; the first reading
    later resolves it (the dedup window of alerts)."""
    update_interval: PositiveDuration = 60_000
    """At most one ``update`` alert of an open incident per interval."""
    max_trigger_ids: PositiveInt = 50
    """Triggering readings an alert lists at most."""


class AnomalySpec(Frozen):
    """Anomaly rules, the default severity bands and suppression.

    Without ``severity`` (here or on a rule) every alert is a ``warning``: scores are model
    specific, so bands cannot have a meaningful default.
    """

    rules: tuple[AnomalyRule, ...] = Field((AnomalyRule(name="score"),), min_length=1)
    """The rules, each applied to every scored reading of its device types."""
    severity: Severity | None = None
    """Default score bands (omitted: every alert is a ``warning``)."""
    suppression: Suppression = Suppression()
    """One incident, one alert: cooldown and updates."""
