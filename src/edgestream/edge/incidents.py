"""Anomaly rules: scored readings become incidents, incidents become alerts.

Per (device, rule), in arrival order and on event time only (so a replay gives the same
alerts, byte for byte):

- a reading is *anomalous* when its score exceeds the rule's threshold (or the model's);
- while a ``mute_when`` condition holds, and for ``hold`` after it, readings do not count;
- an incident *opens* after ``consecutive`` anomalous readings in a row spanning at least
  ``min_duration``: one ``open`` alert with the triggering readings;
- anomalous readings within ``cooldown`` of the incident's last anomalous reading belong to
  the same incident: at most one ``update`` alert per ``update_interval`` (dedup);
- the first reading later than ``last anomalous + cooldown`` *resolves* it (one ``resolved``
  alert); the next anomalous run is a new incident.

Ids are deterministic: ``incident_id = gateway|device|rule|first_ts`` and
``alert_id = incident_id|n`` (0 for open, 1.. for updates, ``resolved``).

>>> import numpy as np
>>> from edgestream.core.topology.detection import AnomalyRule, AnomalySpec
>>> spec = AnomalySpec(rules=(AnomalyRule(name="r", consecutive=2),))
>>> tracker = IncidentTracker(spec, "gw-1", thresholds={"pump": 0.5})
>>> ts = np.arange(6) * 100
>>> scores = np.array([0.1, 0.9, 0.9, 0.9, 0.1, 0.1])
>>> alerts = tracker.process(["d"] * 6, ["s"] * 6, ["pump"] * 6, ts, np.arange(6), scores,
...                          values=np.zeros((6, 0)), channels=(), model_version="v1")
>>> [(a["status"], a["first_ts"], a["reading_count"]) for a in alerts]
[('open', 100, 2)]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgestream.core.topology.detection import AnomalyRule, AnomalySpec, Severity
from edgestream.wire.ids import alert_key, incident_key


@dataclass
class _Run:
    """Per (device, rule) state; only non-idle entries are kept."""

    run: list[list[float]] = field(default_factory=list)  # [seq, ts, score] of the current run
    mute_until: int | None = None
    incident: str | None = None  # incident id while one is open
    first_ts: int = 0
    last_ts: int = 0
    last_alert_ts: int = 0
    updates: int = 0
    count: int = 0
    max_score: float = float("-inf")
    site: str = ""
    device_type: str = ""

    def idle(self) -> bool:
        return not self.run and self.incident is None and self.mute_until is None


class IncidentTracker:
    """Turns scored readings into deterministic alerts; its state is checkpointable bytes."""

    def __init__(
        self, spec: AnomalySpec, gateway_id: str, thresholds: dict[str, float | None]
    ) -> None:
        self.spec = spec
        self.gateway_id = gateway_id
        self.thresholds = dict(thresholds)  # device type -> model threshold (follows swaps)
        self._state: dict[tuple[str, str], _Run] = {}
        self.counts = {"open": 0, "update": 0, "resolved": 0, "muted": 0}

    # -- checkpointing ---------------------------------------------------------------------
    def state(self) -> bytes:
        """Everything needed to continue exactly (committed with the window state)."""
        live = {f"{d}\x1f{r}": asdict(s) for (d, r), s in self._state.items() if not s.idle()}
        return json.dumps({"runs": live, "counts": self.counts}, sort_keys=True).encode()

    def restore(self, blob: bytes | None) -> None:
        if not blob:
            return
        data = json.loads(blob)
        self._state = {
            tuple(key.split("\x1f", 1)): _Run(**value)  # type: ignore[misc]
            for key, value in data["runs"].items()
        }
        self.counts = data["counts"]

    # -- processing ------------------------------------------------------------------------
    def rules_for(self, device_type: str) -> list[AnomalyRule]:
        return [r for r in self.spec.rules if not r.device_types or device_type in r.device_types]

    def threshold(self, rule: AnomalyRule, device_type: str) -> float:
        value = rule.threshold if rule.threshold is not None else self.thresholds.get(device_type)
        return float("inf") if value is None else float(value)

    def process(
        self,
        device_id: list[str],
        site: list[str],
        device_type: list[str],
        ts: np.ndarray,
        seq: np.ndarray,
        scores: np.ndarray,
        values: np.ndarray,
        channels: tuple[str, ...],
        model_version: str | None,
    ) -> list[dict[str, Any]]:
        """Process readings in arrival order; returns the alerts (AnomalyAlert dicts)."""
        alerts: list[dict[str, Any]] = []
        n = len(ts)
        if n == 0:
            return alerts
        dev_arr = np.asarray(device_id, dtype=object)
        dtype_arr = np.asarray(device_type, dtype=object)
        for dtype in sorted(set(device_type)):
            of_type = dtype_arr == dtype
            for rule in self.rules_for(dtype):
                threshold = self.threshold(rule, dtype)
                anomalous = of_type & (scores > threshold)
                muting = of_type & self._mute_mask(rule, values, channels)
                # Readings of devices with no state and nothing anomalous or muting are
                # no-ops: only the devices that have (or get) state are walked, in order.
                stateful = {d for (d, r) in self._state if r == rule.name}
                relevant = stateful | set(dev_arr[anomalous | muting])
                walk = of_type & np.isin(dev_arr, list(relevant))
                for i in np.flatnonzero(walk):
                    alerts += self._step(
                        rule,
                        threshold,
                        device_id[i],
                        site[i],
                        dtype,
                        int(ts[i]),
                        int(seq[i]),
                        float(scores[i]),
                        bool(anomalous[i]),
                        bool(muting[i]),
                        values[i],
                        channels,
                        model_version,
                    )
        return alerts

    def _mute_mask(
        self, rule: AnomalyRule, values: np.ndarray, channels: tuple[str, ...]
    ) -> np.ndarray:
        mask = np.zeros(len(values), bool)
        for cond in rule.mute_when:
            if cond.channel not in channels:
                continue
            col = values[:, channels.index(cond.channel)]
            with np.errstate(invalid="ignore"):
                if cond.above is not None:
                    mask |= col > cond.above
                if cond.below is not None:
                    mask |= col < cond.below
        return mask

    def _step(
        self,
        rule: AnomalyRule,
        threshold: float,
        device: str,
        site: str,
        dtype: str,
        ts: int,
        seq: int,
        score: float,
        anomalous: bool,
        muting: bool,
        row: np.ndarray,
        channels: tuple[str, ...],
        model_version: str | None,
    ) -> list[dict[str, Any]]:
        key = (device, rule.name)
        st = self._state.setdefault(key, _Run(site=site, device_type=dtype))
        st.site, st.device_type = site, dtype
        out: list[dict[str, Any]] = []
        supp = self.spec.suppression

        def alert(suffix: str, counted: str, trigger: list[list[Any]]) -> None:
            out.append(self._alert(st, rule, threshold, device, suffix, ts, score, row,
                                   channels, model_version, trigger))  # fmt: skip
            self.counts[counted] += 1

        if st.incident is not None and ts > st.last_ts + supp.cooldown:
            alert("resolved", "resolved", [])
            st.incident, st.updates, st.count, st.max_score = None, 0, 0, float("-inf")
        muted = self._muted(st, rule, ts, muting)
        if muted and anomalous:
            self.counts["muted"] += 1
        if not anomalous or muted:
            st.run = []
        else:
            st.run.append([seq, ts, score])
            st.run = st.run[-supp.max_trigger_ids :]
            if st.incident is not None:
                st.last_ts = max(st.last_ts, ts)
                st.count += 1
                st.max_score = max(st.max_score, score)
                if ts - st.last_alert_ts >= supp.update_interval:
                    st.updates += 1
                    st.last_alert_ts = ts
                    alert(str(st.updates), "update", st.run)
                st.run = st.run[-1:] if len(st.run) >= rule.consecutive else st.run
            elif len(st.run) >= rule.consecutive and ts - st.run[0][1] >= rule.min_duration:
                st.first_ts = int(st.run[0][1])
                st.incident = incident_key(self.gateway_id, device, rule.name, st.first_ts)
                st.last_ts = st.last_alert_ts = ts
                st.count = len(st.run)
                st.max_score = max(r[2] for r in st.run)
                alert("0", "open", st.run)
                st.run = []
        if st.idle():
            del self._state[key]
        return out

    @staticmethod
    def _muted(st: _Run, rule: AnomalyRule, ts: int, muting: bool) -> bool:
        """Whether the device is muted at ``ts`` (a mute condition holds now, or held within
        its ``hold``); updates the run's mute deadline."""
        hold = max((c.hold for c in rule.mute_when), default=0)
        if muting:
            st.mute_until = ts + hold
        muted = st.mute_until is not None and ts <= st.mute_until
        if st.mute_until is not None and not muted:
            st.mute_until = None
        return muted

    def _severity(self, rule: AnomalyRule, score: float) -> str:
        bands: Severity | None = rule.severity or self.spec.severity
        if bands is None:
            return "warning"
        if score >= bands.critical:
            return "critical"
        return "warning" if score >= bands.warning else "info"

    def _alert(
        self,
        st: _Run,
        rule: AnomalyRule,
        threshold: float,
        device: str,
        number: str,
        ts: int,
        score: float,
        row: np.ndarray,
        channels: tuple[str, ...],
        model_version: str | None,
        trigger: list[list[float]],
    ) -> dict[str, Any]:
        assert st.incident is not None
        status = "open" if number == "0" else "resolved" if number == "resolved" else "update"
        rule_name = rule.name
        if rule.consecutive > 1:
            rule_name += f":consecutive({rule.consecutive})"
        return {
            "alert_id": alert_key(st.incident, number),
            "incident_id": st.incident,
            "status": status,
            "update_number": int(number) if status == "update" else None,
            "gateway_id": self.gateway_id,
            "site": st.site,
            "device_id": device,
            "device_type": st.device_type,
            "severity": self._severity(rule, st.max_score),
            "ts": ts,
            "first_ts": st.first_ts,
            "last_ts": st.last_ts,
            "score": score,
            "threshold": threshold if np.isfinite(threshold) else 0.0,
            "rule": rule_name,
            "model_version": model_version,
            "channels": {c: float(v) for c, v in zip(channels, row, strict=True) if np.isfinite(v)},
            "readings": [{"seq": int(s), "ts": int(t), "score": float(x)} for s, t, x in trigger],
            "reading_count": st.count,
            "gateway_seq": None,
            "emitted_at": None,
        }
