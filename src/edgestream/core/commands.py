"""The command lines of edgestream's own processes, built in one place.

``up``, ``deploy`` (local supervisor, systemd units, Kubernetes containers), the benches and
the tests all start the same processes: a gateway worker (``edgestream edge run``), its
forwarder (``edgestream forward run``), the cloud jobs (``edgestream cloud run``) and the
retrainer (``edgestream retrain serve``). Each function returns the arguments after
``edgestream``; an option left ``None`` is not passed (the process then takes it from the
topology or its default). :func:`python_argv` makes a local command line of them.

>>> " ".join(edge_run("t.yaml", "gw-1", bootstrap="h:9092", data_dir="d", sync=False))
'edge run t.yaml --gateway gw-1 --bootstrap h:9092 --data-dir d --no-sync'
>>> " ".join(forward_run("t.yaml", "gw-1", cloud_bootstrap="c:9093", loglevel="warning"))
'forward run t.yaml --gateway gw-1 --cloud-bootstrap c:9093 --loglevel warning'
>>> cloud_run("t.yaml", registry="http://r")
['cloud', 'run', 't.yaml', '--registry', 'http://r']
>>> python_argv(["cloud", "run", "t.yaml"])[1:]
['-m', 'edgestream.cli.main', 'cloud', 'run', 't.yaml']
>>> python_argv(["forward", "run", "t.yaml"])[1:]
['-m', 'edgestream.cli.forward', 'run', 't.yaml']
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "GROUP_MODULES",
    "MAIN",
    "cloud_run",
    "edge_run",
    "forward_run",
    "python_argv",
    "retrain_serve",
]

#: the module ``python -m`` runs for ``edgestream``
MAIN = "edgestream.cli.main"
#: command groups that run on their own module: the forwarder's imports only what it needs
#: (``edgestream.cli.main`` loads every command: ~5x its import time, measured)
GROUP_MODULES = {"forward": "edgestream.cli.forward"}

PathLike = str | Path


def _options(**given: object) -> list[str]:
    """``--name value`` for each option given (``data_dir`` -> ``--data-dir``)."""
    out: list[str] = []
    for name, value in given.items():
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out


def edge_run(
    topology: PathLike,
    gateway: str,
    *,
    bootstrap: str | None = None,
    registry: str | None = None,
    data_dir: PathLike | None = None,
    sync: bool = True,
) -> list[str]:
    """A gateway worker (``sync=False``: its state files are not fsynced, for benches)."""
    args = ["edge", "run", str(topology), "--gateway", gateway]
    args += _options(bootstrap=bootstrap, registry=registry, data_dir=data_dir)
    return args if sync else [*args, "--no-sync"]


def forward_run(
    topology: PathLike,
    gateway: str,
    *,
    edge_bootstrap: str | None = None,
    cloud_bootstrap: str | None = None,
    registry: str | None = None,
    data_dir: PathLike | None = None,
    loglevel: str | None = None,
    report_interval: float | None = None,
) -> list[str]:
    """The forwarder of one gateway (``report_interval``: seconds between its reports)."""
    args = ["forward", "run", str(topology), "--gateway", gateway]
    return args + _options(
        edge_bootstrap=edge_bootstrap,
        cloud_bootstrap=cloud_bootstrap,
        registry=registry,
        data_dir=data_dir,
        loglevel=loglevel,
        report_interval=report_interval,
    )


def cloud_run(
    topology: PathLike, *, cloud_bootstrap: str | None = None, registry: str | None = None
) -> list[str]:
    """The cloud Flink jobs."""
    return ["cloud", "run", str(topology), *_options(cloud_bootstrap=cloud_bootstrap,
                                                     registry=registry)]  # fmt: skip


def retrain_serve(
    topology: PathLike, *, cloud_bootstrap: str | None = None, registry: str | None = None
) -> list[str]:
    """The retrainer."""
    return ["retrain", "serve", str(topology), *_options(cloud_bootstrap=cloud_bootstrap,
                                                         registry=registry)]  # fmt: skip


def python_argv(args: Sequence[str], module: str | None = None) -> list[str]:
    """The local command line of ``edgestream <args>`` with this interpreter (``module``:
    what ``python -m`` runs; by default the group's own module or ``edgestream.cli.main``)."""
    if module is None and args and args[0] in GROUP_MODULES:
        return [sys.executable, "-m", GROUP_MODULES[args[0]], *args[1:]]
    return [sys.executable, "-m", module or MAIN, *args]
