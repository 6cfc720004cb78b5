"""The one launcher of the embedded Kafka brokers, plus a real readiness probe and client settings.

An embedded broker is **Apache Kafka** (KRaft, one JVM that is broker and controller at once),
its jars resolved from Maven Central by :mod:`edgestream.core.jars` from the checked-in
``kafka-broker.pom.xml``. Everything of one broker lives in its own folder: ``server.properties``,
the log4j configuration and ``data/`` (the log dirs), so topics and records survive a restart.
The folder is formatted (``kafka-storage format``) the first time the broker starts.

Listeners: ``PLAINTEXT`` on ``host:port`` always (clients, and the broker's own traffic);
``CONTROLLER`` on ``controller_port``; optionally ``SSL`` and ``SASL_SSL`` (SCRAM-SHA-512) on
their own ports with a PEM key and certificate (:class:`TlsListeners`).

Readiness is a real Kafka ``Metadata`` request answered by the broker (no client library
threads, no log noise), see :func:`probe_metadata`.

>>> spec = BrokerSpec("gw-1", 9092, 9093, Path("/tmp/x"))
>>> props = spec.properties()
>>> props["listeners"], props["process.roles"]
('PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093', 'broker,controller')
>>> len(spec.cluster_id)
22
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core import jars
from edgestream.core.exceptions import ServiceUnavailable

__all__ = [
    "BrokerSpec",
    "TlsListeners",
    "broker_ready",
    "consumer_config",
    "ensure_topics",
    "probe_metadata",
    "producer_config",
    "wait_broker",
]

#: heap of an embedded broker in MB (``EDGESTREAM_BROKER_HEAP_MB`` overrides)
HEAP_MB = 256

_LOG4J = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


@dataclass(frozen=True)
class TlsListeners:
    """Extra listeners of a broker: ``SSL`` on ``ssl_port`` and ``SASL_SSL`` (SCRAM-SHA-512)
    on ``sasl_port``, both serving ``pem`` (the broker's private key and certificate chain,
    PEM, unencrypted key). SCRAM users are created after start (:func:`add_scram_users`),
    never on a command line."""

    ssl_port: int
    sasl_port: int
    pem: Path


@dataclass(frozen=True)
class BrokerSpec:
    """How to start one embedded Kafka broker: a name, its ports and its folder."""

    name: str
    port: int
    controller_port: int
    home: Path
    host: str = "127.0.0.1"
    tls: TlsListeners | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def cluster_id(self) -> str:
        """A stable KRaft cluster id for this broker's folder (22 characters, base64 UUID)."""
        salt = 0
        while True:  # Kafka's own ids never start with "-" (it would read as an option)
            seed = f"edgestream|{self.name}|{self.home}|{salt}".encode()
            raw = hashlib.sha256(seed).digest()[:16]
            text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            if not text.startswith("-"):
                return text
            salt += 1

    def properties(self) -> dict[str, str]:
        """``server.properties`` of a dev-sized single-node broker."""
        listeners = [f"PLAINTEXT://{self.host}:{self.port}"]
        controller = f"CONTROLLER://{self.host}:{self.controller_port}"
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        tls: dict[str, str] = {}
        if self.tls:
            listeners += [f"SSL://{self.host}:{self.tls.ssl_port}",
                          f"SASL_SSL://{self.host}:{self.tls.sasl_port}"]  # fmt: skip
            protocols += ["SSL:SSL", "SASL_SSL:SASL_SSL"]
            tls.update({
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.pem),
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            })  # fmt: skip
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": ",".join([listeners[0], controller, *listeners[1:]]),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.home / "data"),
            # one node: every internal topic has one replica
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # topics are created by whoever owns them, with their partitions and retention
            # (the worker: the topology's): a client's metadata request never creates one
            "auto.create.topics.enable": "false",
            # dev-sized: few threads, a small cleaner buffer (the default takes 128 MB of heap)
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            # segments small enough for retention to delete whole ones on an edge device
            "log.segment.bytes": str(32 * 1024 * 1024),
            "log.retention.check.interval.ms": "30000",
            **tls,
            **self.extra,
        }

    def write_config(self) -> Path:
        """Write ``server.properties`` and the log4j config into :attr:`home`; returns the
        properties file."""
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "server.properties"
        text = "".join(f"{k}={v}\n" for k, v in self.properties().items())
        path.write_text("# written by edgestream on every start: edit BrokerSpec instead\n" + text)
        (self.home / "log4j2.properties").write_text(_LOG4J)
        return path

    def command(self, java: str = "java") -> list[str]:
        """The argv that formats the folder (first start only) and runs the broker.

        One ``sh -c`` line, so the pid recorded is the broker's (``exec``)."""
        props = self.write_config()
        cp = jars.classpath(jars.kafka_home())
        heap = int(os.environ.get("EDGESTREAM_BROKER_HEAP_MB", HEAP_MB))
        jvm = [java, f"-Xmx{heap}m", f"-Xms{min(heap, 64)}m", "-XX:+UseSerialGC",
               "-XX:MaxMetaspaceSize=128m", "-XX:ReservedCodeCacheSize=64m", "-Xss512k",
               "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.home / 'logs'}", "-cp", cp]  # fmt: skip
        fmt = [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
               "-t", self.cluster_id, "-c", str(props)]  # fmt: skip
        run = [*jvm, "kafka.Kafka", str(props)]
        line = f"{shlex.join(fmt)} >/dev/null && exec {shlex.join(run)}"
        return ["sh", "-c", line]


