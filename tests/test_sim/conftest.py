"""Fixtures of the simulator tests (real NAB data copied into tests/data/nab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nab import NAB


@pytest.fixture
def nab_csv() -> Path:
    return NAB / "machine_temperature_system_failure.csv"


@pytest.fixture
def nab_windows() -> Path:
    return NAB / "combined_windows.json"
