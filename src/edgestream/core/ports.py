"""Loopback port helpers: find free ports, tell whether one is taken, wait for a listener."""

from __future__ import annotations

import contextlib
import socket
import time


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
