"""Plain-text tables for the CLI: columns padded to their widest cell, no terminal-width
wrapping or colours, so output is stable and diffable.

>>> print(table("t", ("a", "bb"), [("x", "1"), ("long", "2")]))
t
a     bb
----  --
x     1
long  2
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["table"]


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table (with a title line unless ``title`` is None)."""
    body = [tuple(str(c) for c in row) for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [] if title is None else [title]
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    return "\n".join(out)
