"""Edge-to-cloud forwarding: cloud topics, the durable outbox, priorities, roll-ups, security."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from edgestream.core.topology.fields import (
    Bool,
    ByteSize,
    Duration,
    EnvSecretStr,
    EnvStr,
    Frozen,
    PositiveDuration,
    PositiveInt,
    TopicName,
    deferrable,
    resolve_env,
)

__all__ = [
    "Bootstrap",
    "ForwardTopics",
    "Forwarding",
    "Outbox",
    "Samples",
    "Sasl",
    "Security",
    "Summaries",
]

_BOOTSTRAP_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _bootstrap(value: str) -> str:
    servers = [s.strip() for s in value.split(",")]
    ok = all(_BOOTSTRAP_RE.match(s) and 0 < int(s.rsplit(":", 1)[1]) < 65536 for s in servers)
    if not value.strip() or not ok:
        raise ValueError("bootstrap servers as host:port[,host:port...] (port 1-65535)")
    return ",".join(servers)


#: Kafka bootstrap servers ``host:port[,host:port]``; ``${VAR}`` references are resolved.
Bootstrap = Annotated[str, BeforeValidator(resolve_env), AfterValidator(deferrable(_bootstrap))]
#: A file path; ``${VAR}`` references are resolved.
EnvPath = Annotated[Path, BeforeValidator(resolve_env)]


class ForwardTopics(Frozen):
    """Topics on the cloud broker that the forwarders write."""

    alerts: TopicName = "fleet.alerts"
    """AnomalyAlerts, from ``edge.alerts``."""
    summaries: TopicName = "fleet.summaries"
    """WindowSummaries, from ``edge.summaries``."""
    samples: TopicName = "fleet.samples"
    """Sampled SensorReadings, from ``edge.samples``."""
    rollout: TopicName = "fleet.rollout"
    """The gateways' RolloutEvents, from ``edge.rollout``."""


class Outbox(Frozen):
    """The durable on-disk outbox between edge and cloud (SQLite, WAL).

    ``path`` is relative to the gateway's data dir (``{gateway}`` is replaced by its id).
    Past ``max_bytes`` summaries are rolled up, then dropped (counted); records older than
    ``max_age`` are dropped (counted). ``fsync``: ``always`` (every append, survives power
    loss), ``batch`` (once per write batch), ``never`` (the OS decides).
    """

    path: EnvStr = "outbox-{gateway}.sqlite"
    """The SQLite file, relative to the gateway's data dir (``{gateway}``: its id)."""
    max_bytes: ByteSize = 256_000_000
    """Byte budget: past it samples are dropped, then summaries rolled up, then dropped."""
    max_age: PositiveDuration = 7 * 86_400_000
    """Records older than this are dropped (counted)."""
    fsync: Literal["always", "batch", "never"] = "batch"
    """``always``: every append (survives power loss); ``batch``: once per write batch;
    ``never``: the OS decides."""


class Sasl(Frozen):
    """SASL credentials; ``password`` is a secret, best given as ``${ENV_VAR}``."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    """The SASL mechanism."""
    username: EnvStr
    """The user name."""
    password: EnvSecretStr
    """The password: never shown or dumped; write it as ``${ENV_VAR}``."""


class Security(Frozen):
    """How the forwarders connect to the cloud broker.

    ``SSL``/``SASL_SSL`` use ``ca_file`` (system CAs when omitted) and, for mutual TLS,
    ``cert_file`` + ``key_file``; ``SASL_*`` need ``sasl``. Paths are relative to the
    topology file.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Kafka's ``security.protocol`` of the forwarders' cloud clients."""
    ca_file: EnvPath | None = None
    """CA certificate (PEM) the broker's certificate is checked against (omitted: system CAs)."""
    cert_file: EnvPath | None = None
    """Client certificate (PEM) for mutual TLS, with ``key_file``."""
    key_file: EnvPath | None = None
    """Client private key (PEM) for mutual TLS, with ``cert_file``."""
    sasl: Sasl | None = None
    """SASL credentials, required by the ``SASL_*`` protocols."""


