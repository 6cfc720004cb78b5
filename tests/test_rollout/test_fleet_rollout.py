"""Staged rollout across two gateways on the embedded stack: a signed candidate published on
the cloud's ``fleet.models`` reaches both gateways through their forwarders' downlinks; the
canary shadows and promotes it, its RolloutEvents come up on ``fleet.rollout``; after a
``promote`` (the test plays the cloud's rollout controller) the other gateway switches too.
Summaries across the swap are complete against the input and switch version once per device."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestream.core.commands import forward_run, python_argv
from edgestream.core.procs import Child
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.ml.signing import sign_update
from edgestream.rollout.history import action_update
from edgestream.sim import simulate
from edgestream.wire.topics import EDGE_TOPICS
from tests.support import candidates as kit
from tests.support import gateway as gr
from tests.support import rollout as rr

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAYS = [
    {"id": "gw-a", "sites": ["a-site-1"], "device_types": ["pump"], "canary": True},
    {"id": "gw-b", "sites": ["b-site-1"], "device_types": ["pump"]},
]


def test_canary_first_then_the_rest(tmp_path) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "pub.pem").write_bytes(kit.public_pem(key))
    topology = rr.rollout_topology(tmp_path / "topology.yaml", tmp_path / "pub.pem", GATEWAYS)
    stack = Stack(tmp_path / "stack")
    procs: list[Child] = []
    stop_sim = threading.Event()
    try:
        ends = stack.start(gateways=2).endpoints()
        cloud, registry = str(ends["cloud"]), str(ends["registry"])
        edges = {"gw-a": str(ends["edge"]["gw-1"]), "gw-b": str(ends["edge"]["gw-2"])}
        workers = {}
        for gw, edge in edges.items():
            data = tmp_path / gw
            workers[gw] = gr.Worker(topology, gw, edge, registry, data).start()
            argv = python_argv(forward_run(topology, gw, edge_bootstrap=edge, cloud_bootstrap=cloud,
                                           registry=registry, data_dir=data,
                                           report_interval=0))  # fmt: skip
            procs += [workers[gw], Child(argv, tmp_path / f"{gw}-forwarder.log").start()]

        def fleet(pred: Any, timeout: float) -> list[dict[str, Any]]:
            return rr.wait_event(cloud, registry, pred, timeout, topic="fleet.rollout")

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            got = rr.events(cloud, registry, "fleet.rollout")
            if {e["gateway_id"] for e in got if e["event"] == "live"} == set(edges):
                break
            for p in procs:
                assert p.alive(), p.log_text()[-3000:]
            time.sleep(1)
        else:
            raise AssertionError(f"not every gateway announced its live model: {got}")
        assert all(e["gateway_seq"] is not None for e in got)  # forwarded with dedup fields

        sims = []
        for i, (gw, edge) in enumerate(edges.items()):
            sims.append(threading.Thread(target=simulate, daemon=True, kwargs=dict(
                bootstrap=edge, registry=registry, devices=6, rate=10.0, duration=300.0,
                seed=20 + i, device_types=("pump",), sites=1, anomaly_rate=0.02,
                late_fraction=0.0, topic="sensors.pump", labels=None, prefix=f"{gw[-1]}-",
                start_time=int(time.time() * 1000), fast=False, stop=stop_sim)))  # fmt: skip
            sims[-1].start()

        good = sign_update(kit.update(kit.scaled_model(1.01), "pump-v2",
                                      kit.PUMP.threshold * 1.01), key)  # fmt: skip
        rr.produce(cloud, registry, "fleet.models", [good])
        got = fleet(lambda e: e["event"] == "promoted", 120)
        verified = {e["gateway_id"]: e for e in got if e["event"] == "verified"}
        assert verified["gw-a"]["mode"] == "shadow" and verified["gw-a"]["canary"]
        assert verified["gw-b"]["mode"] == "pending" and not verified["gw-b"]["canary"]
        promoted = [e for e in got if e["event"] == "promoted"]
        assert [e["gateway_id"] for e in promoted] == ["gw-a"]  # the canary only, so far
        assert promoted[0]["reason"] == "gates-passed"
        # the rest keeps serving v1 while nobody promotes: gw-b closes windows that began
        # after the canary's promotion (a positive sign that it ran on), all scored by v1,
        # and its own rollout topic has no promotion
        since = promoted[0]["created_at"]
        later = windows_after(edges["gw-b"], registry, since, 1, procs)
        assert {s["model_version"] for s in later} == {kit.PUMP.version}, later
        assert not [e for e in rr.events(edges["gw-b"], registry)
                    if e["event"] == "promoted"]  # fmt: skip

        promote = action_update(good, "promote")  # the cloud's promote record (signed fields)
        rr.produce(cloud, registry, "fleet.models", [promote])
        got = fleet(lambda e: e["event"] == "promoted" and e["gateway_id"] == "gw-b", 60)
        b = next(e for e in got if e["event"] == "promoted" and e["gateway_id"] == "gw-b")
        assert b["action"] == "promote" and b["live_version"] == "pump-v2"
        # two more 10 s windows of every device, begun after the promotion, on each gateway
        for edge in edges.values():
            windows_after(edge, registry, b["created_at"], 2, procs)
        stop_sim.set()
        for s in sims:
            s.join(60)

        decode = AvroDeserializer(registry)
        for gw, edge in edges.items():
            readings = [decode(m.value()) for m in gr.read_topic(edge, "sensors.pump")]
            summaries = [decode(m.value()) for m in gr.read_topic(edge, "edge.summaries")]
            expected: Counter = Counter()
            for r in readings:
                expected[(r["device_id"], r["ts"] // 10_000 * 10_000)] += 1
            counts = {
                (s["scope_key"], s["window_start"]): s["count"] for s in summaries
                if s["scope"] == "device" and s["window_end"] - s["window_start"] == 10_000
            }  # fmt: skip
            assert counts and all(expected[k] == n for k, n in counts.items()), gw
            for device in {r["device_id"] for r in readings}:
                closed = max(w for d, w in counts if d == device)
                assert {k for k in expected if k[0] == device and k[1] <= closed} == {
                    k for k in counts if k[0] == device
                }
                versions = rr.versions_in_order(summaries, device)
                assert rr.one_switch(versions, new="pump-v2"), (gw, device, versions)
    finally:
        stop_sim.set()
        for p in procs:
            p.stop()
        stack.stop()


def windows_after(edge: str, registry: str, since_ms: int, n: int, procs: list[Child],
                  timeout: float = 120.0) -> list[dict[str, Any]]:  # fmt: skip
    """Wait until every device on ``edge`` has ``n`` closed 10 s device windows that began at
    or after ``since_ms``; those windows."""
    decode = AvroDeserializer(registry)
    deadline = time.monotonic() + timeout
    while True:
        summaries = [decode(m.value()) for m in gr.read_topic(edge, "edge.summaries", settle=0.5)]
        tens = [s for s in summaries if s["scope"] == "device"
                and s["window_end"] - s["window_start"] == 10_000]  # fmt: skip
        later = [s for s in tens if s["window_start"] >= since_ms]
        per_device = Counter(s["scope_key"] for s in later)
        devices = {s["scope_key"] for s in tens}
        if devices and all(per_device[d] >= n for d in devices):
            return later
        for p in procs:
            assert p.alive(), p.log_text()[-3000:]
        assert time.monotonic() < deadline, f"no {n} windows after {since_ms}: {per_device}"
        time.sleep(1)


def test_edge_topic_names_agree() -> None:
    """One table now (edgestream.wire.topics): the names on the wire stay what they were."""
    from edgestream.wire.topics import MODELS_TOPIC, ROLLOUT_TOPIC

    assert EDGE_TOPICS["rollout"] == ROLLOUT_TOPIC == "edge.rollout"
    assert MODELS_TOPIC == "edge.models"
