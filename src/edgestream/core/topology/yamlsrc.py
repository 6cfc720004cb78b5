"""YAML with line numbers: safe-load a document and find the line of any key path in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edgestream.core.topology.errors import Problem

__all__ = ["YamlSource", "child", "has", "render_path"]

Loc = Sequence[str | int]
_MERGE_TAG = "tag:yaml.org,2002:merge"


def render_path(loc: Loc) -> str:
    """``("gateways", 2, "id")`` -> ``gateways[2].id``.

    >>> render_path(("sensors", "topics", 0, "channels", "rpm", "max"))
    'sensors.topics[0].channels.rpm.max'
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_ABSENT = object()


def child(data: Any, part: str | int) -> Any:
    """``data[part]`` for a mapping key or a list index, else a sentinel (see :func:`has`)."""
    if isinstance(data, dict):
        return data.get(part, _ABSENT)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return _ABSENT


def has(value: Any) -> bool:
    """False for :func:`child`'s "not there" sentinel."""
    return value is not _ABSENT


class YamlSource:
    """One parsed YAML document: its data and the composed nodes (with line marks).

    >>> src = YamlSource("t.yaml", "a:\\n  b:\\n    - x: 1\\n    - x: 2\\n")
    >>> src.data, src.line_of(("a", "b", 1, "x")), src.line_of(("a", "b", 1, "missing"))
    ({'a': {'b': [{'x': 1}, {'x': 2}]}}, 4, 4)
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        loader = yaml.SafeLoader(text)
        try:
            self.root: Node | None = loader.get_single_node()
            self.data: Any = None if self.root is None else loader.construct_document(self.root)
        finally:
            loader.dispose()

    def line_of(self, loc: Loc) -> int:
        """1-based line of the deepest part of ``loc`` present in the document.

        A mapping entry is reported at its key's line, a list item at its first line. Parts
        that are not in the document (a missing key, pydantic's union tags) are skipped.
        """
        node, line = self.root, 1
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for part in loc:
            found = _child(node, part)
            if found is None:
                continue
            key_node, node = found
            line = (key_node or node).start_mark.line + 1
        return line

    def duplicate_keys(self) -> list[Problem]:
        """Keys given twice in one mapping (YAML loaders silently keep the last)."""
        problems: list[Problem] = []

        def walk(node: Node | None, loc: tuple[str | int, ...]) -> None:
            if isinstance(node, MappingNode):
                first: dict[str, int] = {}
                for key, value in node.value:
                    name = key.value if isinstance(key, ScalarNode) else str(key.value)
                    line = key.start_mark.line + 1
                    if name in first and key.tag != _MERGE_TAG:
                        problems.append(
                            Problem(
                                self.file,
                                line,
                                render_path((*loc, name)),
                                f"got the key {name!r} a second time (first on line "
                                f"{first[name]}); expected each key once",
                            )
                        )
                    first.setdefault(name, line)
                    walk(value, (*loc, name))
            elif isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, (*loc, index))

        walk(self.root, ())
        return problems


def _child(node: Node, part: str | int) -> tuple[Node | None, Node] | None:
    """(key node, value node) of ``part`` in a mapping, (None, item) in a sequence."""
    if isinstance(node, MappingNode):
        merged: list[Node] = []
        for key, value in reversed(node.value):  # the last duplicate wins, as in the data
            if key.tag == _MERGE_TAG:
                merged.append(value)
            elif isinstance(key, ScalarNode) and key.value == str(part):
                return key, value
        for source in merged:  # ``<<: *anchor`` merge keys
            for candidate in source.value if isinstance(source, SequenceNode) else [source]:
                found = _child(candidate, part)
                if found is not None:
                    return found
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None
