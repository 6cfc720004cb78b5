"""The examples in the simulator's docstrings run."""

from __future__ import annotations

import importlib

import pytest

from tests.support.doctests import run_doctests

MODULES = [
    "edgestream.sim",
    "edgestream.sim.config",
    "edgestream.sim.devices",
    "edgestream.sim.labels",
    "edgestream.sim.producer",
    "edgestream.sim.replay",
    "edgestream.sim.sender",
    "edgestream.sim.signals",
    "edgestream.sim.simulator",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    run_doctests(importlib.import_module(name))
