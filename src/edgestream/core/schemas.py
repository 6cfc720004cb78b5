"""The schema catalogue, registration, and the compatibility gate for releases.

The current schemas are ``<schemas dir>/*.avsc``; every released version of a record is kept
as a snapshot ``<schemas dir>/history/<RecordName>/<n>.avsc`` (n = 1, 2, ...). :func:`check`
is the gate: each current schema must be able to read data written with every released
version (BACKWARD_TRANSITIVE), and with every version a registry holds for the subjects that
use it. :func:`snapshot` releases the schemas that changed.

>>> sorted(all_schemas())[:2]
['AnomalyAlert', 'FleetStats']
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from edgestream.core.avro_schema import fastavro_schema, full_name, schema_catalogue
from edgestream.core.compat import check_compatibility, parse_avro
from edgestream.core.exceptions import SchemaError
from edgestream.core.paths import schemas_dir
from edgestream.core.registry.client import as_registry_client, registry_call, registry_url
from edgestream.core.serde import AvroSerializer, subject_for

__all__ = [
    "LEVEL",
    "CheckReport",
    "SchemaReport",
    "all_schemas",
    "check",
    "history_versions",
    "lint_schema",
    "register_all",
    "snapshot",
]

#: The compatibility every schema change must keep.
LEVEL = "BACKWARD_TRANSITIVE"
HISTORY = "history"


def _dir(directory: str | Path | None) -> Path:
    return Path(directory) if directory is not None else schemas_dir()


def all_schemas(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Record name -> schema of every current ``.avsc`` (default folder: :func:`schemas_dir`)."""
    catalogue = schema_catalogue(str(_dir(directory)))
    return {name: json.loads(json.dumps(s)) for name, s in catalogue.items() if s["name"] == name}


def history_versions(name: str, directory: str | Path | None = None) -> list[int]:
    """The released version numbers of a record, ascending (empty if never released).

    >>> history_versions("SensorReading")[0]
    1
    """
    folder = _dir(directory) / HISTORY / name
    if not folder.is_dir():
        return []
    return sorted(int(p.stem) for p in folder.glob("*.avsc") if p.stem.isdigit())


def register_all(
    registry: SchemaRegistryClient | str | dict[str, Any], topics: dict[str, str]
) -> dict[str, int]:
    """Register the schema of each topic (topic -> record name) as ``<topic>-value``.

    Returns topic -> schema id. The registered text is exactly what :class:`AvroSerializer`
    registers, so producers find the same id.

    >>> register_all("mock://doc-schemas", {"fleet.alerts": "AnomalyAlert"})
    {'fleet.alerts': 1}
    """
    return {
        topic: AvroSerializer(registry, name, subject_for(topic)).schema_id
        for topic, name in topics.items()
    }


# --- lint ----------------------------------------------------------------------------------


def lint_schema(schema: Any) -> list[str]:
    """House rules: every record and field has a ``doc``; every optional field a default.

    >>> for problem in lint_schema({"type": "record", "name": "R", "doc": "x",
    ...                             "fields": [{"name": "a", "type": ["null", "int"]}]}):
    ...     print(problem)
    field R.a has no 'doc'
    optional field R.a (union with null) has no default
    """
    problems: list[str] = []
    _lint(schema, problems, set())
    return problems


