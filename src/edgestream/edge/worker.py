"""The gateway's Faust worker: one agent per sensor topic, driving :class:`TopicPipeline`.

A reader task (:mod:`edgestream.edge.reader`) fetches micro-batches per partition (what
arrived, up to :data:`~edgestream.edge.reader.MAX_BATCH_READINGS` single readings or the
topology's batch size of frames, waiting at most its ``max_wait``) and hands each batch to the
topic's Faust agent as one event; the agent runs the pipeline in a worker thread (ONNX and numpy
release the event loop), then produces, on the gateway's edge broker
(:mod:`edgestream.edge.outputs`): rejected records to ``<topic>.dlq``, late readings to
``<topic>.late``, alerts to ``edge.alerts`` and window summaries to ``edge.summaries``, and
sampled valid readings (``seq % forwarding.samples.every == 0``) to ``edge.samples`` as
SensorReadings keyed by device (tags ``gateway_id``, ``model_version``), after the alerts
and summaries of their batch and without waiting for the broker (a statistical sample).

Summaries and alerts are acked in the local state only after the broker confirmed them, so a
crash re-produces them (same key, same bytes) rather than losing them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust

from edgestream.core.metrics import GatewayMetrics
from edgestream.core.registry.client import registry_client
from edgestream.core.serde import AvroDeserializer
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.config import GatewayConfig
from edgestream.edge.models import load_model
from edgestream.edge.outputs import GatewayOutputs, exit_for_restart
from edgestream.edge.pipeline import Outputs, TopicPipeline
from edgestream.edge.reader import Batch, Rewind, TopicReader
from edgestream.ml.scorer import OnnxScorer
from edgestream.rollout.agent import RolloutAgent
from edgestream.wire.topics import CONTROL_TOPIC

log = logging.getLogger("edgestream.edge")

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, before it starts to grow


class Gateway:
    """The Faust app of one gateway and the pipelines behind its agents (and the
    :class:`~edgestream.rollout.host.ModelHost` of its rollout agent)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        topo = config.topology
        gateway = topo.gateway(config.gateway_id)
        self.topics: list[SensorTopic] = [
            t for dtype in gateway.device_types for t in topo.topics_for(dtype)
        ]
        self.registry = registry_client(config.registry)
        # where it runs, as the rollout agent sees it (ModelHost)
        self.topology = topo
        self.gateway_id = config.gateway_id
        self.bootstrap = config.bootstrap
        self.data_dir = Path(config.data_dir)
        (config.data_dir / "faust").mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            f"edgestream-edge-{config.gateway_id}",
            broker=f"kafka://{config.bootstrap}",
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            datadir=str(config.data_dir / "faust"),
            web_enabled=False,
            autodiscover=False,
            topic_disable_leader=True,
            topic_allow_declare=False,
            consumer_auto_offset_reset="earliest",
            broker_rebalance_timeout=4.0,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0,
            stream_buffer_maxsize=16384,
            broker_max_poll_records=4000,
            producer_linger_ms=5,
            producer_acks=-1,
        )
        self.pipelines: dict[str, TopicPipeline] = {}
        self.metrics = GatewayMetrics(config.gateway_id)  # Prometheus (edgestream.core.metrics)
        self._locks: dict[str, asyncio.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-pipeline")
        self.outputs = GatewayOutputs(self.app, self.registry, self.metrics, self._executor)
        for topic in self.topics:
            self._define_agent(topic)
        self.app.timer(1.0)(self._tick)
        self.app.task(self._recover)
        self.rollout = RolloutAgent(self)  # edge.models: verify, shadow, promote, roll back
        control = self.outputs.topic(CONTROL_TOPIC)
        self.app.agent(control, name="edge.control")(self._control)

    # -- start-up --------------------------------------------------------------------------
    def _build_pipeline(self, topic: SensorTopic) -> TopicPipeline:
        topo = self.config.topology
        scorer, threshold = None, None
        if topic.device_type in topo.models:
            saved = self.rollout.live_model(topic.device_type)  # a promoted version
            scorer, threshold = saved or load_model(topo, topic.device_type)
        return TopicPipeline(
            topo,
            self.config.gateway_id,
            topic,
            self.config.data_dir / "state",
            AvroDeserializer(self.registry, reader_schema=topic.schema_),
            scorer,
            sync=self.config.sync,
            threshold=threshold,
        )

    async def _recover(self) -> None:
        """Build pipelines off the loop (model sessions take seconds) and re-send what a crash
        left unconfirmed."""
        loop = asyncio.get_running_loop()
        for topic in self.topics:
            lock = self._locks[topic.name] = asyncio.Lock()
            async with lock:
                pipeline = await loop.run_in_executor(self._executor, self._build_pipeline, topic)
                self.pipelines[topic.name] = pipeline
                alerts, summaries = pipeline.unacked()
                if alerts or summaries:
                    log.info("re-sending %d alerts, %d summaries", len(alerts), len(summaries))
                    await self.outputs.emit(topic, pipeline, alerts, summaries)
        await self.rollout.start()  # then follows edge.models

    async def _ready(self, topic: SensorTopic) -> TopicPipeline:
        while topic.name not in self.pipelines:
            await asyncio.sleep(0.05)
        return self.pipelines[topic.name]

    # -- agents ----------------------------------------------------------------------------
    def _define_agent(self, topic: SensorTopic) -> None:
        """A reader task fetches batches (:class:`~edgestream.edge.reader.TopicReader`); a
        Faust agent processes them."""
        channel = self.app.channel(maxsize=2)

        async def agent(stream: faust.StreamT) -> None:
            async for batch in stream:
                pipeline = self.pipelines[topic.name]
                if isinstance(batch, Rewind):
                    async with self._locks[topic.name]:
                        await asyncio.get_running_loop().run_in_executor(
                            self._executor, pipeline.rewind, batch.offsets, batch.topic_id
                        )
                    continue
                await self._process(topic, pipeline, batch)

        async def reader() -> None:
            pipeline = await self._ready(topic)
            lock, status = self._locks[topic.name], self.outputs.status()
            await TopicReader(self.config, topic, pipeline, lock, self._executor, self.metrics,
                              status, channel).run()  # fmt: skip

        self.app.agent(channel, name=f"edge.{topic.name}", concurrency=1)(agent)
        self.app.task(reader)

    async def _process(self, topic: SensorTopic, pipeline: TopicPipeline, batch: Batch) -> None:
        loop = asyncio.get_running_loop()
        partition, messages = batch.partition, batch.messages
        offsets = [m.offset for m in messages]
        values = [m.value for m in messages]
        now = int(time.time() * 1000)
        started = time.perf_counter()
        async with self._locks[topic.name]:
            scored_by = pipeline.scorer.version if pipeline.scorer is not None else None
            try:
                out = await loop.run_in_executor(
                    self._executor, pipeline.process, partition, offsets, values, now
                )
                await self.outputs.side_outputs(topic, partition, messages, out)
                await self.outputs.emit(topic, pipeline, out.alerts, out.summaries)
                await self.outputs.samples(out.samples)
                self._observe(topic, pipeline, out, time.perf_counter() - started)
            except Exception:
                # Bad input never gets here (it goes to the DLQ). Anything else (a disk error,
                # a bug) must not silently stop this topic while the worker looks alive: exit
                # like a kill -9 and let the supervisor restart from the committed state,
                # which re-reads this batch.
                exit_for_restart(
                    "processing %s[%d] at offset %d failed; exiting so a restart replays it",
                    topic.name,
                    partition,
                    offsets[0],
                )
        self.rollout.after_batch(topic.device_type, scored_by)  # swap timing, shadow verdict

    def _observe(
        self, topic: SensorTopic, pipeline: TopicPipeline, out: Outputs, seconds: float
    ) -> None:
        """Prometheus figures of one processed batch."""
        m = self.metrics
        m.batch(
            topic.name,
            readings=len(out.readings),
            rejected=[r.reason for r in out.rejected],
            late=len(out.late),
            seconds=seconds,
        )
        scorer = pipeline.scorer
        model = self.config.topology.models.get(topic.device_type)
        if scorer is not None and model is not None:
            m.inference(topic.name, model.name, out.inference_rows, out.inference_s)
            m.model(topic.name, model.name, scorer.version)

    async def _tick(self) -> None:
        """Once a second: idle partitions stop holding watermarks back."""
        now = int(time.time() * 1000)
        for topic in self.topics:
            pipeline = self.pipelines.get(topic.name)
            if pipeline is None:
                continue
            async with self._locks[topic.name]:
                loop = asyncio.get_running_loop()
                summaries = await loop.run_in_executor(self._executor, pipeline.advance_idle, now)
                if summaries:
                    await self.outputs.emit(topic, pipeline, [], summaries)

    async def _control(self, stream: faust.StreamT) -> None:
        """Operator commands. ``metrics``: publish every pipeline's counters (records per DLQ
        reason, late, alerts, window engine gauges) to ``edge.status``."""
        status = self.outputs.status()
        async for value in stream:
            try:
                command = json.loads(value).get("command")
            except (ValueError, AttributeError):
                log.warning("ignoring a control record that is not a JSON object")
                continue
            if command == "metrics":
                body = {
                    "gateway": self.config.gateway_id,
                    "ts": int(time.time() * 1000),
                    "topics": {n: p.metrics() for n, p in self.pipelines.items()},
                }
                await status.send(
                    key=self.config.gateway_id.encode(), value=json.dumps(body).encode()
                )
            else:
                log.warning("unknown control command %r", command)

    # -- the rollout agent's view (ModelHost) ---------------------------------------------
    def pipelines_of(self, device_type: str) -> list[TopicPipeline]:
        return [
            self.pipelines[t.name]
            for t in self.topics
            if t.device_type == device_type and t.name in self.pipelines
        ]

    async def locked_pipelines(self, device_type: str) -> AsyncIterator[TopicPipeline]:
        for topic in self.topics:
            if topic.device_type == device_type and topic.name in self.pipelines:
                async with self._locks[topic.name]:
                    yield self.pipelines[topic.name]

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.outputs.send(topic, key, value)

    async def send_alert(self, alert: dict[str, Any]) -> None:
        await self.outputs.send_alert(alert)

    def load_topology_model(self, device_type: str) -> tuple[OnnxScorer, float]:
        return load_model(self.topology, device_type)

    def close(self) -> None:
        for pipeline in self.pipelines.values():
            pipeline.close()
        self._executor.shutdown(wait=True)


def return_freed_memory(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have glibc's malloc serve blocks from ``threshold`` bytes up with their own mappings,
    returned to the OS when freed. By default the threshold grows with the largest block
    freed (up to 32 MB), after which a batch's numpy columns come from the heap and stay
    there: the worker's RSS grew ~25 MB over a 100k-reading backlog that way. Returns whether
    it applied (False off glibc).

    >>> isinstance(return_freed_memory(), bool)
    True
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def run_gateway(config: GatewayConfig, loglevel: str = "warning") -> None:
    """Run the gateway worker in the foreground until SIGTERM/SIGINT (Faust's worker)."""
    from faust.worker import Worker

    return_freed_memory()
    gateway = Gateway(config)
    worker = Worker(gateway.app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        gateway.close()
