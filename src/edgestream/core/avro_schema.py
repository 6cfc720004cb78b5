"""Avro schemas by name: the ``.avsc`` files of the schemas folder and their fastavro form.

Timestamps stay plain epoch-millisecond ``int`` s in Python: :func:`fastavro_schema` parses a
schema with its ``logicalType`` annotations stripped (the wire encoding is the same), so
decoding never builds ``datetime`` objects; the schema text itself keeps its annotations.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from edgestream.core.exceptions import SchemaError
from edgestream.core.paths import schemas_dir

__all__ = [
    "fastavro_schema",
    "full_name",
    "load_schema",
    "resolve_schema",
    "schema_catalogue",
    "strip_logical_types",
]


@cache
def schema_catalogue(directory: str) -> dict[str, dict[str, Any]]:
    """Record name and file stem -> schema, for the ``.avsc`` files of one folder (cached:
    treat the result as read-only)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(directory).glob("*.avsc")):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise SchemaError(f"{path} is not valid JSON: {error}") from None
        name = schema.get("name") if isinstance(schema, dict) else None
        if not isinstance(name, str):
            raise SchemaError(f"{path} has no top-level record name: give it a 'name'")
        found[name] = schema
        found[path.stem] = schema
    return found


def load_schema(name: str) -> dict[str, Any]:
    """The schema of a record by record name or file stem, from :func:`schemas_dir`.

    >>> load_schema("SensorReading")["namespace"]
    'io.edgestream.v1'
    >>> load_schema("sensor_reading") == load_schema("SensorReading")
    True
    """
    catalogue = schema_catalogue(str(schemas_dir()))
    schema = catalogue.get(name) or catalogue.get(name.rsplit(".", 1)[-1])
    if schema is None:
        known = ", ".join(sorted(k for k in catalogue if not k.islower())) or "none"
        raise SchemaError(f"no schema named {name!r} in {schemas_dir()}: known names are {known}")
    return copy.deepcopy(schema)


def strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` (parsed JSON) without ``logicalType`` annotations.

    >>> strip_logical_types({"type": "long", "logicalType": "timestamp-millis"})
    {'type': 'long'}
    """
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


def fastavro_schema(schema: dict[str, Any] | str) -> dict[str, Any]:
    """The fastavro-parsed form of ``schema`` with logical types stripped (ints for times)."""
    raw = json.loads(schema) if isinstance(schema, str) else schema
    try:
        return parse_schema(strip_logical_types(raw))
    except Exception as error:  # fastavro raises several types for bad schemas
        raise SchemaError(f"invalid Avro schema: {error}") from None


def resolve_schema(schema: str | dict[str, Any]) -> dict[str, Any]:
    """A schema given as a dict, as JSON text, or as a record name / file stem."""
    if isinstance(schema, dict):
        return schema
    text = schema.strip()
    if text[:1] in ("{", "[", '"'):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise SchemaError(f"schema text is not valid JSON: {error}") from None
        if not isinstance(parsed, dict):
            raise SchemaError("edgestream serdes need a record schema (a JSON object)")
        return parsed
    return load_schema(text)


def full_name(schema: dict[str, Any]) -> str:
    """``namespace.name`` of a named schema.

    >>> full_name(load_schema("SensorReading"))
    'io.edgestream.v1.SensorReading'
    """
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name
