"""Modules stay readable (STYLE.md 8): no module of ``src/edgestream`` over 400 lines, and no
function over 60 lines unless a comment block right above it (above its decorators) starts
with ``# long: <why>``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "edgestream"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
REASON = "# long:"


def module_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_functions(source: str) -> list[tuple[str, int, int, bool]]:
    """``(name, first line, lines, has a reason)`` of each function over the limit, nested
    ones included. A function's lines run from its first decorator to its last line."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        length = (node.end_lineno or node.lineno) - start + 1
        if length <= MAX_FUNCTION_LINES:
            continue
        above = start - 2  # the line right above, 0-based
        while above >= 0 and lines[above].strip().startswith("#"):
            if lines[above].strip().startswith(REASON):
                break
            above -= 1
        reason = above >= 0 and lines[above].strip().startswith(REASON)
        found.append((node.name, node.lineno, length, reason))
    return sorted(found, key=lambda f: f[1])


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_rules_see_the_source() -> None:
    assert len(_modules()) > 100


def test_no_module_over_400_lines() -> None:
    over = [
        f"{p.relative_to(SRC.parent)}: {n} lines"
        for p in _modules()
        if (n := module_lines(p)) > MAX_MODULE_LINES
    ]
    assert not over, "split these by concept:\n" + "\n".join(over)


def test_no_long_function_without_a_reason() -> None:
    bare = [
        f"{p.relative_to(SRC.parent)}:{line} {name} ({length} lines)"
        for p in _modules()
        for name, line, length, reason in long_functions(p.read_text())
        if not reason
    ]
    assert not bare, f"split these or write `{REASON} <why>` above them:\n" + "\n".join(bare)


@pytest.mark.parametrize("reason", [True, False])
def test_a_reason_is_a_comment_right_above(reason: bool) -> None:
    body = "    x = 1\n" * 70
    comment = "# long: one option per line\n# (typer)\n" if reason else "# a note\n\n"
    source = f"{comment}@decorator\ndef command():\n{body}"
    assert long_functions(source) == [("command", 4, 72, reason)]


def test_short_functions_and_a_reason_further_up_do_not_count() -> None:
    short = "def f():\n" + "    x = 1\n" * 59
    assert long_functions(short) == []
    detached = "# long: not this one\nx = 1\ndef g():\n" + "    x = 1\n" * 61
    assert long_functions(detached) == [("g", 3, 62, False)]
