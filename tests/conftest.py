"""Shared fixtures: a real embedded stack in a temp dir, torn down after the test."""

from __future__ import annotations

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
