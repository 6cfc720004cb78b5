"""Model rollout on a gateway, without Kafka or ONNX: which version is live, which candidate
is in shadow or pending, the shadow comparison and its gates, and the state that survives a
restart.

One :class:`Slot` per device type. A verified ``candidate`` update goes into the slot as

* ``shadow`` on a canary gateway: every batch is scored by both models (the live model's
  outputs are published), :class:`ShadowStats` compares them, and :func:`judge` decides
  once ``min_readings`` readings were scored: promote when the anomaly rates differ by at most
  ``max_anomaly_rate_delta`` and the Spearman rank correlation of the scores is at least
  ``min_rank_correlation``, else roll back (``auto_rollback``); not decided within
  ``max_duration``: rolled back;
* ``pending`` on the other gateways: it waits for a ``promote`` update (after the canaries
  passed, or forced by the operator).

``promote`` makes the candidate live (the old live version is kept as ``previous``);
``rollback`` drops a candidate, or returns a live version to ``previous``. The worker swaps the
scorer between batches; :class:`RolloutState` is saved atomically (JSON, fsync, rename) after
every change, so a restarted worker serves the same version (and never flips back).

>>> gates = Gates(min_readings=4, max_anomaly_rate_delta=0.3, min_rank_correlation=0.5)
>>> stats = ShadowStats()
>>> stats.add([0.1, 0.2, 0.3, 0.9], [0.2, 0.3, 0.5, 0.8], 0.5, 0.6)
>>> stats.n, stats.current_rate, stats.candidate_rate, round(stats.rank_correlation(), 3)
(4, 0.25, 0.25, 1.0)
>>> judge(stats, gates, elapsed_ms=1000).decision
'promote'
>>> stats.add([0.1, 0.2], [0.9, 0.9], 0.5, 0.6)
>>> verdict = judge(stats, gates, elapsed_ms=1000)
>>> verdict.decision, verdict.reason
('rollback', 'gates-failed')
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgestream.core.topology import Topology

Mode = Literal["shadow", "pending"]
STATE_FORMAT = 1
#: Score pairs kept for the rank correlation (a uniform reservoir beyond this).
RESERVOIR = 20_000


@dataclass(frozen=True)
class Gates:
    """The topology's ``rollout.shadow`` gates (``max_duration_ms`` bounds the shadow)."""

    min_readings: int = 5_000
    max_anomaly_rate_delta: float = 0.02
    min_rank_correlation: float = 0.8
    max_duration_ms: int = 1_800_000
    auto_rollback: bool = True

    @classmethod
    def from_topology(cls, topology: Topology) -> Gates:
        s = topology.rollout.shadow
        return cls(
            min_readings=int(s.min_readings),
            max_anomaly_rate_delta=float(s.max_anomaly_rate_delta),
            min_rank_correlation=float(s.min_rank_correlation),
            max_duration_ms=int(s.max_duration),
            auto_rollback=bool(topology.rollout.auto_rollback),
        )


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if len(ra) < 2:
        return float("nan")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # positions where a new value starts; tied values share the mean of their ranks
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends - 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


class ShadowStats:
    """Comparison of the live model and a candidate on the same readings: anomaly counts
    (exact) and a reservoir of score pairs for the rank correlation (exact up to
    :data:`RESERVOIR` readings, a uniform sample beyond)."""

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.capacity = capacity
        self.n = 0
        self.current_anomalies = 0
        self.candidate_anomalies = 0
        self._pairs = np.zeros((capacity, 2), dtype=np.float64)
        self._rng = np.random.default_rng(seed)

    def add(self, current: Any, candidate: Any, current_thr: float, candidate_thr: float) -> None:
        """Scores of one batch by both models, with the thresholds in force."""
        cur = np.asarray(current, dtype=np.float64)
        cand = np.asarray(candidate, dtype=np.float64)
        if cur.shape != cand.shape:
            raise ValueError(f"score arrays differ in shape: {cur.shape} vs {cand.shape}")
        self.current_anomalies += int((cur > current_thr).sum())
        self.candidate_anomalies += int((cand > candidate_thr).sum())
        for i in range(len(cur)):  # reservoir sampling (Algorithm R); batches are small
            slot = self.n if self.n < self.capacity else int(self._rng.integers(0, self.n + 1))
            if slot < self.capacity:
                self._pairs[slot] = (cur[i], cand[i])
            self.n += 1

    @property
    def current_rate(self) -> float:
        return self.current_anomalies / self.n if self.n else 0.0

    @property
    def candidate_rate(self) -> float:
        return self.candidate_anomalies / self.n if self.n else 0.0

    @property
    def rate_delta(self) -> float:
        return abs(self.candidate_rate - self.current_rate)

    def rank_correlation(self) -> float:
        kept = self._pairs[: min(self.n, self.capacity)]
        return spearman(kept[:, 0], kept[:, 1])


@dataclass(frozen=True)
class Verdict:
    """``continue`` (keep shadowing), ``promote`` or ``rollback``, with the reason."""

    decision: Literal["continue", "promote", "rollback"]
    reason: str = ""
    detail: str = ""


