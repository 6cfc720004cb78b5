"""Errors of the core. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class EdgestreamError(Exception):
    """Base class of every error edgestream raises on purpose.

    The CLI prints ``str(error)`` as a single line and exits non-zero, so messages
    must be one line that tells the user what to do.
    """


class PortInUse(EdgestreamError):
    """A port the stack wants is already taken by another process."""


class ComponentFailed(EdgestreamError):
    """A stack component did not become ready."""


class ServiceUnavailable(EdgestreamError):
    """A service (broker, registry) we need is not answering."""


class SchemaError(EdgestreamError):
    """A schema is missing, invalid or incompatible."""


class SerdeError(EdgestreamError):
    """A record could not be encoded or decoded; ``reason`` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SecurityConfigError(EdgestreamError):
    """A cloud connection's TLS/SASL settings are incomplete or inconsistent."""
