"""Loopback port helpers: find free ports, tell whether one is taken, wait for a listener; the
address our servers bind (:func:`bind_address`).

Every server edgestream starts binds ``127.0.0.1`` unless ``$EDGESTREAM_BIND_ADDR`` names
another address (``0.0.0.0``: every interface). It decides where the local Flink cluster's REST
API and web UI listen, and the schema registry's default ``--host`` (which then needs users:
:mod:`edgestream.core.registry.auth`). Internal links between a process and its own workers
(Flink's Python workers) stay on loopback whatever it says.

>>> bind_address({}), bind_address({"EDGESTREAM_BIND_ADDR": " 0.0.0.0 "})
('127.0.0.1', '0.0.0.0')
>>> is_loopback("127.0.0.1"), is_loopback("::ffff:127.0.0.1"), is_loopback("0.0.0.0")
(True, True, False)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Mapping

LOOPBACK = "127.0.0.1"
BIND_ADDR_ENV = "EDGESTREAM_BIND_ADDR"


def bind_address(env: Mapping[str, str] | None = None) -> str:
    """The address servers bind: ``$EDGESTREAM_BIND_ADDR``, else ``127.0.0.1``."""
    env = os.environ if env is None else env
    return env.get(BIND_ADDR_ENV, "").strip() or LOOPBACK


def is_loopback(host: str) -> bool:
    """True for a loopback address (an IPv4-mapped one too) or ``localhost``; False for a
    wildcard, another address or a name that is not ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it).

    >>> 1024 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on ``host:port`` or a server could not bind it.

    The bind test uses ``SO_REUSEADDR`` as servers (Kafka, our registry) do, so connections
    lingering in TIME_WAIT after a stop do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        if sock.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_port_free(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> bool:
    """Wait until nothing listens on ``host:port``; True if it became free in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if not port_in_use(port, host):
                return True
        time.sleep(0.05)
    return not port_in_use(port, host)
