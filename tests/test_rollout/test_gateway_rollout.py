"""A real gateway worker on a real edge broker takes model updates from ``edge.models``:
rejects tampered / wrongly signed / unsigned ones (old model serving, alert raised), rolls a
worse candidate back, shadows and promotes a good one between batches, and keeps the promoted
version after a restart."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestream.core.serde import AvroDeserializer
from edgestream.ml.signing import sign_update
from tests.test_edge import gatewayrun as gr
from tests.test_rollout import kit
from tests.test_rollout import rollrun as rr

pytestmark = pytest.mark.integration

GW = "gw-test"


def test_reject_rollback_shadow_promote_and_restart(stack, tmp_path) -> None:
    ends = stack.endpoints()
    edge, registry = str(ends["edge"]["gw-1"]), str(ends["registry"])
    key = Ed25519PrivateKey.generate()
    (tmp_path / "pub.pem").write_bytes(kit.public_pem(key))
    topology = rr.rollout_topology(tmp_path / "topology.yaml", tmp_path / "pub.pem")
    data = tmp_path / "gw"
    worker = gr.Worker(topology, GW, edge, registry, data).start()
    stop_sim = None
    try:
        rr.wait_event(edge, registry, lambda e: e["event"] == "live", 120, worker)
        import threading

        from edgestream.sim import simulate

        stop_sim = threading.Event()
        sim = threading.Thread(
            target=simulate,
            kwargs=dict(bootstrap=edge, registry=registry, devices=4, rate=10.0, duration=300.0,
                        seed=11, device_types=("pump",), sites=1, anomaly_rate=0.02,
                        late_fraction=0.0, topic="sensors.pump", labels=None,
                        start_time=int(time.time() * 1000), fast=False, stop=stop_sim),
            daemon=True,
        )  # fmt: skip
        sim.start()

        # 1. tampered, forged, unknown-key and unsigned updates: rejected, v1 keeps serving
        bad = kit.bad_updates(key)
        rr.produce(edge, registry, "edge.models", list(bad.values()))
        got = rr.wait_event(edge, registry, lambda e: e["reason"] == "unsigned", 60, worker)
        rejected = {e["reason"] for e in got if e["event"] == "rejected"}
        assert rejected == set(bad), got
        assert all(e["live_version"] == kit.PUMP.version for e in got)
        decode = AvroDeserializer(registry)
        alerts = [decode(m.value()) for m in gr.read_topic(edge, "edge.alerts", settle=0.5)]
        reject_alerts = [a for a in alerts if a["rule"] == "model-rejected"]
        assert {a["incident_id"].split("|")[3] for a in reject_alerts} == {"pump-evil"}
        assert len(reject_alerts) == 4 and all(a["severity"] == "critical" for a in reject_alerts)

        # 2. a worse candidate (random ranking, everything anomalous): shadow, rolled back
        worse = sign_update(kit.update(kit.random_model(), "pump-random", 0.5), key)
        rr.produce(edge, registry, "edge.models", [worse])
        got = rr.wait_event(edge, registry, lambda e: e["event"] == "rolled_back", 90, worker)
        back = next(e for e in got if e["event"] == "rolled_back")
        assert back["version"] == "pump-random" and back["reason"] == "gates-failed"
        assert back["live_version"] == kit.PUMP.version
        assert back["shadow_readings"] >= rr.SHADOW["min_readings"]
        assert back["rank_correlation"] < 0.8 or back["anomaly_rate_delta"] > 0.02
        verified = [e for e in got if e["event"] == "verified" and e["version"] == "pump-random"]
        assert verified and verified[0]["mode"] == "shadow" and verified[0]["canary"]

        # 3. a good candidate: shadow, gates passed, promoted between batches
        good = sign_update(kit.update(kit.scaled_model(1.01), "pump-v2",
                                      kit.PUMP.threshold * 1.01), key)  # fmt: skip
        rr.produce(edge, registry, "edge.models", [good])
        got = rr.wait_event(edge, registry, lambda e: e["event"] == "promoted", 90, worker)
        promoted = next(e for e in got if e["event"] == "promoted")
        assert promoted["version"] == promoted["live_version"] == "pump-v2"
        assert promoted["previous_version"] == kit.PUMP.version
        assert promoted["reason"] == "gates-passed" and promoted["rank_correlation"] > 0.99
        assert promoted["anomaly_rate_delta"] <= 0.02
        live = rr.wait_event(edge, registry, lambda e: e["event"] == "live"
                             and e["version"] == "pump-v2", 30, worker)  # fmt: skip
        after = next(e for e in live if e["event"] == "live" and e["version"] == "pump-v2")
        assert after["previous_version"] == kit.PUMP.version
        assert after["swap_pause_ms"] is not None and after["swap_ms"] is not None
        time.sleep(25)  # two more 10 s windows scored by pump-v2 only
        stop_sim.set()
        sim.join(60)
        assert not sim.is_alive()

        # 4. every reading counted once in the 10 s summaries across the swap; the version
        #    switches at one point per device
        messages = gr.read_topic(edge, "sensors.pump")
        readings = [decode(m.value()) for m in messages]
        summaries = [decode(m.value()) for m in gr.wait_for(edge, "edge.summaries", 1, 30)]
        time.sleep(3)  # idle partitions close the last windows
        summaries = [decode(m.value()) for m in gr.read_topic(edge, "edge.summaries")]
        assert len({s["summary_id"] for s in summaries}) == len(summaries)  # no duplicates
        tumbling = [
            s for s in summaries
            if s["scope"] == "device" and s["window_end"] - s["window_start"] == 10_000
        ]  # fmt: skip
        expected: Counter = Counter()
        for r in readings:
            expected[(r["device_id"], r["ts"] // 10_000 * 10_000)] += 1
        got_counts = {(s["scope_key"], s["window_start"]): s["count"] for s in tumbling}
        assert got_counts and all(expected[k] == n for k, n in got_counts.items())
        # every window before the last closed one of each device is there
        for device in {r["device_id"] for r in readings}:
            closed = max(w for d, w in got_counts if d == device)
            want = {k for k in expected if k[0] == device and k[1] <= closed}
            assert want == {k for k in got_counts if k[0] == device}
            versions = rr.versions_in_order(summaries, device)
            assert rr.one_switch(versions, new="pump-v2"), (device, versions)
        covered = sum(got_counts.values())
        assert covered >= 0.8 * len(readings)  # only the last open windows are missing
        scored = [a for a in alerts if a["rule"] != "model-rejected"]
        assert all(a["model_version"] in (kit.PUMP.version, "pump-v2") for a in scored)

        # 5. a restart serves pump-v2 (from the saved artifact), it does not flip back
        assert worker.stop() == 0
        worker = gr.Worker(topology, GW, edge, registry, data).start()
        seen = len(rr.events(edge, registry))
        got = rr.wait_event(edge, registry, lambda e: e["event"] == "live"
                            and e["version"] == "pump-v2", 120, worker)  # fmt: skip
        assert all(e["version"] == "pump-v2" for e in got[seen:] if e["event"] == "live")
        ids = [e["event_id"] for e in got]
        assert len(ids) == len(set(ids))  # event ids never reused across the restart
        assert np.all(np.diff([int(i.split("|")[2]) for i in ids]) > 0)
    finally:
        if stop_sim is not None:
            stop_sim.set()
        worker.stop()
