"""The reader of one sensor topic: fetches micro-batches per partition for the topic's agent.

Faust's per-message path costs ~200 us/message (tasks, codecs, acks; measured by
``edgestream bench edge``), so records are fetched in batches with aiokafka ``getmany`` and
each batch is ONE event on an in-memory channel the agent consumes. A batch is what arrived
while the previous one was processed (at most ``max_wait`` is waited for more), up to
:data:`MAX_BATCH_READINGS` single readings or the model's batch size of frames: under a
backlog or a high rate the batches grow, so the fixed costs of a batch (two fsynced commits,
one model call) are shared by more readings. The reader needs no consumer group: it reads
every partition from the pipeline's own positions (RocksDB), so nothing depends on committed
offsets or ListOffsets.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from edgestream.core.metrics import GatewayMetrics
from edgestream.core.offsets import aio_partitions, reset_reason
from edgestream.core.topology import Topology
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.config import GatewayConfig
from edgestream.edge.pipeline import TopicPipeline
from edgestream.edge.topic_guard import TopicGuard

__all__ = ["MAX_BATCH_READINGS", "Batch", "Msg", "Rewind", "TopicReader", "batch_limits"]

TOPIC_CHECK_S = 2.0  # how often a reader checks that its topic was not deleted or recreated
#: most single readings per processed batch (frames: the model's batch size of messages)
MAX_BATCH_READINGS = 4096


@dataclass(frozen=True)
class Msg:
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Batch:
    """One fetched batch of one partition: a single event for the agent."""

    partition: int
    messages: list[Msg]


@dataclass(frozen=True)
class Rewind:
    """Read these partitions again from these offsets (the topic's log restarted); the
    topic's id now. Sent on the agent's channel: it applies after the batches before it."""

    offsets: dict[int, int]
    topic_id: str


def batch_limits(topology: Topology, topic: SensorTopic) -> tuple[int, int]:
    """Most records per fetched batch and the ms waited for more (the model's batching)."""
    model = topology.models.get(topic.device_type)
    size = model.batch.size if model else 512
    wait_ms = model.batch.max_wait if model else 50
    if topic.schema_ != "SensorFrame":  # a frame is many readings: its batch stays small
        size = max(size, MAX_BATCH_READINGS)
    return size, wait_ms


class TopicReader:
    """Feeds one topic's agent from its pipeline's positions (see the module docstring).

    ``lock`` is the topic's pipeline lock, ``executor`` the pipeline thread, ``status`` the
    ``edge.status`` topic (offset resets are reported there), ``channel`` the agent's."""

    def __init__(
        self,
        config: GatewayConfig,
        topic: SensorTopic,
        pipeline: TopicPipeline,
        lock: asyncio.Lock,
        executor: Executor,
        metrics: GatewayMetrics,
        status: Any,
        channel: Any,
    ) -> None:
        self.config, self.topic, self.pipeline = config, topic, pipeline
        self.lock, self.executor, self.metrics = lock, executor, metrics
        self.status, self.channel = status, channel

    async def run(self) -> None:
        """Feed the agent from the pipeline's positions, never skipping silently: a topic
        recreated or purged under us (new id, positions outside the log) is read again from
        its log start, a deleted one is created again (:mod:`edgestream.edge.topic_guard`)."""
        topic, pipeline = self.topic, self.pipeline
        size, wait_ms = batch_limits(self.config.topology, topic)
        async with self.lock:  # recovery has re-sent what was pending
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
                tps, known_id = await self._assign(guard, consumer, read, known_id)
                await self._fetch(guard, consumer, tps, read, known_id, (size, wait_ms))
        finally:
            await consumer.stop()

    async def _assign(
        self,
        guard: TopicGuard,
        consumer: AIOKafkaConsumer,
        read: dict[int, int],
        known_id: str | None,
    ) -> tuple[list[TopicPartition], str]:
        """Assign the topic's partitions at ``read``, after resetting the positions that are
        no longer valid (the reset reaches the pipeline through the agent's channel, after
        the batches queued before it)."""
        topic = self.topic
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
                await self.status.send(key=b"offset_reset", value=json.dumps(event).encode())
                rewind[tp.partition] = start
        if rewind or current != known_id:
            read.update(rewind)
            await self.channel.send(value=Rewind(rewind, current))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, read.get(tp.partition, 0))
        now = int(time.time() * 1000)
        await loop.run_in_executor(self.executor, self.pipeline.assign, partitions, now)
        return tps, current

    async def _fetch(
        self,
        guard: TopicGuard,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        read: dict[int, int],
        known_id: str,
        batch: tuple[int, int],
    ) -> None:
        """Fetch batches for the agent until the topic is not the one assigned any more (a
        position out of range, or another topic id every :data:`TOPIC_CHECK_S`)."""
        loop = asyncio.get_running_loop()
        size, wait_ms = batch  # records, ms
        next_check = time.monotonic() + TOPIC_CHECK_S
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=size)
            except OffsetOutOfRangeError:
                return
            await self._hold_backlog(consumer, tps)
            for tp, records in fetched.items():
                messages = [Msg(r.offset, r.key, r.value) for r in records]
                read[tp.partition] = records[-1].offset + 1
                await self.channel.send(value=Batch(tp.partition, messages))
            for tp in tps:
                high = consumer.highwater(tp)  # from the last fetch: broker-reported
                if high is not None:
                    lag = high - read.get(tp.partition, 0)
                    self.metrics.lag(self.topic.name, tp.partition, lag)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + TOPIC_CHECK_S
                if await loop.run_in_executor(None, guard.current_id) != known_id:
                    return

    async def _hold_backlog(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
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
            async with self.lock:
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.pipeline.assign, behind, now
                )
