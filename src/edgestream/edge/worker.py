"""The gateway's Faust worker: one agent per sensor topic, driving :class:`TopicPipeline`.

A reader task fetches micro-batches per partition (``getmany``: what arrived, up to
:data:`MAX_BATCH_READINGS` single readings or the topology's batch size of frames, waiting at
most its ``max_wait``) and hands each batch to the topic's Faust agent as one
event; the agent runs the pipeline in a worker thread (ONNX and numpy release the event loop),
then produces, on the gateway's edge broker:

- rejected records to ``<topic>.dlq`` with ``x-edgestream-reason`` /
  ``x-edgestream-detail`` headers and the source position (original bytes; an oversize
  record's or key's head and size: :func:`~edgestream.edge.validate.dead_letter`);
- late readings to ``<topic>.late`` (original bytes for single readings; a frame's late
  readings re-encoded as SensorReading), with the window spec, window and watermark;
- alerts to ``edge.alerts`` and window summaries to ``edge.summaries`` (Avro, Confluent wire
  format, keyed by their deterministic ids) for the forwarder to take to the cloud;
- sampled valid readings (``seq % forwarding.samples.every == 0``) to ``edge.samples`` as
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
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from edgestream.core.metrics import GatewayMetrics
from edgestream.core.offsets import aio_partitions, reset_reason
from edgestream.core.registry.client import registry_client
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.core.topology import Topology
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.models import load_model
from edgestream.edge.pipeline import Outputs, TopicPipeline
from edgestream.edge.topic_guard import TopicGuard
from edgestream.edge.validate import bounded_key, dead_letter
from edgestream.ml.scorer import OnnxScorer
from edgestream.rollout.agent import RolloutAgent
from edgestream.wire.topics import (
    ALERTS_TOPIC,
    CONTROL_TOPIC,
    GATEWAY_TOPICS,
    SAMPLES_TOPIC,
    STATUS_TOPIC,
    SUMMARIES_TOPIC,
)

log = logging.getLogger("edgestream.edge")

TOPIC_CHECK_S = 2.0  # how often a reader checks that its topic was not deleted or recreated
#: most single readings per processed batch (frames: the model's batch size of messages)
MAX_BATCH_READINGS = 4096
EXIT_PROCESSING_FAILED = 70  # exit status when processing a batch failed (state stays consistent)
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, before it starts to grow


@dataclass(frozen=True)
class GatewayConfig:
    """Where a gateway worker runs."""

    topology: Topology
    gateway_id: str
    bootstrap: str
    registry: str
    data_dir: Path
    sync: bool = True  # fsync every state commit (power-loss safe)


def sensor_topic_configs(topology: Topology, gateway_id: str) -> dict[str, dict[str, str]]:
    """Kafka configs of the gateway's sensor topics (retention from the topology)."""
    gateway = topology.gateway(gateway_id)
    return {
        topic.name: topic.kafka_configs()
        for dtype in gateway.device_types
        for topic in topology.topics_for(dtype)
    }


def edge_topics(topology: Topology, gateway_id: str) -> dict[str, int]:
    """Every topic the gateway reads or writes on its edge broker -> partitions."""
    gateway = topology.gateway(gateway_id)
    topics = dict(GATEWAY_TOPICS)
    for dtype in gateway.device_types:
        for topic in topology.topics_for(dtype):
            topics[topic.name] = topic.partitions
            topics[topic.dlq] = 1
            topics[topic.late] = 1
    return topics


@dataclass(frozen=True)
class _Msg:
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class _Batch:
    """One fetched batch of one partition: a single event for the agent."""

    partition: int
    messages: list[_Msg]


