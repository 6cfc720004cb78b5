"""One micro-batch of a :class:`~edgestream.ml.features.FeatureExtractor`, as exact integers.

The extractor's per-device state is a ring of the last ``window`` values and a few
accumulators (blocks ``ACC_*`` of ``channels`` columns each); :class:`StreamBatch` sorts a
batch by device, numbers each device's in-order values and keeps prefix sums over them, so
every reading's window sums are the state's plus the changes ahead of it, and ``commit``
writes the batch back into the state.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

QUANTUM = 65536.0  # values are kept as integers in units of 1/QUANTUM: exact window sums
VMAX = 1e9  # |values| are clipped to VMAX so integer sums never overflow

# per-device accumulators (blocks of ``channels`` columns of FeatureExtractor._acc)
ACC_WSUM, ACC_WABS, ACC_RUN, ACC_ZERO, ACC_PAIR, ACC_RMAX = range(6)
ACC = 6


class ExtractorState(Protocol):
    """The state of a :class:`~edgestream.ml.features.FeatureExtractor` a batch reads and writes."""

    window: int
    channels: tuple[str, ...]
    _hist: np.ndarray  # (devices, window, channels): value at position p % window
    _count: np.ndarray  # (devices,): in-order readings seen
    _last_ts: np.ndarray  # (devices,): newest in-order ts
    _acc: np.ndarray  # (devices, ACC * channels): the accumulators
    _dirty: set[int]  # slots changed since the last changed_parts()


class StreamBatch:
    """One batch sorted by device: its in-order "stream" and prefix sums over it (exact ints).

    A device's values are numbered by position p = 0, 1, ... in arrival order of its
    in-order readings; the ring ``hist[slot, p % window]`` holds the last ``window`` of them.
    A reading with ``seen`` in-order values before it has its window at positions
    ``seen - window .. seen - 1``; the window sums are the state's plus the changes made
    by the stream elements ahead of it.
    """

    def __init__(self, fx: ExtractorState, slot: np.ndarray, ts: np.ndarray, values: np.ndarray):
        self.fx = fx
        w, c = fx.window, len(fx.channels)
        n = len(ts)
        self.xq = np.rint(np.clip(values, -VMAX, VMAX) * QUANTUM).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
        seg_len = np.diff(np.r_[starts, n])
        self.seg = seg = np.repeat(np.arange(len(starts)), seg_len)
        self.dev = dev = slot[starts]
        self.count0 = fx._count[dev]
        self.acc0 = fx._acc[dev].reshape(len(dev), ACC, c)
        self.ts, self.starts = ts, starts
        self.in_order = ts > _prev_max(ts, seg, starts, fx._last_ts[dev])
        cum = np.cumsum(self.in_order)
        self.before = cum - self.in_order - np.repeat(cum[starts] - self.in_order[starts], seg_len)
        self.seen = self.count0[seg] + self.before
        # the stream: in-order readings, grouped by segment
        io = np.flatnonzero(self.in_order)
        self.sv = self.xq[io]
        self.sseg = sseg = seg[io]
        self.added = np.bincount(sseg, minlength=len(starts))
        self.off = np.r_[0, np.cumsum(self.added)[:-1]]
        t = self.before[io]
        pos = self.count0[sseg] + t  # position of each stream value
        prev = self.value(sseg, pos - 1)
        d = self.sv - prev
        zero = (d == 0) & (pos >= 1)[:, None]
        full = (pos >= w)[:, None]
        leave = np.where(full, self.value(sseg, pos - w), 0)
        leave_d = np.where(full, self.value(sseg, pos - w + 1) - leave, 0)
        prev_zero = np.where(
            (t == 0)[:, None],
            self.acc0[sseg, ACC_RUN] > 0,
            np.r_[np.zeros((1, c), bool), zero[:-1]],
        )
        self.d_sum = self._prefix(self.sv - leave)
        self.d_abs = self._prefix(np.where((pos >= 1)[:, None], np.abs(d), 0) - np.abs(leave_d))
        self.d_zero = self._prefix(zero.astype(np.int64))
        self.d_pair = self._prefix((zero & prev_zero).astype(np.int64))
        # runs of repeats (capped at window - 1) after each stream value, per segment
        index = np.arange(len(io))[:, None]
        changed = np.maximum.accumulate(np.where(~zero, index, -1), axis=0)
        seg_first = self.off[sseg][:, None]
        run0 = self.acc0[sseg, ACC_RUN]
        self.rl = np.minimum(
            np.where(changed >= seg_first, index - changed, run0 + index - seg_first + 1), w - 1
        )
        rl_before = np.where(
            (t == 0)[:, None], run0, np.r_[np.zeros((1, c), np.int64), self.rl[:-1]]
        )
        closed = np.where(~zero & (pos >= 1)[:, None], rl_before, 0)  # a run ends here
        self.closed_max = self._segmax(closed)

    def value(self, seg: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Values (fixed point, (..., c)) at positions ``pos`` of segments ``seg``; 0 if < 0."""
        w = self.fx.window
        count = self.count0[seg]
        out = np.zeros((*pos.shape, self.sv.shape[1]), dtype=np.int64)
        in_stream = pos >= count
        in_ring = (pos >= 0) & ~in_stream
        out[in_stream] = self.sv[(self.off[seg] + pos - count)[in_stream]]
        flat = self.fx._hist.reshape(-1, self.sv.shape[1])
        out[in_ring] = flat[(self.dev[seg] * w + pos % w)[in_ring]]
        return out

    def _prefix(self, delta: np.ndarray) -> np.ndarray:
        """Inclusive prefix sums with a leading zero row (exact ints)."""
        out = np.zeros((len(delta) + 1, delta.shape[1]), dtype=np.int64)
        np.cumsum(delta, axis=0, out=out[1:])
        return out

    def _segmax(self, x: np.ndarray) -> np.ndarray:
        """Running maximum within each segment, with a leading zero row."""
        out = np.zeros((len(x) + 1, x.shape[1]), dtype=np.int64)
        if len(x):
            big = np.int64(1) << 40  # runs < 2**40: offset each segment above the previous
            lifted = x + (self.sseg * big)[:, None]
            out[1:] = np.maximum.accumulate(lifted, axis=0) - (self.sseg * big)[:, None]
        return out

    def at(self, prefix: np.ndarray, block: int) -> np.ndarray:
        """The state's accumulator ``block`` plus the stream's changes ahead of each reading."""
        i0 = self.off[self.seg]
        return self.acc0[self.seg, block] + prefix[i0 + self.before] - prefix[i0]

    def trailing(self) -> np.ndarray:
        """Repeats ending at each reading's previous value (capped at window - 1)."""
        if not len(self.rl):  # no in-order reading in the batch (e.g. only late ones)
            return self.acc0[self.seg, ACC_RUN]
        i = self.off[self.seg] + self.before - 1
        return np.where(
            (self.before == 0)[:, None], self.acc0[self.seg, ACC_RUN], self.rl[np.maximum(i, 0)]
        )

    def longest(self) -> np.ndarray:
        """Longest closed run of repeats before each reading (capped at window - 1)."""
        i0 = self.off[self.seg]
        got = np.where((self.before > 0)[:, None], self.closed_max[i0 + self.before], 0)
        return np.maximum(self.acc0[self.seg, ACC_RMAX], got)

    def commit(self) -> None:
        """Write the batch into the extractor's state."""
        fx, w, c = self.fx, self.fx.window, len(self.fx.channels)
        k = len(self.dev)
        ends = self.off + self.added  # one past each segment's last stream value
        acc = self.acc0.copy()
        for block, prefix in (
            (ACC_WSUM, self.d_sum),
            (ACC_WABS, self.d_abs),
            (ACC_ZERO, self.d_zero),
            (ACC_PAIR, self.d_pair),
        ):
            acc[:, block] += prefix[ends] - prefix[self.off]
        grew = self.added > 0
        last = np.maximum(ends - 1, 0)
        if len(self.sv):
            acc[:, ACC_RUN] = np.where(grew[:, None], self.rl[last], acc[:, ACC_RUN])
            closed = np.where(grew[:, None], self.closed_max[ends], 0)
            acc[:, ACC_RMAX] = np.maximum(acc[:, ACC_RMAX], closed)
        # the last ``window`` stream values of each segment go into the ring
        keep = np.flatnonzero(self.before[self.in_order] >= self.added[self.sseg] - w)
        pos = self.count0[self.sseg[keep]] + self.before[self.in_order][keep]
        fx._hist[self.dev[self.sseg[keep]], pos % w] = self.sv[keep]
        fx._count[self.dev] = self.count0 + self.added
        fx._acc[self.dev] = acc.reshape(k, ACC * c)
        fx._dirty.update(self.dev.tolist())
        newest = np.where(self.in_order, self.ts, np.iinfo(np.int64).min)
        fx._last_ts[self.dev] = np.maximum(
            fx._last_ts[self.dev], np.maximum.reduceat(newest, self.starts)
        )


def _prev_max(
    ts: np.ndarray, seg: np.ndarray, starts: np.ndarray, state_ts: np.ndarray
) -> np.ndarray:
    """Newest ts before each reading of its segment (incl. the device's state)."""
    prev = np.empty_like(ts)
    prev[1:] = ts[:-1]
    prev[starts] = np.iinfo(np.int64).min
    unsorted = np.flatnonzero((ts <= prev)[1:] & (seg[1:] == seg[:-1]))
    for i in np.unique(seg[unsorted + 1]):  # out-of-order readings: running maximum
        a = starts[i]
        b = starts[i + 1] if i + 1 < len(starts) else len(ts)
        prev[a + 1 : b] = np.maximum.accumulate(ts[a:b])[:-1]
    return np.maximum(prev, state_ts[seg])
