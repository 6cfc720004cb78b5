"""Listening TCP sockets of a process tree, read from ``/proc`` (Linux): what ``ss -ltnp``
shows for the processes of one run, without needing ``ss`` or root."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from edgestream.core.ports import is_loopback

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


@dataclass(frozen=True)
class Listener:
    pid: int
    address: str
    port: int
    cmdline: str

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        line = self.cmdline  # a JVM's options first, its main class and arguments last
        line = line if len(line) <= 300 else f"{line[:100]} ... {line[-200:]}"
        return f"{host}:{self.port} pid {self.pid}: {line}"


def process_tree(root: int) -> set[int]:
    """``root`` and every process descended from it (by parent pid, at the time of the call)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return tree


def _address(hex_address: str) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits -> an IPv6 address (``/proc/net/tcp6``
    keeps each 32-bit word in host order: little-endian here)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _listen_inodes(pid: int) -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every LISTEN socket in ``pid``'s network namespace."""
    out: dict[int, tuple[str, int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != _LISTEN:
                continue
            address, port = fields[1].split(":")
            out[int(fields[9])] = (_address(address), int(port, 16))
    return out


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone, or not ours
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def cmdline(pid: int) -> str:
    """``pid``'s command line, arguments joined by spaces (``?`` once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def listeners(root: int) -> list[Listener]:
    """Every TCP socket in LISTEN state held by ``root`` or a descendant of it."""
    listening = _listen_inodes(root)
    out = []
    for pid in sorted(process_tree(root)):
        for inode in _socket_inodes(pid) & listening.keys():
            address, port = listening[inode]
            out.append(Listener(pid, address, port, cmdline(pid)))
    return sorted(set(out), key=lambda s: (s.port, s.pid))


def beyond_loopback(found: list[Listener]) -> list[Listener]:
    """The listeners reachable from another host: not on 127.0.0.0/8 or ``::1`` (a wildcard
    ``0.0.0.0`` / ``::`` is every interface)."""
    return [s for s in found if not is_loopback(s.address)]
