"""Fixtures of the model tests: the shipped models."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgestream.ml.artifact import shipped_model_path


@pytest.fixture(params=["pump", "reefer"])
def shipped(request: pytest.FixtureRequest) -> Path:
    """Path of a shipped ONNX model (its sidecar is beside it)."""
    return shipped_model_path(request.param)
