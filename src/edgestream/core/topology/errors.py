"""Errors of topology loading: every problem names the file, line, key path and expectation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from edgestream.core.exceptions import EdgestreamError

__all__ = ["MASK", "NeededEnv", "Problem", "TopologyError", "format_value"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topology file.

    ``str(problem)`` is ``FILE:LINE: key.path[2].name: got <value>; expected <what>``.
    """

    file: str
    line: int | None
    path: str
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``edgestream validate --json``)."""
        return asdict(self)


@dataclass(frozen=True)
class NeededEnv:
    """An environment variable a topology value needs at deploy time (unset when validated).

    ``str(need)`` is ``FILE:LINE: key.path: ${VARIABLE}``.
    """

    variable: str
    file: str
    line: int | None
    path: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: ${{{self.variable}}}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``edgestream validate --json``)."""
        return asdict(self)


class TopologyError(EdgestreamError):
    """A topology file is missing, unreadable or invalid; :attr:`problems` lists why.

    ``str(error)`` is one problem per line.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


#: Mapping keys whose values are never shown in messages.
SECRET_KEYS = ("password", "secret", "token")
MASK = "**********"


def format_value(value: Any, limit: int = 80) -> str:
    """A short, readable rendering of an offending value (YAML-ish: null, true, 'text').

    >>> format_value({"username": "u", "password": "hunter2"})
    "a mapping {username: 'u', password: **********}"
    """
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        items = [
            f"{k}: {MASK if any(s in str(k).lower() for s in SECRET_KEYS) else format_value(v, 20)}"
            for k, v in value.items()
        ]
        text = "a mapping {" + ", ".join(items) + "}"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(format_value(v, 20) for v in value) + "]"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
