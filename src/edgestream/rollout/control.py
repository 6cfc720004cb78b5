"""The cloud's half of a staged rollout: canaries decide, the rest follow.

A ``candidate`` on ``fleet.models`` goes into shadow on the canary gateways (the topology's
``canary: true`` ones, else the first ``canary_fraction``, serving the model's device type)
and waits as ``pending`` on the others. Gateways report on ``fleet.rollout`` (RolloutEvent).
:func:`decide` reads both:

* every canary of the model reported ``promoted`` for the version -> ``promote`` (the rest
  of the fleet makes it live);
* a canary reported ``rolled_back`` or ``rejected`` -> ``rollback`` (the rollout stops: the
  pending gateways drop the candidate, nothing is promoted);
* otherwise: wait.

A version already promoted or rolled back on ``fleet.models`` is decided: decisions are
derived from the topics again after a restart and never published twice.

>>> h = ModelHistory([{"model_name": "m", "version": "v2", "action": "candidate"}])
>>> ev = [{"event_id": "gw-1|r|1", "gateway_id": "gw-1", "event": "promoted",
...        "model_name": "m", "version": "v2"}]
>>> decide(h, ev, {"m": {"gw-1"}})
[Decision(action='promote', model_name='m', version='v2', reason='canaries promoted: gw-1')]
>>> decide(h, [{**ev[0], "event": "rolled_back"}], {"m": {"gw-1", "gw-9"}})[0].action
'rollback'
>>> decide(h, ev, {"m": {"gw-1", "gw-9"}})
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgestream.core.topology import Topology
from edgestream.rollout.history import ModelHistory, action_update

__all__ = ["Decision", "RolloutController", "canaries_by_model", "decide", "gateway_states"]

OUTCOMES = ("promoted", "rolled_back", "rejected")


@dataclass(frozen=True)
class Decision:
    """Publish ``action`` for ``model_name`` ``version``; ``reason`` for the log."""

    action: str  # promote | rollback
    model_name: str
    version: str
    reason: str


def canaries_by_model(topology: Topology) -> dict[str, set[str]]:
    """Model name -> canary gateways serving its device type."""
    canaries = set(topology.canary_gateways())
    out: dict[str, set[str]] = {}
    for device_type, spec in topology.models.items():
        out[spec.name] = {
            g.id for g in topology.gateways if g.id in canaries and device_type in g.device_types
        }
    return out


def gateway_states(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict]:
    """(model_name, version, gateway_id) -> that gateway's last event about the version."""
    out: dict[tuple[str, str, str], dict] = {}
    for event in events:
        out[(event["model_name"], event["version"], event["gateway_id"])] = event
    return out


def decide(
    history: ModelHistory,
    events: Iterable[dict[str, Any]],
    canaries: Mapping[str, set[str]],
) -> list[Decision]:
    """Decisions for the undecided candidates (see the module docstring)."""
    outcomes: dict[tuple[str, str], dict[str, str]] = {}
    for event in events:
        if event.get("event") in OUTCOMES:
            key = (event["model_name"], event["version"])
            outcomes.setdefault(key, {})[event["gateway_id"]] = event["event"]
    decisions = []
    for model_name, gateways in canaries.items():
        if not gateways:
            continue
        for version in history.versions(model_name):
            if history.state(model_name, version) != "candidate":
                continue
            seen = outcomes.get((model_name, version), {})
            failed = sorted(g for g in gateways if seen.get(g) in ("rolled_back", "rejected"))
            if failed:
                what = ", ".join(f"{g} {seen[g]}" for g in failed)
                decisions.append(Decision("rollback", model_name, version, f"canary {what}"))
            elif all(seen.get(g) == "promoted" for g in gateways):
                reason = "canaries promoted: " + ", ".join(sorted(gateways))
                decisions.append(Decision("promote", model_name, version, reason))
    return decisions


class RolloutController:
    """:func:`decide` over the events seen so far and the latest ``fleet.models`` history."""

    def __init__(self, topology: Topology) -> None:
        self.canaries = canaries_by_model(topology)
        self.events: dict[str, dict[str, Any]] = {}  # event_id -> event (replays dropped)
        self.history = ModelHistory()
        self.needs_history = True
        self.decisions: list[Decision] = []

    def observe_events(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.events.setdefault(event["event_id"], event)

    def observe_history(self, history: ModelHistory) -> None:
        self.history = history
        self.needs_history = False

    def actions(self) -> list[dict[str, Any]]:
        """The ModelUpdates to publish now (promote / rollback records)."""
        out = []
        for decision in decide(self.history, self.events.values(), self.canaries):
            candidate = self.history.candidate(decision.model_name, decision.version)
            if candidate is None:
                continue
            out.append(action_update(candidate, decision.action))
            self.decisions.append(decision)
        return out

    def published(self, updates: Iterable[dict[str, Any]]) -> None:
        """Count published updates as history (until the topic is read again)."""
        for update in updates:
            self.history.add(update)
