"""Errors of the model layer. Each message names the model file and what to do."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class ModelError(EdgestreamError):
    """Base class of the model layer's errors."""


class ModelLoadError(ModelError, ValueError):
    """An ONNX model cannot be loaded or does not match its declared inputs."""


class ArtifactError(ModelError, ValueError):
    """A model sidecar is missing, malformed, or does not match the model bytes."""
