"""The embedded stack: one Kafka broker per gateway, one cloud broker, one schema registry.

Every component is a child process started in its own session (so ``--detach`` leaves it
running after the CLI exits), on a loopback port, with its log in ``<stack dir>/logs``.
A broker keeps its configuration and log dirs in ``<stack dir>/<name>``: its topics and
records survive a stop and a start (``stop(purge=True)`` deletes them).
The state file ``<stack dir>/stack.json`` records names, ports and pids; every call checks
the processes for real (pid alive, its command line is ours, the port answers).

>>> import tempfile
>>> stack = Stack(Path(tempfile.mkdtemp()))
>>> status = stack.start(gateways=1)
>>> sorted(status.endpoints()["edge"])
['gw-1']
>>> stack.stop()
>>> stack.status().running
False
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edgestream.core import broker
from edgestream.core.exceptions import ComponentFailed, EdgestreamError, PortInUse
from edgestream.core.paths import stack_dir
from edgestream.core.pki import make_pki
from edgestream.core.ports import free_port, port_in_use, wait_port_free
from edgestream.core.procs import Child, proc_stat, reap, wait_exited
from edgestream.core.stack_component import CLOUD, HOST, REGISTRY, Component

STATE_FILE = "stack.json"
SCRAM_USER = "edgestream"


def gateway_names(count: int) -> list[str]:
    """Names of the edge gateways of a stack with ``count`` gateways.

    >>> gateway_names(3)
    ['gw-1', 'gw-2', 'gw-3']
    """
    return [f"gw-{i}" for i in range(1, count + 1)]


@dataclass
class StackStatus:
    """What runs, where. ``endpoints()`` is the JSON of ``edgestream stack status --json``."""

    components: dict[str, Component]
    health: dict[str, bool]
    tls_dir: Path | None = None

    @property
    def running(self) -> bool:
        return bool(self.components) and all(self.health.values())

    @property
    def gateways(self) -> list[str]:
        return [c.name for c in self.components.values() if c.kind == "edge-broker"]

    def processes(self) -> dict[str, dict[str, object]]:
        """Per component: pid, resident memory (MB) and seconds its last start took."""
        return {
            name: {"pid": c.pid, "rss_mb": c.rss_mb(), "start_s": c.start_s}
            for name, c in self.components.items()
        }

    def endpoints(self) -> dict[str, object]:
        comps = self.components
        ends: dict[str, object] = {
            "edge": {name: comps[name].address for name in self.gateways},
            "cloud": comps[CLOUD].address if CLOUD in comps else None,
            "registry": comps[REGISTRY].address if REGISTRY in comps else None,
        }
        cloud = comps.get(CLOUD)
        if cloud is not None and cloud.tls_ports and self.tls_dir is not None:
            ssl_port, sasl_port = cloud.tls_ports
            ends["cloud_tls"] = {
                "ssl": f"{HOST}:{ssl_port}",
                "sasl_ssl": f"{HOST}:{sasl_port}",
                "ca_file": str(self.tls_dir / "ca.pem"),
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": SCRAM_USER,
                "sasl_password_file": str(self.tls_dir / "scram-password"),
            }
        return ends


class Stack:
    """Start, inspect and stop the embedded stack kept in ``data_dir``."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir else stack_dir()
        self.state_path = self.data_dir / STATE_FILE
        self.log_dir = self.data_dir / "logs"

    # -- state -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Component]:
        try:
            raw = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return {name: Component(**spec) for name, spec in raw.get("components", {}).items()}

    def _save(self, components: dict[str, Component]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        payload = {"components": {n: asdict(c) for n, c in components.items()}}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self.state_path)

    def status(self) -> StackStatus:
        """Check every recorded component for real."""
        components = self._load()
        health = {n: c.healthy() for n, c in components.items()}
        return StackStatus(components, health, self.data_dir / "tls")

    # -- start -----------------------------------------------------------------------------
    def start(
        self,
        gateways: int | Sequence[str] | None = None,
        port_base: int | None = None,
        timeout: float = 60.0,
        tls: bool = False,
    ) -> StackStatus:
        """Bring every component to running; idempotent (healthy components are kept).

        A dead component is restarted on its recorded ports with the data it had.
        ``port_base`` gives fixed ports: gateways at base, base+1, ..., then the cloud broker,
        then the registry, then the brokers' controller ports; otherwise free ports are picked.
        ``tls`` gives the cloud broker ``SSL`` and ``SASL_SSL`` (SCRAM-SHA-512) listeners
        besides its plain one, with a CA made in ``<stack dir>/tls`` and a SCRAM user
        ``edgestream`` whose password is in ``<stack dir>/tls/scram-password`` (mode 600).
        """
        components = self._load()
        wanted = [(n, "edge-broker") for n in self._gateways(components, gateways)]
        wanted += [(CLOUD, "cloud-broker"), (REGISTRY, REGISTRY)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started: list[Component] = []
        spawned: dict[str, float] = {}
        try:
            for offset, (name, kind) in enumerate(wanted):
                comp = components.get(name)
                if comp and comp.healthy():
                    continue
                if comp and comp.process_alive():  # alive but not answering: replace it
                    self._terminate(comp)
                if comp is None:
                    comp = _new_component(name, kind, port_base, offset, len(wanted))
                if name == CLOUD and tls and not comp.tls_ports:
                    self._add_tls(comp)
                spawned[name] = self._launch(comp)
                components[name] = comp
                started.append(comp)
                self._save(components)
            for comp in started:
                self._wait_ready(comp, timeout)
                comp.start_s = round(time.monotonic() - spawned[comp.name], 2)
                if comp.tls_ports:
                    broker.add_scram_users(comp.address, {SCRAM_USER: self._scram_password()})
            self._save(components)
        except BaseException:
            for comp in started:
                self._terminate(comp)
                components.pop(comp.name, None)
            self._save(components)
            raise
        return self.status()

    def _gateways(
        self, components: dict[str, Component], gateways: int | Sequence[str] | None
    ) -> list[str]:
        """The gateway brokers ``start`` wants: those running unless told (and then the same)."""
        running = [c.name for c in components.values() if c.kind == "edge-broker"]
        if gateways is None:
            names = running or gateway_names(1)
        elif isinstance(gateways, int):
            if gateways < 1:
                raise EdgestreamError("--gateways must be at least 1")
            names = gateway_names(gateways)
        else:
            names = list(gateways)
        if running and sorted(running) != sorted(names):
            raise EdgestreamError(
                f"the stack in {self.data_dir} runs gateway broker(s) {', '.join(running)}, not "
                f"{', '.join(names)}: run `edgestream stack stop` first to change them"
            )
        return names

    def _add_tls(self, comp: Component) -> None:
        """Give the cloud broker its SSL and SASL_SSL ports (only before its first start)."""
        if comp.pid is not None:
            raise EdgestreamError(
                f"the stack in {self.data_dir} has a cloud broker without TLS: run "
                "`edgestream stack stop` first, then start it with --tls"
            )
        comp.tls_ports = [free_port(), free_port()]

    def _launch(self, comp: Component) -> float:
        """Spawn ``comp`` on its ports and record its identity; when it was spawned."""
        self._check_port(comp)
        comp.argv = self._argv(comp)
        comp.pid = self._spawn(comp)
        spawned = time.monotonic()
        stat = proc_stat(comp.pid)
        comp.started = stat[1] if stat else None
        return spawned

    def _argv(self, comp: Component) -> list[str]:
        if comp.kind == REGISTRY:
            db = self.data_dir / "registry.db"
            module = "edgestream.core.registry"
            args = ["--db", str(db), "--host", HOST, "--port", str(comp.port)]
            return [sys.executable, "-m", module, *args]
        return self.broker_spec(comp).command()

    def broker_spec(self, comp: Component) -> broker.BrokerSpec:
        """How the broker ``comp`` is started (its folder is ``<stack dir>/<name>``)."""
        assert comp.controller_port is not None, f"{comp.name} is not a broker"
        tls = None
        if comp.tls_ports:
            folder = self.data_dir / "tls"
            pki = make_pki(folder) if not (folder / "keystore.pem").exists() else None
            keystore = pki.keystore if pki else folder / "keystore.pem"
            tls = broker.TlsListeners(comp.tls_ports[0], comp.tls_ports[1], keystore)
        return broker.BrokerSpec(comp.name, comp.port, comp.controller_port,
                                 self.data_dir / comp.name, HOST, tls)  # fmt: skip

    def _scram_password(self) -> str:
        """The SCRAM user's password, made once (mode 600) and kept with the CA."""
        path = self.data_dir / "tls" / "scram-password"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _check_port(self, comp: Component) -> None:
        for port in (comp.port, comp.controller_port, *(comp.tls_ports or [])):
            if port is not None and port_in_use(port, HOST):
                raise PortInUse(
                    f"port {port} for {comp.name} is in use: stop the process holding it "
                    f"(`ss -ltnp 'sport = :{port}'`) or pass another --port-base"
                )

    def _spawn(self, comp: Component) -> int:
        child = Child(comp.argv, self.log_dir / f"{comp.name}.log", detached=True).start()
        assert child.pid is not None
        return child.pid

    def _wait_ready(self, comp: Component, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reap(comp.pid)
            if not comp.process_alive():
                break
            if comp.answers(timeout=0.5):
                return
            time.sleep(0.05)
        raise ComponentFailed(
            f"{comp.name} did not become ready on port {comp.port} within {timeout:.0f}s: "
            f"{self._log_tail(comp)} (log: {self.log_dir / (comp.name + '.log')})"
        )

    def _log_tail(self, comp: Component) -> str:
        try:
            lines = (self.log_dir / f"{comp.name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        useful = [line for line in lines if "rror" in line or "Exception" in line]
        return (useful or lines or ["no output"])[-1].strip()[:300]

    # -- stop ------------------------------------------------------------------------------
    def stop(self, only: list[str] | None = None, purge: bool = False) -> list[str]:
        """Stop the named components (all by default); returns what was stopped.

        Waits until each process is gone and its port is free. ``purge`` also deletes the
        stopped brokers' folders (their topics and records).
        """
        components = self._load()
        unknown = sorted(set(only or []) - set(components))
        if unknown:
            raise EdgestreamError(
                f"no stack component named {', '.join(unknown)}: known are "
                f"{', '.join(components) or 'none (the stack is not running)'}"
            )
        names = list(only) if only else list(components)
        for name in names:
            self._terminate(components[name])
        if only:
            for name in names:
                components[name].pid = None
            self._save(components)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
        if purge:
            for name in names:
                if components[name].kind != REGISTRY:
                    shutil.rmtree(self.data_dir / name, ignore_errors=True)
        return names

    def _terminate(self, comp: Component) -> None:
        if comp.process_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(comp.pid, signal.SIGTERM)  # type: ignore[arg-type]
            # a broker's clean shutdown flushes its logs: give it time, then SIGKILL
            if not wait_exited(comp.pid, 15.0):  # type: ignore[arg-type]
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(comp.pid, signal.SIGKILL)  # type: ignore[arg-type]
                wait_exited(comp.pid, 30.0)  # type: ignore[arg-type]
        reap(comp.pid)
        for port in (comp.port, comp.controller_port, *(comp.tls_ports or [])):
            if port is not None:
                wait_port_free(port, HOST, timeout=5.0)


def _new_component(
    name: str, kind: str, port_base: int | None, offset: int, count: int
) -> Component:
    """A component's first record: fixed ports from ``port_base`` (its ``offset`` among
    ``count`` components, controller ports after all of them), else free ones."""
    fixed = port_base is not None
    comp = Component(name, kind, port_base + offset if fixed else free_port())
    if kind != REGISTRY:
        comp.controller_port = port_base + count + offset if fixed else free_port()
    return comp


def running_endpoints(data_dir: Path | None = None) -> dict[str, object]:
    """Endpoints of the running embedded stack, or a one-line error saying to start it."""
    status = Stack(data_dir).status()
    if not status.running:
        raise EdgestreamError(
            "the embedded stack is not running: start it with `edgestream stack start` "
            "or pass --bootstrap/--registry of your own services"
        )
    return status.endpoints()
