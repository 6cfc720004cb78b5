"""The cloud link over TLS: a generated CA, a Tansu broker reachable only over TLS, the
forwarder's own producer (idempotent, zstd) and a consumer verifying the broker against the CA.
See :mod:`tests.test_forward.tlskit` for why Tansu 0.6 needs a TLS terminator in front."""

from __future__ import annotations

import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from edgestream.core.broker import tansu_binary
from edgestream.forward.link import CloudLink, producer_settings
from edgestream.forward.security import ClientSecurity
from tests.test_forward.tlskit import make_pki, tls_broker

pytestmark = pytest.mark.integration


def test_tansu_06_tls_options(tmp_path: Path) -> None:
    """Documents the broker: the shipped Tansu refuses --cert together with --key."""
    pki = make_pki(tmp_path)
    argv = [tansu_binary(), "broker", "--listener-url", "tcp://127.0.0.1:1"]
    try:
        out = subprocess.run(
            [*argv, "--cert", str(pki.cert), "--key", str(pki.key)],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("this Tansu accepts --cert with --key: tls_broker uses its own TLS")
    assert "cannot be used with" in out.stderr


def test_forwarder_link_produces_and_consumes_over_tls(tmp_path: Path) -> None:
    with tls_broker(tmp_path) as broker:
        settings = ClientSecurity(protocol="SSL", ca_file=broker.pki.ca).validate().client_config()
        link = CloudLink(
            broker.bootstrap, ["fleet.tls"], settings, producer_settings("zstd", 5, 100_000)
        )
        deadline = time.monotonic() + 20
        while not link.ensure() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert link.up, "the link came up over TLS (and created the topic)"
        delivered: list[bytes] = []

        def done(err, msg) -> None:
            assert err is None, err
            delivered.append(msg.value())

        sent = [f"record-{i}".encode() for i in range(20)]
        for i, value in enumerate(sent):
            link.produce("fleet.tls", f"device-{i % 4}".encode(), value, partial(done))
        while len(delivered) < len(sent) and time.monotonic() < deadline:
            link.poll(0.1)
        assert sorted(delivered) == sorted(sent)
        assert link.take_wire_bytes() >= 0
        link.close()

        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "tls-check", **settings,
             "auto.offset.reset": "earliest", "log_level": 0}
        )  # fmt: skip
        parts = consumer.list_topics("fleet.tls", timeout=10).topics["fleet.tls"].partitions
        consumer.assign([TopicPartition("fleet.tls", p, 0) for p in parts])
        got: list[bytes] = []
        while len(got) < len(sent) and time.monotonic() < deadline + 10:
            got += [m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        consumer.close()
        assert sorted(got) == sorted(sent), f"read back over TLS ({broker.mode})"


def test_a_broker_not_signed_by_our_ca_is_refused(tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", cn="another CA")
    with tls_broker(tmp_path / "broker") as broker:
        settings = ClientSecurity(protocol="SSL", ca_file=other.ca).validate().client_config()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, **settings, "log_level": 0})
        with pytest.raises(Exception, match=r"(?i)transport|ssl|timed out"):
            admin.list_topics(timeout=3)
        link = CloudLink(broker.bootstrap, ["t"], settings, producer_settings("lz4", 5, 100_000))
        assert not link.ensure()
