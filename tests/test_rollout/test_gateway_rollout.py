"""A real gateway worker on a real edge broker takes model updates from ``edge.models``:
rejects tampered / wrongly signed / unsigned ones (old model serving, alert raised), rolls a
worse candidate back, shadows and promotes a good one between batches, and keeps the promoted
version after a restart. (Summaries counted against the input across a swap:
``test_fleet_rollout.py``.)"""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgestream.core.serde import AvroDeserializer
from edgestream.ml.signing import sign_update
from edgestream.rollout.history import action_update
from tests.support import candidates as kit
from tests.support import gateway as gr
from tests.support import rollout as rr

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
            kwargs=dict(bootstrap=edge, registry=registry, devices=8, rate=10.0, duration=300.0,
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
        stop_sim.set()
        sim.join(60)
        scored = [decode(m.value()) for m in gr.read_topic(edge, "edge.alerts", settle=0.5)]
        scored = [a for a in scored if a["rule"] != "model-rejected"]
        assert all(a["model_version"] in (kit.PUMP.version, "pump-v2") for a in scored)

        # 4. (summaries complete across the swap: tests/test_rollout/test_fleet_rollout.py)
        # 5. a restart serves pump-v2 (from the saved artifact), it does not flip back, and
        #    it does not act again on the updates it already handled
        assert worker.stop() == 0
        before = rr.events(edge, registry)
        last = max(_seq(e) for e in before)
        worker = gr.Worker(topology, GW, edge, registry, data).start()
        got = rr.wait_event(edge, registry, lambda e: _seq(e) > last, 120, worker)
        time.sleep(2)
        after = [e for e in rr.events(edge, registry) if _seq(e) > last]
        assert [(e["event"], e["version"]) for e in after] == [("live", "pump-v2")], after
        ids = [e["event_id"] for e in got]
        assert len(ids) == len(set(ids))  # event ids never reused across the restart

        # 6. the operator rolls pump-v2 back (the cloud's signed rollback record): the
        #    previous live version (the topology's model) serves again
        rr.produce(edge, registry, "edge.models", [action_update(good, "rollback")])

        def back_on_v1(e: dict) -> bool:
            return e["event"] == "live" and e["version"] == kit.PUMP.version and _seq(e) > last

        got = rr.wait_event(edge, registry, back_on_v1, 90, worker)
        back = next(e for e in got if e["event"] == "rolled_back" and _seq(e) > last)
        assert (back["version"], back["action"], back["live_version"]) == (
            "pump-v2", "rollback", kit.PUMP.version)  # fmt: skip
    finally:
        if stop_sim is not None:
            stop_sim.set()
        worker.stop()


def _seq(event: dict) -> int:
    return int(event["event_id"].split("|")[2])