def judge(stats: ShadowStats, gates: Gates, elapsed_ms: int) -> Verdict:
    """The shadow decision (see the module docstring). A rank correlation that is undefined
    (a model scoring every reading the same) fails the gate."""
    if stats.n >= gates.min_readings:
        corr = stats.rank_correlation()
        delta = stats.rate_delta
        failed = []
        if delta > gates.max_anomaly_rate_delta:
            failed.append(f"anomaly rate delta {delta:.4f} > {gates.max_anomaly_rate_delta}")
        if not corr >= gates.min_rank_correlation:  # nan fails
            failed.append(f"rank correlation {corr:.4f} < {gates.min_rank_correlation}")
        detail = (
            f"{stats.n} readings: anomaly rate {stats.current_rate:.4f} -> "
            f"{stats.candidate_rate:.4f}, rank correlation {corr:.4f}"
        )
        if not failed:
            return Verdict("promote", "gates-passed", detail)
        if gates.auto_rollback:
            return Verdict("rollback", "gates-failed", "; ".join(failed) + f" ({detail})")
    if elapsed_ms >= gates.max_duration_ms:
        return Verdict(
            "rollback",
            "max-duration",
            f"{stats.n} of {gates.min_readings} readings within {gates.max_duration_ms} ms"
            if stats.n < gates.min_readings
            else "gates not passed within max_duration",
        )
    return Verdict("continue")


@dataclass
class ModelRef:
    """A model version a slot can serve: ``path`` is its artifact in the gateway's data dir
    (ONNX + sidecar), None for the topology's own model."""

    version: str
    sha256: str = ""
    path: str | None = None
    model_name: str = ""


@dataclass
class Slot:
    """The rollout state of one device type's model."""

    device_type: str
    live: ModelRef
    previous: ModelRef | None = None
    candidate: ModelRef | None = None
    mode: Mode | None = None
    since_ms: int = 0  # when the candidate entered the slot
    history: list[str] = field(default_factory=list)  # versions decided against (rolled back)

    def accept(self, ref: ModelRef, mode: Mode, now_ms: int) -> None:
        """A verified candidate (it replaces an earlier one still undecided)."""
        self.candidate, self.mode, self.since_ms = ref, mode, now_ms

    def promote(self) -> ModelRef:
        """The candidate goes live; returns the version that served before."""
        if self.candidate is None:
            raise ValueError(f"no candidate for {self.device_type} to promote")
        old = self.live
        self.previous, self.live = old, self.candidate
        self.candidate, self.mode = None, None
        return old

    def drop_candidate(self) -> ModelRef | None:
        """Roll a candidate back (it never served)."""
        cand = self.candidate
        if cand is not None:
            self.history.append(cand.version)
        self.candidate, self.mode = None, None
        return cand

    def revert(self) -> ModelRef:
        """Return to the previous live version; returns the version that was live."""
        if self.previous is None:
            raise ValueError(f"{self.device_type}: no previous version to roll back to")
        bad = self.live
        self.history.append(bad.version)
        self.live, self.previous = self.previous, None
        return bad


@dataclass
class RolloutState:
    """Everything about rollouts that must survive a restart: the slots, the next position on
    ``edge.models`` and the rollout event counter."""

    slots: dict[str, Slot] = field(default_factory=dict)
    next_offset: int = 0
    event_seq: int = 0

    def to_json(self) -> str:
        return json.dumps({"format": STATE_FORMAT, **asdict(self)}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> RolloutState:
        data = json.loads(text)
        slots = {}
        for name, s in data.get("slots", {}).items():
            ref = lambda d: ModelRef(**d) if d else None  # noqa: E731
            slots[name] = Slot(
                device_type=s["device_type"],
                live=ModelRef(**s["live"]),
                previous=ref(s.get("previous")),
                candidate=ref(s.get("candidate")),
                mode=s.get("mode"),
                since_ms=int(s.get("since_ms", 0)),
                history=list(s.get("history", [])),
            )
        return cls(slots, int(data.get("next_offset", 0)), int(data.get("event_seq", 0)))

    @classmethod
    def load(cls, path: Path) -> RolloutState:
        """The saved state, or an empty one when there is none yet."""
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        """Atomically: write a temp file, fsync it, rename it over the old one, fsync the dir."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            out.write(self.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- records -----------------------------------------------------------------------------------
def shadow_fields(stats: ShadowStats | None, since_ms: int, now_ms: int) -> dict[str, Any]:
    """The shadow comparison fields of a RolloutEvent (zeros / nulls without statistics)."""
    has = stats is not None and stats.n > 0
    corr = stats.rank_correlation() if stats is not None and stats.n > 1 else float("nan")
    return {
        "shadow_readings": stats.n if stats is not None else 0,
        "shadow_ms": max(0, now_ms - since_ms) if since_ms and stats is not None else 0,
        "current_anomaly_rate": stats.current_rate if has else None,
        "candidate_anomaly_rate": stats.candidate_rate if has else None,
        "anomaly_rate_delta": stats.rate_delta if has else None,
        "rank_correlation": corr if np.isfinite(corr) else None,
    }


def rejection_alert(
    gateway_id: str,
    site: str,
    device_type: str,
    model_name: str,
    version: str,
    live_version: str,
    seq: int,
    now_ms: int,
) -> dict[str, Any]:
    """The AnomalyAlert (rule ``model-rejected``, critical) of a rejected model update; the
    reason is in the RolloutEvent number ``seq`` the incident id names.

    >>> a = rejection_alert("gw-1", "s1", "pump", "pump-ae", "v9", "v1", 4, 1000)
    >>> a["alert_id"], a["rule"], a["model_version"]
    ('gw-1|model-rejected|pump|v9|4|0', 'model-rejected', 'v1')
    """
    incident = f"{gateway_id}|model-rejected|{device_type}|{version}|{seq}"
    return {
        "alert_id": f"{incident}|0",
        "incident_id": incident,
        "status": "open",
        "update_number": None,
        "gateway_id": gateway_id,
        "site": site,
        "device_id": f"model:{model_name}",
        "device_type": device_type,
        "severity": "critical",
        "ts": now_ms,
        "first_ts": now_ms,
        "last_ts": now_ms,
        "score": 0.0,
        "threshold": 0.0,
        "rule": "model-rejected",
        "model_version": live_version,
        "channels": {},
        "readings": [],
        "reading_count": 0,
        "emitted_at": now_ms,
    }
