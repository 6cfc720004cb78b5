"""Errors of the dashboard (each says what to do)."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError

__all__ = ["DashboardError"]


class DashboardError(EdgestreamError):
    """The dashboard cannot start as asked (address, token, port)."""
