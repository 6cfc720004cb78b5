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
from pathlib import Path
from typing import Any

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.serde import AvroDeserializer
from edgestream.ml.exceptions import ModelError, ModelRejected
from edgestream.ml.scorer import OnnxScorer
from edgestream.rollout.events import RolloutEvents
from edgestream.rollout.host import ModelHost, ServedPipeline, ShadowRun
from edgestream.rollout.slots import (
    Gates,
    ModelRef,
    RolloutState,
    ShadowStats,
    Slot,
    judge,
    rejection_alert,
)
from edgestream.rollout.swap_timing import SwapTiming
from edgestream.rollout.updates import (
    UpdateVerifier,
    build_candidate,
    follow_models,
    load_scorer,
    now_ms,
    update_device_type,
)

log = logging.getLogger("edgestream.rollout")

STATE_FILE = "rollout.json"
PROGRESS_EVERY_S = 5.0  # shadow-progress events at most this often


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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retired: dict[str, Any] = {}  # the model replaced by the last swap
        self.timing = SwapTiming()  # swap figures, and when a swap is announced live
        self._save_lock = asyncio.Lock()
        self._decode = AvroDeserializer(gateway.registry, reader_schema="ModelUpdate")
        self.events = RolloutEvents(gateway, self.state, self._save, self.shadows, self.canary)
        self._verifier = UpdateVerifier(self.topology)
        self.swapped_at: dict[str, float] = {}  # device type -> monotonic time of the last swap

    # -- start-up (blocking parts run in the pipeline executor) ------------------------------
    def live_model(self, device_type: str) -> tuple[OnnxScorer, float] | None:
        """The saved live model of ``device_type`` when a rollout replaced the topology's
        (None: use the topology's). Blocking."""
        slot = self.state.slots.get(device_type)
        if slot is None or slot.live.path is None:
            return None
        if device_type not in self._live:
            scorer = load_scorer(slot.live.path)
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
                    cand = await asyncio.to_thread(load_scorer, slot.candidate.path)
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
                await self.events.emit("live", slot, slot.live.version)
        await self._follow()

    # -- edge.models -----------------------------------------------------------------------
    async def _follow(self) -> None:
        await follow_models(self.gateway.bootstrap, self.state.next_offset, self._handle_at,
                            self._check_deadlines)  # fmt: skip

    async def _handle_at(self, value: bytes | None, offset: int) -> None:
        await self.handle_record(value)
        self.state.next_offset = offset + 1
        await self._save()

    async def handle_record(self, value: bytes | None) -> None:
        """Act on one ``edge.models`` record (undecodable ones are logged and skipped)."""
        try:
            update = self._decode(value)
        except Exception as error:  # SerdeError and friends: not a ModelUpdate
            log.error("skipping an edge.models record that is not a ModelUpdate: %s", error)
            return
        dtype = update_device_type(self.topology, update)
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

    async def _candidate(self, slot: Slot, update: dict[str, Any], promote: bool = False) -> bool:
        version = str(update["version"])
        cand = slot.candidate
        if version == slot.live.version or (cand is not None and cand.version == version):
            return False  # already have it (a re-read record)
        live_scorer, live_thr = self._live[slot.device_type]
        try:
            blob, meta = self._verifier.candidate(update, live_scorer, live_thr)
            directory = self.models_dir / slot.device_type
            scorer = await asyncio.to_thread(build_candidate, blob, meta, directory)
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
        slot.accept(ref, mode, now_ms())
        if mode == "shadow":
            await self._set_shadow(
                slot.device_type, ShadowRun(scorer, meta.threshold, ShadowStats())
            )
        else:
            self.pending[slot.device_type] = (scorer, meta.threshold)
        await self._save()
        await self.events.emit("verified", slot, version, action=update.get("action"), mode=mode)
        return True

    async def _promote_update(self, slot: Slot, update: dict[str, Any]) -> None:
        version = str(update["version"])
        if version == slot.live.version:
            return
        if update.get("signature"):  # a signed promote must verify; an unsigned one can only
            try:  # name a candidate that was verified already (below)
                self._verifier.verify(update, require_artifact=False)
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
                self._verifier.verify(update, require_artifact=False)
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
        live = self.timing.batch_done(device_type, scored_by, now)
        if live is not None:
            version, previous, timing = live
            self._spawn(self.events.emit("live", slot, version, previous=previous, timing=timing))
        run = self.shadows.get(device_type)
        if run is None or slot.candidate is None or device_type in self._deciding:
            return
        verdict = judge(run.stats, self.gates, now_ms() - slot.since_ms)
        if verdict.decision == "promote":
            self._deciding.add(device_type)
            self._spawn(self.promote(slot, None, verdict.reason, verdict.detail))
        elif verdict.decision == "rollback":
            self._deciding.add(device_type)
            self._spawn(self.drop(slot, None, verdict.reason, verdict.detail))
        elif now - self._last_progress.get(device_type, 0.0) >= PROGRESS_EVERY_S:
            self._last_progress[device_type] = now
            self._spawn(
                self.events.emit("shadow-progress", slot, slot.candidate.version, mode="shadow")
            )

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
        no batch is announced after :data:`~edgestream.rollout.swap_timing.LIVE_WAIT_S`."""
        for dtype in {*self.shadows, *self.timing.due_types()}:
            self.after_batch(dtype)

    async def promote(self, slot: Slot, action: str | None, reason: str, detail: str) -> None:
        dtype = slot.device_type
        self._deciding.add(dtype)
        try:
            run = self.shadows.get(dtype)
            loaded = (run.scorer, run.threshold) if run is not None else self.pending.get(dtype)
            if loaded is None:  # the candidate artifact is on disk (e.g. after a restart)
                assert slot.candidate is not None and slot.candidate.path
                scorer = await asyncio.to_thread(load_scorer, slot.candidate.path)
                loaded = (scorer, scorer.threshold)
            stats = run.stats if run is not None else None
            version = slot.candidate.version if slot.candidate else loaded[0].version
            since = slot.since_ms
            old = slot.promote()
            await self._save()  # first on disk: a restart serves the new version
            await self._swap(dtype, *loaded, previous=old.version)
            self._drop_loaded(dtype)
            await self.events.emit("promoted", slot, version, action=action, reason=reason,
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
            await self.events.emit("rolled_back", slot, cand.version, action=action, reason=reason,
                             detail=detail, stats=run.stats if run else None,
                             since_ms=since)  # fmt: skip

    async def revert(self, slot: Slot, action: str | None, reason: str, detail: str) -> None:
        dtype = slot.device_type
        target = slot.previous
        assert target is not None
        if target.path is None:  # the topology's model
            loaded = await asyncio.to_thread(self.gateway.load_topology_model, dtype)
        else:
            scorer = await asyncio.to_thread(load_scorer, target.path)
            loaded = (scorer, scorer.threshold)
        bad = slot.revert()
        await self._save()
        await self._swap(dtype, *loaded, previous=bad.version)
        await self.events.emit("rolled_back", slot, bad.version, action=action, reason=reason,
                         detail=detail, previous=bad.version)  # fmt: skip

    async def reject(self, slot: Slot, update: dict[str, Any], reason: str, detail: str) -> None:
        """Keep serving; raise a ``model-rejected`` alert and a ``rejected`` event."""
        version = str(update.get("version"))
        log.error(
            "model %s %s rejected (%s): %s", update.get("model_name"), version, reason, detail
        )
        seq = await self.events.emit("rejected", slot, version, action=update.get("action"),
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
            now_ms(),
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
        gap_ms = self.timing.batch_gap_ms(device_type)
        started = time.monotonic()
        async for pipeline in self.gateway.locked_pipelines(device_type):
            pipeline.shadow = None
            pipeline.set_model(scorer, threshold)
        # the old session stays referenced (freeing it takes the event loop thread a while,
        # right when the first batch of the new model should run)
        self._retired[device_type] = self._live.get(device_type)
        self._live[device_type] = (scorer, threshold)
        self.swapped_at[device_type] = time.monotonic()
        self.timing.swapped(device_type, scorer.version, previous, gap_ms, started,
                            self.swapped_at[device_type])  # fmt: skip
        log.warning("%s: model %s is live on %s", device_type, scorer.version, self.gateway_id)

    def _drop_loaded(self, device_type: str) -> None:
        self.pending.pop(device_type, None)

    async def _save(self) -> None:
        async with self._save_lock:
            await asyncio.to_thread(self.state.save, self.state_path)