def add_scram_users(bootstrap: str, users: dict[str, str], timeout: float = 20.0) -> None:
    """Create (or update) SCRAM-SHA-512 users on the broker at ``bootstrap`` (its PLAINTEXT
    listener). Passwords travel in the request only: never on a command line or in a log."""
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism
    from confluent_kafka.admin import UserScramCredentialUpsertion as Upsert

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    changes = [Upsert(user, info, password.encode()) for user, password in users.items()]
    for future in admin.alter_user_scram_credentials(changes).values():
        future.result(timeout)


def _kafka_string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if length < 0:
        return "", pos
    return buf[pos : pos + length].decode(), pos + length


def probe_metadata(host: str, port: int, timeout: float = 1.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v4 request (the oldest Kafka 4 serves) and return the brokers it
    lists as (id, host, port).

    Raises :class:`OSError` when nothing answers or the answer is not Kafka.
    """
    correlation_id = 7
    body = struct.pack(">hhi", 3, 4, correlation_id) + _kafka_string("edgestream-probe")
    body += struct.pack(">ib", -1, 0)  # topics: null (no topic details needed), no auto-create
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", header)
        if not 0 < size < 64 * 1024 * 1024:
            raise OSError(f"not a Kafka response (size {size})")
        payload = _recv_exact(sock, size)
    (got_id, _throttle, n_brokers) = struct.unpack_from(">iii", payload, 0)
    if got_id != correlation_id:
        raise OSError("Kafka response correlation id mismatch")
    pos = 12
    brokers = []
    for _ in range(n_brokers):
        (node_id,) = struct.unpack_from(">i", payload, pos)
        broker_host, pos = _read_string(payload, pos + 4)
        (broker_port,) = struct.unpack_from(">i", payload, pos)
        _rack, pos = _read_string(payload, pos + 4)
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise OSError("connection closed by the broker")
        chunks += chunk
    return bytes(chunks)


def broker_ready(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when the broker at ``host:port`` answers a Metadata request listing a broker."""
    host, _, port = bootstrap.rpartition(":")
    try:
        return bool(probe_metadata(host, int(port), timeout))
    except (OSError, struct.error):
        return False


def wait_broker(bootstrap: str, timeout: float = 20.0) -> None:
    """Block until the broker answers, or raise a one-line :class:`ServiceUnavailable`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_ready(bootstrap, timeout=1.0):
            return
        time.sleep(0.1)
    raise ServiceUnavailable(
        f"no Kafka broker answers at {bootstrap}: start the embedded stack with "
        "`edgestream stack start` or pass --bootstrap HOST:PORT of a running broker"
    )


def consumer_config(bootstrap: str, group: str, **overrides: object) -> dict[str, object]:
    """confluent-kafka consumer settings of edgestream's own consumers.

    The classic group protocol works with every Kafka a user may bring (MSK, Confluent,
    Redpanda, older Apache Kafka); a 6 s session timeout lets a restarted member's partitions
    move on quickly. Reading starts at the earliest record of a new group.

    >>> consumer_config("127.0.0.1:9092", "g")["group.protocol"]
    'classic'
    """
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "classic",
        "session.timeout.ms": 6000,
        "auto.offset.reset": "earliest",
        "log_level": 3,
    }
    conf.update(overrides)
    return conf


def producer_config(bootstrap: str, **overrides: object) -> dict[str, object]:
    """confluent-kafka producer settings: idempotent, batched, lz4-compressed."""
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.size": 512 * 1024,
        "compression.type": "lz4",
        "log_level": 3,
    }
    conf.update(overrides)
    return conf


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    configs: dict[str, str] | None = None,
    timeout: float = 15.0,
    topic_configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics (name -> partitions); returns the names it created.

    ``configs`` apply to every topic created, ``topic_configs`` (name -> configs) to one.
    Idempotent: existing topics are left as they are.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wait_broker(bootstrap, timeout)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [
        NewTopic(
            name,
            num_partitions=parts,
            replication_factor=1,
            config={**(configs or {}), **(topic_configs or {}).get(name, {})},
        )
        for name, parts in topics.items()
        if name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
