"""Edge-to-cloud forwarding: cloud topics, the durable outbox, priorities, roll-ups, security."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from edgestream.core.topology.fields import (
    ByteSize,
    Duration,
    EnvSecretStr,
    EnvStr,
    Frozen,
    PositiveDuration,
    TopicName,
    expand_env,
)

__all__ = ["Bootstrap", "ForwardTopics", "Forwarding", "Outbox", "Sasl", "Security"]

_BOOTSTRAP_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _bootstrap(value: str) -> str:
    servers = [s.strip() for s in value.split(",")]
    ok = all(_BOOTSTRAP_RE.match(s) and 0 < int(s.rsplit(":", 1)[1]) < 65536 for s in servers)
    if not value.strip() or not ok:
        raise ValueError("bootstrap servers as host:port[,host:port...] (port 1-65535)")
    return ",".join(servers)


#: Kafka bootstrap servers ``host:port[,host:port]``; ``${VAR}`` references are resolved.
Bootstrap = Annotated[str, BeforeValidator(expand_env), AfterValidator(_bootstrap)]
#: A file path; ``${VAR}`` references are resolved.
EnvPath = Annotated[Path, BeforeValidator(expand_env)]


class ForwardTopics(Frozen):
    """Topics on the cloud broker that the forwarders write."""

    alerts: TopicName = "fleet.alerts"
    summaries: TopicName = "fleet.summaries"


class Outbox(Frozen):
    """The durable on-disk outbox between edge and cloud (SQLite, WAL).

    ``path`` is relative to the gateway's data dir (``{gateway}`` is replaced by its id).
    Past ``max_bytes`` summaries are rolled up, then dropped (counted); records older than
    ``max_age`` are dropped (counted). ``fsync``: ``always`` (every append, survives power
    loss), ``batch`` (once per write batch), ``never`` (the OS decides).
    """

    path: EnvStr = "outbox-{gateway}.sqlite"
    max_bytes: ByteSize = 256_000_000
    max_age: PositiveDuration = 7 * 86_400_000
    fsync: Literal["always", "batch", "never"] = "batch"


class Sasl(Frozen):
    """SASL credentials; ``password`` is a secret, best given as ``${ENV_VAR}``."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: EnvStr
    password: EnvSecretStr


class Security(Frozen):
    """How the forwarders connect to the cloud broker.

    ``SSL``/``SASL_SSL`` use ``ca_file`` (system CAs when omitted) and, for mutual TLS,
    ``cert_file`` + ``key_file``; ``SASL_*`` need ``sasl``. Paths are relative to the
    topology file.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ca_file: EnvPath | None = None
    cert_file: EnvPath | None = None
    key_file: EnvPath | None = None
    sasl: Sasl | None = None


class Forwarding(Frozen):
    """Forwarding of alerts and window summaries to the cloud broker.

    ``bootstrap`` omitted: the embedded stack's cloud broker. ``priorities`` is the drain
    order (alerts first); ``rollup`` the coarser window sizes summaries are rolled up into when
    the outbox is over budget; ``linger``/``batch_bytes`` tune the producer.
    """

    bootstrap: Bootstrap | None = None
    topics: ForwardTopics = ForwardTopics()
    outbox: Outbox = Outbox()
    priorities: tuple[Literal["alerts", "summaries"], ...] = ("alerts", "summaries")
    rollup: tuple[PositiveDuration, ...] = (10_000, 60_000, 600_000)
    compression: Literal["zstd", "lz4", "none"] = "zstd"
    linger: Duration = 50
    batch_bytes: ByteSize = 1_000_000
    security: Security = Field(default_factory=Security)
