"""The gateway's in-stream detector (topology ``models.<type>.kind: online``).

No file and no offline training: each device's model is learned from its own readings as
they arrive, and each score uses only the readings before it (and the reading itself).
Per device, readings in arrival order:

1. **calibration**: the first ``calibration`` readings are only learned from (score 0).
   They fix the device's range ``[lo, hi]`` per channel, then are replayed into steps 3-4.
2. **spatial**: a value beyond the range seen so far by more than ``tolerance`` times its
   width scores 1 (the range then grows to include it).
3. **surprise** (raw scores): each value is quantised into bins of ``1 / levels`` of the
   calibrated range (values beyond it get bins of their own). Two count models predict the
   bin, each gives raw = 1 - P(bin | context) from its counts so far (an unseen context: 1):
   *sequence*, context = the previous ``order`` bins (a device leaving its usual paths);
   *time of day*, context = the previous bin and the time-of-day bucket (``tod`` buckets
   per day, 96: a quarter of an hour; 0: off), for daily patterns (a rush hour that does
   not come). Two level models give
   raw = erf(|z| / sqrt 2) of the value against a running mean and variance: *recent
   level* over about the last ``recent`` readings (a shift inside the range), *long-run
   level* over about the last ``history`` readings (a value unusual for the device's whole
   past even when the recent level has followed it; 0: off). Per channel; the largest
   counts.
4. **likelihood** (:mod:`edgestream.edge.likelihood`, Numenta's): each model's recent raw
   scores against their own running distribution give a score in [0, 1]; the largest of
   the four is the reading's. After a score above 0.5 the next ``rest`` readings score 0
   (one detection per event; 0: off).

Per reading this is a few dict lookups and float operations (6-10 us in CPython); the
state per device is a few numbers plus the counts (at most one entry per context and bin
seen). It is kept as parts like :class:`~edgestream.ml.features.FeatureExtractor`'s
(``changed_parts``/``restore_parts``): a restart continues bit-identically, and scores do
not depend on how readings are cut into batches. A reading whose ``ts`` is not newer than
its device's newest scores 0 and is not learned from.

>>> import numpy as np
>>> det = OnlineDetector(["value"], calibration=50)
>>> rng = np.random.default_rng(1)
>>> x = np.sin(np.arange(400) / 5.0) + rng.normal(0, 0.05, 400)
>>> x[300] = 9.0  # a spike far outside the range
>>> scores = det.transform(["d"] * 400, np.arange(400), x[:, None])[:, 0]
>>> float(scores[:50].max()), float(scores[300]), bool(scores[100:300].max() < 0.5)
(0.0, 1.0, True)
>>> again = OnlineDetector(["value"], calibration=50)
>>> again.restore(det.state())
>>> bool((again.transform(["d"], [400], [[0.1]]) == det.transform(["d"], [400], [[0.1]])).all())
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgestream.core.exceptions import EdgestreamError
from edgestream.core.stateful import HEADER, pack_parts, unpack_parts
from edgestream.edge import likelihood
from edgestream.ml.artifact import ModelMeta

KIND = "online"
STATE_FORMAT = 2  # 2: the long-run level model
BINS = 4096  # bins beyond the calibrated range (either side) all count as the last one
DAY_MS = 86_400_000
MAX_COUNTS = 4096  # count entries per model and channel of a device (see _learn)
DEFAULTS: dict[str, Any] = {
    "calibration": 750,
    "levels": 6,
    "order": 2,
    "tod": 96,
    "recent": 100,
    "history": 8000,
    "tolerance": 0.05,
    "average": 20,
    "horizon": 8640,
    "rest": 25,
}


class OnlineError(EdgestreamError, ValueError):
    """Bad settings of the online detector, or a state that is not its own."""


class _Device:
    """One device's state (JSON-able; see the module docstring)."""

    __slots__ = (
        "base",
        "buffer",
        "counts",
        "ctx",
        "hi",
        "last_ts",
        "lik",
        "lo",
        "long",
        "moments",
        "n",
        "rest",
        "width",
    )  # fmt: skip

    def __init__(self, channels: int) -> None:
        self.n = 0  # in-order readings learned from
        self.last_ts: int | None = None
        self.buffer: list[list[float]] = []  # calibration readings (emptied when calibrated)
        self.lo = [math.inf] * channels  # range seen (grows)
        self.hi = [-math.inf] * channels
        self.base = [0.0] * channels  # bin 0 starts here, fixed at calibration
        self.width = [0.0] * channels  # bin width, fixed at calibration
        self.ctx: list[list[int]] = [[] for _ in range(channels)]  # previous bins, newest last
        # counts[model][channel]: "context" -> readings, "context>bin" -> readings
        self.counts: list[list[dict[str, int]]] = [[{} for _ in range(channels)] for _ in "st"]
        self.moments = [[0.0, 0.0, 0] for _ in range(channels)]  # recent mean, variance, n
        self.long = [[0.0, 0.0, 0] for _ in range(channels)]  # long-run mean, variance, n
        self.lik = [likelihood.new_state() for _ in "stgl"]  # per model
        self.rest = 0  # readings still muted after a detection

    def dump(self) -> bytes:
        return json.dumps({k: getattr(self, k) for k in self.__slots__}).encode()

    @classmethod
    def load(cls, blob: bytes, channels: int) -> _Device:
        dev = cls(channels)
        for key, value in json.loads(blob).items():
            setattr(dev, key, value)
        return dev


