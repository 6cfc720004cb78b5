"""Avro compatibility levels, checked with the apache avro reader/writer rules."""

from __future__ import annotations

import doctest
import json

import pytest

from edgestream.core import compat
from edgestream.core.compat import canonical_form, check_compatibility, parse_avro
from edgestream.core.exceptions import SchemaError


def record(*fields: dict) -> str:
    return json.dumps({"type": "record", "name": "Reading", "namespace": "t", "fields": fields})


A = {"name": "a", "type": "int"}
B = {"name": "b", "type": "string"}
B_DEFAULT = {"name": "b", "type": "string", "default": "x"}

V_A = record(A)
V_AB = record(A, B)
V_AB_DEFAULT = record(A, B_DEFAULT)


@pytest.mark.parametrize(
    ("level", "new", "old", "compatible"),
    [
        # BACKWARD: the new schema reads old data
        ("BACKWARD", V_AB, V_A, False),  # new required field, old data lacks it
        ("BACKWARD", V_AB_DEFAULT, V_A, True),
        ("BACKWARD", V_A, V_AB, True),  # dropping a field is fine for a reader
        # FORWARD: old readers read new data
        ("FORWARD", V_AB, V_A, True),
        ("FORWARD", V_A, V_AB, False),  # old reader needs b, new data lacks it
        ("FORWARD", V_A, V_AB_DEFAULT, True),
        # FULL: both
        ("FULL", V_AB_DEFAULT, V_A, True),
        ("FULL", V_AB, V_A, False),
        ("FULL", V_A, V_AB, False),
        # NONE: anything goes
        ("NONE", '"string"', V_A, True),
    ],
)
def test_each_level_against_one_old_schema(level: str, new: str, old: str, compatible: bool):
    for variant in (level, f"{level}_TRANSITIVE" if level != "NONE" else level):
        problems = check_compatibility(new, [old], variant)
        assert (problems == []) is compatible, (variant, problems)


