"""Entry point of the ``edgestream`` console script."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from edgestream.cli import (
    alerts,
    bench,
    cloud,
    dashboard,
    deploy,
    edge,
    evaluate,
    forward,
    models,
    query,
    retrain,
    schemas,
    simulate,
    stack,
    up,
    validate,
)
from edgestream.core.exceptions import EdgestreamError

app = typer.Typer(
    name="edgestream",
    help="Edge-to-cloud stream analytics: gateways, forwarding, fleet analytics, model rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(schemas.app, name="schemas")
app.add_typer(edge.app, name="edge")
app.add_typer(bench.app, name="bench")
app.add_typer(forward.app, name="forward")
app.add_typer(cloud.app, name="cloud")
app.add_typer(models.app, name="models")
app.add_typer(retrain.app, name="retrain")
app.add_typer(evaluate.app, name="eval")
simulate.register(app)
up.register(app)
validate.register(app)
alerts.register(app)
deploy.register(app)
query.register(app)
dashboard.register(app)

_err = Console(stderr=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; an :class:`EdgestreamError` becomes a one-line message and exit code 1."""
    try:
        app(args=argv, standalone_mode=True)
    except EdgestreamError as error:
        _err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
