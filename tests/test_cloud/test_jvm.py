"""The Java Flink functions (:mod:`edgestream.cloud.jvm`): built with Maven, run
on a real MiniCluster over a real broker and registry, checked value by value against
the Python decoder (fastavro) on the same records."""

from __future__ import annotations

import json
import math
import random
import zipfile
from pathlib import Path

import pytest

from edgestream.cloud import jvm
from edgestream.core.exceptions import SerdeError
from edgestream.core.serde import AvroDeserializer, AvroSerializer
from edgestream.testing.fleet_records import fleet_summaries
from edgestream.wire.forms import complete_summary, expand_double, wire_summary

HISTORY = Path(__file__).parents[2] / "schemas" / "history" / "WindowSummary"


def test_the_jar_is_built_once_per_source_content(tmp_path):
    jar = jvm.udf_jar(tmp_path)
    names = zipfile.ZipFile(jar).namelist()
    assert "io/edgestream/flink/DecodeSummary.class" in names
    assert "io/edgestream/flink/AvroInput.class" in names
    mtime = jar.stat().st_mtime_ns
    assert jvm.udf_jar(tmp_path) == jar and jar.stat().st_mtime_ns == mtime


def test_no_jdk_is_a_one_line_message(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(jvm.JvmBuildError, match=r"javac not found: .*openjdk-17-jdk-headless"):
        jvm.udf_jar(tmp_path / "cache")


_SCALARS = ("summary_id", "gateway_id", "gateway_seq", "scope", "scope_key", "site",
            "device_type", "window_start", "window_end", "count", "max_score", "first_ts",
            "last_ts", "model_version")  # fmt: skip
_CHANNEL_DOUBLES = (("sums", "sum"), ("m2", "m2"), ("mins", "min"), ("maxs", "max"))


def _expected(record: dict) -> dict:
    """What decode_summary must give for a decoded record (doubles expanded)."""
    channels = record["channels"].values()
    want = {"error": None, **{k: record.get(k) for k in _SCALARS}}
    for name in ("anomaly_count", "late_count", "rollup_level"):  # defaulted fields
        want[name] = record.get(name, 0)
    want["channel_names"] = list(record["channels"])
    want["channel_counts"] = [c["count"] for c in channels]
    for out, k in _CHANNEL_DOUBLES:
        want[f"channel_{out}"] = [expand_double(c[k]) for c in channels]
    return want


def _same(got, want) -> bool:
    """Equal, floats bit for bit (NaN-safe), lists element-wise."""
    if isinstance(want, float):
        return isinstance(got, float) and (got == want or (math.isnan(got) and math.isnan(want)))
    if isinstance(want, list):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    return got == want


@pytest.mark.integration
@pytest.mark.slow
def test_decode_summary_equals_the_python_decoder(stack):
    from confluent_kafka import Producer

    from edgestream.cloud.flink import flink_env, kafka_table_ddl
    from edgestream.core.broker import ensure_topics

    endpoints = stack.endpoints()
    cloud, registry = str(endpoints["cloud"]), str(endpoints["registry"])
    topic = "jvm.summaries"
    ensure_topics(cloud, {topic: 2})
    records = fleet_summaries(devices=4, windows=6, seed=3)
    devices = [r for r in records if r["channels"]][:6]
    for i, r in enumerate(devices):  # sums and minima of decimal readings
        first = next(iter(r["channels"].values()))
        first["sum"] = 0.1 * (i + 1) + 0.2  # a few ulps off a short decimal: NearDecimal
        first["min"] = 43.992 - i  # a short decimal: Decimal
    current = AvroSerializer(registry, "WindowSummary", "jvm-test-v3-value")
    v1 = AvroSerializer(registry, json.loads((HISTORY / "1.avsc").read_text()), "jvm-test-v1")
    values = [current(r) for r in records]  # v3, plain doubles
    values += [current(wire_summary(r)) for r in records]  # Decimal / NearDecimal forms
    old = []
    for r in records[:8]:  # v1: every derived value present, no v2 fields' defaults needed
        full = complete_summary(r)
        full["channels"] = {n: {**c, "last": c["max"]} for n, c in full["channels"].items()}
        old.append(v1(full))
    values += old
    reading = {"device_id": "p1", "device_type": "pump", "site": "s1", "ts": 1, "seq": 1,
               "channels": {"t": 1.0}, "tags": {}}  # fmt: skip
    bad = {
        b"": "empty",
        b"\x07not even a header": "bad_magic",
        b"\x00\x00\x01": "truncated_header",
        b"\x00\x7f\xff\xff\x00\x02\x04": "unknown_schema_id",
        values[0][:40]: "decode",  # the body ends early
        values[0] + b"\x00": "decode",  # a trailing byte
        AvroSerializer(registry, "SensorReading", "jvm-test-reading")(reading): "invalid_record",
    }
    # random bodies behind a WindowSummary header, and good ones with random bytes flipped:
    # where fastavro fails, Java fails for the same reason; where fastavro decodes, Java
    # decodes the same record or (stricter, per the Avro spec: fastavro takes a varint of
    # over 10 bytes) calls it corrupt
    rng = random.Random(11)
    decodable: list[bytes] = []
    fuzz = [values[0][:5] + rng.randbytes(rng.randrange(1, 400)) for _ in range(40)]
    for _ in range(40):
        flipped = bytearray(rng.choice(values))
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(5, len(flipped))] = rng.randrange(256)
        fuzz.append(bytes(flipped))
    python = AvroDeserializer(registry)
    for value in fuzz:
        try:
            python(value)
        except SerdeError as error:
            bad[value] = error.reason
        else:
            decodable.append(value)
    assert sum(r == "decode" for r in bad.values()) > 40
    # zstd batches, as the forwarder writes them: the connector's shaded kafka-clients reads
    # them only with zstd-jni beside it (flink-connectors.pom.xml)
    producer = Producer({"bootstrap.servers": cloud, "log_level": 2, "compression.type": "zstd"})
    at: dict[tuple[int, int], bytes] = {}
    ends: dict[int, int] = {}

    def delivered(err, msg) -> None:
        assert err is None, err
        at[(msg.partition(), msg.offset())] = msg.value() or b""
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    produced = [*values, *bad, *decodable]
    for i, value in enumerate(produced):
        producer.produce(topic, value, partition=i % 2, on_delivery=delivered)
    producer.flush(30)
    assert len(at) == len(produced)

    _env, tenv = flink_env()
    jvm.register_functions(tenv)
    tenv.execute_sql(kafka_table_ddl("src", topic, cloud, ends=ends))
    fields = jvm.SUMMARY_FIELDS
    assert fields[:3] == ["error", "summary_id", "gateway_id"] and len(fields) == 24
    # top-level columns: PyFlink's collect() cannot read a null inside a nested row
    columns = ", ".join(f"d.`{f}`" for f in fields)
    result = tenv.execute_sql(
        f"SELECT p, o, {columns} FROM (SELECT `partition` AS p, `offset` AS o, "
        f"decode_summary(v, {jvm.sql_string(registry)}) AS d FROM src)"
    )
    with result.collect() as rows:
        got = {(r[0], r[1]): list(r)[2:] for r in rows}
    assert set(got) == set(at)

    checked = stricter = failed = 0
    for position, value in at.items():
        row = dict(zip(fields, got[position], strict=True))
        if value in bad:
            reason = (row["error"] or "(decoded)").split(":", 1)[0]
            assert reason == bad[value], (position, row["error"], bad[value])
            assert all(row[f] is None for f in fields if f != "error")
            failed += 1
            continue
        if value in decodable and value not in values and row["error"] is not None:
            assert row["error"].startswith("decode: corrupt Avro body"), row["error"]
            stricter += 1
            continue
        want = _expected(python(value))
        assert row["error"] is None, (position, row["error"], value)
        wrong = {k: (row[k], w) for k, w in want.items() if not _same(row[k], w)}
        assert not wrong, (position, wrong)
        checked += 1
    assert (checked, stricter, failed) == (len(at) - stricter - len(bad), stricter, len(bad))
    assert checked >= len(values) and stricter < len(decodable)
    wire = [c for r in devices for c in wire_summary(r)["channels"].values()]
    assert any("ulps" in c["sum"] for c in wire if isinstance(c["sum"], dict))
    assert any(isinstance(c["min"], dict) for c in wire)


