"""The embedded stack against real Apache Kafka brokers and the real registry process."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from edgestream.core import jars
from edgestream.core.broker import broker_ready, ensure_topics, probe_metadata
from edgestream.core.exceptions import PortInUse
from edgestream.core.ports import free_port, port_in_use
from edgestream.core.stack import Stack
from tests.support.doctests import run_doctests
from tests.support.procs import pids_of

pytestmark = pytest.mark.integration


def _ports(status) -> list[int]:
    return [c.port for c in status.components.values()]


def test_start_status_stop_five_times_leaves_nothing_behind(tmp_path):
    stack = Stack(tmp_path)
    before = pids_of(str(tmp_path))
    for _ in range(5):
        status = stack.start(gateways=2)
        assert status.running
        endpoints = status.endpoints()
        assert sorted(endpoints["edge"]) == ["gw-1", "gw-2"]
        for address in [*endpoints["edge"].values(), endpoints["cloud"]]:
            host, port = address.split(":")
            # a real Metadata request answered by the broker we started, advertising itself
            assert probe_metadata(host, int(port))[0][1:] == (host, int(port))
        ports = _ports(status)
        pids = [c.pid for c in status.components.values()]
        stack.stop()
        assert not stack.status().components
        assert all(not port_in_use(p) for p in ports), "a port is still in use after stop"
        for pid in pids:
            with pytest.raises(FileNotFoundError):
                open(f"/proc/{pid}/cmdline").close()
    assert pids_of(str(tmp_path)) == before


def test_start_is_idempotent_and_restarts_only_what_died(tmp_path):
    stack = Stack(tmp_path)
    try:
        first = stack.start(gateways=1)
        again = stack.start()
        assert {n: c.pid for n, c in again.components.items()} == {
            n: c.pid for n, c in first.components.items()
        }
        stack.stop(only=["cloud"])
        down = stack.status()
        assert not down.health["cloud"] and down.health["gw-1"] and not down.running
        assert not broker_ready(first.endpoints()["cloud"])
        back = stack.start()
        assert back.running
        assert back.endpoints() == first.endpoints(), "a restarted component keeps its port"
        assert back.components["cloud"].pid != first.components["cloud"].pid
        assert back.components["gw-1"].pid == first.components["gw-1"].pid
    finally:
        stack.stop()


def test_port_in_use_is_a_one_line_error_and_starts_nothing(tmp_path):
    for _ in range(50):  # a base whose next port we can hold (other processes use ports too)
        base = free_port()
        holder = socket.socket()
        try:
            holder.bind(("127.0.0.1", base + 1))  # the cloud broker's port with one gateway
        except OSError:
            holder.close()
            continue
        if not port_in_use(base):
            break
        holder.close()
    holder.listen()
    try:
        with pytest.raises(PortInUse) as err:
            Stack(tmp_path).start(gateways=1, port_base=base)
        message = str(err.value)
        assert "\n" not in message and f"port {base + 1}" in message and "--port-base" in message
        assert not pids_of(f"127.0.0.1:{base}"), "the broker started before the error still runs"
        assert not port_in_use(base)
        assert Stack(tmp_path).status().components == {}
    finally:
        holder.close()


def test_missing_maven_is_a_one_line_error_saying_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(jars.ENV_CACHE, str(tmp_path / "empty-jar-cache"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(jars.MavenNotFound) as err:
        Stack(tmp_path).start(gateways=1)
    message = str(err.value)
    assert "\n" not in message and "mvn" in message and "dev.sh setup" in message
    assert Stack(tmp_path).status().components == {}


def test_records_and_topics_survive_a_broker_restart(tmp_path):
    stack = Stack(tmp_path)
    try:
        bootstrap = str(stack.start(gateways=1).endpoints()["edge"]["gw-1"])
        retention = {"retention.ms": "7200000", "retention.bytes": "5000000"}
        ensure_topics(bootstrap, {"kept": 2}, topic_configs={"kept": retention})
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        sent = [f"r{i}".encode() for i in range(1000)]
        for value in sent:
            producer.produce("kept", value)
        assert producer.flush(30) == 0
        stack.stop(only=["gw-1"])
        assert not broker_ready(bootstrap)
        assert stack.start().running
        assert sorted(_read_all(bootstrap, "kept", len(sent))) == sorted(sent)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        described = admin.describe_configs([ConfigResource("topic", "kept")])
        entries = next(iter(described.values())).result(10)
        assert {k: entries[k].value for k in retention} == retention, "the topic's retention"
    finally:
        stack.stop(purge=True)
    assert not (tmp_path / "gw-1").exists(), "purge deletes the broker's folder"


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.time_ns()}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
    finally:
        consumer.close()
    return got


def test_a_default_confluent_consumer_gets_its_first_record_within_10s(tmp_path):
    """A data engineer's client, default settings (latest offset, default group protocol and
    timeouts) and a fresh group id: the first record produced after it subscribed arrives
    within 10 s of subscribing."""
    stack = Stack(tmp_path)
    try:
        bootstrap = str(stack.start(gateways=1).endpoints()["edge"]["gw-1"])
        ensure_topics(bootstrap, {"fresh": 1})  # brokers do not auto-create topics
        producer = Producer({"bootstrap.servers": bootstrap})
        delivered: list = []
        producer.produce("fresh", b"warm-up", on_delivery=lambda e, m: delivered.append(e))
        assert producer.flush(30) == 0 and delivered == [None], delivered
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "a-fresh-group"})
        stop = threading.Event()

        def keep_producing() -> None:
            while not stop.wait(0.2):
                producer.produce("fresh", b"live")
                producer.poll(0)

        feeder = threading.Thread(target=keep_producing, daemon=True)
        started = time.monotonic()
        consumer.subscribe(["fresh"])
        feeder.start()
        first = None
        try:
            while first is None and time.monotonic() - started < 30:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    first = time.monotonic() - started
        finally:
            stop.set()
            feeder.join()
            consumer.close()
        assert first is not None and first <= 10.0, f"first record after {first} s"
    finally:
        stack.stop()


def _cli(*args: str, env_home) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgestream.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EDGESTREAM_HOME": str(env_home)},
    )


def test_cli_start_detach_status_json_stop(tmp_path):
    started = _cli("stack", "start", "--gateways", "2", "--detach", env_home=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        status = _cli("stack", "status", "--json", env_home=tmp_path)
        assert status.returncode == 0
        endpoints = json.loads(status.stdout.strip().splitlines()[-1])
        assert set(endpoints) == {"edge", "cloud", "registry", "processes"}
        processes = endpoints["processes"]
        assert set(processes) == {"gw-1", "gw-2", "cloud", "registry"}
        for figures in processes.values():  # each broker's memory and start time, for real
            assert figures["rss_mb"] > 10 and 0 < figures["start_s"] < 120
        assert sorted(endpoints["edge"]) == ["gw-1", "gw-2"]
        assert endpoints["registry"].startswith("http://127.0.0.1:")
        assert all(broker_ready(a) for a in [*endpoints["edge"].values(), endpoints["cloud"]])
    finally:
        stopped = _cli("stack", "stop", env_home=tmp_path)
    assert stopped.returncode == 0
    after = _cli("stack", "status", "--json", env_home=tmp_path)
    assert after.returncode == 1
    assert not pids_of(str(tmp_path / "stack"))


def test_cli_error_is_one_line(tmp_path):
    result = _cli("stack", "stop", "--only", "nope", env_home=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no stack component named nope" in lines[0]


@pytest.mark.parametrize("name", ["broker", "jars", "pki"])
def test_docstring_examples_run(name: str) -> None:
    run_doctests(importlib.import_module(f"edgestream.core.{name}"))
