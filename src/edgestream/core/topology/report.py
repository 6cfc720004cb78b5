"""What the cross-reference checks report, and the small helpers they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgestream.core.topology.errors import format_value
from edgestream.core.topology.fields import format_duration
from edgestream.core.topology.models import Topology
from edgestream.core.topology.yamlsrc import child, has

__all__ = ["Finding", "Loc", "Report", "aligned", "checked_types", "duplicates", "known"]

Loc = tuple[str | int, ...]
_MISSING = object()


@dataclass(frozen=True)
class Finding:
    """One cross-reference problem: where, what was found, what was expected."""

    loc: Loc
    got: str
    expected: str


@dataclass
class Report:
    """Findings so far; ``add`` shows the value as written in the YAML unless told."""

    raw: Any  # the YAML data, to show values as the user wrote them
    findings: list[Finding] = field(default_factory=list)

    def add(self, loc: Loc, expected: str, got: Any = _MISSING) -> None:
        if got is _MISSING:
            got = format_value(_lookup(self.raw, loc))
        self.findings.append(Finding(loc, str(got), expected))


def _lookup(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = child(data, part)
        if not has(data):
            return None
    return data


def duplicates(values: list[Any]) -> Iterator[tuple[int, int]]:
    """(index, index of first occurrence) of each repeated value."""
    first: dict[Any, int] = {}
    for index, value in enumerate(values):
        if value in first:
            yield index, first[value]
        else:
            first[value] = index


def known(names: Any) -> str:
    """``a, b, c`` (or ``none``) for listing the valid choices in a message."""
    return ", ".join(names) or "none"


def checked_types(t: Topology) -> list[str]:
    """Served device types that have a sensor topic (the others are reported once, alone)."""
    with_topic = {topic.device_type for topic in t.sensors.topics}
    return [d for d in t.device_types if d in with_topic]


def aligned(size: int, tumbling: list[tuple[int, int]], loc: Loc, why: str, r: Report) -> None:
    """``size`` must be a multiple of every tumbling edge window that fits in it."""
    for index, window in tumbling:
        if window <= size and size % window:
            r.add(loc, f"a multiple of windows[{index}].size {format_duration(window)} so {why}")
            return
