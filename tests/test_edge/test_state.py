"""WindowStore: the RocksDB layout, atomic commits, segments on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgestream.edge.state as state
from edgestream.edge.state import Changes, Segment, WindowStateError, WindowStore
from tests.support.doctests import run_doctests


def _segment(segno: int, n: int = 5, channels: int = 3) -> Segment:
    rng = np.random.default_rng(segno)
    values = rng.normal(size=(n, channels))
    values[0, 1] = np.nan
    return Segment(
        segno=segno,
        partition=2,
        channel_ids=np.array([2, 0, 1][:channels], np.int32),
        ts=np.arange(n, dtype=np.int64) + 1_700_000_000_000,
        seq=np.arange(n, dtype=np.int64) * 3,
        offset=np.array([7] * n, np.int64),
        rank=np.arange(n, dtype=np.int32),
        first_open=np.full(n, -1000, np.int64),
        last_start=np.arange(n, dtype=np.int64) * 500,
        device=np.arange(n, dtype=np.int32),
        site=np.zeros(n, np.int32),
        device_type=np.ones(n, np.int32),
        model_version=np.full(n, -1, np.int32),
        score=np.where(np.arange(n) % 2, 0.5, np.nan),
        anomaly=np.arange(n) % 2 == 0,
        values=values,
    )


def _same(a: Segment, b: Segment) -> None:
    for name in Segment.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
            assert x.dtype.kind == y.dtype.kind, name
        else:
            assert x == y, name


def test_docstring_examples_run() -> None:
    run_doctests(state)


def test_segment_roundtrip() -> None:
    seg = _segment(3)
    back = Segment.from_bytes(seg.to_bytes())
    _same(seg, back)
    assert (back.min_first_open, back.max_last_start) == (-1000, 2000)


def test_corrupt_segment_is_reported() -> None:
    with pytest.raises(WindowStateError, match="corrupt"):
        Segment.from_bytes(b"XXXX" + _segment(1).to_bytes()[4:])


def test_commit_load_and_delete(tmp_path: Path) -> None:
    store = WindowStore(tmp_path)
    store.commit(
        Changes(
            meta={"watermark": 5},
            new_strings=[(0, "dev-ä"), (1, "site-1")],
            put_segments=[_segment(1), _segment(2)],
            put_outbox=[(0, b'{"summary_id":"a"}'), (1, b'{"summary_id":"b"}')],
            late={("device", 0): 3, ("site", 1): 1},
        )
    )
    store.commit(Changes(delete_segments=[1], delete_outbox=[0], late={("device", 0): 4}))
    store.close()
    store = WindowStore(tmp_path)
    loaded = store.load()
    assert loaded.meta == {"watermark": 5}
    assert loaded.strings == ["dev-ä", "site-1"]
    assert [s.segno for s in loaded.segments] == [2]
    _same(loaded.segments[0], _segment(2))
    assert loaded.outbox == [(1, b'{"summary_id":"b"}')]
    assert loaded.late == {("device", 0): 4, ("site", 1): 1}
    assert store.count_keys() == 1 + 2 + 1 + 1 + 2
    assert store.count_keys(b"r") == 1
    store.close()


def test_segments_load_in_number_order(tmp_path: Path) -> None:
    with_gaps = [300, 1, 256, 70_000]
    store = WindowStore(tmp_path)
    store.commit(Changes(put_segments=[_segment(n, n=2) for n in with_gaps]))
    assert [s.segno for s in store.load().segments] == sorted(with_gaps)
    store.close()


def test_second_opener_gets_a_clear_error(tmp_path: Path) -> None:
    store = WindowStore(tmp_path)
    with pytest.raises(WindowStateError, match="another worker"):
        WindowStore(tmp_path)
    store.close()
    WindowStore(tmp_path).close()


def test_closed_store_says_how_to_recover(tmp_path: Path) -> None:
    store = WindowStore(tmp_path, sync=False)
    store.close()
    store.close()  # idempotent
    with pytest.raises(WindowStateError, match="reopen"):
        store.load()


def test_memtables_stay_bounded_while_extras_are_rewritten(tmp_path: Path) -> None:
    """Issue 8: each commit rewrites ~9 KB of caller state; RocksDB's default 64 MB write
    buffer kept all of it in memory (the worker grew ~8 MB/min). 24 MB written here must
    leave at most the configured write buffers in memory, and the last commit readable."""
    store = WindowStore(tmp_path, sync=False)
    blob = bytes(range(256)) * 36  # 9 KB
    limit = state.MAX_WRITE_BUFFERS * state.WRITE_BUFFER_BYTES * 1.25  # + arena blocks
    peak = 0
    for i in range(2700):
        old = [i - 1] if i else []  # the previous batch's segment closed
        store.commit(Changes(put_segments=[_segment(i, n=2)], delete_segments=old,
                             extras={"features": blob + str(i).encode()}))  # fmt: skip
        peak = max(peak, store.db.property_int_value("rocksdb.size-all-mem-tables") or 0)
    assert 0 < peak <= limit, (peak, limit)
    store.close()
    store = WindowStore(tmp_path)
    loaded = store.load()
    assert loaded.extras == {"features": blob + b"2699"}
    assert [s.segno for s in loaded.segments] == [2699]
    store.close()


def test_a_commit_without_fsync_survives_a_killed_process(tmp_path: Path) -> None:
    """Acks are written with ``durable=False`` (no fsync): a process crash must not lose
    them (the WAL is written before commit returns), only an OS crash may."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from edgestream.edge.state import Changes, WindowStore\n"
        "store = WindowStore(sys.argv[1], sync=True)\n"
        "store.commit(Changes(extras={'kept': b'durable'}))\n"
        "store.commit(Changes(extras={'acked': b'lazy'}, durable=False))\n"
        "os._exit(9)  # like kill -9: no close, no flush\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "db")], check=False)
    assert done.returncode == 9
    store = WindowStore(tmp_path / "db")
    try:
        assert store.load().extras == {"kept": b"durable", "acked": b"lazy"}
    finally:
        store.close()


def test_string_ids_of_a_column_with_repeats_and_none() -> None:
    table = state.StringTable(["a"])
    column = np.array(["b", "a", None, "b", "c", None], dtype=object)
    assert table.ids(column, allow_none=True).tolist() == [1, 0, -1, 1, 2, -1]
    assert table.ids(np.array([], dtype=object)).tolist() == []
    with pytest.raises(ValueError, match="must not contain None"):
        table.ids(np.array(["a", None], dtype=object))