def _lint(schema: Any, problems: list[str], seen: set[str]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _lint(branch, problems, seen)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "array":
        _lint(schema.get("items"), problems, seen)
    elif kind == "map":
        _lint(schema.get("values"), problems, seen)
    elif kind in ("record", "error"):
        name = str(schema.get("name"))
        if name in seen:
            return
        seen.add(name)
        if not str(schema.get("doc", "")).strip():
            problems.append(f"record {name} has no 'doc'")
        for f in schema.get("fields", []):
            where = f"{name}.{f.get('name')}"
            if not str(f.get("doc", "")).strip():
                problems.append(f"field {where} has no 'doc'")
            kind_of_field = f.get("type")
            if isinstance(kind_of_field, list) and "null" in kind_of_field and "default" not in f:
                problems.append(f"optional field {where} (union with null) has no default")
            _lint(kind_of_field, problems, seen)
    elif isinstance(kind, dict | list):
        _lint(kind, problems, seen)


# --- check ---------------------------------------------------------------------------------


@dataclass
class SchemaReport:
    """What :func:`check` found for one schema file."""

    name: str
    file: str
    checked: list[str] = field(default_factory=list)  # versions compared with, e.g. history/1
    problems: list[str] = field(default_factory=list)
    latest_release: int = 0  # highest snapshot n (0: never released)
    unreleased: bool = False  # the text differs from the latest snapshot

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    """The result of :func:`check`: one :class:`SchemaReport` per ``.avsc`` file."""

    schemas_dir: str
    level: str
    registry: str | None
    schemas: list[SchemaReport]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.schemas)

    @property
    def broken(self) -> list[SchemaReport]:
        return [s for s in self.schemas if not s.ok]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        for entry, report in zip(data["schemas"], self.schemas, strict=True):
            entry["ok"] = report.ok
        return data


def _read(path: Path, report: SchemaReport) -> str | None:
    """The schema text of ``path`` if it parses (Apache Avro and fastavro), else None."""
    try:
        text = path.read_text(encoding="utf-8")
        parse_avro(text)
        fastavro_schema(text)
        return text
    except (OSError, SchemaError) as error:
        report.problems.append(f"{path.name} does not parse: {error}")
        return None


def _registry_versions(
    registry: SchemaRegistryClient | str | dict[str, Any],
) -> dict[str, list[tuple[str, str]]]:
    """Record full name -> [(label, schema text)] of every version of every subject whose
    latest version is that record."""
    client = as_registry_client(registry)
    found: dict[str, list[tuple[str, str]]] = {}
    with registry_call(client):
        for subject in client.get_subjects():
            versions: list[tuple[str, str]] = []
            for version in sorted(client.get_versions(subject)):
                registered = client.get_version(subject, version)
                if (registered.schema.schema_type or "AVRO") == "AVRO":
                    versions.append((f"{subject} v{version}", registered.schema.schema_str or ""))
            if not versions:
                continue
            try:
                latest = json.loads(versions[-1][1])
            except ValueError:
                continue
            if isinstance(latest, dict):
                found.setdefault(full_name(latest), []).extend(versions)
    return found


def check(
    directory: str | Path | None = None,
    registry: SchemaRegistryClient | str | dict[str, Any] | None = None,
) -> CheckReport:
    """Check every ``.avsc`` of ``directory``: it parses, follows the house rules
    (:func:`lint_schema`) and is BACKWARD_TRANSITIVE compatible with all its released
    snapshots and, with ``registry``, with every version registered under the subjects that
    use it. Never raises for a broken schema: the problems are in the report.

    >>> report = check()
    >>> report.ok, report.level
    (True, 'BACKWARD_TRANSITIVE')
    """
    folder = _dir(directory)
    if not folder.is_dir():
        raise SchemaError(f"schemas folder {folder} does not exist: pass --schemas-dir")
    registered = {} if registry is None else _registered(registry)
    reports: list[SchemaReport] = []
    parsed: list[tuple[SchemaReport, str, dict[str, Any]]] = []
    names: dict[str, str] = {}
    for path in sorted(folder.glob("*.avsc")):
        report = SchemaReport(name=path.stem, file=str(path))
        reports.append(report)
        text = _read(path, report)
        if text is None:
            continue
        schema = json.loads(text)
        report.name = str(schema.get("name", path.stem))
        if report.name in names:
            report.problems.append(f"record {report.name} is also defined in {names[report.name]}")
        names[report.name] = path.name
        parsed.append((report, text, schema))
    orphans = _released_names(folder) - set(names)
    for report, text, schema in parsed:
        aliases = {str(a).rsplit(".", 1)[-1] for a in schema.get("aliases") or []}
        histories = [report.name, *sorted(orphans & aliases)]
        orphans -= aliases
        report.problems.extend(lint_schema(schema))
        _check_versions(folder, report, text, histories, registered.get(full_name(schema), []))
    if len(parsed) == len(reports):  # all parsed: a leftover history is a rename or a delete
        for orphan in sorted(orphans):
            reports.append(
                SchemaReport(
                    name=orphan,
                    file=str(folder / HISTORY / orphan),
                    latest_release=history_versions(orphan, folder)[-1],
                    problems=[
                        f"released record {orphan} has no current schema (renamed or deleted?): "
                        "restore it, or keep renames readable with the old name in 'aliases'"
                    ],
                )
            )
    client_url = None if registry is None else registry_url(as_registry_client(registry))
    return CheckReport(str(folder), LEVEL, client_url, reports)


