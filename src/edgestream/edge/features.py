"""Per-device stateful features for anomaly scoring, vectorised over a micro-batch.

:class:`FeatureExtractor` keeps, per device, the last ``window`` in-order readings of its
channels and turns each new reading into device-independent features, per channel ``c``:

* ``c.z``    (x - mean(window)) / scale: level anomalies (spike, level shift, drift, burst)
* ``c.dz``   (x - previous) / scale: jumps
* ``c.flat`` r * -log(p): r = readings in a row with an unchanged value ending at x, p the
  device's repeat rate in the rest of the window (a stuck sensor stops changing)

and, with more than one channel, ``max_abs_z``, ``max_abs_dz`` and ``max_flat`` over the
channels. ``scale`` is the window's noise (mean absolute first difference / 1.128, the
Gaussian factor) shrunk towards the channel's ``prior_scale`` (learned from training data)
with weight ``prior_weight`` differences and floored at half of it, so device baselines,
daily cycles and coarse (quantised) sensors do not matter.

Order of readings (the gateway gives batches in arrival order, possibly out of order):

* readings are taken in arrival (batch) order per device; ``ts`` only decides order;
* a reading whose ``ts`` is <= the newest ``ts`` seen for its device is *out of order*: it is
  scored against the device's history as of its arrival but does not enter the history;
* the first reading of a device gives all-zero features (nothing to compare with).

Every feature of a reading depends only on the device's in-order history before it and
the reading, computed elementwise in a fixed order: the output is bit-identical however
the readings are cut into batches, and after ``restore(state())``.

>>> import numpy as np
>>> fx = FeatureExtractor(["temp", "pressure"], window=8, prior_scale=[0.2, 0.1])
>>> fx.feature_names[:3]
('temp.z', 'temp.dz', 'temp.flat')
>>> rng = np.random.default_rng(0)
>>> ids = np.array(["a", "b"] * 20)
>>> ts = np.repeat(np.arange(20) * 100, 2)
>>> values = rng.normal([20.0, 3.0], [0.2, 0.1], (40, 2))
>>> saved = fx.state()
>>> features = fx.transform(ids, ts, values)
>>> features.shape, features.dtype.name
((40, 9), 'float32')
>>> fx.restore(saved)
>>> bool((fx.transform(ids, ts, values) == features).all())
True
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestream.core.exceptions import EdgestreamError

GAUSS_MAD = math.sqrt(2.0) * math.sqrt(2.0 / math.pi)  # E|x_t - x_t-1| / sigma for iid noise
STATE_FORMAT = 1
CLIP = 1e6  # features are clipped to +-CLIP so float32 never overflows
QUANTUM = 65536.0  # values are kept as integers in units of 1/QUANTUM: exact window sums
VMAX = 1e9  # |values| are clipped to VMAX so integer sums never overflow
RATE_PRIOR = 8.0  # pseudo-counts of the repeat-rate estimates (few readings: little evidence)
MAX_CHUNK = 65536  # larger batches are cut (features do not depend on batch boundaries)


class FeatureError(EdgestreamError, ValueError):
    """Bad input to the feature extractor, or a state that does not belong to it."""


class FeatureExtractor:
    """Per-device window features (see the module docstring for the definitions).

    ``channels`` are the value columns ``transform`` receives, in order. ``prior_scale``
    is the typical noise per channel (the training median of the window scale; 1.0 when
    unknown). Construction is cheap; the state grows with the number of devices seen
    (``window * channels`` floats each).
    """

    def __init__(
        self,
        channels: Sequence[str],
        window: int = 32,
        prior_scale: Sequence[float] | None = None,
        prior_weight: float = 4.0,
        median: int = 0,
        level: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        if not channels:
            raise FeatureError("FeatureExtractor needs at least one channel")
        if len(set(channels)) != len(channels):
            raise FeatureError(f"FeatureExtractor channels repeat: {list(channels)}")
        if window < 2:
            raise FeatureError(f"window must be >= 2 readings (got {window})")
        self.channels = tuple(str(c) for c in channels)
        self.window = int(window)
        c = len(self.channels)
        prior = np.ones(c) if prior_scale is None else np.asarray(prior_scale, dtype=np.float64)
        if prior.shape != (c,) or not np.all(np.isfinite(prior)) or np.any(prior < 0):
            raise FeatureError(
                f"prior_scale needs {c} finite values >= 0 (one per channel), got {prior_scale}"
            )
        self.prior_scale = prior
        self.prior_weight = float(prior_weight)
        self.median = int(median)
        if median < 0 or median > window:
            raise FeatureError(f"median must be 0 (window mean) .. window ({window}), got {median}")
        self.level = None if level is None else np.asarray(level, dtype=np.float64)
        if self.level is not None and (
            self.level.shape != (c, 2) or not (self.level[:, 1] > 0).all()
        ):
            raise FeatureError(f"level needs one (center, scale > 0) pair per channel: {level}")
        self._floor = np.maximum(0.5 * prior, 1e-9)
        kinds = ("z", "dz", "flat", "level") if self.level is not None else ("z", "dz", "flat")
        names = [f"{ch}.{kind}" for ch in self.channels for kind in kinds]
        if c > 1:
            names += ["max_abs_z", "max_abs_dz", "max_flat"]
        self.feature_names = tuple(names)
        self._slots: dict[str, int] = {}
        self._hist = np.zeros((0, self.window, c), dtype=np.int64)  # oldest .. newest, fixed point
        self._count = np.zeros(0, dtype=np.int64)  # in-order readings seen per device
        self._last_ts = np.zeros(0, dtype=np.int64)
        self._reps = np.zeros((0, 3 * c), dtype=np.int64)  # repeats, repeat pairs, longest run

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def devices(self) -> int:
        """Devices with state."""
        return len(self._slots)

    def config(self) -> dict[str, Any]:
        """The settings as JSON-able values (stored in a model's sidecar)."""
        return {
            "channels": list(self.channels),
            "window": self.window,
            "prior_scale": [float(x) for x in self.prior_scale],
            "prior_weight": self.prior_weight,
            "median": self.median,
            "level": None if self.level is None else self.level.tolist(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureExtractor:
        """The extractor a model was trained with (``config()`` of it, e.g. from a sidecar).

        >>> FeatureExtractor.from_config({"channels": ["value"], "window": 16}).feature_names
        ('value.z', 'value.dz', 'value.flat')
        """
        return cls(
            config["channels"],
            window=int(config.get("window", 32)),
            prior_scale=config.get("prior_scale"),
            prior_weight=float(config.get("prior_weight", 4.0)),
            median=int(config.get("median", 0)),
            level=config.get("level"),
        )

    # -- state ------------------------------------------------------------------------------
    def state(self) -> bytes:
        """A snapshot of every device's history (``restore`` it to continue exactly)."""
        ids = sorted(self._slots, key=self._slots.__getitem__)
        buffer = io.BytesIO()
        header = json.dumps({"format": STATE_FORMAT, **self.config()})
        np.savez(
            buffer,
            header=np.array(header),
            ids=np.array(ids, dtype=str),
            hist=self._hist,
            count=self._count,
            last_ts=self._last_ts,
            reps=self._reps,
        )
        return buffer.getvalue()

    def restore(self, blob: bytes) -> None:
        """Replace the state by a snapshot from ``state()`` of an extractor with this config."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                ids = [str(x) for x in data["ids"]]
                hist, count, last_ts = data["hist"], data["count"], data["last_ts"]
                reps = data["reps"]
        except (OSError, ValueError, KeyError) as error:
            raise FeatureError(f"not a feature extractor state ({error})") from None
        mine = self.config()
        if header.get("format") != STATE_FORMAT or any(header.get(k) != v for k, v in mine.items()):
            raise FeatureError(
                f"feature state was saved with {header}, this extractor has {mine}: "
                "restore it into an extractor built from the same model"
            )
        n = len(ids)
        c = len(self.channels)
        shapes = (hist.shape, count.shape, last_ts.shape, reps.shape)
        if shapes != ((n, self.window, c), (n,), (n,), (n, 3 * c)):
            raise FeatureError("feature state arrays do not match its device list")
        self._slots = {d: i for i, d in enumerate(ids)}
        self._hist = hist.astype(np.int64, copy=True)
        self._count = count.astype(np.int64, copy=True)
        self._last_ts = last_ts.astype(np.int64, copy=True)
        self._reps = reps.astype(np.int64, copy=True)

    def reset(self) -> None:
        """Forget every device."""
        self._slots = {}
        self._hist = np.zeros((0, self.window, len(self.channels)), dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)
        self._last_ts = np.zeros(0, dtype=np.int64)
        self._reps = np.zeros((0, 3 * len(self.channels)), dtype=np.int64)

    # -- features ---------------------------------------------------------------------------
    def transform(
        self, device_ids: Sequence[str] | np.ndarray, ts: Sequence[int] | np.ndarray, values: Any
    ) -> np.ndarray:
        """Features (float32, ``(n, n_features)``) of n readings in arrival order; updates state.

        ``device_ids`` (n,) strings, ``ts`` (n,) event times (epoch ms), ``values``
        (n, channels) finite numbers in the order of ``channels``.
        """
        values = np.asarray(values, dtype=np.float64)
        ts = np.asarray(ts, dtype=np.int64)
        n, c, w = len(ts), len(self.channels), self.window
        if values.ndim != 2 or values.shape != (n, c):
            raise FeatureError(
                f"values must have shape (readings, {c}) for channels {list(self.channels)}, "
                f"got {values.shape} for {n} timestamps"
            )
        if len(device_ids) != n:
            raise FeatureError(f"{len(device_ids)} device ids for {n} readings")
        if n == 0:
            return np.zeros((0, self.n_features), dtype=np.float32)
        if not np.isfinite(values).all():
            raise FeatureError("values must be finite (validate readings before scoring)")
        if n > MAX_CHUNK:  # keeps integer sums far from overflow; exact (batch-invariant)
            ids = np.asarray(device_ids)
            cuts = range(0, n, MAX_CHUNK)
            parts = [
                self.transform(
                    ids[i : i + MAX_CHUNK], ts[i : i + MAX_CHUNK], values[i : i + MAX_CHUNK]
                )
                for i in cuts
            ]
            return np.concatenate(parts)

        slot = self._slot_of(device_ids)
        order = np.argsort(slot, kind="stable")  # by device, arrival order inside
        s_slot, s_ts = slot[order], ts[order]
        s_q = np.rint(np.clip(values[order], -VMAX, VMAX) * QUANTUM).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, s_slot[1:] != s_slot[:-1]])
        seg_len = np.diff(np.r_[starts, n])
        seg = np.repeat(np.arange(len(starts)), seg_len)
        dev = s_slot[starts]  # state slot of each segment

        in_order = s_ts > self._prev_max(s_ts, seg, starts, self._last_ts[dev])
        cum = np.cumsum(in_order)
        before = cum - in_order - np.repeat(cum[starts] - in_order[starts], seg_len)
        per_seg = np.add.reduceat(in_order.astype(np.int64), starts)
        # history of each segment then its in-order readings: (segments, w + L, channels)
        padded = np.zeros((len(starts), w + int(per_seg.max()), c), dtype=np.int64)
        padded[:, :w] = self._hist[dev]
        padded[seg[in_order], w + before[in_order]] = s_q[in_order]
        count = self._count[dev]
        feats, reps = self._features(padded, seg, before, count, per_seg, self._reps[dev], s_q)

        rows = np.arange(len(starts))[:, None]
        self._hist[dev] = padded[rows, per_seg[:, None] + np.arange(w)]
        self._count[dev] = count + per_seg
        self._reps[dev] = reps
        newest = np.where(in_order, s_ts, np.iinfo(np.int64).min)
        self._last_ts[dev] = np.maximum(self._last_ts[dev], np.maximum.reduceat(newest, starts))

        out = np.empty_like(feats)
        out[order] = feats
        return out

    def _slot_of(self, device_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        keys = device_ids.tolist() if isinstance(device_ids, np.ndarray) else list(device_ids)
        slots = self._slots
        unseen = set(keys).difference(slots)
        new = len(unseen)
        for d in sorted(unseen, key=str):  # sorted: slots do not depend on set order
            slots[d] = len(slots)
        found = np.fromiter(map(slots.__getitem__, keys), dtype=np.int64, count=len(keys))
        if new:
            c, w = len(self.channels), self.window
            self._hist = np.concatenate([self._hist, np.zeros((new, w, c), dtype=np.int64)])
            self._count = np.concatenate([self._count, np.zeros(new, dtype=np.int64)])
            lo = np.full(new, np.iinfo(np.int64).min, dtype=np.int64)
            self._last_ts = np.concatenate([self._last_ts, lo])
            self._reps = np.concatenate([self._reps, np.zeros((new, 3 * c), dtype=np.int64)])
        return found

    @staticmethod
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

    def _median(
        self, padded: np.ndarray, seg: np.ndarray, j: np.ndarray, first: np.ndarray
    ) -> np.ndarray:
        """Median of the last ``median`` valid values before each reading (n, c), float."""
        k = self.median
        pos = j[:, None] - np.arange(k)[None, :]  # (n, k), newest first
        vals = padded[seg[:, None], np.maximum(pos, 0)].astype(np.float64)  # (n, k, c)
        short = pos[:, -1] < first
        if short.any():
            vals[short] = np.where(
                (pos[short] >= first[short, None])[:, :, None], vals[short], np.nan
            )
            out = np.empty((len(j), padded.shape[2]))
            out[~short] = np.median(vals[~short], axis=1)
            ok = pos[short][:, 0] >= first[short]
            part = np.zeros((int(short.sum()), padded.shape[2]))
            if ok.any():
                part[ok] = np.nanmedian(vals[short][ok], axis=1)
            out[short] = part
            return out
        return np.median(vals, axis=1)

    def _features(
        self,
        padded: np.ndarray,
        seg: np.ndarray,
        before: np.ndarray,
        count: np.ndarray,
        added: np.ndarray,
        reps_state: np.ndarray,
        xq: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features of readings ``xq`` (fixed point) and the segments' new repeat counts.

        ``padded[k]`` is segment k's history (``window`` values, the last ``count[k]`` of
        them valid) followed by its ``added`` in-order readings; a reading with ``before`` in-order
        readings ahead of it in its segment has its window at ``padded[seg, before :
        before + window]``. All sums are exact integer prefix sums.
        """
        w = self.window
        k, p, c = padded.shape
        zero = np.zeros((k, 1, c), dtype=np.int64)
        d = np.concatenate([zero, np.diff(padded, axis=1)], axis=1)  # d[i] = v[i] - v[i-1]
        # prefix sums (exclusive, p + 1 long) of values, |differences| and repeats
        zero_d = d == 0
        pair = np.zeros_like(zero_d)
        pair[:, 1:] = zero_d[:, 1:] & zero_d[:, :-1]
        sums = np.zeros((k, p + 1, 4 * c), dtype=np.int64)
        np.cumsum(padded, axis=1, out=sums[:, 1:, :c])
        np.cumsum(np.abs(d), axis=1, out=sums[:, 1:, c : 2 * c])
        np.cumsum(zero_d, axis=1, out=sums[:, 1:, 2 * c : 3 * c])
        np.cumsum(pair, axis=1, out=sums[:, 1:, 3 * c :])
        index = np.arange(p)[None, :, None]
        changed = np.maximum.accumulate(np.where(d != 0, index, -1), axis=1)

        # repeat counts since the device started; in-batch differences (pairs of differences)
        # are valid from ``lo`` (``lo2``): the value (two values) before must exist
        lo_pair = np.stack([w + (count == 0), w + np.maximum(0, 2 - count)], axis=1)
        lo = np.repeat(lo_pair, c, axis=1)  # (segments, 2 * channels)
        end = (w + added)[:, None]  # one past the segment's last in-order value
        rows = np.arange(k)[:, None]
        cols = 2 * c + np.arange(2 * c)[None, :]
        grown = sums[rows, end, cols] - sums[rows, np.minimum(lo, end), cols]
        # longest completed run of repeats (in repeats, at most window - 1) since the start
        vstart = (w - np.minimum(count, w))[:, None, None]
        run_at = index - np.maximum(np.maximum(changed, index - w + 1), vstart)
        run_at = np.where(index >= vstart, run_at, 0)
        longest = np.maximum.accumulate(run_at, axis=1)  # prefix maximum along each row
        rmax = reps_state[:, 2 * c :]
        cut = changed[rows, end - 1, np.arange(c)[None, :]]  # where the open run started
        done = longest[rows, np.maximum(cut, 0), np.arange(c)[None, :]]
        reps_new = np.concatenate([reps_state[:, : 2 * c] + grown, np.maximum(rmax, done)], 1)

        j = before + w - 1  # index of the previous in-order value
        seen = count[seg] + before  # in-order values before the reading
        first = j + 1 - np.minimum(seen, w)  # first valid value of the window
        at_j = sums[seg, j + 1]
        at_first = sums[seg, first]
        at_first1 = sums[seg, np.minimum(first + 1, p)]
        nv = (j + 1 - first)[:, None]
        m = np.maximum(nv - 1, 0)  # first differences in the window
        s_sum = at_j[:, :c] - at_first[:, :c]
        s_abs = np.where(m > 0, at_j[:, c : 2 * c] - at_first1[:, c : 2 * c], 0)
        last = padded[seg, j]

        has = nv > 0
        nvf = np.maximum(nv, 1).astype(np.float64)
        mf = m.astype(np.float64)
        pw = self.prior_weight
        scale = (s_abs / (QUANTUM * GAUSS_MAD) + pw * self.prior_scale) / (mf + pw)
        scale = np.maximum(scale, self._floor) * QUANTUM
        if self.median > 0:
            z = np.where(has, (xq - self._median(padded, seg, j, first)) / scale, 0.0)
        else:
            z = np.where(has, (xq - s_sum / nvf) / scale, 0.0)
        dz = np.where(has, (xq - last) / scale, 0.0)

        # surprise of the run of unchanged values ending at x under a per-device first-order
        # Markov model of "value repeats": P(repeat | changed before) and P(repeat | repeat)
        lo_r = lo[seg]
        at_lo = sums[seg[:, None], np.minimum(lo_r, p), 2 * c + np.arange(2 * c)[None, :]]
        in_batch = np.where(j[:, None] >= lo_r, at_j[:, 2 * c :] - at_lo, 0)
        counts = reps_state[seg, : 2 * c] + in_batch  # among the values before x
        trailing = j[:, None] - np.maximum(changed[seg, j], first[:, None])
        repeat = (xq == last) & has
        inside = np.where(repeat, trailing, 0)  # the current run's repeats: not evidence
        zeros = (counts[:, :c] - inside).astype(np.float64)
        pairs = (counts[:, c:] - np.maximum(inside - 1, 0)).astype(np.float64)
        steps = np.maximum(seen - 1, 0)[:, None] - inside
        kp = RATE_PRIOR
        p1 = (zeros - pairs + 0.5 * kp) / (np.maximum(steps - zeros, 0) + kp)
        p1 = np.clip(p1, 1e-6, 1.0)
        p_rr = np.clip((pairs + kp * p1) / (zeros + kp), 1e-6, 1.0)
        # only runs longer than the device's longest past run count (coarse sensors on slow
        # signals repeat values for long stretches): surprise(run) - surprise(longest)
        ch_j = changed[seg, j]
        chan = np.arange(c)[None, :]
        past = longest[seg[:, None], np.maximum(ch_j, 0), chan]
        past = np.maximum(reps_state[seg, 2 * c :], past)
        run = np.where(repeat, trailing + 1, 0)
        cost1, cost = -np.log(p1), -np.log(p_rr)
        novel = np.where(past == 0, cost1 + (run - 1) * cost, (run - past) * cost)
        flat = np.where(run > past, novel, 0.0)

        n = len(seg)
        cols = [z, dz, flat]
        if self.level is not None:
            cols.append((xq / QUANTUM - self.level[:, 0]) / self.level[:, 1])
        parts = np.stack(cols, axis=-1).reshape(n, len(cols) * c)
        if c > 1:
            agg = np.stack(
                [np.abs(z).max(axis=1), np.abs(dz).max(axis=1), flat.max(axis=1)], axis=-1
            )
            parts = np.concatenate([parts, agg], axis=1)
        return np.clip(parts, -CLIP, CLIP).astype(np.float32), reps_new
