"""One process of the embedded stack as its state file records it, and how to check it.

A component is identified by its pid *and* the pid's start time (a reused pid is not ours);
it is healthy when that process runs and its port answers its protocol (Kafka Metadata for a
broker, HTTP for the schema registry).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgestream.core import broker
from edgestream.core.procs import proc_stat

HOST = "127.0.0.1"
CLOUD = "cloud"
REGISTRY = "registry"


@dataclass
class Component:
    """One process of the stack as recorded in the state file."""

    name: str
    kind: str  # "edge-broker" | "cloud-broker" | "registry"
    port: int
    pid: int | None = None
    argv: list[str] = field(default_factory=list)
    started: int | None = None  # start time of the pid in clock ticks: pid + start = identity
    controller_port: int | None = None  # a broker's KRaft controller listener
    tls_ports: list[int] | None = None  # the cloud broker's SSL and SASL_SSL listeners
    start_s: float | None = None  # seconds from spawn to answering, of the last start

    def rss_mb(self) -> float | None:
        """Resident memory of the process in MB (None when it does not run)."""
        if not self.process_alive():
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        kb = next((int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:")), 0)  # fmt: skip
        return round(kb / 1024, 1)

    @property
    def address(self) -> str:
        if self.kind == REGISTRY:
            return f"http://{HOST}:{self.port}"
        return f"{HOST}:{self.port}"

    def process_alive(self) -> bool:
        """The recorded pid runs and is still our process (same start time: not a reused pid)."""
        if not self.pid:
            return False
        stat = proc_stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.started

    def answers(self, timeout: float = 1.0) -> bool:
        """The port answers the component's protocol (Kafka Metadata or registry HTTP)."""
        if self.kind == REGISTRY:
            try:
                with urllib.request.urlopen(f"{self.address}/subjects", timeout=timeout) as r:
                    return r.status == 200
            except urllib.error.HTTPError as error:  # a registry with users asks who we are
                return error.code == 401
            except OSError:
                return False
        return broker.broker_ready(self.address, timeout)

    def healthy(self) -> bool:
        return self.process_alive() and self.answers()
