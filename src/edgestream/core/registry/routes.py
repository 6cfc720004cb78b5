"""The registry's REST API: which store call answers which method and path.

:func:`route` gives the HTTP status and the answer of one request; the paths are those of the
Confluent Schema Registry that ``SchemaRegistryClient`` uses (subjects and their versions,
schemas by id, compatibility checks, config and mode).
"""

from __future__ import annotations

from typing import Any

from edgestream.core.registry import errors
from edgestream.core.registry.store import RegistryStore, parse_version

__all__ = ["route"]


def _flag(query: dict[str, str], name: str) -> bool:
    """Boolean query parameters arrive as ``true``, ``True`` or ``False`` from clients."""
    return query.get(name, "false").strip().lower() == "true"


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    try:
        offset = max(int(query.get("offset", "0") or 0), 0)
        limit = int(query.get("limit", "-1") or -1)
    except ValueError:
        raise errors.bad_request("offset and limit must be integers") from None
    return items[offset:] if limit < 0 else items[offset : offset + limit]


def _schema_id(text: str) -> int:
    if not text.isdigit():
        raise errors.schema_not_found(text)
    return int(text)


def _level_body(body: dict[str, Any]) -> object:
    return body.get("compatibility", body.get("compatibilityLevel"))


# long: one match over every REST path of the API; the route table reads best whole
def route(
    store: RegistryStore,
    method: str,
    parts: list[str],
    query: dict[str, str],
    body: dict[str, Any],
) -> tuple[int, Any]:
    """(HTTP status, JSON-ready answer or raw bytes) for one request."""
    deleted = _flag(query, "deleted")
    match method, parts:
        case "GET", []:
            return 200, {}
        case "GET", ["subjects"]:
            prefix = query.get("subjectPrefix", "")
            found = store.subjects(prefix, deleted, _flag(query, "deleted_only"))
            return 200, _page(found, query)
        case "POST", ["subjects", subject]:
            return 200, store.lookup(subject, body, deleted)
        case "DELETE", ["subjects", subject]:
            return 200, store.delete_subject(subject, _flag(query, "permanent"))
        case "GET", ["subjects", subject, "versions"]:
            found = store.versions(subject, deleted, _flag(query, "deleted_only"))
            return 200, _page(found, query)
        case "POST", ["subjects", subject, "versions"]:
            return 200, store.register(subject, body)
        case "GET", ["subjects", subject, "versions", version]:
            return 200, store.version(subject, parse_version(version), deleted)
        case "GET", ["subjects", subject, "versions", version, "schema"]:
            return 200, store.version(subject, parse_version(version), deleted)["schema"].encode()
        case "GET", ["subjects", subject, "versions", version, "referencedby"]:
            store.version(subject, parse_version(version), deleted=True)
            return 200, []
        case "DELETE", ["subjects", subject, "versions", version]:
            permanent = _flag(query, "permanent")
            return 200, store.delete_version(subject, parse_version(version), permanent)
        case "GET", ["schemas", "types"]:
            return 200, ["AVRO"]
        case "GET", ["schemas", "ids", schema_id]:
            return 200, store.schema_by_id(_schema_id(schema_id))
        case "GET", ["schemas", "ids", schema_id, "schema"]:
            return 200, store.schema_by_id(_schema_id(schema_id))["schema"].encode()
        case "GET", ["schemas", "ids", schema_id, "versions"]:
            pairs = store.versions_of_schema(_schema_id(schema_id), deleted)
            if "subject" in query:
                pairs = [pair for pair in pairs if pair["subject"] == query["subject"]]
            return 200, _page(pairs, query)
        case "GET", ["schemas", "ids", schema_id, "subjects"]:
            pairs = store.versions_of_schema(_schema_id(schema_id), deleted)
            subjects = list(dict.fromkeys(pair["subject"] for pair in pairs))
            if "subject" in query:
                subjects = [name for name in subjects if name == query["subject"]]
            return 200, _page(subjects, query)
        case "GET", ["schemas", "guids", guid]:
            return 200, store.schema_by_guid(guid)
        case "POST", ["compatibility", "subjects", subject, "versions", *rest] if len(rest) <= 1:
            version = parse_version(rest[0]) if rest else None
            problems = store.check(subject, body, version, every=not rest)
            answer: dict[str, Any] = {"is_compatible": not problems}
            if _flag(query, "verbose"):
                answer["messages"] = problems
            return 200, answer
        case "GET", ["config"]:
            return 200, {"compatibilityLevel": store.level(None, True)}
        case "GET", ["config", subject]:
            return 200, {
                "compatibilityLevel": store.level(subject, _flag(query, "defaultToGlobal"))
            }
        case "PUT", ["config", *rest] if len(rest) <= 1:
            return 200, {
                "compatibility": store.set_level(rest[0] if rest else None, _level_body(body))
            }
        case "DELETE", ["config", *rest] if len(rest) <= 1:
            return 200, {"compatibilityLevel": store.delete_level(rest[0] if rest else None)}
        case "GET", ["mode", *rest] if len(rest) <= 1:
            return 200, {"mode": "READWRITE"}
        case "PUT", ["mode", *rest] if len(rest) <= 1:
            if str(body.get("mode", "")).upper() != "READWRITE":
                raise errors.invalid_mode(body.get("mode"))
            return 200, {"mode": "READWRITE"}
        case "GET", ["contexts"]:
            return 200, ["."]
    raise errors.not_found(method, "/" + "/".join(parts))
