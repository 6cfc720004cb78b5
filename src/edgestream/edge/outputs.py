"""What a gateway worker produces on its edge broker, and when it gives up.

- rejected records to ``<topic>.dlq`` with ``x-edgestream-reason`` /
  ``x-edgestream-detail`` headers and the source position (original bytes; an oversize
  record's or key's head and size: :func:`~edgestream.edge.validate.dead_letter`);
- late readings to ``<topic>.late`` (original bytes for single readings; a frame's late
  readings re-encoded as SensorReading), with the window spec, window and watermark;
- alerts to ``edge.alerts`` and window summaries to ``edge.summaries`` (Avro, Confluent wire
  format, keyed by their deterministic ids) for the forwarder to take to the cloud, acked in
  the pipeline's state once the broker confirmed them;
- sampled valid readings to ``edge.samples`` (see :mod:`edgestream.edge.worker`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import Executor
from typing import Any, NoReturn

import faust

from edgestream.core.metrics import GatewayMetrics
from edgestream.core.registry.client import RegistryLike
from edgestream.core.serde import AvroSerializer, subject_for
from edgestream.core.topology.edge import SensorTopic
from edgestream.edge.pipeline import Outputs, TopicPipeline
from edgestream.edge.validate import bounded_key, dead_letter
from edgestream.wire.topics import ALERTS_TOPIC, SAMPLES_TOPIC, STATUS_TOPIC, SUMMARIES_TOPIC

__all__ = ["EXIT_PROCESSING_FAILED", "GatewayOutputs", "exit_for_restart"]

log = logging.getLogger("edgestream.edge")

EXIT_PROCESSING_FAILED = 70  # exit status when processing a batch failed (state stays consistent)


def exit_for_restart(message: str, *args: object) -> NoReturn:
    """Log ``message`` (with the exception being handled) and exit like a kill -9: the
    supervisor restarts the worker from its committed state, which replays or re-sends."""
    log.critical(message, *args, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_PROCESSING_FAILED)


class GatewayOutputs:
    """The gateway's producer side: serializers and topics of everything it sends
    (``executor``: the pipeline thread, where confirmed outputs are acked)."""

    def __init__(
        self,
        app: faust.App,
        registry: RegistryLike,
        metrics: GatewayMetrics,
        executor: Executor,
    ) -> None:
        self.app, self.registry, self.metrics = app, registry, metrics
        self._executor = executor
        self._confirming: set[asyncio.Future[None]] = set()  # outputs awaiting the broker
        self._out = {name: self.topic(name) for name in (ALERTS_TOPIC, SUMMARIES_TOPIC,
                                                         SAMPLES_TOPIC)}  # fmt: skip
        self._sample_ser = AvroSerializer(registry, "SensorReading", subject_for(SAMPLES_TOPIC))
        self._alert_ser = AvroSerializer(registry, "AnomalyAlert", subject_for(ALERTS_TOPIC))
        self._summary_ser = AvroSerializer(registry, "WindowSummary", subject_for(SUMMARIES_TOPIC))
        self._late_ser: dict[str, AvroSerializer] = {}

    def topic(self, name: str) -> Any:
        """An edge topic of raw keys and values."""
        return self.app.topic(name, value_serializer="raw", key_serializer="raw")

    def status(self) -> Any:
        return self.topic(STATUS_TOPIC)

    async def emit(
        self,
        topic: SensorTopic,
        pipeline: TopicPipeline,
        alerts: list[dict[str, Any]],
        summaries: list[dict[str, Any]],
    ) -> None:
        """Produce alerts first, then summaries; :meth:`_confirm` acks them once the broker
        confirmed them."""
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
            exit_for_restart(
                "the edge broker did not take %s's alerts/summaries; exiting so a restart "
                "re-sends them",
                topic.name,
            )

    async def samples(self, samples: list[dict[str, Any]]) -> None:
        """Sampled readings, keyed by device, without waiting for the broker."""
        for sample in samples:
            await self._out[SAMPLES_TOPIC].send(
                key=sample["device_id"].encode(), value=self._sample_ser(sample)
            )

    async def side_outputs(
        self, topic: SensorTopic, partition: int, messages: list[Any], out: Outputs
    ) -> None:
        """Rejected records to the DLQ, late readings to ``<topic>.late``; waits for both."""
        futures = []
        source = [
            ("x-edgestream-source-topic", topic.name.encode()),
            ("x-edgestream-source-partition", str(partition).encode()),
        ]
        dlq = self.topic(topic.dlq)
        for rej in out.rejected:
            msg = messages[rej.index]
            key, value, headers = dead_letter(msg.key, msg.value, rej)
            headers += [*source, ("x-edgestream-source-offset", str(msg.offset).encode())]
            futures.append(await dlq.send(key=key, value=value, headers=headers))
        if out.late:
            late_topic = self.topic(topic.late)
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

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one record to an edge topic and wait until it is delivered."""
        out = self._out.get(topic)
        if out is None:
            out = self.topic(topic)
        fut = await out.send(key=key, value=value)
        await fut

    async def send_alert(self, alert: dict[str, Any]) -> None:
        """Put an AnomalyAlert on ``edge.alerts`` and wait until it is delivered."""
        await self.send(ALERTS_TOPIC, alert["alert_id"].encode(), self._alert_ser(alert))