@dataclass(frozen=True)
class _Rewind:
    """Read these partitions again from these offsets (the topic's log restarted); the
    topic's id now. Sent on the agent's channel: it applies after the batches before it."""

    offsets: dict[int, int]
    topic_id: str


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
        self._confirming: set[asyncio.Future[None]] = set()  # outputs awaiting the broker
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-pipeline")
        self._out = {
            name: self.app.topic(name, value_serializer="raw", key_serializer="raw")
            for name in (ALERTS_TOPIC, SUMMARIES_TOPIC, SAMPLES_TOPIC)
        }
        self._sample_ser = AvroSerializer(
            self.registry, "SensorReading", subject_for(SAMPLES_TOPIC)
        )
        self._alert_ser = AvroSerializer(self.registry, "AnomalyAlert", subject_for(ALERTS_TOPIC))
        self._summary_ser = AvroSerializer(
            self.registry, "WindowSummary", subject_for(SUMMARIES_TOPIC)
        )
        self._late_ser: dict[str, AvroSerializer] = {}
        for topic in self.topics:
            self._define_agent(topic)
        self.app.timer(1.0)(self._tick)
        self.app.task(self._recover)
        self.rollout = RolloutAgent(self)  # edge.models: verify, shadow, promote, roll back
        control = self.app.topic(CONTROL_TOPIC, value_serializer="raw", key_serializer="raw")
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
                    await self._emit(topic, alerts, summaries)
        await self.rollout.start()  # then follows edge.models

    async def _ready(self, topic: SensorTopic) -> TopicPipeline:
        while topic.name not in self.pipelines:
            await asyncio.sleep(0.05)
        return self.pipelines[topic.name]

    # -- agents ----------------------------------------------------------------------------
    def _define_agent(self, topic: SensorTopic) -> None:
        """A reader task fetches batches; a Faust agent processes them.

        Faust's per-message path costs ~200 us/message (tasks, codecs, acks; measured by
        ``edgestream bench edge``), so records are fetched in batches with aiokafka
        ``getmany`` and each batch is ONE event on an in-memory channel the agent consumes.
        A batch is what arrived while the previous one was processed (at most ``max_wait``
        is waited for more), up to :data:`MAX_BATCH_READINGS` single readings or the model's
        batch size of frames: under a backlog or a high rate the batches grow, so the fixed
        costs of a batch (two fsynced commits, one model call) are shared by more readings.
        The reader needs no consumer group: it reads every partition from the pipeline's own
        positions (RocksDB), so nothing depends on committed offsets or ListOffsets.
        """
        model = self.config.topology.models.get(topic.device_type)
        size = model.batch.size if model else 512
        wait_ms = model.batch.max_wait if model else 50
        if topic.schema_ != "SensorFrame":  # a frame is many readings: its batch stays small
            size = max(size, MAX_BATCH_READINGS)
        channel = self.app.channel(maxsize=2)

        async def agent(stream: faust.StreamT) -> None:
            async for batch in stream:
                pipeline = self.pipelines[topic.name]
                if isinstance(batch, _Rewind):
                    async with self._locks[topic.name]:
                        await asyncio.get_running_loop().run_in_executor(
                            self._executor, pipeline.rewind, batch.offsets, batch.topic_id
                        )
                    continue
                await self._process(topic, pipeline, batch.partition, batch.messages)

        async def reader() -> None:
            await self._read(topic, channel, size, wait_ms)

        self.app.agent(channel, name=f"edge.{topic.name}", concurrency=1)(agent)
        self.app.task(reader)

    async def _read(self, topic: SensorTopic, channel: Any, size: int, wait_ms: int) -> None:
        """Feed the agent from the pipeline's positions, never skipping silently: a topic
        recreated or purged under us (new id, positions outside the log) is read again from
        its log start, a deleted one is created again (:mod:`edgestream.edge.topic_guard`)."""
        pipeline = await self._ready(topic)
        async with self._locks[topic.name]:  # recovery has re-sent what was pending
            read = pipeline.positions()  # partition -> next offset, once queued batches ran
            known_id = pipeline.topic_id
        guard = TopicGuard(self.config.bootstrap, self.config.gateway_id, topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",  # out of range raises: the guard decides, not aiokafka
            fetch_max_wait_ms=wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            while True:  # once per incarnation of the topic
                tps, known_id = await self._assign(topic, guard, consumer, channel, read, known_id)
                batch = (size, wait_ms)
                await self._fetch(topic, guard, consumer, channel, tps, read, known_id, batch)
        finally:
            await consumer.stop()

    async def _assign(
        self,
        topic: SensorTopic,
        guard: TopicGuard,
        consumer: AIOKafkaConsumer,
        channel: Any,
        read: dict[int, int],
        known_id: str | None,
    ) -> tuple[list[TopicPartition], str]:
        """Assign the topic's partitions at ``read``, after resetting the positions that are
        no longer valid (the reset reaches the pipeline through the agent's channel, after
        the batches queued before it)."""
        loop = asyncio.get_running_loop()
        while True:
            current = await loop.run_in_executor(None, guard.current_id)
            partitions = await aio_partitions(consumer, topic.name) if current else None
            if current and partitions:
                break
            if current is None:
                await loop.run_in_executor(None, guard.ensure)
            await asyncio.sleep(0.5)
        tps = [TopicPartition(topic.name, p) for p in partitions]
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        recreated = known_id is not None and current != known_id
        rewind: dict[int, int] = {}
        for tp in tps:
            position, start = read.get(tp.partition, 0), starts[tp]
            reason = reset_reason(position, start, ends[tp], recreated)
            if reason is not None and position != start:
                event = guard.report(tp.partition, position, start, reason)
                await self._status().send(key=b"offset_reset", value=json.dumps(event).encode())
                rewind[tp.partition] = start
        if rewind or current != known_id:
            read.update(rewind)
            await channel.send(value=_Rewind(rewind, current))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, read.get(tp.partition, 0))
        now = int(time.time() * 1000)
        await loop.run_in_executor(self._executor, self.pipelines[topic.name].assign,
                                   partitions, now)  # fmt: skip
        return tps, current

    async def _fetch(
        self,
        topic: SensorTopic,
        guard: TopicGuard,
        consumer: AIOKafkaConsumer,
        channel: Any,
        tps: list[TopicPartition],
        read: dict[int, int],
        known_id: str,
        batch: tuple[int, int],
    ) -> None:
        """Fetch batches for the agent until the topic is not the one assigned any more (a
        position out of range, or another topic id every :data:`TOPIC_CHECK_S`)."""
        loop = asyncio.get_running_loop()
        pipeline = self.pipelines[topic.name]
        size, wait_ms = batch  # records, ms
        next_check = time.monotonic() + TOPIC_CHECK_S
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=size)
            except OffsetOutOfRangeError:
                return
            await self._hold_backlog(topic, pipeline, consumer, tps)
            for tp, records in fetched.items():
                messages = [_Msg(r.offset, r.key, r.value) for r in records]
                read[tp.partition] = records[-1].offset + 1
                await channel.send(value=_Batch(tp.partition, messages))
            for tp in tps:
                high = consumer.highwater(tp)  # from the last fetch: broker-reported
                if high is not None:
                    self.metrics.lag(topic.name, tp.partition, high - read.get(tp.partition, 0))
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + TOPIC_CHECK_S
                if await loop.run_in_executor(None, guard.current_id) != known_id:
                    return

    def _status(self) -> Any:
        return self.app.topic(STATUS_TOPIC, value_serializer="raw", key_serializer="raw")

    async def _hold_backlog(
        self,
        topic: SensorTopic,
        pipeline: TopicPipeline,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
    ) -> None:
        """Partitions with records not yet read (the broker's high watermark from the last
        fetch is past the consumer's position) are live, not idle: a backlog, after downtime
        or while another partition's backlog is read first, holds the watermark until it is
        read, so it is windowed by its event times (edge.watermarks). Before the fetched
        batches go to the agent, so no batch is judged by a watermark that skipped them."""
        behind = []
        for tp in tps:
            high = consumer.highwater(tp)
            if high is not None and high > await consumer.position(tp):
                behind.append(tp.partition)
        if behind:
            now = int(time.time() * 1000)
            async with self._locks[topic.name]:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, pipeline.assign, behind, now
                )

    async def _process(
        self, topic: SensorTopic, pipeline: TopicPipeline, partition: int, messages: list[Any]
    ) -> None:
        loop = asyncio.get_running_loop()
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
                await self._side_outputs(topic, partition, messages, out)
                await self._emit(topic, out.alerts, out.summaries)
                for sample in out.samples:
                    await self._out[SAMPLES_TOPIC].send(
                        key=sample["device_id"].encode(), value=self._sample_ser(sample)
                    )
                self._observe(topic, pipeline, out, time.perf_counter() - started)
            except Exception:
                # Bad input never gets here (it goes to the DLQ). Anything else (a disk error,
                # a bug) must not silently stop this topic while the worker looks alive: exit
                # like a kill -9 and let the supervisor restart from the committed state,
                # which re-reads this batch.
                log.critical(
                    "processing %s[%d] at offset %d failed; exiting so a restart replays it",
                    topic.name,
                    partition,
                    offsets[0],
                    exc_info=True,
                )
                logging.shutdown()
                os._exit(EXIT_PROCESSING_FAILED)
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
        loop = asyncio.get_running_loop()
        for topic in self.topics:
            pipeline = self.pipelines.get(topic.name)
            if pipeline is None:
                continue
            async with self._locks[topic.name]:
                summaries = await loop.run_in_executor(self._executor, pipeline.advance_idle, now)
                if summaries:
                    await self._emit(topic, [], summaries)

    async def _control(self, stream: faust.StreamT) -> None:
        """Operator commands. ``metrics``: publish every pipeline's counters (records per DLQ
        reason, late, alerts, window engine gauges) to ``edge.status``."""
        status = self._status()
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

    # -- outputs ---------------------------------------------------------------------------
    async def _emit(
        self, topic: SensorTopic, alerts: list[dict[str, Any]], summaries: list[dict[str, Any]]
    ) -> None:
        """Produce alerts first, then summaries; :meth:`_confirm` acks them once the broker
        confirmed them."""
        pipeline = self.pipelines[topic.name]
        now = int(time.time() * 1000)
        futures = []
        for alert in alerts:
            record = {**alert, "emitted_at": alert.get("emitted_at") or now}
            futures.append(
                await self._out[ALERTS_TOPIC].send(
                    key=alert["alert_id"].encode(), value=self._alert_ser(record)
                )
            )
        for summary in summaries:
            futures.append(
                await self._out[SUMMARIES_TOPIC].send(
                    key=summary["summary_id"].encode(), value=self._summary_ser(summary)
                )
            )
        if futures:
            task = asyncio.ensure_future(self._confirm(topic, pipeline, futures, alerts, summaries))
            self._confirming.add(task)  # a reference until it is done
            task.add_done_callback(self._confirming.discard)

    async def _confirm(
        self,
        topic: SensorTopic,
        pipeline: TopicPipeline,
        futures: list[Any],
        alerts: list[dict[str, Any]],
        summaries: list[dict[str, Any]],
    ) -> None:
        """Once the broker confirmed a batch's outputs, the local state forgets them.

        In the background: the next batch does not wait for the broker (the produce round trip
        and this commit used to delay every batch behind one with outputs). Until then they
        stay pending in the committed state and a restart re-sends them (same keys, same bytes).
        """
        try:
            await asyncio.gather(*futures)
            self.metrics.emitted(topic.name, alerts=len(alerts), summaries=len(summaries))
            await asyncio.get_running_loop().run_in_executor(
                self._executor,
                pipeline.ack,
                [s["summary_id"] for s in summaries],
                [a["alert_id"] for a in alerts],
            )
        except Exception:
            log.critical(
                "the edge broker did not take %s's alerts/summaries; exiting so a restart "
                "re-sends them",
                topic.name,
                exc_info=True,
            )
            logging.shutdown()
            os._exit(EXIT_PROCESSING_FAILED)

    async def _side_outputs(
        self, topic: SensorTopic, partition: int, messages: list[Any], out: Outputs
    ) -> None:
        futures = []
        source = [
            ("x-edgestream-source-topic", topic.name.encode()),
            ("x-edgestream-source-partition", str(partition).encode()),
        ]
        dlq = self.app.topic(topic.dlq, value_serializer="raw", key_serializer="raw")
        for rej in out.rejected:
            msg = messages[rej.index]
            key, value, headers = dead_letter(msg.key, msg.value, rej)
            headers += [*source, ("x-edgestream-source-offset", str(msg.offset).encode())]
            futures.append(await dlq.send(key=key, value=value, headers=headers))
        if out.late:
            late_topic = self.app.topic(topic.late, value_serializer="raw", key_serializer="raw")
            frames = topic.schema_ == "SensorFrame"
            for late in out.late:
                msg = messages[late.message]
                value = self._late_reading(topic, out, late.reading) if frames else msg.value
                key, key_headers = bounded_key(msg.key)
                headers = [
                    *key_headers,
                    ("x-edgestream-reason", b"window_closed"),
                    ("x-edgestream-window-spec", late.window.encode()),
                    ("x-edgestream-window", f"{late.window_start}-{late.window_end}".encode()),
                    ("x-edgestream-watermark", str(late.watermark).encode()),
                    *source,
                    ("x-edgestream-source-offset", str(msg.offset).encode()),
                ]
                futures.append(await late_topic.send(key=key, value=value, headers=headers))
        if futures:
            await asyncio.gather(*futures)

    def _late_reading(self, topic: SensorTopic, out: Outputs, i: int) -> bytes:
        ser = self._late_ser.get(topic.late)
        if ser is None:
            ser = self._late_ser[topic.late] = AvroSerializer(
                self.registry, "SensorReading", subject_for(topic.late)
            )
        r = out.readings
        channels = {c: float(v) for c, v in zip(r.channels, r.values[i], strict=True) if v == v}
        return ser(
            {
                "device_id": r.device_id[i],
                "site": r.site[i],
                "device_type": r.device_type[i],
                "ts": int(r.ts[i]),
                "seq": int(r.seq[i]),
                "channels": channels,
                "tags": {},
            }
        )

    # -- the rollout agent's view (ModelHost) ---------------------------------------------
    @property
    def topology(self) -> Topology:
        return self.config.topology

    @property
    def gateway_id(self) -> str:
        return self.config.gateway_id

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

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
        out = self._out.get(topic)
        if out is None:
            out = self.app.topic(topic, value_serializer="raw", key_serializer="raw")
        fut = await out.send(key=key, value=value)
        await fut

    async def send_alert(self, alert: dict[str, Any]) -> None:
        await self.send(ALERTS_TOPIC, alert["alert_id"].encode(), self._alert_ser(alert))

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
