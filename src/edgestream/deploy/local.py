"""Apply a plan to running brokers and a registry (:mod:`edgestream.deploy.brokers`), and
start the local processes.

Idempotent: a process recorded in the run dir that still runs the same command is kept.
Running ``deploy`` twice reports ``unchanged`` for everything the second time.

Each process runs under its own supervisor (:mod:`edgestream.deploy.supervise`), started
detached (its own session, logs in ``<run dir>/logs``): the supervisor restarts the process with
backoff when it exits, after the CLI that deployed it is gone, and writes the process's pid,
restarts and last exit to ``<run dir>/status/<name>.json`` (``deploy --status``).
``<run dir>/processes.json`` records each supervisor's pid, start time and the command it
supervises, so ``deploy`` recognises them (a reused pid is not ours) and ``deploy --down``
stops them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgestream.core.commands import cloud_run, edge_run, forward_run, python_argv
from edgestream.core.procs import Child
from edgestream.core.topology import Topology
from edgestream.deploy.brokers import Change, Targets, apply_schemas, apply_topics, resolve_targets
from edgestream.deploy.exceptions import DeployError
from edgestream.deploy.plan import CLOUD, Plan, ProcessSpec, build_plan
from edgestream.deploy.supervise import SupervisorStatus, read_status

__all__ = [
    "apply_local",
    "process_states",
    "process_status",
    "run_dir",
    "stop_local",
]

STATE_FILE = "processes.json"
STATUS_DIR = "status"  # <name>.json per supervised process


def run_dir(topology: Topology) -> Path:
    """Where the local processes of ``topology`` keep their pids and logs."""
    from edgestream.core.paths import home_dir

    return home_dir() / "deploy" / topology.name


# --- processes --------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass
class _Running:
    pid: int
    started: int | None
    argv: list[str]
    identity: str

    def alive(self) -> bool:
        return self.started is not None and _start_time(self.pid) == self.started


def _load_state(folder: Path) -> dict[str, _Running]:
    try:
        raw = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {name: _Running(**spec) for name, spec in raw.items()}


def _save_state(folder: Path, state: dict[str, _Running]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps({n: asdict(r) for n, r in state.items()}, indent=2))
    os.replace(tmp, folder / STATE_FILE)


def _terminate(running: _Running, timeout: float = 30.0) -> None:
    """SIGTERM to the supervisor (it stops its process group and waits: the process has 20 s),
    SIGKILL to the whole group after ``timeout`` s."""
    if not running.alive():
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running.alive() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(running.pid, os.WNOHANG)
        time.sleep(0.1)
    if running.alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(running.pid, 0)


def process_argv(
    spec: ProcessSpec, topology: Topology, targets: Targets, folder: Path
) -> list[str]:
    """The command line of ``spec`` on ``targets``, its data under ``folder`` (the local
    target runs it under a supervisor, the systemd target as a service)."""
    path = topology.source
    if path is None:
        raise DeployError("deploy needs a topology loaded from a file")
    cloud, registry = targets.brokers[CLOUD], targets.registry
    if spec.kind == "flink-jobs":  # the Flink jobs read and write the cloud broker
        return python_argv(cloud_run(path, cloud_bootstrap=cloud, registry=registry))
    gateway = str(spec.gateway)
    edge, data = targets.brokers[f"edge:{gateway}"], folder / "gateways" / gateway
    if spec.kind == "edge-worker":
        args = edge_run(path, gateway, bootstrap=edge, registry=registry, data_dir=data)
    else:
        args = forward_run(path, gateway, edge_bootstrap=edge, cloud_bootstrap=cloud,
                           registry=registry, data_dir=data)  # fmt: skip
    return python_argv(args)


def _cloud_cli_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("edgestream.cli.cloud") is not None


def _identity(argv: list[str], fingerprint: str) -> str:
    """What a running process is recognised by: its command, the topology, its supervisor."""
    raw = json.dumps([argv, fingerprint, "supervised"]).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _supervisor_argv(name: str, argv: list[str], log: Path, status: Path) -> list[str]:
    supervisor = [sys.executable, "-m", "edgestream.deploy.supervise", "--name", name]
    return [*supervisor, "--log", str(log), "--status", str(status), "--", *argv]


def _wait_running(supervisor: _Running, status: Path, log: Path, timeout: float = 60.0) -> int:
    """The pid of the supervised process, once its supervisor reports it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read_status(status)
        if found.pid is not None:
            return found.pid
        if not supervisor.alive():
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise DeployError(f"the supervisor of {status.stem} did not start it (see {log}):\n{tail}")


