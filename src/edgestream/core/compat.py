"""Avro schema parsing and Confluent-style compatibility checks.

The rules are the Apache Avro reader/writer resolution rules as implemented by
``avro.compatibility.ReaderWriterCompatibilityChecker``; this module maps the
Confluent compatibility levels onto reader/writer pairs and turns the checker's
result into sentences a person can act on.

>>> v1 = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}'
>>> v2 = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"},'
>>> v2 += ' {"name": "b", "type": "string"}]}'
>>> check_compatibility(v2, [v1], "FORWARD")
[]
>>> print(check_compatibility(v2, [v1], "BACKWARD")[0])
BACKWARD: the new schema cannot read data written with old_schemas[0]: \
READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: field 'b' is in the reader schema \
without a default and missing from the writer schema (add a default to 'b')
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import avro.compatibility
import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
)

from edgestream.core.exceptions import SchemaError

__all__ = [
    "LEVELS",
    "canonical_form",
    "check_compatibility",
    "parse_avro",
]

#: The Confluent compatibility levels, mapped to (check backward, check forward, transitive).
LEVELS: dict[str, tuple[bool, bool, bool]] = {
    "NONE": (False, False, False),
    "BACKWARD": (True, False, False),
    "BACKWARD_TRANSITIVE": (True, False, True),
    "FORWARD": (False, True, False),
    "FORWARD_TRANSITIVE": (False, True, True),
    "FULL": (True, True, False),
    "FULL_TRANSITIVE": (True, True, True),
}


def parse_avro(schema_str: str) -> avro.schema.Schema:
    """Parse an Avro schema, checking field defaults the way Confluent's registry does.

    Raises :class:`SchemaError` naming what is wrong.

    >>> parse_avro('"long"').type
    'long'
    >>> parse_avro('{"type": "recrd", "name": "R"}')
    Traceback (most recent call last):
    ...
    edgestream.core.exceptions.SchemaError: invalid Avro schema: Undefined type: recrd
    """
    if not isinstance(schema_str, str) or not schema_str.strip():
        raise SchemaError("invalid Avro schema: empty schema text")
    try:
        parsed = avro.schema.parse(schema_str)
    except (avro.errors.AvroException, ValueError, TypeError) as error:
        raise SchemaError(f"invalid Avro schema: {_one_line(error)}") from None
    _check_defaults(parsed, set())
    return parsed


def canonical_form(schema: str | avro.schema.Schema) -> str:
    """A stable text for "is this the same schema": whitespace and key order do not matter.

    Docs, defaults and other attributes do matter (as in Confluent's registry).

    >>> canonical_form('{"type": "int"}') == canonical_form('"int"')
    True
    """
    parsed = parse_avro(schema) if isinstance(schema, str) else schema
    return json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"))


def check_compatibility(
    new_schema: str,
    old_schemas: Sequence[str],
    level: str,
    *,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Problems that stop ``new_schema`` from following ``old_schemas`` under ``level``.

    ``old_schemas`` are oldest first; non-transitive levels compare with the last one only.
    An empty list means compatible. BACKWARD: the new schema (reader) reads data written
    with the old one; FORWARD: the old schema reads data written with the new one; FULL:
    both. ``labels`` name the old schemas in the messages (default ``old_schemas[i]``).
    Raises :class:`SchemaError` for an unknown level or a schema that does not parse.
    """
    key = level.strip().upper() if isinstance(level, str) else level
    if key not in LEVELS:
        valid = ", ".join(LEVELS)
        raise SchemaError(f"unknown compatibility level {level!r}: use one of {valid}")
    backward, forward, transitive = LEVELS[key]
    if labels is not None and len(labels) != len(old_schemas):
        raise ValueError("labels must name every old schema")
    names = (
        list(labels)
        if labels is not None
        else [f"old_schemas[{i}]" for i in range(len(old_schemas))]
    )
    new = parse_avro(new_schema)
    if not (backward or forward) or not old_schemas:
        return []
    indexes = range(len(old_schemas)) if transitive else [len(old_schemas) - 1]
    problems: list[str] = []
    for i in indexes:
        old = parse_avro(old_schemas[i])
        if backward:
            where = f"{key}: the new schema cannot read data written with {names[i]}"
            problems.extend(f"{where}: {text}" for text in _reader_problems(new, old))
        if forward:
            where = f"{key}: {names[i]} cannot read data written with the new schema"
            problems.extend(f"{where}: {text}" for text in _reader_problems(old, new))
    return problems


_HINTS = {
    SchemaIncompatibilityType.reader_field_missing_default_value: (
        "field '{m}' is in the reader schema without a default and missing from the "
        "writer schema (add a default to '{m}')"
    ),
    SchemaIncompatibilityType.name_mismatch: "named type renamed ({m}; keep the name or alias it)",
    SchemaIncompatibilityType.missing_enum_symbols: "reader enum lacks writer symbols {m}",
}

# The avro checker merges messages and locations of all incompatibilities into two
# sets, losing which message belongs to which location. Every incompatibility is made
# by ``avro.compatibility.incompatible``; wrapping it (same result, same behaviour for
# every other caller) lets a check record the exact triples on its own thread.
_recording = threading.local()
_avro_incompatible = avro.compatibility.incompatible


def _recorded_incompatible(
    incompat_type: SchemaIncompatibilityType, message: str, location: list[str]
) -> SchemaCompatibilityResult:
    result = _avro_incompatible(incompat_type, message, location)
    found = getattr(_recording, "found", None)
    if found is not None:
        found.append((incompat_type, message, next(iter(result.locations))))
    return result


avro.compatibility.incompatible = _recorded_incompatible


def _reader_problems(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Sentences for "reader cannot read what writer wrote" (empty when it can)."""
    found: list[tuple[SchemaIncompatibilityType, str, str]] = []
    _recording.found = found
    try:
        result = ReaderWriterCompatibilityChecker().get_compatibility(reader=reader, writer=writer)
    finally:
        _recording.found = None
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    # Keep what the result reports: a union branch tried and dropped records a miss too.
    exact = [
        (kind, message, location)
        for kind, message, location in dict.fromkeys(found)
        if kind in result.incompatibilities and message in result.messages
    ]
    if exact:
        return [
            f"{kind.name.upper()} at {location}: {_HINTS.get(kind, '{m}').format(m=message)}"
            for kind, message, location in exact
        ]
    kinds = ", ".join(dict.fromkeys(kind.name.upper() for kind in result.incompatibilities))
    locations = ", ".join(sorted(result.locations))
    return [f"{kinds} at {locations}: {'; '.join(sorted(result.messages))}"]


def _check_defaults(schema: avro.schema.Schema, seen: set[str]) -> None:
    """Reject record field defaults that do not match the field type (Avro spec)."""
    if isinstance(schema, avro.schema.RecordSchema):
        if schema.fullname in seen:
            return
        seen.add(schema.fullname)
        for field in schema.fields:
            if field.has_default and not _default_ok(field.type, field.default):
                raise SchemaError(
                    f"invalid Avro schema: default {json.dumps(field.default)} of field "
                    f"'{schema.fullname}.{field.name}' does not match its type "
                    f"{json.dumps(field.type.to_json())} (for a union the default must match "
                    "the first branch)"
                )
            _check_defaults(field.type, seen)
    elif isinstance(schema, avro.schema.ArraySchema):
        _check_defaults(schema.items, seen)
    elif isinstance(schema, avro.schema.MapSchema):
        _check_defaults(schema.values, seen)
    elif isinstance(schema, avro.schema.UnionSchema):
        for branch in schema.schemas:
            _check_defaults(branch, seen)


def _default_ok(schema: avro.schema.Schema, value: Any) -> bool:
    """Whether a JSON default value fits ``schema`` (union: its first branch)."""
    kind = schema.type
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        bits = 31 if kind == "int" else 63
        return (
            isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
        )
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("string", "bytes", "fixed"):
        return isinstance(value, str)
    if kind == "enum":
        return isinstance(value, str) and value in schema.symbols
    if kind == "array":
        return isinstance(value, list) and all(_default_ok(schema.items, v) for v in value)
    if kind == "map":
        return isinstance(value, dict) and all(
            _default_ok(schema.values, v) for v in value.values()
        )
    if kind == "union":
        return bool(schema.schemas) and _default_ok(schema.schemas[0], value)
    if kind in ("record", "error"):
        if not isinstance(value, dict):
            return False
        return all(
            _default_ok(f.type, value[f.name]) if f.name in value else f.has_default
            for f in schema.fields
        )
    return True


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