def _registered(
    registry: SchemaRegistryClient | str | dict[str, Any],
) -> dict[str, list[tuple[str, str]]]:
    """:func:`_registry_versions`, or a SchemaError naming the registry that did not answer."""
    try:
        return _registry_versions(registry)
    except SchemaRegistryError as error:
        client = as_registry_client(registry)
        raise SchemaError(
            f"could not list subjects at {registry_url(client)}: {error.error_message}"
        ) from None


def _released_names(folder: Path) -> set[str]:
    history = folder / HISTORY
    if not history.is_dir():
        return set()
    return {d.name for d in history.iterdir() if d.is_dir() and history_versions(d.name, folder)}


def _check_versions(
    folder: Path,
    report: SchemaReport,
    text: str,
    histories: list[str],
    registered: list[tuple[str, str]],
) -> None:
    """Compare one current schema with its snapshots (``histories``: its own name first,
    then the released names it aliases) and with its registered versions."""
    olds: list[tuple[str, str]] = []
    for name in histories:
        for n in history_versions(name, folder):
            old_text = _read(folder / HISTORY / name / f"{n}.avsc", report)
            if old_text is not None:
                olds.append((f"{HISTORY}/{name}/{n}.avsc", old_text))
    versions = history_versions(report.name, folder)
    if versions:
        report.latest_release = versions[-1]
        latest = folder / HISTORY / report.name / f"{versions[-1]}.avsc"
        try:
            report.unreleased = json.loads(latest.read_text(encoding="utf-8")) != json.loads(text)
        except (OSError, ValueError):
            report.unreleased = True
    else:
        report.unreleased = True
    olds.extend(registered)
    report.checked = [label for label, _ in olds]
    if olds:
        report.problems.extend(
            check_compatibility(
                text, [t for _, t in olds], LEVEL, labels=[label for label, _ in olds]
            )
        )


def snapshot(directory: str | Path | None = None) -> dict[str, int]:
    """Release: write ``history/<Name>/<n+1>.avsc`` for each schema that changed since its
    latest snapshot. Refuses (``SchemaError``, nothing written) if any schema fails
    :func:`check`. Returns record name -> version written (empty: nothing to release).
    """
    folder = _dir(directory)
    report = check(folder)
    if not report.ok:
        broken = report.broken
        first = f"{broken[0].name}: {broken[0].problems[0]}"
        raise SchemaError(
            f"not releasing: {len(broken)} schema(s) fail the compatibility gate ({first}); "
            "run `edgestream schemas check` for the full report"
        )
    written: dict[str, int] = {}
    for entry in report.schemas:
        if not entry.unreleased:
            continue
        version = entry.latest_release + 1
        target = folder / HISTORY / entry.name / f"{version}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Path(entry.file).read_text(encoding="utf-8"), encoding="utf-8")
        entry.latest_release, entry.unreleased = version, False
        written[entry.name] = version
    return written
