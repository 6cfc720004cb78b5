"""Finding processes by their command line (Linux ``/proc``)."""

from __future__ import annotations

import os
from pathlib import Path


def pids_of(pattern: str) -> set[int]:
    """Pids of processes whose command line contains ``pattern``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if pattern.encode() in cmdline:
            found.add(int(entry))
    return found
