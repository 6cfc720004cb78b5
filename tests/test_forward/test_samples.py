"""The sampled-readings channel (edge.samples -> fleet.samples) and the wire form of
WindowSummary v2 (derived channel values null on the cloud wire, filled back by
complete_summary; the summary_id travels)."""

from __future__ import annotations

import json
import threading
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer
from fastavro import schemaless_reader, schemaless_writer

from edgestream.core.avro_schema import fastavro_schema
from edgestream.core.broker import ensure_topics, producer_config
from edgestream.core.paths import schemas_dir
from edgestream.core.registry import RegistryServer
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.topology import load_topology
from edgestream.core.topology.errors import TopologyError
from edgestream.edge.pipeline import TopicPipeline
from edgestream.forward.budget import enforce_budget, write_report
from edgestream.forward.config import ForwarderConfig
from edgestream.forward.forwarder import Forwarder
from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig, outbox_path
from edgestream.forward.records import Entry
from edgestream.wire.codec import BodyCodec
from edgestream.wire.dedup import DedupReader
from edgestream.wire.forms import compact_double, complete_summary, expand_double, wire_summary
from tests.support.gateway import read_topic, write_topology
from tests.support.records import random_windows, summary

TUMBLING = frozenset({10_000})


def _reading(device: str, seq: int, ts: int, pressure: float = 3.0) -> dict:
    channels = {"vibration_rms": 1.5, "bearing_temp": 40.0, "pressure": pressure,
                "motor_current": 12.25}  # fmt: skip
    return {"device_id": device, "site": "site-1", "device_type": "pump", "ts": ts,
            "seq": seq, "channels": channels, "tags": {}}  # fmt: skip


def test_samples_every_is_validated_with_its_key_path(tmp_path: Path) -> None:
    path = write_topology(tmp_path / "t.yaml", forwarding={"samples": {"every": 0}})
    with pytest.raises(TopologyError, match=r"forwarding\.samples\.every"):
        load_topology(path)
    path = write_topology(tmp_path / "t.yaml", forwarding={"summaries": {"windows": ["1m"]}})
    with pytest.raises(TopologyError, match=r"forwarding\.summaries\.windows"):
        load_topology(path)
    topo = load_topology(write_topology(tmp_path / "t.yaml"))
    assert (topo.forwarding.samples.enabled, topo.forwarding.samples.every) == (True, 500)


def test_pipeline_samples_valid_readings_with_seq_multiple_of_every(tmp_path: Path) -> None:
    path = write_topology(tmp_path / "t.yaml", forwarding={"samples": {"every": 3}})
    topology = load_topology(path)
    now = int(time.time() * 1000)
    readings = [_reading(f"pump-{d}", s, now - 5_000 + 100 * s) for s in range(10) for d in (1, 2)]
    readings[6]["channels"]["pressure"] = 99.0  # pump-1 seq 3: out of range, never sampled
    readings.append(_reading("pump-3", -1, now - 4_000))  # not numbered: never sampled
    with RegistryServer(tmp_path / "r.db") as registry:
        ser = AvroSerializer(registry.url, "SensorReading", "sensors.pump-value")
        pipeline = TopicPipeline(
            topology, "gw-test", topology.sensors.topics[0], tmp_path / "state",
            AvroDeserializer(registry.url, reader_schema="SensorReading"), None, sync=False,
        )  # fmt: skip
        try:
            values = [ser(r) for r in readings]
            out = pipeline.process(0, list(range(len(values))), values, now)
            again = pipeline.process(0, list(range(len(values))), values, now)
        finally:
            pipeline.close()
    assert [r.reason for r in out.rejected] == ["out_of_range"]
    expected = [(r["device_id"], r["seq"]) for i, r in enumerate(readings)
                if i != 6 and r["seq"] >= 0 and r["seq"] % 3 == 0]  # fmt: skip
    assert [(s["device_id"], s["seq"]) for s in out.samples] == expected
    first = out.samples[0]
    assert first["channels"] == readings[0]["channels"] and first["ts"] == readings[0]["ts"]
    assert first["tags"] == {"gateway_id": "gw-test", "model_version": "none"}
    assert again.samples == [], "a replayed batch emits no second copy"


