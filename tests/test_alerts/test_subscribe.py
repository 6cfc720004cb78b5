"""Alert subscribers on a real embedded stack: live delivery once, resume after a restart,
filters, exact snapshot ends, the CLI, and decoding by a plain Confluent client."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentAvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from edgestream.alerts import AlertFilter, subscribe
from edgestream.core.broker import consumer_config
from edgestream.core.stack import StackStatus
from tests.support.alerts import Cloud
from tests.support.cli import cli_output

pytestmark = pytest.mark.integration


@pytest.fixture
def cloud(stack: StackStatus, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    cloud = Cloud(stack, f"alerts.{request.node.name[:40]}")
    yield cloud
    cloud.producer.flush(10)
    del cloud.producer


def _ids(alerts: list[Any]) -> list[str]:
    return [a.record["alert_id"] if hasattr(a, "record") else a["alert_id"] for a in alerts]


def _collect(subscription: Any, want: int, timeout: float = 60.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += subscription.poll(1.0)
    got += subscription.poll(2.0)  # nothing more should come
    return got


def test_live_subscriber_gets_each_alert_once_and_resumes_after_restart(cloud: Cloud) -> None:
    args = {"bootstrap": cloud.bootstrap, "registry": cloud.registry, "topic": cloud.topic,
            "group": "ops-1"}  # fmt: skip
    live = subscribe(**args)  # started before the incident
    try:
        assert live.poll(1.0) == []
        first = cloud.incident(12, 1_700_000_000_000)
        cloud.send(first[3:7])  # the forwarder re-sends after a lost ack: same seqs and ids
        cloud.producer.produce(cloud.topic, b"not avro", b"x")  # skipped and counted
        got = _collect(live, 12)
    finally:
        live.close()
    assert sorted(_ids(got)) == sorted(_ids(first))
    assert live.stats["duplicates"] == 4 and live.stats["undecodable"] == 1

    second = cloud.incident(5, 1_700_000_100_000)
    cloud.send(first[:2])  # a late replay of alerts printed before the restart
    restarted = subscribe(**args)
    try:
        resumed = _collect(restarted, 5)
    finally:
        restarted.close()
    assert sorted(_ids(resumed)) == sorted(_ids(second))  # no old alert printed again

    again = subscribe(**args, follow=False)
    with again:
        assert list(again) == []  # everything was committed


def test_snapshot_applies_filters_and_ends_exactly(cloud: Cloud) -> None:
    now = int(time.time() * 1000)
    records: list[dict[str, Any]] = []
    for size in (1, 1, 10, 5, 100):  # many batches: a short ListOffsets would stop early
        batch = cloud.incident(size, now - 3_600_000 + len(records) * 200_000)
        records += batch
    args = {"bootstrap": cloud.bootstrap, "registry": cloud.registry, "topic": cloud.topic,
            "group": None, "follow": False}  # fmt: skip
    with subscribe(**args) as everything:
        assert sorted(_ids(list(everything))) == sorted(_ids(records))

    cases = [
        {"site": "plant-a"},
        {"device": ["dev-1", "dev-2"]},
        {"min_severity": "warning"},
        {"min_severity": "critical", "site": "plant-b"},
        {"since": "30m"},
    ]
    for case in cases:
        expected = AlertFilter.build(**case)
        want = [r["alert_id"] for r in records if expected.matches(r)]
        assert 0 < len(want) < len(records), case
        with subscribe(**args, **case) as filtered:
            assert sorted(_ids(list(filtered))) == sorted(want), case


def test_async_iteration(cloud: Cloud) -> None:
    records = cloud.incident(6, 1_700_000_000_000)

    async def read() -> list[Any]:
        async with subscribe(bootstrap=cloud.bootstrap, registry=cloud.registry,
                             topic=cloud.topic, group=None, follow=False) as sub:  # fmt: skip
            return [a async for a in sub]

    assert sorted(_ids(asyncio.run(read()))) == sorted(_ids(records))


def test_cli_prints_json_lines_and_a_table_and_resumes(
    cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    records = cloud.incident(9, int(time.time() * 1000) - 60_000)
    base = ["alerts", "--bootstrap", cloud.bootstrap, "--registry", cloud.registry,
            "--group", "cli-test", "--topic", cloud.topic]  # fmt: skip

    def run(*extra: str) -> list[str]:
        code, lines, err = cli_output(capsys, *base, *extra)
        assert code == 0, err
        return lines

    got = [json.loads(line) for line in run("--format", "json", "--min-severity", "critical")]
    critical = [r["alert_id"] for r in records if r["severity"] == "critical"]
    assert sorted(_ids(got)) == sorted(critical)
    assert all(set(g) >= {"alert_id", "site", "device_id", "severity", "ts"} for g in got)
    assert run("--format", "json") == []  # the group committed past everything: nothing new
    table = run("--from-start", "--site", "plant-b")
    assert table[0].startswith("time (UTC)")
    assert len(table) - 1 == sum(r["site"] == "plant-b" for r in records)
    assert all(" plant-b " in row for row in table[1:])


def test_cli_bad_filter_is_one_line(cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = cli_output(capsys, "alerts", "--bootstrap", cloud.bootstrap, "--registry",
                          cloud.registry, "--min-severity", "loud")  # fmt: skip
    assert code == 1
    assert err.strip().splitlines() == [
        "error: --min-severity 'loud': expected one of info, warning, critical"
    ]


def test_alerts_decode_with_a_plain_confluent_client(cloud: Cloud) -> None:
    records = cloud.incident(4, 1_700_000_000_000)
    consumer = Consumer(consumer_config(cloud.bootstrap, "plain-confluent"))
    consumer.subscribe([cloud.topic])
    decode = ConfluentAvroDeserializer(SchemaRegistryClient({"url": cloud.registry}))
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(records) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            ctx = SerializationContext(cloud.topic, MessageField.VALUE)
            got.append(decode(msg.value(), ctx))
    finally:
        consumer.close()
    assert sorted(_ids(got)) == sorted(_ids(records))
    by_id = {g["alert_id"]: g for g in got}
    for record in records:
        decoded = by_id[record["alert_id"]]
        assert decoded["ts"].timestamp() * 1000 == record["ts"]  # timestamp-millis logical type
        assert decoded["severity"] == record["severity"]
        assert decoded["gateway_seq"] == record["gateway_seq"]


def test_subscriber_thread_stops_on_close(cloud: Cloud) -> None:
    sub = subscribe(bootstrap=cloud.bootstrap, registry=cloud.registry, topic=cloud.topic,
                    group=None)  # fmt: skip
    seen: list[Any] = []

    def read() -> None:  # polls until both arrived: no single poll must return both
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.extend(sub.poll(1.0))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    records = cloud.incident(2, 1_700_000_000_000)
    thread.join(90)
    assert not thread.is_alive()
    sub.close()
    assert sorted(a.alert_id for a in seen) == sorted(_ids(records))
