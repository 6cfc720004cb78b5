"""Errors of the alert subscriber."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class AlertsError(EdgestreamError):
    """A subscription cannot be set up (bad filter, unreachable broker, ...)."""