@pytest.mark.integration
@pytest.mark.slow
def test_an_unreachable_registry_fails_the_query_with_what_to_start(stack):
    """A bad record never fails a job; a registry that cannot be asked does (a missing
    service), saying where it looked and what to start."""
    import socket

    from confluent_kafka import Producer

    from edgestream.cloud.flink import flink_env, kafka_table_ddl
    from edgestream.core.broker import ensure_topics

    cloud = str(stack.endpoints()["cloud"])
    topic = "jvm.noregistry"
    ensure_topics(cloud, {topic: 1})
    producer = Producer({"bootstrap.servers": cloud, "log_level": 2})
    producer.produce(topic, b"\x00\x00\x00\x00\x01\x02", partition=0)  # a header, schema id 1
    producer.flush(30)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    _env, tenv = flink_env()
    jvm.register_functions(tenv)
    tenv.execute_sql(kafka_table_ddl("src", topic, cloud, ends={0: 1}))
    result = tenv.execute_sql(
        f"SELECT decode_summary(v, {jvm.sql_string(closed)}).`error` FROM src"
    )
    with pytest.raises(Exception) as failure, result.collect() as rows:
        list(rows)
    message = str(failure.value)
    assert f"schema registry unreachable at {closed}" in message
    assert "start it: edgestream up" in message
