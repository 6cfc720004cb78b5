"""The docstring examples of the wire contract's modules run."""

from __future__ import annotations

import importlib

import pytest

from tests.support.doctests import run_doctests

MODULES = [
    "edgestream.wire.ids",
    "edgestream.wire.forms",
    "edgestream.wire.codec",
    "edgestream.wire.topics",
    "edgestream.forward.records",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    run_doctests(importlib.import_module(name))
