"""The cloud link over TLS and SASL_SSL/SCRAM-SHA-512 on a real Kafka listener: the embedded
stack's cloud broker started with ``tls=True`` (a CA made for it, SSL and SASL_SSL listeners),
the forwarder's own link and producer settings (idempotent, zstd), and a consumer reading the
records back through the same listener."""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from edgestream.core.broker import add_scram_users
from edgestream.core.pki import make_pki
from edgestream.core.security import ClientSecurity
from edgestream.core.stack import Stack
from edgestream.forward.link import CloudLink, producer_settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def tls_cloud(tmp_path_factory: pytest.TempPathFactory):
    stack = Stack(tmp_path_factory.mktemp("tls-stack"))
    try:
        ends = stack.start(gateways=1, tls=True).endpoints()
        add_scram_users(str(ends["cloud"]), {"gateway-7": PASSWORD})
        yield ends["cloud_tls"]
    finally:
        stack.stop()


def _link(bootstrap: str, settings: dict, topic: str) -> CloudLink:
    return CloudLink(bootstrap, [topic], settings, producer_settings("zstd", 5, 100_000))


def _wait_up(link: CloudLink, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not link.ensure() and time.monotonic() < deadline:
        time.sleep(0.2)
    return link.up


def _round_trip(bootstrap: str, settings: dict, topic: str) -> None:
    """Produce through the forwarder's link and read back with a consumer: both verified."""
    link = _link(bootstrap, settings, topic)
    assert _wait_up(link), f"the link came up ({link.last_error})"
    delivered: list[bytes] = []

    def done(err, msg) -> None:
        assert err is None, err
        delivered.append(msg.value())

    sent = [f"record-{i}".encode() for i in range(20)]
    for i, value in enumerate(sent):
        link.produce(topic, f"device-{i % 4}".encode(), value, partial(done))
    deadline = time.monotonic() + 20
    while len(delivered) < len(sent) and time.monotonic() < deadline:
        link.poll(0.1)
    link.close()
    assert sorted(delivered) == sorted(sent)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tls-check", **settings,
                         "auto.offset.reset": "earliest", "log_level": 0})  # fmt: skip
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    got: list[bytes] = []
    while len(got) < len(sent) and time.monotonic() < deadline + 10:
        got += [m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    consumer.close()
    assert sorted(got) == sorted(sent)


def _sasl(ca: Path, password: str, user: str = "gateway-7") -> dict:
    security = ClientSecurity(protocol="SASL_SSL", ca_file=ca, sasl_mechanism="SCRAM-SHA-512",
                              sasl_username=user, sasl_password=SecretStr(password))  # fmt: skip
    return security.validate().client_config()


def test_ssl_with_our_ca_produces_and_consumes(tls_cloud) -> None:
    settings = ClientSecurity(protocol="SSL", ca_file=Path(tls_cloud["ca_file"]))
    _round_trip(tls_cloud["ssl"], settings.validate().client_config(), "fleet.tls")


def test_sasl_ssl_scram_with_the_right_user_produces_and_consumes(tls_cloud) -> None:
    _round_trip(tls_cloud["sasl_ssl"], _sasl(Path(tls_cloud["ca_file"]), PASSWORD), "fleet.sasl")


def test_the_stack_user_from_its_password_file_connects(tls_cloud) -> None:
    password = Path(tls_cloud["sasl_password_file"]).read_text().strip()
    assert oct(Path(tls_cloud["sasl_password_file"]).stat().st_mode & 0o777) == "0o600"
    settings = _sasl(Path(tls_cloud["ca_file"]), password, tls_cloud["sasl_username"])
    assert _wait_up(_link(tls_cloud["sasl_ssl"], settings, "fleet.stackuser"))


def test_a_broker_not_signed_by_our_ca_is_refused_with_one_line(tls_cloud, tmp_path, caplog):
    other = make_pki(tmp_path / "other", cn="another CA")
    settings = ClientSecurity(protocol="SSL", ca_file=other.ca).validate().client_config()
    link = _link(tls_cloud["ssl"], settings, "fleet.never")
    with caplog.at_level(logging.WARNING, logger="edgestream.forward"):
        assert not _wait_up(link, timeout=6)
    assert link.last_error and "\n" not in link.last_error
    assert link.last_error.startswith("TLS refused"), link.last_error
    assert "certificate verify failed" in link.last_error
    assert any("cloud link down: TLS refused" in r.getMessage() for r in caplog.records)


def test_a_wrong_password_is_refused_with_one_line_and_never_logged(tls_cloud, caplog) -> None:
    wrong = "not-the-password-42"
    settings = _sasl(Path(tls_cloud["ca_file"]), wrong)
    link = _link(tls_cloud["sasl_ssl"], settings, "fleet.never")
    with caplog.at_level(logging.DEBUG):
        assert not _wait_up(link, timeout=6)
        link.close()
    assert link.last_error and "\n" not in link.last_error
    assert link.last_error.startswith("authentication refused"), link.last_error
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "cloud link down: authentication refused" in logged
    assert wrong not in logged and PASSWORD not in logged