class OnlineDetector:
    """Per-device online anomaly scores; the :class:`~edgestream.edge.models.Features`
    contract (``transform``, ``changed_parts``, ``restore_parts``, ``restore``), with one
    output column, ``score``."""

    feature_names = ("score",)

    def __init__(self, channels: Sequence[str], **settings: Any) -> None:
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise OnlineError(f"unknown online detector settings {sorted(unknown)}")
        if not channels:
            raise OnlineError("the online detector needs at least one channel")
        self.channels = tuple(str(c) for c in channels)
        cfg = {**DEFAULTS, **settings}
        self.calibration = int(cfg["calibration"])
        self.levels = int(cfg["levels"])
        self.order = int(cfg["order"])
        self.tod = int(cfg["tod"])
        self.recent = int(cfg["recent"])
        self.history = int(cfg["history"])
        self.tolerance = float(cfg["tolerance"])
        self.average = int(cfg["average"])
        self.horizon = int(cfg["horizon"])
        self.rest = int(cfg["rest"])
        if min(self.calibration, self.levels, self.order + 1, self.average, self.horizon) < 2 or (
            min(self.tod, self.recent, self.history, self.rest) < 0 or self.tolerance < 0
        ):
            raise OnlineError(f"online detector settings out of range: {cfg}")
        self._header = json.dumps({"format": STATE_FORMAT, **self.config()}).encode()
        self._devices: dict[str, _Device] = {}
        self._dirty: set[str] = set()

    @property
    def n_features(self) -> int:
        return 1

    def config(self) -> dict[str, Any]:
        """The settings as JSON values (``kind: online`` and the channels included)."""
        return {"kind": KIND, "channels": list(self.channels), **self.settings()}

    def settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DEFAULTS}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> OnlineDetector:
        """The detector ``config()`` describes."""
        rest = {k: v for k, v in config.items() if k not in ("kind", "channels")}
        return cls(config["channels"], **rest)

    # -- state ------------------------------------------------------------------------------
    def parts(self) -> dict[str, bytes]:
        return {HEADER: self._header, **{d: s.dump() for d, s in self._devices.items()}}

    def changed_parts(self) -> dict[str, bytes]:
        """HEADER and the devices ``transform`` changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return {HEADER: self._header, **{d: self._devices[d].dump() for d in sorted(dirty)}}

    def restore_parts(self, parts: dict[str, bytes]) -> None:
        try:
            header = json.loads(parts[HEADER])
        except (KeyError, ValueError) as error:
            raise OnlineError(f"not an online detector state ({error!r})") from None
        if header != {"format": STATE_FORMAT, **self.config()}:
            raise OnlineError(
                f"online detector state was saved with {header}, this detector has "
                f"{self.config()}: restore it into a detector with the same settings"
            )
        c = len(self.channels)
        self._devices = {d: _Device.load(b, c) for d, b in parts.items() if d != HEADER}
        self._dirty = set()

    def state(self) -> bytes:
        return pack_parts(self.parts())

    def restore(self, blob: bytes) -> None:
        try:
            parts = unpack_parts(blob)
        except ValueError as error:
            raise OnlineError(f"not an online detector state ({error})") from None
        self.restore_parts(parts)

    # -- scoring ----------------------------------------------------------------------------
    def transform(self, device_ids: Any, ts: Any, values: Any) -> np.ndarray:
        """Scores ``(n, 1)`` (float64) of n readings in arrival order; learns from them."""
        values = np.asarray(values, dtype=np.float64)
        ts = np.asarray(ts, dtype=np.int64)
        n = len(ts)
        if values.shape != (n, len(self.channels)) or len(device_ids) != n:
            raise OnlineError(
                f"{len(device_ids)} device ids, {n} timestamps and values of shape "
                f"{values.shape}: expected (readings, {len(self.channels)}) values"
            )
        out = np.zeros((n, 1))
        ids = device_ids.tolist() if isinstance(device_ids, np.ndarray) else list(device_ids)
        rows, stamps = values.tolist(), ts.tolist()
        c = len(self.channels)
        for i in range(n):
            device = ids[i]
            dev = self._devices.get(device)
            if dev is None:
                dev = self._devices[device] = _Device(c)
            if dev.last_ts is not None and stamps[i] <= dev.last_ts:
                continue  # out of order: scored 0, not learned
            dev.last_ts = stamps[i]
            self._dirty.add(device)
            out[i, 0] = self._step(dev, stamps[i], rows[i])
        return out

    def _step(self, dev: _Device, ts: int, row: list[float]) -> float:
        dev.n += 1
        if dev.n <= self.calibration:
            dev.buffer.append([float(ts), *row])
            if dev.n == self.calibration:
                self._calibrate(dev)
            return 0.0
        spatial = False
        for k, x in enumerate(row):
            margin = self.tolerance * (dev.hi[k] - dev.lo[k])
            if not dev.lo[k] - margin <= x <= dev.hi[k] + margin:
                spatial = True
            dev.lo[k], dev.hi[k] = min(dev.lo[k], x), max(dev.hi[k], x)
        score = 1.0 if spatial else 0.0
        for model, raw in enumerate(self._surprise(dev, ts, row)):
            lik = likelihood.update(dev.lik[model], raw, self.average, self.horizon)
            score = max(score, lik)
        if dev.rest > 0:
            dev.rest -= 1
            return 0.0
        if score > likelihood.RED and self.rest:
            dev.rest = self.rest
        return score

    def _calibrate(self, dev: _Device) -> None:
        """End of calibration: fix the bins from the range, learn from the readings seen."""
        buffer, dev.buffer = dev.buffer, []
        for k in range(len(self.channels)):
            column = [row[k + 1] for row in buffer]
            dev.lo[k], dev.hi[k] = min(column), max(column)
            dev.base[k] = dev.lo[k]
            span = dev.hi[k] - dev.lo[k]
            dev.width[k] = span / self.levels if span > 0 else max(abs(dev.lo[k]) * 1e-3, 1e-9)
        half = len(buffer) // 2  # the models' first steps (all new) do not set the baseline
        for i, (ts, *row) in enumerate(buffer):
            for model, raw in enumerate(self._surprise(dev, int(ts), row)):
                likelihood.update(dev.lik[model], raw, self.average, self.horizon, i >= half)

    def _surprise(self, dev: _Device, ts: int, row: list[float]) -> tuple[float, ...]:
        """Raw scores of the sequence, time-of-day, recent-level and long-run level models
        (largest over channels); the models learn the reading."""
        seq = tod = level = long = 0.0
        hour = f"@{(ts % DAY_MS) * self.tod // DAY_MS}" if self.tod else ""
        for k, x in enumerate(row):
            b = min(max(math.floor((x - dev.base[k]) / dev.width[k]), -BINS), BINS)
            ctx = dev.ctx[k]
            if len(ctx) == self.order:
                seq = max(seq, _learn(dev.counts[0][k], ",".join(map(str, ctx)), b))
            if ctx and self.tod:
                tod = max(tod, _learn(dev.counts[1][k], f"{ctx[-1]}{hour}", b))
            ctx.append(b)
            if len(ctx) > self.order:
                del ctx[0]
            if self.recent:
                level = max(level, _moments(dev.moments[k], x, self.recent))
            if self.history:
                long = max(long, _moments(dev.long[k], x, self.history))
        return seq, tod, level, long


def _moments(state: list[Any], x: float, horizon: int) -> float:
    """How far ``x`` is from the recent mean in recent standard deviations, as
    ``erf(|z| / sqrt 2)`` in [0, 1); then the running mean and variance learn ``x``."""
    mean, var, n = state
    if var > 0:
        raw = math.erf(abs(x - mean) / math.sqrt(2.0 * var))
    else:  # nothing but one value so far
        raw = 1.0 if n and x != mean else 0.0
    n += 1
    rate = 1.0 / min(n, horizon)
    delta = x - mean
    state[0], state[1], state[2] = mean + rate * delta, (1 - rate) * (var + rate * delta * delta), n
    return raw


def _learn(counts: dict[str, int], context: str, b: int) -> float:
    """1 - P(b | context) from ``counts`` (1 for an unseen context); then counts it. Past
    ``MAX_COUNTS`` entries every count is halved and the zeros dropped: bounded memory, and
    what a device no longer does fades (a drifting counter keeps making new bins)."""
    total = counts.get(context, 0)
    key = f"{context}>{b}"
    hit = counts.get(key, 0)
    counts[context] = total + 1
    counts[key] = hit + 1
    if len(counts) > MAX_COUNTS:
        halved = {k: v // 2 for k, v in counts.items()}
        counts.clear()
        counts.update((k, v) for k, v in halved.items() if v)
    return 1.0 - hit / total if total else 1.0


DEFAULT_THRESHOLD = 0.5  # a mean raw score with a tail probability of 1e-5


class OnlineScorer:
    """The "model" of an online detector: its scores are the detector's output column.

    It stands where an :class:`~edgestream.ml.scorer.OnnxScorer` stands in the pipeline
    (``meta``, ``version``, ``threshold``, ``inputs``, ``score``); the learning happens in
    the detector, the pipeline's stateful feature step (``features_for(meta)`` builds it
    from ``meta.features``).
    """

    def __init__(self, meta: ModelMeta) -> None:
        self.meta = meta
        self.source = f"online detector {meta.version}"

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def sha256(self) -> str:
        return self.meta.sha256  # "": no file

    @property
    def threshold(self) -> float:
        return self.meta.threshold

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.meta.inputs

    @property
    def n_features(self) -> int:
        return 1

    def warm(self, rows: int = 0) -> OnlineScorer:
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """The detector's scores (float64, shape ``(n,)``)."""
        return np.asarray(features, dtype=np.float64).reshape(len(features), -1)[:, 0].copy()


def online_scorer(
    channels: Sequence[str], settings: dict[str, Any], version: str, threshold: float | None
) -> OnlineScorer:
    """An online model over ``channels`` with detector ``settings`` (see :data:`DEFAULTS`).

    >>> scorer = online_scorer(["value"], {"calibration": 100}, "nab-online", None)
    >>> scorer.meta.features["kind"], scorer.meta.features["calibration"], scorer.threshold
    ('online', 100, 0.5)
    """
    detector = OnlineDetector(channels, **settings)
    meta = ModelMeta(
        version=version,
        sha256="",
        inputs=OnlineDetector.feature_names,
        threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold),
        family=KIND,
        channels=tuple(channels),
        features=detector.config(),
    )
    return OnlineScorer(meta)
