"""Shared fixtures: a real embedded stack in a temp dir, torn down after the test."""

from __future__ import annotations

import doctest
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgestream.core.stack import Stack, StackStatus

DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests run only when ``-m`` names them (``bash deploy/local/dev.sh soak``)."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run it with `bash deploy/local/dev.sh soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """Every test gets its own ``EDGESTREAM_HOME``, but resolved and built jars (Kafka, the
    Flink connector, our Flink functions) are shared by the whole session: the user's jar
    cache (what ``dev.sh setup`` filled) unless ``EDGESTREAM_JARS`` names another."""
    from edgestream.core import jars

    os.environ.setdefault(jars.ENV_CACHE, str(jars.cache_dir()))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never touch the user's ~/.edgestream from tests."""
    monkeypatch.setenv("EDGESTREAM_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackStatus]:
    """A running embedded stack (1 gateway) for the tests of one module."""
    embedded = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield embedded.start(gateways=1)
    finally:
        embedded.stop()


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


def run_doctests(module: object) -> None:
    """Run a module's docstring examples: at least one must run, and none may fail."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    name = getattr(module, "__name__", module)
    assert result.attempted > 0, f"{name} has no docstring example to run"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed"
