"""``edgestream simulate``: option errors are one line naming the option."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from edgestream.cli.simulate import register
from edgestream.sim import SimConfigError


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()
    register(root)

    @root.command("other")
    def other() -> None:  # a second command keeps "simulate" a subcommand
        """Placeholder."""

    return root


ENDPOINTS = ["--bootstrap", "127.0.0.1:1", "--registry", "http://127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "-1"], "--rate"),
        (["--rate", "5000"], "--rate"),
        (["--late-fraction", "1.5"], "--late-fraction"),
        (["--anomaly-rate", "-0.1"], "--anomaly-rate"),
        (["--device-types", "pump,toaster"], "--device-types"),
        (["--devices", "0"], "--devices"),
        (["--frames", "0"], "--frames"),
        (["--duration", "-3"], "--duration"),
        (["--start-time", "yesterday"], "--start-time"),
        (["--late-within", "5"], "--late-within"),
        (["--topic", "sensors.{kind}"], "--topic"),
        (["--drift-at", "10", "--drift-channels", "nope"], "--drift-channels"),
        (["--device-id", "m-1"], "--replay"),
        (["--map", "a=b"], "--replay"),
        (["--speed", "fast"], "--speed"),
        (["--duration", "0", "--fast"], "--fast"),
    ],
)
def test_invalid_values_give_one_line_naming_the_option(
    app: typer.Typer, args: list[str], option: str
) -> None:
    result = CliRunner().invoke(app, ["simulate", *ENDPOINTS, *args])
    assert isinstance(result.exception, SimConfigError), result.output
    message = str(result.exception)
    assert option in message and "\n" not in message


def test_missing_endpoints_without_a_stack_say_what_to_do(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["simulate", "--fast"])
    assert isinstance(result.exception, SimConfigError)
    assert "--bootstrap and --registry" in str(result.exception)
    assert "edgestream stack start" in str(result.exception)


def test_help_lists_the_options(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--bootstrap", "--frames", "--drift-at", "--late-fraction", "--replay-windows"):
        assert option in result.output
