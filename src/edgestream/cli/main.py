"""Entry point of the ``edgestream`` console script."""

from __future__ import annotations

import typer

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
from edgestream.cli.app import run

app = typer.Typer(
    name="edgestream",
    help="Edge-to-cloud stream analytics: gateways, forwarding, fleet analytics, model rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
#: in the order ``edgestream --help`` lists them (single commands first, then the groups)
COMMANDS = (simulate, up, validate, alerts, deploy, query, dashboard)
GROUPS = (stack, schemas, edge, bench, forward, cloud, models, retrain, evaluate)
for module in (*COMMANDS, *GROUPS):
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; an :class:`EdgestreamError` becomes a one-line message and exit code 1."""
    run(app, argv)


if __name__ == "__main__":
    main()
