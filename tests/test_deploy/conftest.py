"""Fixtures of the deployment tests."""

from __future__ import annotations

import pytest

from tests.support.deploy import ENV


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the example topologies read (``tests.support.deploy.ENV``)."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