class Samples(Frozen):
    """Sampled valid readings for the cloud's drift detection and retraining.

    The gateway emits every valid reading with ``seq % every == 0`` (readings without a
    sequence number, ``seq = -1``, are never sampled) as a SensorReading (tags ``gateway_id``,
    ``model_version``) to ``edge.samples``; the forwarder sends them to ``topics.samples``
    with the lowest priority (after summaries, first dropped when the outbox is over budget).

    ``every``: 1 in ``every`` readings per device. The default 500 gives, at 10 Hz, one
    sample per device every 50 s: 6 per device per 5 minutes (300 per device type per
    5-minute drift window at 50 devices) for about 0.1 % of the raw sensor bytes. Fleets with
    few devices per type need a denser rate (``topologies/default.yaml``: 20). ``linger``:
    how long the forwarder keeps samples in its outbox to send them together, in one
    compressed batch instead of one request each (a backlog goes at once); 30 s is small
    against a 5-minute drift window.
    """

    enabled: Bool = True
    """Forward sampled readings (the cloud's drift detection and retraining need them)."""
    every: PositiveInt = 500
    """One in ``every`` readings per device (``seq % every == 0``)."""
    linger: Duration = 30_000
    """How long samples wait in the outbox to travel as one compressed batch."""


class Summaries(Frozen):
    """What of each WindowSummary goes over the wire to the cloud.

    ``count``/``sum``/``min``/``max``/``m2`` of every channel always travel (they merge
    exactly); ``mean`` and ``std`` never do: they are derived (``sum / count``,
    ``sqrt(m2 / count)``; :func:`edgestream.wire.forms.complete_summary`), as is an
    original window's ``summary_id``. ``quantiles``: send ``p50``/``p95``; ``last``: send the
    value of the latest reading. ``scopes``/``windows``: which summaries are forwarded
    (default: every scope and window size the gateway computes). ``linger``: how long the
    forwarder keeps summaries in its outbox so that the windows that close together (every
    device's, each window) travel as one compressed batch (a backlog goes at once).
    """

    quantiles: Bool = False
    """Send each channel's ``p50``/``p95``."""
    last: Bool = False
    """Send each channel's latest value."""
    linger: Duration = 1_000
    """How long summaries wait in the outbox so that a window's travel as one batch."""
    scopes: tuple[Literal["device", "site"], ...] = ("device", "site")
    """Which scopes' summaries are forwarded."""
    windows: tuple[PositiveDuration, ...] | None = None
    """Which window sizes' summaries are forwarded (null: every size in ``windows``)."""


class Forwarding(Frozen):
    """Forwarding of alerts, window summaries and sampled readings to the cloud broker.

    ``bootstrap`` omitted: the embedded stack's cloud broker. ``priorities`` is the drain
    order (alerts first); ``rollup`` the coarser window sizes summaries are rolled up into when
    the outbox is over budget; ``linger``/``batch_bytes`` tune the producer of summaries and
    samples (alerts wait at most 5 ms); ``summaries``: what of a summary is forwarded;
    ``samples``: the sampled-readings channel.
    """

    bootstrap: Bootstrap | None = None
    """The cloud broker, ``host:port[,host:port]`` (omitted: the embedded stack's)."""
    topics: ForwardTopics = ForwardTopics()
    """The cloud topics the forwarders write."""
    outbox: Outbox = Outbox()
    """The durable outbox between a gateway and the cloud."""
    priorities: tuple[Literal["alerts", "summaries"], ...] = ("alerts", "summaries")
    """Drain order: each kind once, alerts first."""
    rollup: tuple[PositiveDuration, ...] = (10_000, 60_000, 600_000)
    """Coarser window sizes summaries are rolled up into over budget (each a multiple of the
    one before)."""
    summaries: Summaries = Summaries()
    """What of a summary is forwarded."""
    samples: Samples = Samples()
    """The sampled-readings channel."""
    compression: Literal["zstd", "lz4", "none"] = "zstd"
    """Producer compression on the link."""
    linger: Duration = 50
    """Producer linger of summaries and samples (alerts wait at most 5 ms)."""
    batch_bytes: ByteSize = 1_000_000
    """Producer batch size of summaries and samples."""
    security: Security = Field(default_factory=Security)
    """How the forwarders connect to the cloud broker: TLS, SASL."""
