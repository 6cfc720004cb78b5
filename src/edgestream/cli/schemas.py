"""``edgestream schemas``: list the Avro schemas, gate changes on compatibility, release them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgestream.cli.app import group, group_hook
from edgestream.core.exceptions import SchemaError
from edgestream.core.schemas import LEVEL, CheckReport, check, snapshot

app = group(
    "Avro schemas of edgestream's topics: list them, check that changes stay "
    f"{LEVEL} compatible with every released version, release them."
)

register = group_hook(app, "schemas")


SchemasDir = Annotated[
    Path | None,
    typer.Option(
        "--schemas-dir",
        help="Folder of the .avsc files (default: the shipped schemas; $EDGESTREAM_SCHEMAS).",
        file_okay=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _console() -> Console:
    return Console(highlight=False)


def _status(ok: bool, unreleased: bool) -> str:
    if not ok:
        return "[bold red]BREAKS[/]"
    return "[green]ok[/] [yellow](unreleased)[/]" if unreleased else "[green]ok[/]"


_HISTORY_RE = re.compile(r"^history/[^/]+/(\d+)\.avsc$")


def _checked(checked: list[str]) -> str:
    """What an entry was checked against, narrow enough to leave room for the problems:
    history snapshots as ``history v1, v2``, registry subjects as they are."""
    history = [m.group(1) for m in map(_HISTORY_RE.match, checked) if m]
    others = [c for c in checked if not _HISTORY_RE.match(c)]
    parts = (["history " + ", ".join(f"v{n}" for n in history)] if history else []) + others
    return "\n".join(parts) or "-"


def _print_check(report: CheckReport, console: Console) -> None:
    title = f"{LEVEL} check of {escape(report.schemas_dir)}"
    if report.registry:
        title += f" and registry {escape(report.registry)}"
    table = Table(title=title, show_lines=True)
    table.add_column("schema", style="bold", no_wrap=True)
    table.add_column("versions checked")
    table.add_column("status", no_wrap=True)
    table.add_column("problems")
    for entry in report.schemas:
        checked = _checked(entry.checked)
        problems = "\n".join(f"- {p}" for p in entry.problems) or "-"
        status = _status(entry.ok, entry.unreleased)
        table.add_row(escape(entry.name), escape(checked), status, escape(problems))
    console.print(table)
    if report.ok:
        console.print(f"[green]all {len(report.schemas)} schemas pass[/]")
    else:
        console.print(
            f"[bold red]{len(report.broken)} of {len(report.schemas)} schemas break {LEVEL} "
            "compatibility[/]: give new fields a default, keep types and names, or add a "
            "new record instead of changing this one"
        )


@app.command("check")
def check_command(
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="Also check against every version this schema registry holds for the "
            "subjects that use each schema.",
        ),
    ] = None,
    schemas_dir: SchemasDir = None,
    as_json: AsJson = False,
) -> None:
    """Check every schema parses, follows the house rules and stays compatible.

    Exits 0 when all pass, 1 when any schema breaks.
    """
    report = check(schemas_dir, registry=registry)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_check(report, _console())
    raise typer.Exit(0 if report.ok else 1)


@app.command("release")
def release_command(schemas_dir: SchemasDir = None) -> None:
    """Snapshot every changed schema as its next released version (only if all pass)."""
    console = _console()
    try:
        written = snapshot(schemas_dir)
    except SchemaError as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None
    if not written:
        console.print("nothing to release: every schema matches its latest released version")
        return
    for name, version in sorted(written.items()):
        console.print(f"released [bold]{name}[/] version {version}")


@app.command("list")
def list_command(schemas_dir: SchemasDir = None, as_json: AsJson = False) -> None:
    """List the schemas with their released version and whether they changed since."""
    report = check(schemas_dir)
    rows = []
    for entry in report.schemas:
        try:
            schema = json.loads(Path(entry.file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            schema = {}
        rows.append(
            {
                "name": entry.name,
                "file": Path(entry.file).name,
                "fields": len(schema.get("fields", [])),
                "released": entry.latest_release,
                "unreleased_changes": entry.unreleased,
                "ok": entry.ok,
                "doc": str(schema.get("doc", "")),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"schemas in {escape(report.schemas_dir)}")
    for column in ("schema", "file", "fields", "released", "status", "doc"):
        table.add_column(column, no_wrap=column != "doc")
    for row in rows:
        doc = row["doc"].split(". ")[0]
        released = f"v{row['released']}" if row["released"] else "never"
        status = _status(bool(row["ok"]), bool(row["unreleased_changes"]))
        name, file, fields = escape(row["name"]), escape(row["file"]), str(row["fields"])
        table.add_row(name, file, fields, released, status, escape(doc))
    _console().print(table)
