"""How a command module plugs into ``edgestream``.

Every module of :mod:`edgestream.cli` that holds commands exposes ``register(root)``, which
adds them to the root app, made here: ``register = command_hook("alerts", alerts_command)``
for one command, ``register = group_hook(app, "models")`` for a group made with
:func:`group`. ``cli/main.py`` calls each module's ``register`` in turn. :func:`run` runs an
app with errors as one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer
from rich.console import Console

from edgestream.core.exceptions import EdgestreamError

__all__ = ["Register", "command_hook", "group", "group_hook", "run"]

#: a module's ``register``: adds its commands to the root app
Register = Callable[[typer.Typer], None]


def group(help: str) -> typer.Typer:
    """A command group (``edgestream models ...``); without a command it prints its help."""
    return typer.Typer(help=help, no_args_is_help=True)


def group_hook(app: typer.Typer, name: str) -> Register:
    """The ``register`` of a group module: ``app`` becomes ``edgestream NAME``."""

    def register(root: typer.Typer) -> None:
        root.add_typer(app, name=name)

    return register


def command_hook(name: str, command: Callable[..., None]) -> Register:
    """The ``register`` of a one-command module: ``command`` becomes ``edgestream NAME``."""

    def register(root: typer.Typer) -> None:
        root.command(name)(command)

    return register


def run(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run ``app``; an :class:`EdgestreamError` becomes a one-line message and exit code 1."""
    try:
        app(args=argv, standalone_mode=True)
    except EdgestreamError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