def test_wire_form_is_smaller_and_completes_exactly_and_v1_data_still_reads() -> None:
    sums, raw = random_windows(np.random.default_rng(4), devices=2, windows=3)
    codec = BodyCodec()
    for s in sums:
        wire = wire_summary(s)
        body = codec.encode("summary", wire)
        assert len(body) < 0.75 * len(codec.encode("summary", s)), "mean, std, p50... left out"
        assert codec.decode("summary", body)["summary_id"] == s["summary_id"], "ids travel"
        back = complete_summary(codec.decode("summary", body))
        for name, c in s["channels"].items():
            got = back["channels"][name]
            for exact in ("count", "sum", "min", "max", "m2"):
                assert got[exact] == c[exact], "exact fields travel bit for bit"
            assert got["mean"] == pytest.approx(c["mean"], rel=1e-12, abs=1e-12)
            assert got["std"] == pytest.approx(c["std"], rel=1e-9, abs=1e-12)
            assert got["last"] is None and got["p50"] is None
    # v1 data (every field present, written with the released v1 schema) reads with v2
    v1 = fastavro_schema(json.loads((schemas_dir() / "history/WindowSummary/1.avsc").read_text()))
    v2 = fastavro_schema(json.loads((schemas_dir() / "window_summary.avsc").read_text()))
    out = BytesIO()
    schemaless_writer(out, v1, sums[0])
    old = schemaless_reader(BytesIO(out.getvalue()), v1, v2)
    assert complete_summary(old) == {**sums[0], "gateway_seq": None}
    values = np.concatenate(raw["pump-0"]["pressure"][:1])
    assert complete_summary(old)["channels"]["pressure"]["std"] == pytest.approx(np.std(values))


