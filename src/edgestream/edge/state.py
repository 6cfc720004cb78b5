"""Durable state of the window engine: one local RocksDB per engine, committed atomically.

The engine keeps no per-window accumulators: an open window is fully described by the accepted
readings that fall into it and by the watermark. So the store holds

==================================  ========================================================
key (raw bytes)                     value
==================================  ========================================================
``m``                               meta JSON: format, gateway, spec, watermark, partitions
                                    (max event time, last processed offset, last activity),
                                    channel names, counters, next segment / outbox numbers
``s`` + u32 id                      interned string (device, site, device type, model version)
``r`` + u64 segment number          :class:`Segment`: the accepted readings of one ``process()``
``o`` + u64 outbox number           an emitted summary (JSON) until the caller acks it
``l`` + scope byte + u32 key id     late-reading counter of one (scope, key)
``x`` + name                        caller state committed with the engine's (e.g. the
                                    gateway's feature and incident state), opaque bytes
==================================  ========================================================

A segment is deleted in the commit whose watermark closes the last window any of its readings
belongs to, and an outbox entry when it is acked, so the number of keys depends on the open
windows and on the distinct devices, never on how long the engine has run.

Every engine call that changes state ends with exactly one :meth:`WindowStore.commit`: one
RocksDB ``WriteBatch`` (atomic) written with the WAL on and, by default, ``sync=True`` (fsync
before returning). A crash, ``kill -9`` or power loss therefore leaves the state of the last
returned call or of the one before it, never a mixture. ``sync=False`` survives a process
crash but not an OS crash or power loss; use it only where readings can be replayed from a
broker that has not committed the consumer offsets yet.

Memory. Every commit rewrites the extras the caller passes (the gateway passes the feature
state of the devices a batch changed, a few KB, and its incident state), so an engine writes
steadily while its live data stays small. RocksDB's default
64 MB write buffer would hold all of that in memory for minutes (it grew the gateway worker by
~8 MB/min in the soak, issue 8) before the first flush. A store therefore uses small write
buffers (:data:`WRITE_BUFFER_BYTES`, at most :data:`MAX_WRITE_BUFFERS` of them) and a small
block cache (:data:`BLOCK_CACHE_BYTES`; the state is read once, at open): at most ~10 MB per
store, whatever the run time. Smaller buffers mean more flushes: with 35 KB commits (256-row
batches) and fsync, 1 MB buffers committed ~2x slower than the default, 4 MB ~1.5x.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteOptions

from edgestream.core.exceptions import EdgestreamError
from edgestream.wire.window_types import ReadingBatch

META_KEY = b"m"
STRING_PREFIX = b"s"
SEGMENT_PREFIX = b"r"
OUTBOX_PREFIX = b"o"
LATE_PREFIX = b"l"
EXTRA_PREFIX = b"x"
SCOPE_BYTES = {"device": b"d", "site": b"s"}
_SCOPE_NAMES = {v: k for k, v in SCOPE_BYTES.items()}
WRITE_BUFFER_BYTES = 4 << 20  # one memtable; flushed to an SST file when full
MAX_WRITE_BUFFERS = 2  # the one filling and the one being flushed
BLOCK_CACHE_BYTES = 1 << 20


class WindowStateError(EdgestreamError):
    """The window state store cannot be opened or does not match the engine's configuration."""


_HEADER = struct.Struct("<4sHqqII")
_MAGIC = b"ESG1"
_I64 = ("ts", "seq", "offset", "first_open", "last_start")
_I32 = ("rank", "device", "site", "device_type", "model_version")


@dataclass(eq=False)
class ReadingColumns:
    """Accepted readings as row-aligned columns: what a window reads of them.

    ``first_open`` is the start of the first window the reading was accepted into (windows that
    were already closed when it arrived are excluded); ``last_start`` the start of its last
    window. String columns hold ids into the engine's string table (``model_version`` -1: none).
    """

    ts: np.ndarray
    seq: np.ndarray
    first_open: np.ndarray
    last_start: np.ndarray
    device: np.ndarray
    site: np.ndarray
    device_type: np.ndarray
    model_version: np.ndarray
    score: np.ndarray
    anomaly: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(eq=False)
