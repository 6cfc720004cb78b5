"""The Grafana dashboard and the Prometheus endpoints of a real gateway worker and forwarder.

One pipeline (embedded stack, ``edgestream edge run`` and ``edgestream forward run``
subprocesses, simulated pumps plus a few undecodable records): the series each process serves
must count what actually happened, and every expression of ``deploy/grafana/edgestream.json``
must reference a series the processes expose.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from edgestream.core.metrics import read_port
from edgestream.wire.topics import EDGE_TOPICS
from tests.support import gateway as gr
from tests.support.gateway import GATEWAY
from tests.support.pipeline import Pipeline

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "edgestream.json"
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "le", "without", "on", "avg", "max",
    "min", "count", "irate", "label_values", "gateway", "topic", "model", "kind", "direction",
    "reason", "partition", "version",
}  # fmt: skip
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (identifiers outside braces and quotes)."""
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in PROMQL_WORDS}


def test_dashboard_reads_only_edgestream_series() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    names = set().union(*map(metric_names, exprs))
    assert names and all(n.startswith("edgestream_") for n in names), names
    assert metric_names('rate(edgestream_readings_total{gateway=~"$g"}[1m])') == {
        "edgestream_readings_total"
    }


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one /metrics page (plus empty families' names)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            out.setdefault(family.name + suffix, [])
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(series: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        v for lab, v in series.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    )


@pytest.mark.integration
@pytest.mark.slow
def test_worker_and_forwarder_serve_the_dashboard_series(tmp_path: Path) -> None:
    p = Pipeline(tmp_path)
    try:
        p.worker.start()
        p.forwarder.start()
        p.simulate(25, paced=True, anomaly_rate=0.05)  # wall-clock paced, like `up`
        producer = Producer({"bootstrap.servers": p.edge})
        for junk in (b"garbage", b"\x00\x00\x00", b"{}"):
            producer.produce("sensors.pump", junk, key=b"junk")
        assert producer.flush(10) == 0
        del producer
        deadline = time.monotonic() + 420  # generous: a shared 2-core machine
        while time.monotonic() < deadline:
            ports = read_port(p.data, "edge"), read_port(p.data, "forward")
            if None not in ports:
                break
            time.sleep(0.5)
        edge_port, fwd_port = ports
        assert edge_port and fwd_port, (p.worker.log_text()[-2000:], p.forwarder.log_text())
        assert p.sim is not None
        p.sim.join(120)
        assert not p.sim_error
        sent = 4 * 10 * 25 + 3  # devices x rate x seconds, and the junk
        before: list[tuple[float, ...]] = []
        while time.monotonic() < deadline:  # until everything is emitted and forwarded
            worker, fwd = scrape(edge_port), scrape(fwd_port)
            readings = total(worker, "edgestream_readings_total")
            rejected = total(worker, "edgestream_dlq_records_total")
            emitted = total(worker, "edgestream_window_emissions_total")
            emitted += total(worker, "edgestream_alerts_total")
            delivered = total(fwd, "edgestream_forward_records_delivered_total")
            now = (readings, rejected, emitted, delivered)
            done = (
                readings + rejected == sent
                and before[-2:] == [now, now]  # unchanged for two scrapes (6 s)
                and total(worker, "edgestream_window_emissions_total") > 0
                and delivered >= total(worker, "edgestream_alerts_total")
                and total(fwd, "edgestream_outbox_depth") == 0
            )
            if done:
                break
            before.append(now)
            assert p.worker.alive(), p.worker.log_text()[-3000:]
            time.sleep(3.0)
        msgs = {t: gr.read_topic(p.edge, t, settle=3.0) for t in EDGE_TOPICS.values()}
        edge = {"alert": msgs["edge.alerts"], "summary": msgs["edge.summaries"]}
        assert done, f"not settled in time: {now} of {sent} sent\n{p.worker.log_text()[-2000:]}"
        labels = {"gateway": GATEWAY, "topic": "sensors.pump"}
        assert total(worker, "edgestream_readings_total", **labels) == readings > 900
        dlq = {lab["reason"]: v for lab, v in worker["edgestream_dlq_records_total"]}
        assert sum(dlq.values()) == sent - readings, dlq
        assert dlq.get("bad_magic", 0) + dlq.get("decode", 0) >= 2, dlq  # the junk
        assert len(edge["summary"]) > 0, (
            now,
            {t: len(m) for t, m in msgs.items()},
        )  # alerts: maybe 0
        assert total(worker, "edgestream_window_emissions_total") == len(edge["summary"])
        assert total(worker, "edgestream_alerts_total") == len(edge["alert"])
        assert total(worker, "edgestream_inference_batch_rows_sum") == readings
        assert total(worker, "edgestream_inference_latency_seconds_count") >= 1
        info = worker["edgestream_model_info"]
        assert [(lab["model"], lab["version"], v) for lab, v in info] == [
            ("pump-model", "pump-ae-v1", 1.0)
        ]
        lag = worker["edgestream_consumer_lag_broker_reported_records"]
        assert lag and all(v >= 0 for _, v in lag)
        # alerts, the summaries the topology forwards, sampled readings
        assert len(edge["alert"]) < delivered <= sum(map(len, msgs.values()))
        assert total(fwd, "edgestream_outbox_depth", gateway=GATEWAY) == 0
        edge_bytes = sum(len(m.value()) for ms in msgs.values() for m in ms)
        assert total(fwd, "edgestream_forward_bytes_total", direction="in") == edge_bytes
        assert total(fwd, "edgestream_forward_bytes_total", direction="out") > 0
        assert total(fwd, "edgestream_sensor_bytes_total") > 0
        exposed = set(worker) | set(fwd)
        for expr in dashboard_exprs():
            missing = metric_names(expr) - exposed
            assert not missing, f"{expr!r} reads {missing}, which no process serves"
    finally:
        p.close()
