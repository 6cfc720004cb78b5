"""The gateway side of model rollout: read ``edge.models``, verify, shadow, promote or roll back,
and swap the model between batches (the decisions themselves are in
:mod:`edgestream.rollout.slots`).

The forwarder mirrors the cloud's ``fleet.models`` into the edge topic ``edge.models``; the
worker reads it from its own position (kept in ``<data dir>/rollout.json`` with the rollout
state, no consumer group). For each :class:`ModelUpdate`:

* ``candidate``: verified with :func:`edgestream.ml.signing.verify_update` against the public
  key of topology ``retraining.signing``. Rejected (unsigned, bad signature, wrong key, hash
  mismatch, inputs that are not the live model's, not loadable): the live model keeps
  serving, an :class:`AnomalyAlert` with rule ``model-rejected`` goes to ``edge.alerts`` (so
  it reaches ``fleet.alerts`` and alert subscribers) and a ``rejected`` RolloutEvent to
  ``edge.rollout``. Accepted: the ONNX session is built and warmed in a thread (processing
  goes on), the artifact saved under ``<data dir>/models/``, then the candidate runs in
  shadow (canary gateway) or waits for ``promote`` (others).
* ``promote``: the pending (or shadowed) candidate goes live.
* ``rollback``: the candidate is dropped, or the live version returns to the previous one.

A swap takes each topic's pipeline lock in turn and replaces the scorer reference: a batch is
scored entirely by one model, so no reading is dropped or scored twice, and the version on
the outputs of each topic switches at one point.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.offsets import aio_partitions
from edgestream.core.serde import AvroDeserializer, AvroSerializer, subject_for
from edgestream.ml.artifact import write_artifact
from edgestream.ml.exceptions import ModelError, ModelRejected
from edgestream.ml.scorer import OnnxScorer
from edgestream.rollout.host import ModelHost, ServedPipeline, ShadowRun
from edgestream.rollout.slots import (
    Gates,
    ModelRef,
    RolloutState,
    ShadowStats,
    Slot,
    judge,
    rejection_alert,
    shadow_fields,
)
from edgestream.wire.topics import MODELS_TOPIC, ROLLOUT_TOPIC

log = logging.getLogger("edgestream.rollout")

STATE_FILE = "rollout.json"
PROGRESS_EVERY_S = 5.0  # shadow-progress events at most this often
LIVE_WAIT_S = 2.0  # a swap followed by no batch is announced as live after this long


class RolloutAgent:
    """Rollout of new models on one gateway (see the module docstring)."""

    def __init__(self, gateway: ModelHost) -> None:
        self.gateway = gateway
        self.topology = gateway.topology
        self.gateway_id = gateway.gateway_id
        self.state_path = Path(gateway.data_dir) / STATE_FILE
        self.models_dir = Path(gateway.data_dir) / "models"
        self.state = RolloutState.load(self.state_path)
        self.gates = Gates.from_topology(self.topology)
        self.canary = self.gateway_id in self.topology.canary_gateways()
        served = self.topology.gateway(self.gateway_id).device_types
        self.device_types = [d for d in served if d in self.topology.models]
        self.shadows: dict[str, ShadowRun] = {}
        self.pending: dict[str, tuple[OnnxScorer, float]] = {}
        self._live: dict[str, tuple[OnnxScorer, float]] = {}
        self._last_progress: dict[str, float] = {}
        self._deciding: set[str] = set()
        self._done: dict[str, deque[tuple[float, str]]] = {}  # (batch done, version) per type
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retired: dict[str, Any] = {}  # the model replaced by the last swap
        self._live_due: dict[str, dict[str, Any]] = {}  # swaps not yet announced as live
        self._save_lock = asyncio.Lock()
        self._decode = AvroDeserializer(gateway.registry, reader_schema="ModelUpdate")
        self._event_ser = AvroSerializer(
            gateway.registry, "RolloutEvent", subject_for(ROLLOUT_TOPIC)
        )
        self._public_key: Any = None
        self.swapped_at: dict[str, float] = {}  # device type -> monotonic time of the last swap

    # -- start-up (blocking parts run in the pipeline executor) ------------------------------
    def live_model(self, device_type: str) -> tuple[OnnxScorer, float] | None:
        """The saved live model of ``device_type`` when a rollout replaced the topology's
        (None: use the topology's). Blocking."""
        slot = self.state.slots.get(device_type)
        if slot is None or slot.live.path is None:
            return None
        if device_type not in self._live:
            scorer = _load(slot.live.path)
            self._live[device_type] = (scorer, scorer.threshold)
        return self._live[device_type]

    async def start(self) -> None:
        """After the pipelines are built: record the live versions, resume a shadow or a
        pending candidate, announce ``live``, then follow ``edge.models``."""
        for dtype in self.device_types:
            pipelines = self._pipelines(dtype)
            if not pipelines or pipelines[0].scorer is None:
                continue
            scorer = pipelines[0].scorer
            slot = self.state.slots.get(dtype)
            if slot is None:
                slot = self.state.slots[dtype] = Slot(
                    dtype, ModelRef(scorer.version, scorer.sha256)
                )
            self._live.setdefault(dtype, (scorer, float(pipelines[0].threshold)))
            if slot.candidate is not None and slot.candidate.path:
                try:
                    cand = await asyncio.to_thread(_load, slot.candidate.path)
                except (ModelError, EdgestreamError, OSError) as error:
                    log.error("cannot reload candidate %s: %s", slot.candidate.version, error)
                    slot.drop_candidate()
                else:
                    if slot.mode == "shadow":
                        await self._set_shadow(
                            dtype, ShadowRun(cand, cand.threshold, ShadowStats())
                        )
                    else:
                        self.pending[dtype] = (cand, cand.threshold)
        await self._save()
        for dtype in self.state.slots:
            if dtype in self.device_types:
                slot = self.state.slots[dtype]
                await self.event("live", slot, slot.live.version)
        await self._follow()

    # -- edge.models -----------------------------------------------------------------------
    async def _follow(self) -> None:
        bootstrap = self.gateway.bootstrap
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
            consumer.seek(tp, self.state.next_offset)
            while True:
                fetched = await consumer.getmany(tp, timeout_ms=200, max_records=20)
                for record in fetched.get(tp, []):
                    await self.handle_record(record.value)
                    self.state.next_offset = record.offset + 1
                    await self._save()
                await self._check_deadlines()
        finally:
            await consumer.stop()

    async def handle_record(self, value: bytes | None) -> None:
        """Act on one ``edge.models`` record (undecodable ones are logged and skipped)."""
        try:
            update = self._decode(value)
        except Exception as error:  # SerdeError and friends: not a ModelUpdate
            log.error("skipping an edge.models record that is not a ModelUpdate: %s", error)
            return
        dtype = update.get("device_type") or self._type_of(update.get("model_name"))
        if dtype not in self.device_types or dtype not in self.state.slots:
            return  # a model this gateway does not serve
        action = update.get("action") or "candidate"
        slot = self.state.slots[dtype]
        if action == "candidate":
            await self._candidate(slot, update)
        elif action == "promote":
            await self._promote_update(slot, update)
        elif action == "rollback":
            await self._rollback_update(slot, update)
        else:
            log.info("ignoring model update action %r for %s", action, update.get("version"))

    def _type_of(self, model_name: str | None) -> str | None:
        for dtype, spec in self.topology.models.items():
            if spec.name == model_name:
                return dtype
        return None

    async def _candidate(self, slot: Slot, update: dict[str, Any], promote: bool = False) -> bool:
        version = str(update["version"])
        cand = slot.candidate
        if version == slot.live.version or (cand is not None and cand.version == version):
            return False  # already have it (a re-read record)
        live_scorer, live_thr = self._live[slot.device_type]
        try:
            blob = self._verify(update)
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
                threshold=float(threshold if threshold is not None else live_thr),
                model_file=f"{version}.onnx",
                metrics={k: float(v) for k, v in (update.get("metrics") or {}).items()},
            )
            scorer = await asyncio.to_thread(_build, blob, meta, self.models_dir / slot.device_type)
        except ModelRejected as error:
            await self.reject(slot, update, error.reason, str(error))
            return False
        except (ModelError, EdgestreamError, OSError) as error:
            await self.reject(slot, update, "load-failed", str(error))
            return False
        path = str(self.models_dir / slot.device_type / f"{version}.onnx")
        ref = ModelRef(version, meta.sha256, path, str(update.get("model_name") or ""))
        self._drop_loaded(slot.device_type)
        mode = "shadow" if self.canary and not promote else "pending"
        slot.accept(ref, mode, _now())
        if mode == "shadow":
            await self._set_shadow(
                slot.device_type, ShadowRun(scorer, meta.threshold, ShadowStats())
            )
        else:
            self.pending[slot.device_type] = (scorer, meta.threshold)
        await self._save()
        await self.event("verified", slot, version, action=update.get("action"), mode=mode)
        return True

    def _verify(self, update: dict[str, Any], require_artifact: bool = True) -> bytes:
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

    async def _promote_update(self, slot: Slot, update: dict[str, Any]) -> None:
        version = str(update["version"])
        if version == slot.live.version:
            return
        if update.get("signature"):  # a signed promote must verify; an unsigned one can only
            try:  # name a candidate that was verified already (below)
                self._verify(update, require_artifact=False)
            except ModelRejected as error:
                await self.reject(slot, update, error.reason, str(error))
                return
        cand = slot.candidate
        if cand is None or cand.version != version:
            if update.get("artifact") is None and not update.get("artifact_uri"):
                why = f"promote of {version}: no verified candidate {version} here"
                await self.reject(slot, update, "unknown-version", why)
                return
            if not await self._candidate(slot, update, promote=True):
                return
        elif update.get("sha256") and update["sha256"] != cand.sha256:
            why = f"promote of {version} names another sha256 than the candidate's"
            await self.reject(slot, update, "hash-mismatch", why)
            return
        await self.promote(slot, "promote", "operator", "promote update")

    async def _rollback_update(self, slot: Slot, update: dict[str, Any]) -> None:
        version = str(update["version"])
        if update.get("signature"):  # like promote: a signed record must verify
            try:
                self._verify(update, require_artifact=False)
            except ModelRejected as error:
                await self.reject(slot, update, error.reason, str(error))
                return
        if slot.candidate is not None and slot.candidate.version == version:
            await self.drop(slot, "rollback", "operator", "rollback update")
        elif slot.live.version == version and slot.previous is not None:
            await self.revert(slot, "rollback", "operator", "rollback update")

    # -- decisions -------------------------------------------------------------------------
    def after_batch(self, device_type: str, scored_by: str | None = None) -> None:
        """Called by the worker after each batch of ``device_type`` (outside the pipeline lock)
        with the version that scored it; never blocks the batch path: events and decisions
        run as tasks. Announces a swap as ``live`` once the first batch of the new version is
        done (with the pause since the last batch of the old one) and judges a shadow."""
        now = time.monotonic()
        slot = self.state.slots.get(device_type)
        if slot is None:
            return
        done = self._done.setdefault(device_type, deque(maxlen=256))
        if scored_by is not None:
            done.append((now, scored_by))
        due = self._live_due.get(device_type)
        if due is not None and (scored_by == due["version"] or now - due["at"] > LIVE_WAIT_S):
            del self._live_due[device_type]
            pause = None
            if scored_by == due["version"]:
                old = [t for t, v in list(done)[:-1] if v != due["version"]]
                pause = round((now - old[-1]) * 1000, 3) if old else None
            timing = (pause, due["gap_ms"], due["swap_ms"])
            self._spawn(self.event("live", slot, due["version"], previous=due["previous"],
                                   timing=timing))  # fmt: skip
        run = self.shadows.get(device_type)
        if run is None or slot.candidate is None or device_type in self._deciding:
            return
        verdict = judge(run.stats, self.gates, _now() - slot.since_ms)
        if verdict.decision == "promote":
            self._deciding.add(device_type)
            self._spawn(self.promote(slot, None, verdict.reason, verdict.detail))
        elif verdict.decision == "rollback":
            self._deciding.add(device_type)
            self._spawn(self.drop(slot, None, verdict.reason, verdict.detail))
        elif now - self._last_progress.get(device_type, 0.0) >= PROGRESS_EVERY_S:
            self._last_progress[device_type] = now
            self._spawn(self.event("shadow-progress", slot, slot.candidate.version, mode="shadow"))

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task (kept referenced until done; a failure is logged)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("rollout task failed", exc_info=t.exception())

        task.add_done_callback(finished)

    async def _check_deadlines(self) -> None:
        """A shadow that sees no readings still ends at ``max_duration``; a swap followed by
        no batch is announced after :data:`LIVE_WAIT_S`."""
        for dtype in {*self.shadows, *self._live_due}:
            self.after_batch(dtype)

    async def promote(self, slot: Slot, action: str | None, reason: str, detail: str) -> None:
        dtype = slot.device_type
        self._deciding.add(dtype)
        try:
            run = self.shadows.get(dtype)
            loaded = (run.scorer, run.threshold) if run is not None else self.pending.get(dtype)
            if loaded is None:  # the candidate artifact is on disk (e.g. after a restart)
                assert slot.candidate is not None and slot.candidate.path
                scorer = await asyncio.to_thread(_load, slot.candidate.path)
                loaded = (scorer, scorer.threshold)
            stats = run.stats if run is not None else None
            version = slot.candidate.version if slot.candidate else loaded[0].version
            since = slot.since_ms
            old = slot.promote()
            await self._save()  # first on disk: a restart serves the new version
            await self._swap(dtype, *loaded, previous=old.version)
            self._drop_loaded(dtype)
            await self.event("promoted", slot, version, action=action, reason=reason,
                             detail=detail, previous=old.version, stats=stats,
                             since_ms=since)  # fmt: skip
        finally:
            self._deciding.discard(dtype)

    async def drop(self, slot: Slot, action: str | None, reason: str, detail: str) -> None:
        dtype = slot.device_type
        run = self.shadows.get(dtype)
        since = slot.since_ms
        cand = slot.drop_candidate()
        self._deciding.discard(dtype)
        await self._save()
        self._drop_loaded(dtype)
        await self._set_shadow(dtype, None)
        if cand is not None:
            await self.event("rolled_back", slot, cand.version, action=action, reason=reason,
                             detail=detail, stats=run.stats if run else None,
                             since_ms=since)  # fmt: skip

    async def revert(self, slot: Slot, action: str | None, reason: str, detail: str) -> None:
        dtype = slot.device_type
        target = slot.previous
        assert target is not None
        if target.path is None:  # the topology's model
            loaded = await asyncio.to_thread(self.gateway.load_topology_model, dtype)
        else:
            scorer = await asyncio.to_thread(_load, target.path)
            loaded = (scorer, scorer.threshold)
        bad = slot.revert()
        await self._save()
        await self._swap(dtype, *loaded, previous=bad.version)
        await self.event("rolled_back", slot, bad.version, action=action, reason=reason,
                         detail=detail, previous=bad.version)  # fmt: skip

    async def reject(self, slot: Slot, update: dict[str, Any], reason: str, detail: str) -> None:
        """Keep serving; raise a ``model-rejected`` alert and a ``rejected`` event."""
        version = str(update.get("version"))
        log.error(
            "model %s %s rejected (%s): %s", update.get("model_name"), version, reason, detail
        )
        seq = await self.event("rejected", slot, version, action=update.get("action"),
                               reason=reason, detail=detail)  # fmt: skip
        gateway = self.topology.gateway(self.gateway_id)
        alert = rejection_alert(
            self.gateway_id,
            gateway.sites[0] if gateway.sites else "",
            slot.device_type,
            str(update.get("model_name") or slot.device_type),
            version,
            slot.live.version,
            seq,
            _now(),
        )
        await self.gateway.send_alert(alert)

    # -- mechanics -------------------------------------------------------------------------
    def _pipelines(self, device_type: str) -> list[ServedPipeline]:
        return self.gateway.pipelines_of(device_type)

    async def _set_shadow(self, device_type: str, run: ShadowRun | None) -> None:
        if run is None:
            self.shadows.pop(device_type, None)
        else:
            self.shadows[device_type] = run
            self._last_progress[device_type] = time.monotonic()
        async for pipeline in self.gateway.locked_pipelines(device_type):
            pipeline.shadow = run

    async def _swap(
        self, device_type: str, scorer: OnnxScorer, threshold: float, previous: str
    ) -> None:
        """Between batches: each topic's pipeline lock in turn, then the new reference. The
        ``live`` event follows the first batch done with the new model (:meth:`after_batch`)."""
        self.shadows.pop(device_type, None)
        done = [t for t, _v in self._done.get(device_type, ())]
        gaps = [b - a for a, b in pairwise(done)]
        started = time.monotonic()
        async for pipeline in self.gateway.locked_pipelines(device_type):
            pipeline.shadow = None
            pipeline.set_model(scorer, threshold)
        # the old session stays referenced (freeing it takes the event loop thread a while,
        # right when the first batch of the new model should run)
        self._retired[device_type] = self._live.get(device_type)
        self._live[device_type] = (scorer, threshold)
        self.swapped_at[device_type] = time.monotonic()
        self._live_due[device_type] = {
            "version": scorer.version,
            "previous": previous,
            "gap_ms": round(float(np.median(gaps)) * 1000, 3) if gaps else None,
            "swap_ms": round((self.swapped_at[device_type] - started) * 1000, 3),
            "at": self.swapped_at[device_type],
        }
        log.warning("%s: model %s is live on %s", device_type, scorer.version, self.gateway_id)

    def _drop_loaded(self, device_type: str) -> None:
        self.pending.pop(device_type, None)

    async def _save(self) -> None:
        async with self._save_lock:
            await asyncio.to_thread(self.state.save, self.state_path)

    async def event(
        self,
        kind: str,
        slot: Slot,
        version: str,
        *,
        action: str | None = None,
        mode: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        previous: str | None = None,
        stats: ShadowStats | None = None,
        since_ms: int | None = None,
        timing: tuple[float | None, float | None, float | None] = (None, None, None),
    ) -> int:
        """Produce a RolloutEvent on ``edge.rollout`` (its id counts this gateway's events,
        saved before producing so a restart never reuses one); returns its number."""
        self.state.event_seq += 1
        seq = self.state.event_seq
        await self._save()
        run = self.shadows.get(slot.device_type)
        if stats is None and run is not None and kind == "shadow-progress":
            stats = run.stats
        since = since_ms if since_ms is not None else (slot.since_ms if slot.candidate else 0)
        record: dict[str, Any] = {
            "event_id": f"{self.gateway_id}|rollout|{seq}",
            "gateway_id": self.gateway_id,
            "event": kind,
            "model_name": self.topology.models[slot.device_type].name,
            "device_type": slot.device_type,
            "version": version,
            "live_version": slot.live.version,
            "previous_version": previous,
            "action": action,
            "mode": mode,
            "canary": self.canary,
            "reason": reason,
            "detail": (detail or "")[:2000] or None,
            "created_at": _now(),
            **shadow_fields(stats, since, _now()),
            "swap_pause_ms": timing[0],
            "batch_gap_ms": timing[1],
            "swap_ms": timing[2],
        }
        await self.gateway.send(ROLLOUT_TOPIC, self.gateway_id.encode(), self._event_ser(record))
        log.info("rollout %s %s %s %s", kind, slot.device_type, version, reason or "")
        return seq


def _now() -> int:
    return int(time.time() * 1000)


#: Rows of the warm-up call: a full batch, so the first real batch after a swap finds ONNX
#: Runtime's buffers already sized.
WARM_ROWS = 512


def _build(blob: bytes, meta: Any, directory: Path) -> OnnxScorer:
    """Load and warm a verified candidate, then keep its artifact (ONNX + sidecar)."""
    scorer = OnnxScorer.load(blob, meta).warm(WARM_ROWS)
    write_artifact(directory, blob, meta)
    return scorer


def _load(path: str) -> OnnxScorer:
    return OnnxScorer.load(path).warm(WARM_ROWS)
