"""What the gateways take in: the gateways, their sensor topics, channels and input limits.

What they do with it (models, windows, anomaly rules) is in :mod:`.detection`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from edgestream.core.topology.fields import (
    Bool,
    ByteSize,
    Duration,
    EnvStr,
    Frozen,
    Name,
    Number,
    PositiveInt,
    TopicName,
)

__all__ = ["Channel", "DeviceIdPolicy", "Gateway", "InputLimits", "SensorTopic", "Sensors"]

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