def test_backward_transitive_checks_every_version_backward_only_the_last():
    v1 = V_A
    v2 = V_AB_DEFAULT
    v3 = V_AB  # reads v2 data (b present), not v1 data (b missing, no default)
    assert check_compatibility(v3, [v1, v2], "BACKWARD") == []
    problems = check_compatibility(v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert len(problems) == 1
    assert "old_schemas[0]" in problems[0]
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in problems[0]


def test_forward_transitive_checks_every_version_forward_only_the_last():
    v1 = V_AB  # its readers need b
    v2 = V_AB_DEFAULT
    v3 = V_A  # drops b: fine for v2 readers (default), not for v1 readers
    assert check_compatibility(v3, [v1, v2], "FORWARD") == []
    problems = check_compatibility(v3, [v1, v2], "FORWARD_TRANSITIVE")
    assert len(problems) == 1
    assert problems[0].startswith("FORWARD_TRANSITIVE: old_schemas[0] cannot read data written")


def test_full_transitive_reports_both_directions_per_version():
    v1 = record({"name": "a", "type": "long"})
    v2 = record({"name": "a", "type": "int"})
    problems = check_compatibility(v2, [v1, v1], "FULL_TRANSITIVE")
    # int reader cannot read long (backward), long reader can read int (forward is fine)
    assert len(problems) == 2
    assert all("TYPE_MISMATCH at /fields/0/type" in p for p in problems)
    assert {p.split("read data written with ")[1].split(":")[0] for p in problems} == {
        "old_schemas[0]",
        "old_schemas[1]",
    }
    (last_only,) = check_compatibility(v2, [v1, v1], "FULL")
    assert last_only == problems[1].replace("FULL_TRANSITIVE", "FULL")


def test_message_names_direction_version_type_location_and_what_to_do():
    (problem,) = check_compatibility(V_AB, [V_A], "BACKWARD", labels=["version 7"])
    assert problem == (
        "BACKWARD: the new schema cannot read data written with version 7: "
        "READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: field 'b' is in the reader schema "
        "without a default and missing from the writer schema (add a default to 'b')"
    )


def test_several_incompatibilities_are_reported_one_by_one():
    new = record({"name": "a", "type": "string"}, B, {"name": "c", "type": "long"})
    problems = check_compatibility(new, [V_A], "BACKWARD")
    assert len(problems) == 3
    assert any("TYPE_MISMATCH at /fields/0/type" in p for p in problems)
    assert any("at /fields/1: field 'b'" in p for p in problems)
    assert any("at /fields/2: field 'c'" in p for p in problems)


def test_union_branch_that_matches_is_not_reported():
    nullable = record({"name": "a", "type": ["null", "int"], "default": None})
    assert check_compatibility(nullable, [V_A], "BACKWARD") == []
    problems = check_compatibility(nullable, [V_A], "FORWARD")
    assert problems and all("TYPE_MISMATCH" in p for p in problems)


def test_enum_symbols_and_renames():
    def enum(*symbols: str, name: str = "Color") -> str:
        return json.dumps({"type": "enum", "name": name, "symbols": list(symbols)})

    assert check_compatibility(enum("R", "G", "B"), [enum("R", "G")], "BACKWARD") == []
    (problem,) = check_compatibility(enum("R"), [enum("R", "G")], "BACKWARD")
    assert "MISSING_ENUM_SYMBOLS" in problem
    (problem,) = check_compatibility(enum("R", name="Colour"), [enum("R")], "BACKWARD")
    assert "NAME_MISMATCH" in problem


def test_no_old_schemas_is_compatible():
    assert check_compatibility(V_AB, [], "FULL_TRANSITIVE") == []


def test_level_is_case_insensitive_and_unknown_levels_are_refused():
    assert check_compatibility(V_AB, [V_A], "backward")
    with pytest.raises(SchemaError, match="unknown compatibility level 'SIDEWAYS'"):
        check_compatibility(V_AB, [V_A], "SIDEWAYS")


def test_invalid_schemas_raise_schema_error():
    with pytest.raises(SchemaError, match="invalid Avro schema: Error parsing JSON"):
        parse_avro("{not json")
    with pytest.raises(SchemaError, match="empty schema text"):
        parse_avro("  ")
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        check_compatibility('{"type": "recrd"}', [V_A], "BACKWARD")
    with pytest.raises(SchemaError, match="invalid Avro schema"):
        check_compatibility(V_A, ['{"type": "recrd"}'], "BACKWARD")


@pytest.mark.parametrize(
    ("field_type", "default"),
    [
        ("int", "zero"),
        ("int", 2**40),
        ("string", 1),
        (["null", "int"], 3),  # a union default must match the first branch
        ({"type": "array", "items": "int"}, ["a"]),
        ({"type": "enum", "name": "E", "symbols": ["X"]}, "Y"),
    ],
)
def test_defaults_that_do_not_match_the_type_are_invalid(field_type: object, default: object):
    schema = record({"name": "f", "type": field_type, "default": default})
    with pytest.raises(SchemaError, match=r"default .* of field 't\.Reading\.f' does not match"):
        parse_avro(schema)


def test_valid_defaults_parse():
    schema = record(
        {"name": "n", "type": ["null", "string"], "default": None},
        {"name": "d", "type": "double", "default": 1},
        {"name": "m", "type": {"type": "map", "values": "long"}, "default": {"k": 1}},
        {"name": "b", "type": "bytes", "default": "\u00ff"},
    )
    assert parse_avro(schema).type == "record"


def test_canonical_form_ignores_whitespace_and_key_order_but_not_docs():
    spaced = json.dumps(json.loads(V_AB), indent=4)
    reordered = json.dumps(dict(reversed(list(json.loads(V_AB).items()))))
    assert canonical_form(spaced) == canonical_form(V_AB) == canonical_form(reordered)
    documented = json.loads(V_AB)
    documented["doc"] = "readings"
    assert canonical_form(json.dumps(documented)) != canonical_form(V_AB)


def test_docstring_examples_run():
    assert doctest.testmod(compat, raise_on_error=True).attempted >= 3