def _apply_processes(
    plan: Plan,
    topology: Topology,
    targets: Targets,
    changes: list[Change],
    folder: Path,
    cloud_jobs: bool,
) -> None:
    state = _load_state(folder)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for spec in plan.processes:
        if spec.kind == "flink-jobs" and not cloud_jobs:
            changes.append(Change("processes", "local", spec.name, "skipped", "--no-cloud-jobs"))
            continue
        if spec.kind == "flink-jobs" and not _cloud_cli_available():
            detail = "`edgestream cloud run` is not in this build"
            changes.append(Change("processes", "local", spec.name, "skipped", detail))
            continue
        argv = process_argv(spec, topology, targets, folder)
        identity = _identity(argv, plan.fingerprint)
        current = state.get(spec.name)
        if current is not None and current.alive() and current.identity == identity:
            pid = read_status(folder / STATUS_DIR / f"{spec.name}.json").pid
            changes.append(Change("processes", "local", spec.name, "unchanged", f"pid {pid}"))
            continue
        action = "started"
        if current is not None and current.alive():
            _terminate(current)
            action = "restarted"
        status = folder / STATUS_DIR / f"{spec.name}.json"
        with contextlib.suppress(FileNotFoundError):
            status.unlink()  # the supervisor writes it once its process runs
        log_path = logs / f"{spec.name}.log"
        supervisor = _supervisor_argv(spec.name, argv, log_path, status)
        pid = Child(supervisor, log_path, detached=True).start().pid
        assert pid is not None
        state[spec.name] = _Running(pid, _start_time(pid), argv, identity)
        _save_state(folder, state)
        child = _wait_running(state[spec.name], status, log_path)
        changes.append(Change("processes", "local", spec.name, action, f"pid {child}"))
    for name in sorted(set(state) - {p.name for p in plan.processes}):
        _terminate(state.pop(name))  # no longer in the topology
        changes.append(Change("processes", "local", name, "stopped", "not in the topology"))
    _save_state(folder, state)


def apply_local(
    topology: Topology,
    processes: bool = True,
    cloud_jobs: bool = True,
    folder: Path | None = None,
) -> list[Change]:
    """Apply ``topology`` to its brokers and registry and start its processes (see module)."""
    from edgestream.core.security import resolve_security

    plan = build_plan(topology)
    changes: list[Change] = []
    targets = resolve_targets(topology, plan, changes)
    settings: dict[str, Any] = {}
    if topology.forwarding.bootstrap:
        settings = resolve_security(topology).client_config()
    apply_topics(plan, targets, changes, settings)
    apply_schemas(plan, targets.registry, changes)
    if processes:
        folder = folder or run_dir(topology)
        _apply_processes(plan, topology, targets, changes, folder, cloud_jobs)
    return changes


def stop_local(topology: Topology, folder: Path | None = None) -> list[str]:
    """Stop the processes ``deploy`` started for ``topology``; returns their names."""
    folder = folder or run_dir(topology)
    state = _load_state(folder)
    stopped = []
    for name, running in state.items():
        if running.alive():
            stopped.append(name)
        _terminate(running)
    with contextlib.suppress(FileNotFoundError):
        (folder / STATE_FILE).unlink()
    return stopped


def process_states(topology: Topology, folder: Path | None = None) -> dict[str, SupervisorStatus]:
    """Name -> what the supervisor of each recorded process reports (state ``not running``
    when the supervisor itself is gone)."""
    folder = folder or run_dir(topology)
    out = {}
    for name, running in _load_state(folder).items():
        found = read_status(folder / STATUS_DIR / f"{name}.json")
        if not running.alive():
            found = SupervisorStatus(name, "not running", None, found.restarts, found.last_exit,
                                     found.last_restart, found.started)  # fmt: skip
        out[name] = found
    return out


def process_status(topology: Topology, folder: Path | None = None) -> dict[str, int | None]:
    """Name -> pid of each recorded process (None when it does not run now)."""
    return {name: s.pid for name, s in process_states(topology, folder).items()}
