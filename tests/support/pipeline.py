"""A real edge-to-cloud pipeline for the forwarder tests: the embedded stack (one edge broker,
the cloud broker, the registry), a gateway worker and a forwarder (subprocesses, so they can be
killed with SIGKILL), a simulator thread, and a dedup reader of the cloud topics that keeps
its dedup state across cloud broker restarts (it re-reads the topics from the start)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgestream.core.commands import forward_run, python_argv
from edgestream.core.procs import Child
from edgestream.core.serde import AvroDeserializer
from edgestream.core.stack import Stack
from edgestream.forward.exceptions import OutboxError
from edgestream.forward.outbox import Outbox
from edgestream.forward.outbox_config import OutboxConfig, outbox_path
from edgestream.forward.outbox_stats import OutboxStats
from edgestream.sim import simulate
from edgestream.wire.dedup import Deduplicator, DedupReader, Delivered
from edgestream.wire.ids import record_id
from tests.support import gateway as gr
from tests.support.gateway import GATEWAY

# [:2] are the records the outage tests check; the others are read so "caught up" holds
CLOUD_TOPICS = ["fleet.alerts", "fleet.summaries", "fleet.forwarder", "fleet.samples",
                "fleet.rollout"]  # fmt: skip


class Forwarder(Child):
    """``python -m edgestream.cli.forward run`` as a subprocess."""


class CloudCollector:
    """Reads the cloud topics in a thread into ``delivered`` (first copies, arrival order);
    :meth:`restart` re-reads recreated topics from offset 0 with the same dedup state."""

    def __init__(self, bootstrap: str, registry: str) -> None:
        self.bootstrap, self.registry = bootstrap, registry
        self.dedup = Deduplicator()
        self.delivered: list[Delivered] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        reader = DedupReader(self.bootstrap, CLOUD_TOPICS, self.registry, dedup=self.dedup)
        try:
            while not self._stop.is_set():
                self.delivered += reader.poll(0.2)
        finally:
            reader.close()

    def start(self) -> CloudCollector:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [d.record for d in self.delivered if d.topic == topic]


class Pipeline:
    """Everything for one test; :meth:`close` stops what it started."""

    def __init__(self, tmp_path: Path, **topology: Any) -> None:
        self.dir = tmp_path
        self.stack = Stack(tmp_path / "stack")
        ends = self.stack.start(gateways=1).endpoints()
        self.edge = str(ends["edge"]["gw-1"])  # type: ignore[index]
        self.cloud, self.registry = str(ends["cloud"]), str(ends["registry"])
        # samples go at once (no 30 s hold): "outbox empty" happens between them
        forwarding = topology.pop("forwarding", {})
        forwarding = {**forwarding, "samples": {"linger": "0ms", **forwarding.get("samples", {})}}
        self.topology = gr.write_topology(
            tmp_path / "topology.yaml", GATEWAY, forwarding=forwarding, **topology
        )
        self.data = tmp_path / "gw"
        self.worker = gr.Worker(self.topology, GATEWAY, self.edge, self.registry, self.data)
        self.forwarder = self.new_forwarder()
        self.collector = CloudCollector(self.cloud, self.registry)
        self.sim: threading.Thread | None = None
        self.sim_error: list[BaseException] = []

    def new_forwarder(self, report_interval: float = 0) -> Forwarder:
        argv = python_argv(forward_run(self.topology, GATEWAY, edge_bootstrap=self.edge,
                                       cloud_bootstrap=self.cloud, registry=self.registry,
                                       data_dir=self.data,
                                       report_interval=report_interval))  # fmt: skip
        return Forwarder(argv, self.dir / "forwarder.log")

    def simulate(self, seconds: float, paced: bool = True, **changes: Any) -> None:
        """Simulated pumps in a thread: paced at wall-clock speed from now, or ``fast``."""
        params: dict[str, Any] = dict(
            devices=4, rate=10.0, duration=seconds, seed=5, device_types=("pump",), sites=2,
            anomaly_rate=0.02, late_fraction=0.0, topic="sensors.pump", labels=None,
            start_time=int(time.time() * 1000), fast=not paced,
        )  # fmt: skip
        params.update(changes)

        def run() -> None:
            try:
                simulate(bootstrap=self.edge, registry=self.registry, **params)
            except BaseException as error:  # surfaced by the test
                self.sim_error.append(error)

        self.sim = threading.Thread(target=run, daemon=True)
        self.sim.start()

    def edge_records(self) -> dict[str, list[tuple[dict[str, Any], int]]]:
        """Every alert / summary on the edge broker (offset order) with its edge timestamp."""
        decode = AvroDeserializer(self.registry)
        out: dict[str, list[tuple[dict[str, Any], int]]] = {}
        for kind, topic in (("alert", "edge.alerts"), ("summary", "edge.summaries")):
            msgs = gr.read_topic(self.edge, topic, settle=1.0)
            out[kind] = [(decode(m.value()), m.timestamp()[1]) for m in msgs]
        return out

    def outbox_stats(self) -> OutboxStats:
        path = outbox_path(None, GATEWAY, self.data)
        if not path.exists():
            return OutboxStats()
        try:
            box = Outbox(OutboxConfig(path), GATEWAY, readonly=True)
        except OutboxError:  # created, not yet initialised by the starting forwarder
            return OutboxStats()
        try:
            return box.stats()
        finally:
            box.close()

    def wait_cloud_has_edge(self, timeout: float) -> dict[str, list[tuple[dict, int]]]:
        """Wait until the cloud (first copies) holds exactly the edge's records; returns the
        edge records."""
        deadline = time.monotonic() + timeout
        edge: dict[str, list[tuple[dict, int]]] = {}
        while time.monotonic() < deadline:
            edge = self.edge_records()
            want = {record_id(r) for rs in edge.values() for r, _ in rs}
            have = {record_id(r) for t in CLOUD_TOPICS[:2] for r in self.collector.of(t)}
            if want and want == have:
                return edge
            if not self.forwarder.alive() and self.forwarder.proc is not None:
                raise AssertionError(f"forwarder died:\n{self.forwarder.log.read_text()[-3000:]}")
            time.sleep(2.0)
        return edge

    def kill_cloud(self) -> None:
        """The cloud broker dies at once (SIGKILL: no clean shutdown); the stack records it
        stopped. ``self.stack.start()`` brings it back with the data it had on disk."""
        pid = self.stack.status().components["cloud"].pid
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        self.stack.stop(only=["cloud"])

    def close(self) -> None:
        self.collector.pause()
        self.forwarder.stop()
        self.worker.stop()
        self.stack.stop()


def by_key(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Record ids per (kind, device or scope key), in the given order."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        if "alert_id" in r:
            out[("alert", r["device_id"])].append(r["alert_id"])
        elif "summary_id" in r:
            out[("summary", r["scope_key"])].append(r["summary_id"])
    return out
