"""Issue 25's acceptance on real processes: one gateway, one site, pumps **and** reefers (two
sensor topics, so two site engines per window spec). Every summary the gateway emits reaches
``fleet.summaries`` exactly once (before, the two site summaries of a window shared an id and
the outbox kept one), and per site the cloud's site summaries count every reading once,
against an independent count over the raw sensor topics."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from edgestream.core.serde import AvroDeserializer
from edgestream.ml.artifact import shipped_model_path
from edgestream.wire.ids import record_id
from tests.support import gateway as gr
from tests.support.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REEFER = {
    "supply_air_temp": {"unit": "degC", "min": -40, "max": 40},
    "return_air_temp": {"unit": "degC", "min": -40, "max": 50},
    "humidity": {"unit": "%", "min": 0, "max": 100},
    "compressor_current": {"unit": "A", "min": 0, "max": 60},
    "door_open": {"unit": "bool", "min": 0, "max": 1},
}


def _two_types(folder: Path) -> dict:
    """The test topology's pumps plus reefers, both at site-1 of the one gateway."""
    base = yaml.safe_load(gr.write_topology(folder / "pumps-only.yaml").read_text())
    pump_topic = base["sensors"]["topics"][0]
    reefer_topic = {**pump_topic, "name": "sensors.reefer", "device_type": "reefer",
                    "channels": REEFER}  # fmt: skip
    return {
        "gateways": [{"id": "gw-test", "sites": ["site-1"], "device_types": ["pump", "reefer"]}],
        "sensors": {**base["sensors"], "topics": [pump_topic, reefer_topic]},
        "features": {
            **base["features"],
            "reefer": ["supply_air_temp", "return_air_temp", "humidity", "compressor_current"],
        },
        "models": {
            **base["models"],
            "reefer": {
                "name": "reefer-model",
                "path": str(shipped_model_path("reefer")),
                "batch": {"size": 500, "max_wait": "20ms"},
            },
        },
        "anomaly": {"rules": [{"name": "any", "consecutive": 2}]},
    }


def test_a_site_with_two_device_types_keeps_both_site_summaries(tmp_path: Path) -> None:
    p = Pipeline(tmp_path, **_two_types(tmp_path))
    try:
        p.worker.start()
        p.forwarder.start()
        p.collector.start()
        start = int(time.time() * 1000) - 120_000  # two minutes of history, sent at once
        p.simulate(seconds=60, paced=False, device_types=("pump", "reefer"), sites=1,
                   devices=6, start_time=start, topic="sensors.{device_type}")  # fmt: skip
        assert p.sim is not None
        p.sim.join(120)
        assert not p.sim_error, p.sim_error
        # windows close by event time: 60 s of history closes all but the last ones
        want_site = 2 * 2  # both types, at least one window of each of the two window specs
        # the last windows close by idle timeout: wait until the edge has emitted both
        # types' site summaries and nothing more for 5 s
        deadline, last, stable_since = time.monotonic() + 150, -1, time.monotonic()
        while time.monotonic() < deadline:
            edge = p.edge_records()
            sites = [r for r, _ in edge["summary"] if r["scope"] == "site"]
            total = len(edge["summary"])
            if total != last:
                last, stable_since = total, time.monotonic()
            both = {r["device_type"] for r in sites} == {"pump", "reefer"}
            if both and len(sites) >= want_site and time.monotonic() - stable_since > 5:
                break
            time.sleep(1)
        edge = p.wait_cloud_has_edge(timeout=120)
        cloud = p.collector.of("fleet.summaries")
        ids = [record_id(r) for r in cloud]
        assert len(ids) == len(set(ids)), "each summary once after dedup"
        edge_ids = [record_id(r) for r, _ in edge["summary"]]
        assert len(edge_ids) == len(set(edge_ids)), "ids unique by construction at the edge"
        assert set(ids) == set(edge_ids), "every summary of the gateway reached the cloud"
        assert p.outbox_stats().id_conflicts == 0

        # per (window, site): the site summaries of both types count every reading once
        site = [r for r in cloud if r["scope"] == "site" and r["rollup_level"] == 0]
        assert {r["device_type"] for r in site} == {"pump", "reefer"}
        got: Counter = Counter()
        for r in site:
            got[(r["window_start"], r["window_end"], r["site"])] += r["count"]
        want = _reference_site_counts(p, {(s, e) for s, e, _ in got})
        assert got == want
    finally:
        p.close()


def _reference_site_counts(p: Pipeline, windows: set[tuple[int, int]]) -> Counter:
    """Readings per (window, site) over both raw sensor topics, minus what went late: an
    independent count (plain Python over the decoded topics; late readings from .late)."""
    decode = AvroDeserializer(p.registry)
    late: set[tuple[str, int]] = set()
    counts: Counter = Counter()
    for topic in ("sensors.pump", "sensors.reefer"):
        for msg in gr.read_topic(p.edge, f"{topic}.late"):
            spec = gr.header(msg, "x-edgestream-window-spec")
            late.add((f"{topic}|{spec}", int(gr.header(msg, "x-edgestream-source-offset"))))
        for msg in gr.read_topic(p.edge, topic):
            reading = decode(msg.value())
            for start, end in windows:
                if not start <= reading["ts"] < end:
                    continue
                spec = "10s" if end - start == 10_000 else "30s-hop10s"
                if (f"{topic}|{spec}", msg.offset()) in late:
                    continue
                counts[(start, end, reading["site"])] += 1
    return counts
