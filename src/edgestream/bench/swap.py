"""``edgestream bench swap``: hot swap of a gateway's model under live load.

One embedded stack, one (non-canary) gateway worker and its forwarder, simulated pumps at a
steady rate. Each round publishes a signed candidate on the cloud's ``fleet.models`` (the
shipped pump model under a new version: same inputs, same scores), waits until the gateway
verified and loaded it (pending), then publishes ``promote`` and waits for the gateway's
``live`` RolloutEvent. Reported:

* ``publish_to_live_ms``: ``promote`` produced on the cloud -> the first batch scored by the
  new version is done on the gateway (the ``live`` event's time; same machine clock). It
  includes the forwarder's downlink. Goal <= 2000 ms.
* ``pause_ms``: the gap between the last batch done with the old model and the first done with
  the new one (``swap_pause_ms`` of the event), against ``normal_gap_ms``, the median gap
  between batches before the swap. Goal <= 50 ms.
* ``events_dropped`` / ``events_duplicated``: every input reading against the 10 s device
  summaries of the run (windows closed by the end), so no reading is lost or counted twice
  across the swaps. Goal 0 / 0.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgestream.bench.common import Phases, machine_info
from edgestream.bench.e2e_parts import forwarder_argv, percentiles
from edgestream.bench.edge_input import CHANNELS, pump_model, pump_topic
from edgestream.core.commands import edge_run, python_argv
from edgestream.core.offsets import read_to_end
from edgestream.core.procs import Child
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.stack import Stack
from edgestream.ml.artifact import shipped_model, shipped_model_path
from edgestream.wire.topics import ROLLOUT_TOPIC, SUMMARIES_TOPIC

__all__ = ["SwapBenchParams", "run_swap_bench"]

GATEWAY = "gw-1"


@dataclass(frozen=True)
class SwapBenchParams:
    devices: int = 20
    rate: float = 25.0  # readings per second per device
    swaps: int = 3
    settle_s: float = 3.0  # steady load before each promote
    tail_s: float = 30.0  # load after the last swap (its windows close)
    seed: int = 7
    timeout: float = 120.0
    workdir: Path | None = None


def bench_topology(path: Path, public_key: Path, private_key: Path) -> Path:
    """Two pump gateways (gw-0 is the canary, gw-1 the one measured), one partition."""
    topo = {
        "name": "bench-swap",
        "version": "1",
        "gateways": [
            {"id": "gw-0", "sites": ["site-0"], "device_types": ["pump"], "canary": True},
            {"id": GATEWAY, "sites": ["site-1"], "device_types": ["pump"]},
        ],
        "sensors": {"topics": [pump_topic("sensors.pump", "SensorReading")]},
        "features": {"pump": list(CHANNELS)},
        "models": {"pump": pump_model(256, 20)},
        "windows": [{"size": "10s", "allowed_lateness": "2s", "max_out_of_orderness": "1s"}],
        "anomaly": {"rules": [{"name": "pump", "consecutive": 2}]},
        "retraining": {
            "signing": {"key_file": str(private_key), "public_key_file": str(public_key)}
        },
    }
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def model_update(version: str, action: str, blob: bytes | None) -> dict[str, Any]:
    """A ModelUpdate of the shipped pump model bytes under ``version`` (unsigned)."""
    meta = shipped_model("pump")
    data = shipped_model_path("pump").read_bytes()
    return {
        "model_name": "pump-ae",
        "version": version,
        "action": action,
        "device_type": "pump",
        "created_at": int(time.time() * 1000),
        "sha256": hashlib.sha256(data).hexdigest(),
        "artifact": blob,
        "inputs": list(meta.inputs),
        "threshold": meta.threshold,
        "parent_version": meta.version,
    }


def run_swap_bench(params: SwapBenchParams, phases: Phases) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns the result dict."""
    tmp = None
    if params.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="edgestream-bench-swap-")
        work = Path(tmp.name)
    else:
        work = Path(params.workdir)
        work.mkdir(parents=True, exist_ok=True)
    stack = Stack(work / "stack")
    procs: list[Child] = []
    stop_sim = threading.Event()
    events: _Events | None = None
    try:
        phases.start("starting the stack, the gateway worker and its forwarder")
        gw = _start_gateway(stack, work, procs)
        events = _Events(gw.edge, gw.registry, procs)
        events.wait(lambda e: e["event"] == "live", params.timeout)
        phases.done()

        phases.start(
            f"{params.devices} pumps x {params.rate:g}/s, {params.swaps} hot swaps", params.swaps
        )
        sim = _start_load(params, gw, stop_sim)
        rounds = _swap_rounds(params, gw, events, procs, phases)
        time.sleep(params.tail_s)  # windows after the last swap close with newer readings
        stop_sim.set()
        sim.join(60)
        phases.done()

        phases.start("counting every reading in the summaries")
        time.sleep(4.0)  # the idle tick closes what the watermark allows
        counts = _count(gw.edge, gw.registry)
        phases.done()
        return _swap_result(params, rounds, counts)
    finally:
        stop_sim.set()
        if events is not None:
            events.close()  # its consumer would keep calling the stopped broker
        for p in reversed(procs):
            p.stop()
        stack.stop()
        if tmp is not None:
            tmp.cleanup()


