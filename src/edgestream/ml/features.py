"""Per-device stateful features for anomaly scoring, vectorised over a micro-batch.

:class:`FeatureExtractor` keeps, per device, its last ``window`` in-order values and a few
counters, and turns each reading into device-independent features, per channel ``c``:

* ``c.z``     (x - baseline) / scale, baseline = median of the last ``median`` values (or
  the window mean when ``median=0``): spikes, level shifts, drifts, noise bursts
* ``c.dz``    (x - previous value) / scale: jumps
* ``c.flat``  surprise (nats) of the run of unchanged values ending at x under a per-device
  first-order Markov model of "the value repeats" (P(repeat | changed), P(repeat |
  repeat), counted since the device started): a stuck sensor stops changing. With
  ``novel_runs`` only the part beyond the device's longest past run counts.
* ``c.level`` (x - center) / scale from a fixed per-channel ``level`` (optional; for a
  single known machine such as a NAB replay, not for fleets of different devices)

and, with more than one channel, ``max_abs_z``, ``max_abs_dz`` and ``max_flat``. ``scale`` is
the window's noise (mean absolute first difference / 1.128, the Gaussian factor) shrunk
towards the channel's ``prior_scale`` with weight ``prior_weight`` differences and floored
at half of it: device baselines, daily cycles and quantised sensors cancel out.

Order of readings (the gateway gives batches in arrival order, possibly out of order):

* readings are taken in arrival (batch) order per device; ``ts`` only decides order;
* a reading whose ``ts`` is <= the newest ``ts`` seen for its device is *out of order*: it is
  scored against the device's history as of its arrival but does not enter the history;
* the first reading of a device gives all-zero features (nothing to compare with).

Exactness: values are kept as integers (units of 1/65536, |x| <= 1e9) and every window sum
is an integer prefix sum, so a reading's features depend only on its device's history and
are bit-identical however the readings are cut into batches and after ``restore(state())``.
State per device: ``window * channels`` int64 plus ``3 * channels + 2`` counters.

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
from edgestream.core.stateful import HEADER, pack_parts, unpack_parts
from edgestream.ml.feature_batch import (
    ACC,
    ACC_PAIR,
    ACC_WABS,
    ACC_WSUM,
    ACC_ZERO,
    QUANTUM,
    StreamBatch,
)

GAUSS_MAD = math.sqrt(2.0) * math.sqrt(2.0 / math.pi)  # E|x_t - x_t-1| / sigma for iid noise
STATE_FORMAT = 2  # 1: one numpy .npz blob (still restored)
CLIP = 1e6  # features are clipped to +-CLIP so float32 never overflows
RATE_PRIOR = 8.0  # pseudo-counts of the repeat-rate estimates (few readings: little evidence)
MAX_CHUNK = 65536  # larger batches are cut (features do not depend on batch boundaries)


class FeatureError(EdgestreamError, ValueError):
    """Bad input to the feature extractor, or a state that does not belong to it."""


class FeatureExtractor:
    """Per-device window features (see the module docstring for the definitions).

    ``channels`` are the value columns ``transform`` receives, in order. ``prior_scale``
    is the typical noise per channel (the training median of the per-device noise; 1.0
    when unknown). Construction is cheap; build it from a model's sidecar with
    ``FeatureExtractor.from_config(meta.features)``.
    """

    def __init__(
        self,
        channels: Sequence[str],
        window: int = 32,
        prior_scale: Sequence[float] | None = None,
        prior_weight: float = 4.0,
        median: int = 0,
        level: Sequence[tuple[float, float]] | None = None,
        novel_runs: bool = False,
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
        self.novel_runs = bool(novel_runs)
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
        self.n_features = len(names)
        self._header = json.dumps({"format": STATE_FORMAT, **self.config()}).encode()
        self._slots: dict[str, int] = {}
        self.reset()

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
            "novel_runs": self.novel_runs,
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
            novel_runs=bool(config.get("novel_runs", False)),
        )

    # -- state ------------------------------------------------------------------------------
    # The state is a set of *parts*: HEADER (the format and config, JSON) and one record per
    # device (its int64 counters, ring and accumulators). ``changed_parts()`` gives the parts
    # written since the last call, so a caller that stores parts under their own keys commits
    # a few devices per batch instead of the whole fleet; ``state()`` packs every part.
    def parts(self) -> dict[str, bytes]:
        """Every part of the state (HEADER and one record per device)."""
        return self._records(range(len(self._slots)))

    def changed_parts(self) -> dict[str, bytes]:
        """HEADER and the records of the devices ``transform`` changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return self._records(sorted(dirty))

    def _records(self, slots: Any) -> dict[str, bytes]:
        ids = list(self._slots)  # insertion order = slot order
        out = {HEADER: self._header}
        slots = np.fromiter(slots, dtype=np.int64)
        if len(slots):
            rows = np.concatenate(
                [
                    self._count[slots, None],
                    self._last_ts[slots, None],
                    self._hist[slots].reshape(len(slots), -1),
                    self._acc[slots],
                ],
                axis=1,
            )
            out.update((ids[i], row.tobytes()) for i, row in zip(slots.tolist(), rows, strict=True))
        return out

    def restore_parts(self, parts: dict[str, bytes]) -> None:
        """Replace the state by ``parts`` (from ``parts()`` or ``changed_parts()`` merged)."""
        try:
            header = json.loads(parts[HEADER])
        except (KeyError, ValueError) as error:
            raise FeatureError(f"not a feature extractor state ({error!r})") from None
        self._check_header(header, STATE_FORMAT)
        w, c = self.window, len(self.channels)
        width = 2 + w * c + ACC * c
        ids = sorted(k for k in parts if k != HEADER)
        wrong = [d for d in ids if len(parts[d]) != 8 * width]
        if wrong:
            raise FeatureError(f"feature state records of {wrong[:3]} are not {width} int64")
        rows = np.frombuffer(b"".join(parts[d] for d in ids), dtype=np.int64)
        rows = rows.reshape(len(ids), width)
        self._slots = {d: i for i, d in enumerate(ids)}
        self._count, self._last_ts = rows[:, 0].copy(), rows[:, 1].copy()
        self._hist = rows[:, 2 : 2 + w * c].reshape(len(ids), w, c).copy()
        self._acc = rows[:, 2 + w * c :].copy()
        self._dirty = set()

    def state(self) -> bytes:
        """A snapshot of every device's history (``restore`` it to continue exactly)."""
        return pack_parts(self.parts())

    def restore(self, blob: bytes) -> None:
        """Replace the state by a snapshot from ``state()`` of an extractor with this config."""
        if blob[:2] == b"PK":  # format 1 (numpy .npz), written before the state had parts
            self._restore_npz(blob)
            return
        try:
            parts = unpack_parts(blob)
        except ValueError as error:
            raise FeatureError(f"not a feature extractor state ({error})") from None
        self.restore_parts(parts)

    def _restore_npz(self, blob: bytes) -> None:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                ids = [str(x) for x in data["ids"]]
                arrays = [data[k].astype(np.int64) for k in ("hist", "count", "last_ts", "acc")]
        except (OSError, ValueError, KeyError) as error:
            raise FeatureError(f"not a feature extractor state ({error})") from None
        self._check_header(header, 1)
        n, c = len(ids), len(self.channels)
        if [a.shape for a in arrays] != [(n, self.window, c), (n,), (n,), (n, ACC * c)]:
            raise FeatureError("feature state arrays do not match its device list")
        self._slots = {d: i for i, d in enumerate(ids)}
        self._hist, self._count, self._last_ts, self._acc = arrays
        self._dirty = set(range(n))  # a caller storing parts has none of them yet

    def _check_header(self, header: dict[str, Any], fmt: int) -> None:
        mine = self.config()
        if header.get("format") != fmt or any(header.get(k) != v for k, v in mine.items()):
            raise FeatureError(
                f"feature state was saved with {header}, this extractor has {mine}: "
                "restore it into an extractor built from the same model"
            )

    def reset(self) -> None:
        """Forget every device."""
        c = len(self.channels)
        self._slots: dict[str, int] = {}
        self._hist = np.zeros((0, self.window, c), dtype=np.int64)  # value at position p % w
        self._count = np.zeros(0, dtype=np.int64)  # in-order readings seen per device
        self._last_ts = np.zeros(0, dtype=np.int64)
        self._acc = np.zeros((0, ACC * c), dtype=np.int64)  # blocks ACC_* of feature_batch
        self._dirty: set[int] = set()  # slots changed since the last changed_parts()

    # -- features ---------------------------------------------------------------------------
    def transform(
        self, device_ids: Sequence[str] | np.ndarray, ts: Sequence[int] | np.ndarray, values: Any
    ) -> np.ndarray:
        """Features (float32, ``(n, n_features)``) of n readings in arrival order; updates state.

        ``device_ids`` (n,) str, ``ts`` (n,) event times (epoch ms), ``values``
        (n, channels) finite numbers in the order of ``channels``.
        """
        values = np.asarray(values, dtype=np.float64)
        ts = np.asarray(ts, dtype=np.int64)
        n, c = len(ts), len(self.channels)
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
            return np.concatenate(
                [
                    self.transform(
                        ids[i : i + MAX_CHUNK], ts[i : i + MAX_CHUNK], values[i : i + MAX_CHUNK]
                    )
                    for i in range(0, n, MAX_CHUNK)
                ]
            )
        slot = self._slot_of(device_ids)
        order = np.argsort(slot, kind="stable")  # by device, arrival order inside
        batch = StreamBatch(self, slot[order], ts[order], values[order])
        feats = self._features(batch)
        batch.commit()
        out = np.empty_like(feats)
        out[order] = feats
        return out

    def _slot_of(self, device_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        keys = device_ids.tolist() if isinstance(device_ids, np.ndarray) else list(device_ids)
        if not isinstance(keys[0], str):
            raise FeatureError(f"device ids must be str, got {type(keys[0]).__name__}")
        slots = self._slots
        unseen = set(keys).difference(slots)
        for d in sorted(unseen):  # sorted: slots do not depend on set order
            slots[d] = len(slots)
        if unseen:
            new, c, w = len(unseen), len(self.channels), self.window
            self._hist = np.concatenate([self._hist, np.zeros((new, w, c), dtype=np.int64)])
            self._count = np.concatenate([self._count, np.zeros(new, dtype=np.int64)])
            lo = np.full(new, np.iinfo(np.int64).min, dtype=np.int64)
            self._last_ts = np.concatenate([self._last_ts, lo])
            self._acc = np.concatenate([self._acc, np.zeros((new, ACC * c), dtype=np.int64)])
        return np.fromiter(map(slots.__getitem__, keys), dtype=np.int64, count=len(keys))

    def _median(self, b: StreamBatch, has: np.ndarray) -> np.ndarray:
        """Median of the last ``median`` values before each reading (fewer at a start)."""
        k = self.median
        pos = b.seen[:, None] - 1 - np.arange(k)[None, :]  # (n, k), newest first
        vals = np.ascontiguousarray(b.value(np.repeat(b.seg[:, None], k, 1), pos).swapaxes(1, 2))
        if (pos >= 0).all():
            mid = [(k - 1) // 2, k // 2]
            part = np.partition(vals, mid, axis=-1)
            return (part[..., mid[0]] + part[..., mid[1]]) / 2.0
        vals = vals.astype(np.float64)
        vals[np.broadcast_to((pos < 0)[:, None, :], vals.shape)] = np.nan
        vals[~has[:, 0]] = 0.0
        return np.nanmedian(vals, axis=-1)

    def _features(self, b: StreamBatch) -> np.ndarray:
        w, c = self.window, len(self.channels)
        seen = b.seen[:, None]  # in-order values before each reading
        nv = np.minimum(seen, w)  # values in its window
        m = np.maximum(nv - 1, 0)  # first differences in its window
        has = nv > 0
        mf = m.astype(np.float64)
        pw = self.prior_weight
        scale = (b.at(b.d_abs, ACC_WABS) / (QUANTUM * GAUSS_MAD) + pw * self.prior_scale) / (
            mf + pw
        )
        scale = np.maximum(scale, self._floor) * QUANTUM
        x = b.xq
        last = b.value(b.seg, b.seen - 1)
        if self.median > 0:
            base = self._median(b, has)
        else:
            base = b.at(b.d_sum, ACC_WSUM) / np.maximum(nv, 1)
        z = np.where(has, (x - base) / scale, 0.0)
        dz = np.where(has, (x - last) / scale, 0.0)

        # surprise of the run of unchanged values ending at x under a per-device first-order
        # Markov model of "value repeats": P(repeat | changed before) and P(repeat | repeat)
        repeat = (x == last) & has
        trailing = np.minimum(b.trailing(), m)
        inside = np.where(repeat, trailing, 0)  # the current run's repeats: not evidence
        zeros = (b.at(b.d_zero, ACC_ZERO) - inside).astype(np.float64)
        pairs = (b.at(b.d_pair, ACC_PAIR) - np.maximum(inside - 1, 0)).astype(np.float64)
        steps = np.maximum(seen - 1, 0) - inside
        kp = RATE_PRIOR
        p1 = np.clip((zeros - pairs + 0.5 * kp) / (np.maximum(steps - zeros, 0) + kp), 1e-6, 1.0)
        p_rr = np.clip((pairs + kp * p1) / (zeros + kp), 1e-6, 1.0)
        run = np.where(repeat, trailing + 1, 0)
        past = b.longest() if self.novel_runs else np.zeros_like(run)
        cost1, cost = -np.log(p1), -np.log(p_rr)
        novel = np.where(past == 0, cost1 + (run - 1) * cost, (run - past) * cost)
        flat = np.where(run > past, novel, 0.0)

        cols = [z, dz, flat]
        if self.level is not None:
            cols.append((x / QUANTUM - self.level[:, 0]) / self.level[:, 1])
        n = len(x)
        parts = np.stack(cols, axis=-1).reshape(n, len(cols) * c)
        if c > 1:
            agg = np.stack(
                [np.abs(z).max(axis=1), np.abs(dz).max(axis=1), flat.max(axis=1)], axis=-1
            )
            parts = np.concatenate([parts, agg], axis=1)
        return np.clip(parts, -CLIP, CLIP).astype(np.float32)
