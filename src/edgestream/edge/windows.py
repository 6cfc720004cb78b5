"""Event-time windows for the edge agents: exact, vectorised, and exactly-once across crashes.

Pure logic over columnar micro-batches (:class:`ReadingBatch`, one Kafka partition each); the
Faust agent feeds it and produces what it returns. State lives in a local RocksDB
(:mod:`edgestream.edge.state`), committed atomically at the end of every call.

Semantics (Flink's, stated so a reference can be written from them):

* Windows are ``[s, s + size)`` with ``s`` a multiple of ``hop`` (``hop = size``: tumbling);
  a reading belongs to ``size / hop`` windows.
* Watermark of a partition: ``max event time seen - max_out_of_orderness``. The engine
  watermark ``WM`` is the max of its previous value and the min over the partitions that are
  not idle; a partition is idle when ``now_ms - last time it was active >= idle_timeout_ms``
  (``now_ms`` is processing time passed in by the caller). A partition is active when it
  delivers readings and when :meth:`WindowEngine.assign` names it: on assignment (after a
  restart too: the time the worker was down is not silence) and while the consumer has
  records of it not yet read (a backlog after downtime is windowed by its event times, as
  live data is, not by how long reading it takes). In ``process`` the batch's partition is
  active; before each reading ``WM`` is updated from the partitions' current maxima (so the
  reading is judged by the watermark its predecessors produced), then the reading updates
  its partition's maximum. Results therefore do not depend on how a partition's readings
  are cut into batches.
* Window ``[s, e)`` is closed once ``e - 1 + allowed_lateness <= WM``; it is emitted once, by
  the call in which it closes. A reading is not added to its closed windows; it is *late* when
  all of them are closed, and is then returned in :class:`LateReadings` and counted per key.
  Because closedness is a function of ``WM`` alone, no per-window marks are kept.
* Replays: readings whose offset is <= the partition's last processed offset are skipped. All
  readings of one Kafka message (a frame; they share the offset) must come in the same batch.

Crash guarantee. Every call that changes state ends with one atomic RocksDB commit (fsync by
default) holding the new state *and* the summaries the call emitted, in an outbox kept until
:meth:`WindowEngine.ack`. A summary is returned by exactly one call; after a crash at any
point (``kill -9`` included) :meth:`WindowEngine.open` restores the last commit and
:meth:`WindowEngine.unacked` returns the emitted, unacked summaries byte-identical. Feeding
the input again from any earlier offset then emits exactly the summaries an uninterrupted run
on that input would have emitted after the crash point, and none it emitted before. So: produce
``unacked()`` after opening, produce each result's summaries, ack after the broker confirms,
and commit consumer offsets only after ``process()`` returned (or seek to :meth:`positions`).
Summaries then reach the topic at least once and any duplicate is identical with the same
``summary_id``. Like Flink's, results depend on the order of calls across partitions and on
``now_ms`` (idleness); they never depend on how one partition's readings are batched.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from edgestream.edge.state import Changes, Segment, StringTable, WindowStateError, WindowStore
from edgestream.edge.window_meta import check_meta, new_meta
from edgestream.edge.window_stats import count_windows, gather, summarise
from edgestream.wire.watermarks import Watermarks
from edgestream.wire.window_types import (
    MAX_WATERMARK,
    SCOPES,
    LateReadings,
    ProcessResult,
    ReadingBatch,
    WindowSpec,
)

__all__ = [
    "SCOPES",
    "LateReadings",
    "ProcessResult",
    "ReadingBatch",
    "WindowEngine",
    "WindowSpec",
    "WindowStateError",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _fail_closed(
    method: Callable[Concatenate[WindowEngine, _P], _R],
) -> Callable[Concatenate[WindowEngine, _P], _R]:
    """A call that raises may leave memory ahead of the store: refuse further calls."""

    @functools.wraps(method)
    def guarded(self: WindowEngine, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._failed is not None:
            raise WindowStateError(
                f"window engine on {self.store.path} failed earlier ({self._failed!r}); its "
                "state on disk is intact: reopen it with WindowEngine.open"
            )
        try:
            return method(self, *args, **kwargs)
        except BaseException as exc:
            self._failed = exc
            raise

    return guarded


class WindowEngine:
    """Event-time window aggregation with durable, exactly-once state.

    >>> import tempfile
    >>> spec = WindowSpec(size_ms=1000, max_out_of_orderness_ms=0)
    >>> engine = WindowEngine.open(spec, gateway_id="gw-1", store_path=tempfile.mkdtemp())
    >>> batch = ReadingBatch(
    ...     partition=0, offsets=[0, 1, 2], device_id=["d1"] * 3, site=["s1"] * 3,
    ...     device_type=["pump"] * 3, ts=[100, 900, 1500], seq=[1, 2, 3],
    ...     values=[[1.0], [3.0], [5.0]], channels=("temp",), model_version="m1")
    >>> result = engine.process(batch, now_ms=0)
    >>> [(s["summary_id"], s["count"], s["channels"]["temp"]["mean"]) for s in result.summaries]
    [('gw-1|device|d1|0|1000', 2, 2.0), ('gw-1|site|s1|0|1000', 2, 2.0)]
    >>> engine.ack(s["summary_id"] for s in result.summaries)
    >>> [s["window_start"] for s in engine.flush_all().summaries]
    [1000, 1000]
    >>> engine.metrics()["emitted"]
    4
    >>> engine.close()
    """

    def __init__(
        self, spec: WindowSpec, gateway_id: str, store: WindowStore, source: str | None = None
    ) -> None:
        """Use :meth:`open`."""
        self.spec, self.gateway_id, self.store = spec, gateway_id, store
        self.source = source  # the sensor topic: part of a site summary's key (window_stats)
        state = store.load()
        self._strings = StringTable(state.strings)
        self._failed: BaseException | None = None
        self._segments: list[Segment] = state.segments
        self._outbox: dict[str, tuple[int, bytes]] = {}
        for seq, payload in state.outbox:
            self._outbox[json.loads(payload)["summary_id"]] = (seq, payload)
        self._late = state.late
        self.extras: dict[str, bytes] = dict(state.extras)
        meta = state.meta or new_meta(gateway_id, spec)
        check_meta(meta, store.path, gateway_id, spec)
        self._clock = Watermarks.from_json(spec, meta["watermark"], meta["partitions"])
        self._channels: list[str] = meta["channels"]
        self._channel_table = StringTable(self._channels)  # channel name <-> id
        self._counters: dict[str, int] = meta["counters"]
        self._next_segment: int = meta["next_segment"]
        self._next_outbox: int = meta["next_outbox"]
        if state.meta is None:  # claim a new store for this gateway and spec
            store.commit(Changes(meta=meta))

    @classmethod
    def open(
        cls,
        spec: WindowSpec,
        gateway_id: str,
        store_path: Path | str,
        *,
        sync: bool = True,
        source: str | None = None,
    ) -> WindowEngine:
        """Open (or create) the engine whose state lives in ``store_path``; ``source`` is
        the sensor topic it windows (site summaries are per topic: ``<site>/<topic>``).

        After a crash, :meth:`unacked` returns the summaries emitted but not acked.
        """
        store = WindowStore(store_path, sync=sync)
        try:
            return cls(spec, gateway_id, store, source)
        except BaseException:
            store.close()
            raise

    def _meta(self) -> dict[str, Any]:
        meta = new_meta(self.gateway_id, self.spec)
        meta.update(
            watermark=self._clock.value,
            partitions=self._clock.to_json(),
            channels=self._channels,
            counters=self._counters,
            next_segment=self._next_segment,
            next_outbox=self._next_outbox,
        )
        return meta

    # -- public API -------------------------------------------------------------------------

    @property
    def watermark(self) -> int:
        """Engine watermark (epoch ms; very negative before any reading)."""
        return self._clock.value

    @_fail_closed
    def assign(self, partitions: Iterable[int], now_ms: int) -> None:
        """Declare partitions live at ``now_ms``: each holds the watermark until it delivers
        data or stays silent for the idle timeout from ``now_ms``. Call it on assignment
        (known partitions too: a restart after downtime must not find them idle) and for the
        partitions the consumer has records of not yet read (a backlog is not silence)."""
        if self._clock.assign(list(partitions), now_ms):
            self._commit(Changes(meta=self._meta()))

    @_fail_closed
    def process(
        self, batch: ReadingBatch, now_ms: int, extras: dict[str, bytes] | None = None
    ) -> ProcessResult:
        """Add a batch; return the summaries it closed and its late readings (then commit).

        ``extras`` (name -> bytes) are committed in the same atomic write, and are what
        :attr:`extras` holds after a reopen: the caller's own state that must stay consistent
        with this engine's (e.g. feature and incident state of the same readings).

        If it raises, the state on disk is unchanged and the engine refuses further calls:
        reopen it and feed the input again from the consumer's position.
        """
        done = self._clock.last_offset(batch.partition)
        first = 0 if done is None else int(np.searchsorted(batch.offsets, done, side="right"))
        skipped = first
        changes = Changes(extras=dict(extras or {}))
        self.extras.update(changes.extras)
        self._counters["replay_skipped"] += skipped
        if first == len(batch):
            changes.meta = self._meta()
            self._commit(changes)
            return ProcessResult([], skipped_replayed=skipped, watermark=self._clock.value)
        sl = slice(first, None)
        ts, offsets = batch.ts[sl], batch.offsets[sl]
        wm_before = self._clock.before_each(batch.partition, ts, now_ms)
        spec, step = self.spec, self.spec.step_ms
        last_start = ts // step * step
        closed = spec.closed_through(wm_before)
        late = last_start <= closed
        first_open = np.maximum(last_start - (spec.size_ms - step), closed + step)

        device = self._strings.ids(batch.device_id[sl])
        site = self._strings.ids(batch.site[sl])
        self._count_late(late, device, site, changes)
        keep = ~late
        if keep.any():
            channel_ids = [self._channel_table.id_of(c) for c in batch.channels]
            columns = (device, site, first_open, last_start)
            seg = Segment.accepted(
                self._next_segment, batch, first, keep, columns, self._strings, channel_ids
            )
            self._next_segment += 1
            self._segments.append(seg)
            changes.put_segments.append(seg)
        self._clock.observe(batch.partition, int(ts.max()), int(offsets[-1]), now_ms)
        self._counters["processed"] += ts.shape[0]
        self._counters["late"] += int(late.sum())
        summaries = self._advance(self._clock.candidate(now_ms), changes)
        idx = np.flatnonzero(late)
        late_out = LateReadings(
            indices=idx + first,
            window_start=last_start[idx],
            window_end=last_start[idx] + spec.size_ms,
            watermark=wm_before[idx],
        )
        return ProcessResult(summaries, late_out, skipped, self._clock.value)

    @_fail_closed
    def advance_idle(self, now_ms: int) -> ProcessResult:
        """Let partitions idle at ``now_ms`` stop holding the watermark; emit what closes."""
        changes = Changes()
        summaries = self._advance(self._clock.candidate(now_ms), changes)
        return ProcessResult(summaries, watermark=self._clock.value)

    @_fail_closed
    def flush_all(self) -> ProcessResult:
        """End of input: close and emit every window; later readings are all late."""
        return ProcessResult(self._advance(MAX_WATERMARK, Changes()), watermark=self._clock.value)

    @_fail_closed
    def ack(
        self,
        summary_ids: Iterable[str],
        extras: dict[str, bytes] | None = None,
        durable: bool = True,
    ) -> None:
        """The caller has durably produced these summaries: drop them from the outbox.

        ``extras`` are committed in the same write (see :meth:`process`). ``durable`` False:
        no fsync for this write (:attr:`Changes.durable`; losing it re-sends the summaries).
        """
        changes = Changes(extras=dict(extras or {}), durable=durable)
        self.extras.update(changes.extras)
        for sid in summary_ids:
            entry = self._outbox.pop(sid, None)
            if entry is not None:
                changes.delete_outbox.append(entry[0])
        self._commit(changes)

    @_fail_closed
    def rewind(self, partition: int, offset: int, extras: dict[str, bytes] | None = None) -> None:
        """Read ``partition`` again from ``offset``: its log restarted there (the topic was
        recreated, see :mod:`edgestream.core.offsets`). Event-time state stays: the watermark
        never goes back, and open windows keep what they hold."""
        pos = self._clock.partitions.get(partition)
        if pos is not None:
            pos.last_offset = offset - 1 if offset > 0 else None
        changes = Changes(meta=self._meta(), extras=dict(extras or {}))
        self.extras.update(changes.extras)
        self._commit(changes)

    def unacked(self) -> list[dict[str, Any]]:
        """Emitted but not yet acked summaries, in emission order, identical to the first time."""
        return [json.loads(p) for _, p in sorted(self._outbox.values())]

    def positions(self) -> dict[int, int]:
        """Next offset to consume per partition (seek there on assignment; Kafka's committed
        offsets and ListOffsets are then not needed for exactness)."""
        parts = self._clock.partitions.items()
        return {p: s.last_offset + 1 for p, s in parts if s.last_offset is not None}

    def late_counts(self) -> dict[tuple[str, str], int]:
        """Late readings so far per (scope, key), e.g. ``("device", "d1") -> 3``."""
        return {(scope, self._strings[k]): n for (scope, k), n in sorted(self._late.items())}

    def metrics(self) -> dict[str, int]:
        """Counters (persisted) and gauges: processed, late, replay_skipped, emitted,
        windows_open, outbox_pending, segments, partitions, watermark."""
        closed = self.spec.closed_through(self._clock.value)
        rows = gather(self._segments, len(self._channels), closed, MAX_WATERMARK)
        return {
            **self._counters,
            "windows_open": count_windows(rows, self.spec.scopes, closed, self.spec.step_ms),
            "outbox_pending": len(self._outbox),
            "segments": len(self._segments),
            "partitions": len(self._clock.partitions),
            "watermark": self._clock.value,
        }

    def close(self) -> None:
        """Close the store (state is already durable; this only releases the directory)."""
        self.store.close()

    def __enter__(self) -> WindowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _advance(self, new_wm: int, changes: Changes) -> list[dict[str, Any]]:
        """Raise the watermark to ``new_wm``, emit the windows it closes, commit."""
        summaries: list[dict[str, Any]] = []
        after, through = (
            self.spec.closed_through(self._clock.value),
            self.spec.closed_through(new_wm),
        )
        self._clock.value = max(self._clock.value, new_wm)
        if through > after:
            rows = gather(self._segments, len(self._channels), after, through)
            summaries = summarise(
                rows,
                after=after,
                through=through,
                step=self.spec.step_ms,
                size=self.spec.size_ms,
                scopes=self.spec.scopes,
                gateway_id=self.gateway_id,
                strings=self._strings,
                channels=self._channels,
                source=self.source,
            )
            live = []
            for seg in self._segments:
                if seg.max_last_start <= through:
                    changes.delete_segments.append(seg.segno)
                else:
                    live.append(seg)
            self._segments = live
            for s in summaries:
                payload = json.dumps(s, separators=(",", ":")).encode()
                self._outbox[s["summary_id"]] = (self._next_outbox, payload)
                changes.put_outbox.append((self._next_outbox, payload))
                self._next_outbox += 1
            self._counters["emitted"] += len(summaries)
        changes.meta = self._meta()
        self._commit(changes)
        return summaries

    def _commit(self, changes: Changes) -> None:
        """One atomic write; strings interned since the last commit go with it."""
        changes.new_strings = self._strings.unsaved()
        self.store.commit(changes)
        self._strings.mark_saved()

    def _count_late(
        self, late: np.ndarray, device: np.ndarray, site: np.ndarray, changes: Changes
    ) -> None:
        if not late.any():
            return
        for scope in self.spec.scopes:
            keys = (device if scope == "device" else site)[late]
            ids, counts = np.unique(keys, return_counts=True)
            for k, n in zip(ids.tolist(), counts.tolist(), strict=True):
                total = self._late.get((scope, k), 0) + n
                self._late[(scope, k)] = changes.late[(scope, k)] = total
