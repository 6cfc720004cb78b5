"""A real standalone Flink session cluster (one JobManager, one TaskManager) for tests of
``edgestream cloud run --jobmanager``: started from the scripts and jars that ship inside
the installed PyFlink (``pyflink/bin``) with the ``lib/`` of our jobs (PyFlink's and the
Kafka connector and Avro jars from Maven Central, :func:`edgestream.cloud.jvm.flink_lib`),
its own config directory and free ports, and stopped with its process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from edgestream.cloud.flink import client_environ
from edgestream.cloud.jvm import flink_lib
from edgestream.core.ports import free_port


def _config(home: Path, folder: Path, rest: int, rpc: int) -> Path:
    """The shipped config.yaml with our ports, small memory and one slot."""
    conf = yaml.safe_load((home / "conf" / "config.yaml").read_text())
    conf.setdefault("jobmanager", {}).update(
        {"bind-host": "127.0.0.1", "rpc": {"address": "127.0.0.1", "port": rpc},
         "memory": {"process": {"size": "1024m"}}}
    )  # fmt: skip
    conf.setdefault("taskmanager", {}).update(
        {"bind-host": "127.0.0.1", "host": "127.0.0.1", "numberOfTaskSlots": 1,
         "memory": {"process": {"size": "1280m"}}}
    )  # fmt: skip
    conf["rest"] = {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": rest}
    conf_dir = folder / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    for name in (home / "conf").iterdir():
        if name.name != "config.yaml":
            (conf_dir / name.name).write_bytes(name.read_bytes())
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(conf))
    return conf_dir


def _get(rest: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest}{path}", timeout=5) as answer:
        return json.load(answer)


def _taskmanagers(rest: int, rpc: int) -> int:
    """TaskManagers registered with OUR JobManager (a free port can be taken by another
    process between our pick and the JobManager's bind: its REST answers would mislead)."""
    try:
        config = {e["key"]: e["value"] for e in _get(rest, "/jobmanager/config")}  # type: ignore[attr-defined]
        if config.get("jobmanager.rpc.port") != str(rpc):
            return -1
        return int(_get(rest, "/overview")["taskmanagers"])  # type: ignore[index]
    except OSError:
        return -1


@contextmanager
def flink_cluster(folder: Path, timeout: float = 240.0) -> Iterator[str]:
    """``HOST:PORT`` of the cluster's REST endpoint once a TaskManager has registered.

    The TaskManager runs Python UDFs in thread mode: its environment has this interpreter's
    ``bin`` first on ``PATH`` (what an activated virtualenv gives a real cluster's nodes)."""
    import pyflink

    home = Path(pyflink.__file__).parent
    rest, rpc = free_port(), free_port()
    conf_dir = _config(home, folder, rest, rpc)
    env = {
        **client_environ(os.environ),  # its Python workers run in it, not in this process
        "FLINK_HOME": str(home),
        "FLINK_CONF_DIR": str(conf_dir),
        "FLINK_LIB_DIR": str(flink_lib()),  # what an operator copies into the cluster's lib/
        "FLINK_LOG_DIR": str(folder / "log"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    procs = []
    try:
        for role in ("jobmanager", "taskmanager"):
            with (folder / f"{role}.out").open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        ["bash", str(home / "bin" / f"{role}.sh"), "start-foreground"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + timeout
        while _taskmanagers(rest, rpc) < 1:
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    (folder / f"{r}.out").read_text(errors="replace")[-2000:]
                    for r in ("jobmanager", "taskmanager")
                )
                raise RuntimeError(f"Flink cluster did not come up ({dead or 'timeout'}):\n{logs}")
            time.sleep(1.0)
        yield f"127.0.0.1:{rest}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
