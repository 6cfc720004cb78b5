"""Run a command under cProfile, in every thread (cProfile alone sees only the main thread;
the gateway runs its pipeline in an executor thread).

    python -m edgestream.cli.profiled OUT.prof edge run TOPOLOGY --gateway ID ...

(:func:`run_profiled` around the CLI) writes ``OUT.prof`` (main thread: the Faust event loop)
and ``OUT.prof.threads`` (every other Python thread, merged) when the command exits, also on
SIGTERM (Faust's graceful stop).
Read them with :func:`top_functions` or ``python -m pstats``.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_profiled(out: Path, run: Callable[[], object]) -> None:
    """Call ``run`` (an ``edgestream`` command) with every thread profiled; write the stats
    on exit."""
    thread_profiles: list[cProfile.Profile] = []

    def start_thread_profile(_frame: Any, _event: str, _arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile()
        thread_profiles.append(profile)
        profile.enable()

    threading.setprofile(start_thread_profile)
    main = cProfile.Profile()
    main.enable()
    try:
        run()
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        main.dump_stats(str(out))
        merged: pstats.Stats | None = None
        for profile in thread_profiles:
            profile.create_stats()
            if not getattr(profile, "stats", None):
                continue
            if merged is None:
                merged = pstats.Stats(profile)
            else:
                merged.add(profile)
        if merged is not None:
            merged.dump_stats(f"{out}.threads")


def top_functions(path: Path | str, limit: int = 15) -> list[dict[str, Any]]:
    """The ``limit`` functions with the most own time: name, own s, cumulative s, calls.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "p.prof"
    >>> profile = cProfile.Profile()
    >>> _ = profile.runcall(sorted, range(100_000), key=lambda x: -x)
    >>> profile.dump_stats(out)
    >>> top = top_functions(out, limit=3)
    >>> len(top), sorted(top[0]), total_seconds(out) >= top[0]["own_s"]
    (3, ['calls', 'cum_s', 'function', 'own_s'], True)
    """
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, name), (_cc, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}" if line else file
        rows.append(
            {"function": f"{name} ({where})", "own_s": tottime, "cum_s": cumtime, "calls": calls}
        )
    rows.sort(key=lambda r: -r["own_s"])
    return [
        {**r, "own_s": round(r["own_s"], 3), "cum_s": round(r["cum_s"], 3)} for r in rows[:limit]
    ]


def total_seconds(path: Path | str) -> float:
    """Sum of own time over all functions of a stats file."""
    stats = pstats.Stats(str(path))
    return float(sum(v[2] for v in stats.stats.values()))  # type: ignore[attr-defined]
