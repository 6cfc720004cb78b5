"""What the gateway's rollout agent reads on ``edge.models`` and how it trusts it: the
position-kept reader of the topic, the signature check of a :class:`ModelUpdate` against the
topology's public key, the candidate's metadata (it must take the live model's inputs), and
building and warming the verified model (:class:`~edgestream.rollout.agent.RolloutAgent`
decides what to do with it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from edgestream.core.offsets import aio_partitions
from edgestream.core.topology import Topology
from edgestream.ml.artifact import write_artifact
from edgestream.ml.exceptions import ModelError, ModelRejected
from edgestream.ml.scorer import OnnxScorer
from edgestream.wire.topics import MODELS_TOPIC

__all__ = ["WARM_ROWS", "UpdateVerifier", "build_candidate", "follow_models", "load_scorer"]

#: Rows of the warm-up call: a full batch, so the first real batch after a swap finds ONNX
#: Runtime's buffers already sized.
WARM_ROWS = 512


def now_ms() -> int:
    return int(time.time() * 1000)


async def follow_models(
    bootstrap: str,
    start: int,
    handle: Callable[[bytes | None, int], Awaitable[None]],
    tick: Callable[[], Awaitable[None]],
) -> None:
    """Read ``edge.models`` from offset ``start`` (no consumer group) for ever: ``handle``
    each record's value and offset, then ``tick`` after every fetch."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(MODELS_TOPIC, 0)
        while not await aio_partitions(consumer, MODELS_TOPIC):
            await asyncio.sleep(0.5)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while True:
            fetched = await consumer.getmany(tp, timeout_ms=200, max_records=20)
            for record in fetched.get(tp, []):
                await handle(record.value, record.offset)
            await tick()
    finally:
        await consumer.stop()


def update_device_type(topology: Topology, update: dict[str, Any]) -> str | None:
    """The device type an update is for (by its ``device_type``, else its model name)."""
    if update.get("device_type"):
        return str(update["device_type"])
    for dtype, spec in topology.models.items():
        if spec.name == update.get("model_name"):
            return dtype
    return None


class UpdateVerifier:
    """Checks updates against the public key of topology ``retraining.signing``."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._public_key: Any = None

    def verify(self, update: dict[str, Any], require_artifact: bool = True) -> bytes:
        """The verified artifact bytes (b"" when none is required and none came)."""
        from edgestream.ml.signing import load_public_key, verify_update

        if self._public_key is None:
            try:
                self._public_key = load_public_key(self.topology.retraining.signing)
            except ModelError as error:
                raise ModelRejected(
                    "unknown-key", f"no public key to verify with: {error}"
                ) from None
        artifact = update.get("artifact")
        uri = update.get("artifact_uri")
        if artifact is None and uri and require_artifact:  # promote/rollback: metadata only
            path = uri[len("file://") :] if uri.startswith("file://") else uri
            try:
                artifact = Path(path).read_bytes()
            except OSError as error:
                raise ModelRejected(
                    "hash-mismatch", f"cannot read artifact {uri}: {error}"
                ) from None
        verify_update(
            update, self._public_key, artifact=artifact, require_artifact=require_artifact
        )
        return bytes(artifact or b"")

    def candidate(
        self, update: dict[str, Any], live_scorer: OnnxScorer, live_threshold: float
    ) -> tuple[bytes, Any]:
        """A candidate's verified artifact and its metadata (the live model's, with the
        update's version, hash, threshold and metrics); raises :class:`ModelRejected`."""
        version = str(update["version"])
        blob = self.verify(update)
        inputs = tuple(update.get("inputs") or live_scorer.inputs)
        if inputs != tuple(live_scorer.inputs):
            raise ModelRejected(
                "inputs-mismatch",
                f"{version} takes inputs {list(inputs)}, the live model "
                f"{live_scorer.version} takes {list(live_scorer.inputs)} (the gateway "
                "computes the live model's features)",
            )
        threshold = update.get("threshold")
        meta = replace(
            live_scorer.meta,
            version=version,
            sha256=str(update["sha256"]),
            threshold=float(threshold if threshold is not None else live_threshold),
            model_file=f"{version}.onnx",
            metrics={k: float(v) for k, v in (update.get("metrics") or {}).items()},
        )
        return blob, meta


def build_candidate(blob: bytes, meta: Any, directory: Path) -> OnnxScorer:
    """Load and warm a verified candidate, then keep its artifact (ONNX + sidecar)."""
    scorer = OnnxScorer.load(blob, meta).warm(WARM_ROWS)
    write_artifact(directory, blob, meta)
    return scorer


def load_scorer(path: str) -> OnnxScorer:
    """A saved model, warmed."""
    return OnnxScorer.load(path).warm(WARM_ROWS)