def test_samples_drain_last_and_are_dropped_first_counted_as_readings(tmp_path: Path) -> None:
    sums, _ = random_windows(np.random.default_rng(6), devices=2, windows=4)
    box = Outbox(OutboxConfig(tmp_path / "o.sqlite", tumbling_sizes=TUMBLING), "gw")
    samples = [Entry.sample(_reading(f"pump-{i % 2}", 500 * i, 1_000 * i)) for i in range(6)]
    box.put(samples[:3])
    box.put([Entry.summary(wire_summary(s), None, TUMBLING) for s in sums])
    box.put(samples[3:] + samples[:1])  # the replay of a sample is ignored
    assert box.stats().waiting == {"sample": 6, "summary": len(sums)}
    order = []
    while batch := box.take(5):
        box.mark_sent(batch)
        order += [p.kind for p in batch]
    assert order == ["summary"] * len(sums) + ["sample"] * 6, "samples drain after summaries"
    box.close()

    sample_bytes = 6 * (len(box.codec.encode("sample", samples[0].record)) + 12)
    box = Outbox(
        OutboxConfig(tmp_path / "o.sqlite", tumbling_sizes=TUMBLING,
                     max_bytes=box.bytes - sample_bytes // 2),
        "gw",
    )  # fmt: skip
    result = enforce_budget(box)
    assert result.dropped[("sample", "budget")] >= 3
    assert result.rollups == 0 and ("summary", "budget") not in result.dropped, (
        "dropping samples was enough: summaries untouched"
    )
    write_report(box)
    report = next(box.codec.decode(p.kind, p.body) for p in box.take(100) if p.kind == "report")
    assert report["dropped_readings"] == result.dropped[("sample", "budget")]
    assert report["dropped_summaries"] == 0
    box.close()


@pytest.mark.integration
def test_forwarder_sends_samples_last_keyed_by_device_and_summaries_in_wire_form(
    stack, tmp_path: Path
) -> None:
    ends = stack.endpoints()
    edge, cloud, registry = ends["edge"]["gw-1"], ends["cloud"], ends["registry"]
    forwarding = {
        "summaries": {"scopes": ["device"], "linger": "0ms"},
        "samples": {"linger": "200ms"},
    }
    path = write_topology(tmp_path / "t.yaml", "gw-s", forwarding=forwarding)
    topo = load_topology(path)
    sums, _ = random_windows(np.random.default_rng(8), devices=3, windows=4)
    sums = [{**s, "gateway_id": "gw-s", "summary_id": s["summary_id"].replace("gw|", "gw-s|")}
            for s in sums]  # fmt: skip
    site = summary("site-1", 0, {"pressure": np.arange(5.0)}, gateway="gw-s", scope="site")
    samples = [_reading(f"pump-{i % 3}", 500 * i, 1_000 * i) for i in range(9)]
    for s in samples:
        s["tags"] = {"gateway_id": "gw-s", "model_version": "v1"}
    ensure_topics(edge, {"edge.summaries": 1, "edge.samples": 1})
    producer = Producer(producer_config(edge))
    ser_s = AvroSerializer(registry, "WindowSummary", subject_for("edge.summaries"))
    ser_r = AvroSerializer(registry, "SensorReading", subject_for("edge.samples"))
    for s in samples:
        producer.produce("edge.samples", ser_r(s), s["device_id"].encode())
    for s in [*sums, site]:
        producer.produce("edge.summaries", ser_s(s), s["summary_id"].encode())
    assert producer.flush(20) == 0

    config = ForwarderConfig(topo, "gw-s", edge, cloud, registry, tmp_path, report_interval_s=0)
    stop = threading.Event()
    thread = threading.Thread(target=Forwarder(config).run, args=(stop,), daemon=True)
    thread.start()
    reader = DedupReader(cloud, ["fleet.summaries", "fleet.samples"], registry)
    got: list = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < len(sums) + len(samples) and time.monotonic() < deadline:
            got += reader.poll(0.3)
    finally:
        stop.set()
        thread.join(30)
        reader.close()
    decode = AvroDeserializer(registry)
    wire = [decode(m.value()) for m in read_topic(cloud, "fleet.summaries")]
    cloud_samples = [d for d in got if d.topic == "fleet.samples"]
    cloud_sums = [d for d in got if d.topic == "fleet.summaries"]
    assert sorted((d.record["device_id"], d.record["seq"]) for d in cloud_samples) == sorted(
        (s["device_id"], s["seq"]) for s in samples
    )
    assert all(d.key == d.record["device_id"].encode() for d in cloud_samples)
    assert cloud_samples[0].record["tags"] == {"gateway_id": "gw-s", "model_version": "v1"}
    assert max(d.offset for d in cloud_sums) >= 0 and min(
        d.timestamp_ms for d in cloud_samples
    ) >= max(d.timestamp_ms for d in cloud_sums), "samples after the summaries"
    assert sorted(d.record["summary_id"] for d in cloud_sums) == sorted(
        s["summary_id"] for s in sums
    ), "device summaries only: the site scope is not forwarded"
    by_id = {s["summary_id"]: s for s in sums}
    for d in cloud_sums:
        sent = by_id[d.record["summary_id"]]["channels"]["pressure"]
        assert d.record["channels"]["pressure"]["sum"] == sent["sum"]
        assert d.record["channels"]["pressure"]["mean"] == pytest.approx(sent["mean"], rel=1e-12)
    assert len(wire) >= len(sums)
    assert all(r["summary_id"] in by_id for r in wire), "the gateway's ids travel"
    assert all(r["channels"]["pressure"]["mean"] is None for r in wire), "means are derived"
    box = Outbox(OutboxConfig(outbox_path(topo, "gw-s", tmp_path)), "gw-s", readonly=True)
    stats = box.stats()
    box.close()
    kinds = stats.cloud_bytes_by_kind
    assert kinds.get("sample", 0) > 0 and kinds.get("summary", 0) > 0
    assert 0 <= stats.cloud_bytes - sum(kinds.values()) <= 10, "a split of the total"


def test_compact_doubles_are_lossless_and_short_for_sensor_values() -> None:
    rng = np.random.default_rng(11)
    parts = [
        np.round(rng.uniform(-500, 500, 5000), 3),  # sensor values with 3 decimals
        rng.uniform(-1e6, 1e6, 5000),  # arbitrary doubles
        rng.normal(0, 1, 5000) * 10.0 ** rng.integers(-15, 15, 5000),
    ]
    values = [*np.concatenate(parts).tolist(), 0.0, -0.0, 1e300, 5e-324]
    short = 0
    for x in values:
        packed = compact_double(x)
        back = expand_double(packed)
        assert np.float64(back).tobytes() == np.float64(x).tobytes(), x
        short += isinstance(packed, dict)
    assert short >= 5000, "every value with 3 decimals has an exact Decimal form"


def test_sample_topic_names_match_the_gateway_and_the_topology(tmp_path: Path) -> None:
    from edgestream.edge import outputs
    from edgestream.wire.topics import EDGE_TOPICS

    assert EDGE_TOPICS["sample"] == outputs.SAMPLES_TOPIC == "edge.samples"
    topo = load_topology(write_topology(tmp_path / "t.yaml"))
    assert topo.forwarding.topics.samples == "fleet.samples"
