"""Turn pydantic's validation errors into :class:`Problem` lines users can act on."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from edgestream.core.topology.errors import MASK, Problem, format_value
from edgestream.core.topology.fields import is_env_reference
from edgestream.core.topology.yamlsrc import YamlSource, child, has, render_path

__all__ = ["explain", "suggest"]

_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string (quote it if YAML reads it as something else)",
    "dict_type": "a mapping of key: value",
    "model_type": "a mapping of key: value",
    "model_attributes_type": "a mapping of key: value",
    "list_type": "a list",
    "tuple_type": "a list",
    "path_type": "a file path",
}


def suggest(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` when ``word`` is close to one of ``options``, else ``""``.

    >>> suggest("sitess", ["id", "sites", "canary"])
    "; did you mean 'sites'?"
    """
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def explain(error: ValidationError, root: type[BaseModel], source: YamlSource) -> list[Problem]:
    """One :class:`Problem` per error, in file order, redundant follow-up errors dropped."""
    errors = error.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]
    problems: list[Problem] = []
    for err, loc in zip(errors, locs, strict=True):
        deeper = any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs)
        if err["type"] in ("too_short", "too_long") and deeper:
            continue  # "0 items after validation": its items' errors say why
        problems.append(_problem(err, loc, root, source))
    unique = {(p.line, p.path, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line or 0, p.path))


def _problem(err: Any, loc: tuple[Any, ...], root: type[Any], source: YamlSource) -> Problem:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    path_parts = _data_path(loc, source.data)
    annotation = _annotation_at(root, path_parts)
    line = source.line_of(path_parts)
    path = render_path(path_parts)
    secret = _is_secret(annotation) and not is_env_reference(value)
    got = MASK if secret else format_value(value)

    if kind == "missing":
        message = f"got nothing; expected the required key {path_parts[-1]!r}"
    elif kind == "extra_forbidden":
        allowed = _keys(_annotation_at(root, path_parts[:-1]))
        key = path_parts[-1]
        message = f"got the unknown key {key!r}; expected one of: {', '.join(allowed)}"
        message += suggest(str(key), allowed)
    elif kind == "literal_error":
        options = [str(o) for o in _literals(annotation)] or [ctx.get("expected", "")]
        message = f"got {got}; expected one of: {', '.join(options)}"
        message += suggest(str(value), options)
    elif kind == "value_error":
        message = f"got {got}; expected {ctx.get('error', err['msg'])}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()), "")
        message = f"got {got}; expected a value {sign} {bound}"
    elif kind in ("too_short", "too_long"):
        side = "at least" if kind == "too_short" else "at most"
        limit = ctx.get("min_length" if kind == "too_short" else "max_length")
        items = "item" if limit == 1 else "items"
        message = f"got {got}; expected {side} {limit} {items}"
    elif kind in _TYPE_WORDS:
        message = f"got {got}; expected {_TYPE_WORDS[kind]}"
    else:
        message = f"got {got}; expected {err['msg'][0].lower() + err['msg'][1:]}"
    return Problem(source.file, line, path or "(top level)", message)


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """``loc`` without pydantic's own parts (union tags, validator names)."""
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        found = child(node, part)
        if has(found):
            node = found
        elif not last or not isinstance(node, dict):
            continue  # a tag such as "function-after[...]" or "str"
        out.append(part)
    return tuple(out)


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the one type inside."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _annotation_at(root: type[Any], path: Sequence[str | int]) -> Any:
    """The declared type at ``path`` inside model ``root`` (None if unknown)."""
    annotation: Any = root
    for part in path:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {(f.alias or name): f for name, f in annotation.model_fields.items()}
            if part not in fields:
                return None
            annotation = fields[str(part)].annotation
        elif origin in (tuple, list):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    return annotation


def _keys(annotation: Any) -> list[str]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _literals(annotation: Any) -> tuple[Any, ...]:
    annotation = _unwrap(annotation)
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def _is_secret(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return isinstance(annotation, type) and issubclass(annotation, SecretStr)
