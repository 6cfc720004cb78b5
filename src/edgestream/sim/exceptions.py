"""Errors of the simulator. Each message is one line naming the option to fix."""

from __future__ import annotations

from edgestream.core.exceptions import EdgestreamError


class SimError(EdgestreamError):
    """Base class of the simulator's errors."""


class SimConfigError(SimError, ValueError):
    """A simulator setting is invalid; the message names the CLI option (``--rate`` ...)."""


class ReplayError(SimError):
    """A replay file or its anomaly windows cannot be read."""


class ProduceError(SimError):
    """The broker rejected or did not acknowledge records."""
