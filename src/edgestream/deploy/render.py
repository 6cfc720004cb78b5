"""Plain-text tables of a plan and of an apply report: stable (no terminal-width wrapping,
no colours), so ``deploy --dry-run`` output can be diffed and reviewed."""

from __future__ import annotations

from edgestream.core.tables import table
from edgestream.deploy.local import Change
from edgestream.deploy.plan import Plan

__all__ = ["render_changes", "render_plan"]


def _configs(configs: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in configs) or "-"


def render_plan(plan: Plan) -> str:
    """The plan as four tables: topics, schemas, processes, Flink jobs."""
    brokers = plan.brokers

    def where(name: str) -> str:
        return f"{name} ({brokers[name]})" if brokers.get(name) else f"{name} (embedded)"

    parts = [
        f"deployment plan of topology {plan.topology} (fingerprint {plan.fingerprint[:12]})",
        table(
            "topics",
            ("broker", "topic", "partitions", "configs"),
            [
                (where(t.broker), t.name, str(t.partitions), _configs(t.configs))
                for t in plan.topics
            ],
        ),
        table("schemas", ("subject", "record"), [(s.subject, s.record) for s in plan.schemas]),
        table(
            "processes",
            ("process", "kind", "gateway", "command"),
            [
                (p.name, p.kind, p.gateway or "-", "edgestream " + " ".join(p.args) + " TOPOLOGY")
                for p in plan.processes
            ],
        ),
        table("flink jobs", ("job", "settings"), [(j.name, j.settings) for j in plan.jobs]),
    ]
    return "\n\n".join(parts) + "\n"


def render_changes(changes: list[Change]) -> str:
    """The apply report, one line per topic, schema and process, and a count per action."""
    rows = [(c.section, c.target, c.name, c.action, c.detail) for c in changes]
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    body = table("applied", ("what", "where", "name", "action", "detail"), rows)
    return f"{body}\n\n{summary}\n"