@dataclass(frozen=True)
class _Gateway:
    """The running gateway of a swap run: its brokers, registry, topic of models, key."""

    edge: str
    cloud: str
    registry: str
    models_topic: str
    key: Any  # the private key candidates and promotes are signed with


def _start_gateway(stack: Stack, work: Path, procs: list[Child]) -> _Gateway:
    """The stack, signing keys, the topology, the gateway worker and its forwarder."""
    from edgestream.core.broker import ensure_topics
    from edgestream.core.topology import load_topology
    from edgestream.ml.signing import generate_key_pair, load_private_key

    ends = stack.start(gateways=1).endpoints()
    edge, cloud = str(ends["edge"]["gw-1"]), str(ends["cloud"])  # type: ignore[index]
    registry = str(ends["registry"])
    private, public = generate_key_pair(work / f"keys-{time.time_ns()}")
    topology = bench_topology(work / "topology.yaml", public, private)
    topo = load_topology(topology)
    key = load_private_key(topo.retraining.signing)
    models_topic = topo.cloud.models_topic
    # brokers do not auto-create topics: without it the updates are never delivered and
    # the forwarder's downlink waits for the topic forever
    ensure_topics(cloud, {models_topic: 1})
    data = work / GATEWAY
    worker_argv = python_argv(edge_run(topology, GATEWAY, bootstrap=edge, registry=registry,
                                       data_dir=data))  # fmt: skip
    procs.append(Child(worker_argv, work / "worker.log").start())
    procs.append(
        Child(
            forwarder_argv(topology, GATEWAY, edge, cloud, registry, data),
            work / "forwarder.log",
        ).start()
    )
    ensure_topics(edge, {ROLLOUT_TOPIC: 1})
    return _Gateway(edge, cloud, registry, models_topic, key)


def _start_load(params: SwapBenchParams, gw: _Gateway, stop: threading.Event) -> threading.Thread:
    """The simulated pumps in a thread, at wall-clock pace until ``stop``."""
    from edgestream.sim import simulate

    duration = params.swaps * (params.settle_s + 30.0) + params.tail_s + 60.0  # stopped
    sim = threading.Thread(
        target=lambda: simulate(
            bootstrap=gw.edge, registry=gw.registry, devices=params.devices, rate=params.rate,
            duration=duration, seed=params.seed, device_types=("pump",), sites=1,
            site_names=("site-1",), anomaly_rate=0.01, late_fraction=0.0,
            topic="sensors.pump", labels=None, start_time=int(time.time() * 1000),
            fast=False, stop=stop),
        daemon=True,
    )  # fmt: skip
    sim.start()
    return sim


def _swap_rounds(
    params: SwapBenchParams, gw: _Gateway, events: _Events, procs: list[Child], phases: Phases
) -> list[dict[str, Any]]:
    """After a first window served by the shipped model, ``params.swaps`` rounds of
    candidate -> verified -> promote -> live; each round's times."""
    from confluent_kafka import Producer

    from edgestream.core.broker import producer_config
    from edgestream.ml.signing import sign_update

    ser = AvroSerializer(gw.registry, "ModelUpdate", subject_for(gw.models_topic))
    producer = Producer(producer_config(gw.cloud, **{"acks": "all", "linger.ms": 0}))

    def publish(update: dict[str, Any]) -> None:
        _produce(producer, gw.models_topic, ser(update), b"pump-ae", gw.cloud)

    blob = shipped_model_path("pump").read_bytes()
    rounds = []
    # the shipped model serves a whole window first: wait until one 10 s window closed
    # (a fixed settle was shorter than a window, so under load no window was all shipped)
    windows = _Events(gw.edge, gw.registry, procs, topic=SUMMARIES_TOPIC)
    try:
        windows.wait(
            lambda s: s["scope"] == "device" and s["window_end"] - s["window_start"] == 10_000,
            params.timeout,
        )
    finally:
        windows.close()
    for i in range(params.swaps):
        version = f"pump-ae-bench{i + 2}"
        candidate = sign_update(model_update(version, "candidate", blob), gw.key)
        t_cand = time.time() * 1000
        publish(candidate)
        verified = events.wait(
            lambda e, v=version: e["event"] == "verified" and e["version"] == v,
            params.timeout,
        )
        time.sleep(params.settle_s)  # steady state with the candidate loaded
        promote = sign_update(model_update(version, "promote", None), gw.key)
        t_promote = time.time() * 1000
        publish(promote)
        live = events.wait(
            lambda e, v=version: e["event"] == "live" and e["version"] == v, params.timeout
        )
        rounds.append(
            {
                "version": version,
                "candidate_to_verified_ms": round(verified["created_at"] - t_cand, 1),
                "publish_to_live_ms": round(live["created_at"] - t_promote, 1),
                "pause_ms": live["swap_pause_ms"],
                "normal_gap_ms": live["batch_gap_ms"],
                "swap_ms": live["swap_ms"],
            }
        )
        phases.update(i + 1, f"swap {i + 1}: {rounds[-1]['publish_to_live_ms']} ms to live")
    return rounds


