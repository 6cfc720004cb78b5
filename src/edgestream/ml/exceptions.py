"""Errors of the model layer. Each message names the model file and what to do."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class ModelError(EdgestreamError):
    """Base class of the model layer's errors."""


class ModelLoadError(ModelError, ValueError):
    """An ONNX model cannot be loaded or does not match its declared inputs."""


class ArtifactError(ModelError, ValueError):
    """A model sidecar is missing, malformed, or does not match the model bytes."""


class SigningKeyError(ModelError, ValueError):
    """A signing or verification key is missing or not an Ed25519 PEM key."""


class ModelRejected(ModelError):
    """A model update failed verification; ``reason`` is machine-readable.

    Reasons: ``unsigned`` (no signature), ``bad-signature`` (the signature does not match the
    signed fields, or the record is malformed), ``hash-mismatch`` (the artifact bytes do not hash
    to ``sha256``) and ``unknown-key`` (signed by a key other than the one we trust).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"model update rejected ({reason}): {message}")
        self.reason = reason
