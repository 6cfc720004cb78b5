"""``docs/topology.md`` is generated from the topology models and must be current."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from edgestream.core.topology import Topology
from edgestream.core.topology.reference import render_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "topology.md"
REGENERATE = "python -m edgestream.core.topology.reference docs/topology.md"


def test_committed_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        f"docs/topology.md is stale: regenerate it with `{REGENERATE}`"
    )


def models_below(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields hold, directly or inside lists and mappings."""
    found: list[type[BaseModel]] = [model]
    for hint in typing.get_type_hints(model).values():
        stack = [hint]
        while stack:
            current = stack.pop()
            if isinstance(current, type) and issubclass(current, BaseModel):
                found += [m for m in models_below(current) if m not in found]
            stack.extend(typing.get_args(current))
    return found


def test_every_key_is_described_with_type_and_default() -> None:
    text = render_reference()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    described = {row[0].strip("| `").rsplit(".", 1)[-1]: row for row in rows}
    for model in models_below(Topology):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"
            assert (info.alias or name) in described, f"{model.__name__}.{name} is not listed"
    assert all(len(row) == 4 and all(cell.strip() for cell in row) for row in rows)
    assert "| `forwarding.security.sasl.password` | secret, best `${VAR}` | required |" in text
    assert "| `sensors.topics[].retention` | duration | `1d` |" in text
    assert "| `models.<key>.online.levels` | integer, >= 2, <= 64 | `6` |" in text