def _swap_result(
    params: SwapBenchParams, rounds: list[dict[str, Any]], counts: dict[str, Any]
) -> dict[str, Any]:
    """The result of the run: the rounds, their percentiles, the counts, the goals."""
    pauses = [r["pause_ms"] for r in rounds if r["pause_ms"] is not None]
    p2l = [r["publish_to_live_ms"] for r in rounds]
    return {
        "bench": "swap",
        "devices": params.devices,
        "rate_per_device": params.rate,
        "swaps": len(rounds),
        "rounds": rounds,
        "publish_to_live_ms": percentiles(p2l),
        "pause_ms": percentiles(pauses),
        # the pause beyond the normal rhythm of batch completions (what the swap added)
        "pause_over_normal_ms": percentiles(
            [
                r["pause_ms"] - r["normal_gap_ms"]
                for r in rounds
                if r["pause_ms"] is not None and r["normal_gap_ms"] is not None
            ]
        ),
        "normal_gap_ms": percentiles(
            [r["normal_gap_ms"] for r in rounds if r["normal_gap_ms"] is not None]
        ),
        **counts,
        "goals": {
            "events_dropped_0": counts["events_dropped"] == 0 and counts["events_duplicated"] == 0,
            "pause_le_50ms": bool(pauses) and max(pauses) <= 50.0,
            "publish_to_live_le_2s": bool(p2l) and max(p2l) <= 2000.0,
        },
        "machine": machine_info(),
    }


def _produce(producer: Any, topic: str, value: bytes, key: bytes, bootstrap: str) -> None:
    """Produce one record and wait for the broker's ack (a record the broker refused, e.g.
    to a topic that does not exist, raises instead of leaving the bench waiting for it).
    The bench's one producer stays connected, so its connect is not in publish_to_live."""
    errors: list[Any] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            errors.append(error)

    producer.produce(topic, value, key, on_delivery=delivered)
    if producer.flush(30) or errors:
        raise RuntimeError(
            f"a ModelUpdate was not delivered to {topic} at {bootstrap}: "
            f"{errors[:1] or 'no ack within 30 s'}"
        )


def _count(edge: str, registry: str) -> dict[str, Any]:
    """Input readings against the 10 s device summaries (windows closed by the end)."""
    decode = AvroDeserializer(registry)
    readings = [decode(m.value()) for m in read_to_end(edge, "sensors.pump")]
    summaries = [decode(m.value()) for m in read_to_end(edge, SUMMARIES_TOPIC)]
    expected: Counter[tuple[str, int]] = Counter(
        (r["device_id"], r["ts"] // 10_000 * 10_000) for r in readings
    )
    counted: Counter[tuple[str, int]] = Counter()
    versions: dict[str, set[str]] = {}
    for s in summaries:
        if s["scope"] == "device" and s["window_end"] - s["window_start"] == 10_000:
            counted[(s["scope_key"], s["window_start"])] += s["count"]
            versions.setdefault(s["scope_key"], set()).add(str(s["model_version"]))
    closed = {d: max(w for dd, w in counted if dd == d) for d, _ in counted}
    in_closed = {k: n for k, n in expected.items() if k[0] in closed and k[1] <= closed[k[0]]}
    dropped = sum(max(0, n - counted.get(k, 0)) for k, n in in_closed.items())
    duplicated = sum(max(0, n - expected.get(k, 0)) for k, n in counted.items())
    return {
        "readings": len(readings),
        "readings_in_closed_windows": sum(in_closed.values()),
        "events_dropped": dropped,
        "events_duplicated": duplicated,
        "versions_seen": sorted({v for vs in versions.values() for v in vs}),
    }


class _Events:
    """Records of one gateway topic (its RolloutEvents on ``edge.rollout`` by default), read
    incrementally while checking that the run's processes stay alive."""

    def __init__(
        self, edge: str, registry: str, procs: list[Child], topic: str = ROLLOUT_TOPIC
    ) -> None:
        from edgestream.bench.common import TopicReader

        self.topic = topic
        self.reader = TopicReader(edge, topic)
        self.decode = AvroDeserializer(registry)
        self.seen: list[dict[str, Any]] = []
        self.procs = procs

    def wait(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.reader.poll(0.1):
                self.seen.append(self.decode(msg.value()))
            for event in self.seen:
                if pred(event):
                    self.seen.remove(event)
                    return event
            for p in self.procs:
                if not p.alive():
                    raise RuntimeError(f"{p.log.name} exited:\n{p.tail()}")
        raise TimeoutError(
            f"no matching record on {self.topic} within {timeout:g} s; seen: "
            f"{[(e.get('event'), e.get('version'), e.get('reason')) for e in self.seen][-20:]}"
        )

    def close(self) -> None:
        self.reader.close()
