"""Errors of the forwarder. Each message says what went wrong and what to do about it."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class ForwardError(EdgestreamError):
    """Base class of the forwarder's errors."""


class OutboxError(ForwardError):
    """The outbox file cannot be opened or is not an edgestream outbox."""
