"""Errors of deployment."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class DeployError(EdgestreamError):
    """A deployment step cannot be done; the message says what to change or start."""