class Segment(ReadingColumns):
    """The accepted readings of one ``process()`` call (rows in batch order), with where they
    came from: partition, offsets, their rank within a frame, and their channels' ids."""

    segno: int
    partition: int
    channel_ids: np.ndarray
    offset: np.ndarray
    rank: np.ndarray
    min_first_open: int = field(init=False)
    max_last_start: int = field(init=False)

    def __post_init__(self) -> None:
        self.min_first_open = int(self.first_open.min())
        self.max_last_start = int(self.last_start.max())

    @classmethod
    def accepted(
        cls,
        segno: int,
        batch: ReadingBatch,
        first: int,
        keep: np.ndarray,
        columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        strings: StringTable,
        channel_ids: list[int],
    ) -> Segment:
        """The readings ``keep`` of ``batch[first:]`` (``columns``: their device and site ids
        in ``strings``, first open and last window starts; ``channel_ids``: the batch's
        channels as the engine numbers them)."""
        sl = slice(first, None)
        device, site, first_open, last_start = columns
        offsets = batch.offsets[sl]
        rank = np.arange(first, len(batch)) - np.searchsorted(batch.offsets, offsets, "left")
        mv = batch.model_version
        if mv is None or isinstance(mv, str):
            mv_ids = np.full(len(batch) - first, -1 if mv is None else strings.id_of(mv))
        else:
            mv_ids = strings.ids(mv[sl], allow_none=True)
        return cls(
            segno=segno,
            partition=batch.partition,
            channel_ids=np.array(channel_ids, np.int32),
            ts=batch.ts[sl][keep],
            seq=batch.seq[sl][keep],
            offset=offsets[keep],
            rank=rank[keep].astype(np.int32),
            first_open=first_open[keep],
            last_start=last_start[keep],
            device=device[keep],
            site=site[keep],
            device_type=strings.ids(batch.device_type[sl])[keep],
            model_version=mv_ids[keep].astype(np.int32),
            score=batch.scores[sl][keep],
            anomaly=batch.anomaly[sl][keep],
            values=batch.values[sl][keep],
        )

    def to_bytes(self) -> bytes:
        """Little-endian binary form (header, int64 columns, int32 columns, floats, values)."""
        n, c = len(self), int(self.channel_ids.shape[0])
        parts = [_HEADER.pack(_MAGIC, 1, self.segno, self.partition, n, c)]
        parts += [np.ascontiguousarray(getattr(self, k), "<i8").tobytes() for k in _I64]
        parts += [np.ascontiguousarray(getattr(self, k), "<i4").tobytes() for k in _I32]
        parts.append(np.ascontiguousarray(self.channel_ids, "<i4").tobytes())
        parts.append(np.ascontiguousarray(self.score, "<f8").tobytes())
        parts.append(np.ascontiguousarray(self.anomaly, "u1").tobytes())
        parts.append(np.ascontiguousarray(self.values, "<f8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        magic, _version, segno, partition, n, c = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC:
            raise WindowStateError(
                f"window state segment {segno} is corrupt (bad magic {magic!r}): "
                "delete the engine's state directory to start over"
            )
        pos = _HEADER.size
        cols: dict[str, Any] = {}

        def take(dtype: str, count: int) -> np.ndarray:
            nonlocal pos
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
            pos += arr.nbytes
            return arr

        for k in _I64:
            cols[k] = take("<i8", n)
        for k in _I32:
            cols[k] = take("<i4", n)
        cols["channel_ids"] = take("<i4", c)
        cols["score"] = take("<f8", n)
        cols["anomaly"] = take("u1", n).view(bool)
        cols["values"] = take("<f8", n * c).reshape(n, c)
        return cls(segno=segno, partition=partition, **cols)


class StringTable:
    """Interned strings (device, site, device type, model version) <-> int ids.

    Ids are dense and never reused; new strings are written by the next commit.

    >>> table = StringTable(["d1"])
    >>> table.ids(np.array(["d2", "d1", None, "d2"], dtype=object), allow_none=True).tolist()
    [1, 0, -1, 1]
    >>> table.unsaved(), table[1]
    ([(1, 'd2')], 'd2')
    """

    def __init__(self, strings: list[str]) -> None:
        self._strings = strings
        self._ids = {s: i for i, s in enumerate(strings)}
        self._saved = len(strings)

    def __getitem__(self, sid: int) -> str:
        return self._strings[sid]

    def __len__(self) -> int:
        return len(self._strings)

    def id_of(self, text: str) -> int:
        sid = self._ids.get(text)
        if sid is None:
            sid = self._ids[text] = len(self._strings)
            self._strings.append(text)
        return sid

    def ids(self, column: np.ndarray, allow_none: bool = False) -> np.ndarray:
        """int32 ids of a column (vectorised: one dict lookup per distinct value); None -> -1."""
        seen: dict[Any, int] = {}
        codes = np.fromiter((seen.setdefault(v, len(seen)) for v in column), np.int64, len(column))
        ids = [-1 if u is None else self.id_of(str(u)) for u in seen]
        if not allow_none and -1 in ids:
            raise ValueError("device_id, site and device_type must not contain None")
        return np.array(ids, np.int32)[codes] if ids else np.zeros(0, np.int32)

    def unsaved(self) -> list[tuple[int, str]]:
        return [(i, self._strings[i]) for i in range(self._saved, len(self._strings))]

    def mark_saved(self) -> None:
        self._saved = len(self._strings)


@dataclass
class Changes:
    """Everything one engine call changes; written by :meth:`WindowStore.commit` atomically."""

    meta: dict[str, Any] | None = None
    new_strings: list[tuple[int, str]] = field(default_factory=list)
    put_segments: list[Segment] = field(default_factory=list)
    delete_segments: list[int] = field(default_factory=list)
    put_outbox: list[tuple[int, bytes]] = field(default_factory=list)
    delete_outbox: list[int] = field(default_factory=list)
    late: dict[tuple[str, int], int] = field(default_factory=dict)
    extras: dict[str, bytes] = field(default_factory=dict)
    #: fsync before returning (with ``sync``). False for a write whose loss only repeats work
    #: (an ack: the outputs it forgets are sent again, same keys and bytes): an OS crash may
    #: lose it, a process crash does not, and the next durable write syncs it (one WAL).
    durable: bool = True


@dataclass
class StoredState:
    """What :meth:`WindowStore.load` found (``meta`` is None for a new store)."""

    meta: dict[str, Any] | None
    strings: list[str]
    segments: list[Segment]
    outbox: list[tuple[int, bytes]]
    late: dict[tuple[str, int], int]
    extras: dict[str, bytes] = field(default_factory=dict)


def store_options() -> Options:
    """RocksDB options of a window store: raw keys, bounded memory (module docstring).

    >>> import tempfile
    >>> db = Rdict(tempfile.mkdtemp(), options=store_options())
    >>> db.property_int_value("rocksdb.block-cache-capacity") == BLOCK_CACHE_BYTES
    True
    >>> db.close()
    """
    options = Options(raw_mode=True)
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(MAX_WRITE_BUFFERS)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    options.set_block_based_table_factory(table)
    return options


def _u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def _u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


class WindowStore:
    """A RocksDB directory holding one window engine's state (see the module docstring).

    >>> import tempfile
    >>> store = WindowStore(tempfile.mkdtemp())
    >>> store.commit(Changes(meta={"format": 1}, new_strings=[(0, "dev-1")]))
    >>> state = store.load()
    >>> state.meta, state.strings
    ({'format': 1}, ['dev-1'])
    >>> store.close()
    """

    def __init__(self, path: Path | str, *, sync: bool = True) -> None:
        self.path = Path(path)
        self.sync = sync
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db: Rdict | None = Rdict(str(self.path), options=store_options())
        except Exception as exc:  # rocksdict raises plain Exception
            raise WindowStateError(
                f"cannot open window state at {self.path}: {exc}; if another worker uses this "
                "directory stop it or give this one its own data dir"
            ) from exc
        self._write_opts = WriteOptions()
        self._write_opts.sync = sync
        self._lazy_opts = WriteOptions()  # WAL on, no fsync: Changes.durable False

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise WindowStateError(f"window state at {self.path} is closed: reopen the engine")
        return self._db

    def _prefixed(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value

    def load(self) -> StoredState:
        """Read the whole state (done once, when the engine opens)."""
        raw_meta = self.db.get(META_KEY)
        meta = json.loads(raw_meta) if raw_meta is not None else None
        strings = [v.decode() for _, v in self._prefixed(STRING_PREFIX)]
        segments = [Segment.from_bytes(v) for _, v in self._prefixed(SEGMENT_PREFIX)]
        outbox = [(int.from_bytes(k[1:], "big"), v) for k, v in self._prefixed(OUTBOX_PREFIX)]
        late = {
            (_SCOPE_NAMES[k[1:2]], int.from_bytes(k[2:], "big")): int(v)
            for k, v in self._prefixed(LATE_PREFIX)
        }
        extras = {k[1:].decode(): v for k, v in self._prefixed(EXTRA_PREFIX)}
        return StoredState(meta, strings, segments, outbox, late, extras)

    def commit(self, changes: Changes) -> None:
        """Write ``changes`` as one atomic WriteBatch (WAL on; fsync when ``sync`` and
        ``changes.durable``)."""
        wb = WriteBatch(raw_mode=True)
        for sid, text in changes.new_strings:
            wb.put(STRING_PREFIX + _u32(sid), text.encode())
        for seg in changes.put_segments:
            wb.put(SEGMENT_PREFIX + _u64(seg.segno), seg.to_bytes())
        for segno in changes.delete_segments:
            wb.delete(SEGMENT_PREFIX + _u64(segno))
        for seq, payload in changes.put_outbox:
            wb.put(OUTBOX_PREFIX + _u64(seq), payload)
        for seq in changes.delete_outbox:
            wb.delete(OUTBOX_PREFIX + _u64(seq))
        for (scope, key_id), count in changes.late.items():
            wb.put(LATE_PREFIX + SCOPE_BYTES[scope] + _u32(key_id), str(count).encode())
        for name, blob in changes.extras.items():
            wb.put(EXTRA_PREFIX + name.encode(), blob)
        if changes.meta is not None:
            wb.put(META_KEY, json.dumps(changes.meta, separators=(",", ":")).encode())
        if not wb.is_empty():
            self.db.write(wb, self._write_opts if changes.durable else self._lazy_opts)

    def count_keys(self, prefix: bytes = b"") -> int:
        """Live keys (all, or under ``prefix``): the size of the state, for tests and metrics."""
        if not prefix:
            return sum(1 for _ in self.db.keys())  # noqa: SIM118 (Rdict iterates lazily)
        return sum(1 for _ in self._prefixed(prefix))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
