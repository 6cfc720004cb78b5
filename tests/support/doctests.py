"""Running a module's docstring examples as a test."""

from __future__ import annotations

import doctest


def run_doctests(module: object) -> None:
    """Run a module's docstring examples: at least one must run, and none may fail."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    name = getattr(module, "__name__", module)
    assert result.attempted > 0, f"{name} has no docstring example to run"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed"
