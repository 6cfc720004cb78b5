"""Plain-text tables of a plan and of an apply report: stable (no terminal-width wrapping,
no colours), so ``deploy --dry-run`` output can be diffed and reviewed; and the rendered
manifests or units written to a folder (:func:`write_files`)."""

from __future__ import annotations

import time
from pathlib import Path

from edgestream.core.tables import table
from edgestream.deploy.brokers import Change
from edgestream.deploy.plan import Plan
from edgestream.deploy.supervise import SupervisorStatus

__all__ = ["render_changes", "render_plan", "render_status", "write_files"]


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


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def render_status(topology: str, states: dict[str, SupervisorStatus]) -> str:
    """The local processes of a deployment: state, pid, restarts, last exit, last restart.

    >>> s = SupervisorStatus("edge-gw-1", "running", 4242, restarts=2, last_exit=-9)
    >>> print(render_status("default", {"edge-gw-1": s}).splitlines()[-1])  # doctest: +ELLIPSIS
    edge-gw-1 ... running ... 4242 ... 2 ... -9 ...
    """
    if not states:
        return f"no local processes of topology {topology}: deploy it first\n"
    rows = [
        (name, s.state, str(s.pid or "-"), str(s.restarts),
         "-" if s.last_exit is None else str(s.last_exit), _when(s.last_restart), _when(s.started))
        for name, s in states.items()
    ]  # fmt: skip
    columns = ("process", "state", "pid", "restarts", "last exit", "last restart", "started")
    return table(f"local processes of topology {topology}", columns, rows) + "\n"


def write_files(out_dir: Path, texts: dict[str, str]) -> dict[str, str]:
    """Write each file's text into ``out_dir`` (a file already holding it is not touched);
    file -> "created" / "changed" / "unchanged"."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for file, text in texts.items():
        path = out_dir / file
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.write_text(text, encoding="utf-8")
        result[file] = "unchanged" if old == text else ("created" if old is None else "changed")
    return result
