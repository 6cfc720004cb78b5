"""The contract of a stateful pipeline step: state that survives a worker restart.

A gateway pipeline commits, with each batch's offsets, the state of its steps as byte blobs
(the window engine keeps its own store). :class:`Stateful` is a step saved whole
(``state`` / ``restore``: the incident tracker). :class:`PartedState` is a step whose state
is a set of parts saved incrementally: after a batch only ``changed_parts`` are written
(a few devices, not the whole fleet) and ``restore_parts`` rebuilds from every part stored
(the feature extractors and the online detector). ``restore(state())`` on a fresh step of the
same configuration must continue exactly (``tests/test_edge/test_stateful.py`` checks every
implementation).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["PartedState", "Stateful"]


@runtime_checkable
class Stateful(Protocol):
    """A step whose whole state is one blob."""

    def state(self) -> bytes:
        """Everything needed to continue exactly."""
        ...

    def restore(self, blob: bytes) -> None:
        """Replace the state by a blob from :meth:`state` (of a step with this config)."""
        ...


@runtime_checkable
class PartedState(Stateful, Protocol):
    """A step whose state is parts (name -> bytes), stored incrementally."""

    def changed_parts(self) -> dict[str, bytes]:
        """The parts written since the last call."""
        ...

    def restore_parts(self, parts: dict[str, bytes]) -> None:
        """Replace the state by ``parts`` (every part stored, merged)."""
        ...
