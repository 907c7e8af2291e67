"""The `streetloop` command without a database: help everywhere, clear errors where one is needed."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner, Result

from api.cli import main


def command_paths(
    command: click.Command = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every command and group under `command`, as the words typed after `streetloop`."""
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else "streetloop")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from command_paths(sub, (*path, name))


PATHS = list(command_paths())


def run_without_database(*args: str) -> Result:
    # FlaskGroup sets FLASK_RUN_FROM_CLI on every run; listing it here makes the runner put it back.
    runner = CliRunner(
        env={"DATABASE_URL": None, "TEST_DATABASE_URL": None, "FLASK_RUN_FROM_CLI": None}
    )
    return runner.invoke(main, list(args), prog_name="streetloop")


def test_the_walk_reaches_flask_and_streetloop_commands() -> None:
    # So the help test below cannot pass by walking nothing.
    assert {
        (),
        ("run",),
        ("shell",),
        ("routes",),
        ("db",),
        ("db", "upgrade"),
        ("seed", "demo"),
        ("worker",),
        ("roads", "build"),
        ("geocoder", "build"),
        ("users", "create"),
        ("users", "set-password"),
    } <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "streetloop")
def test_help_works_without_a_database(path: tuple[str, ...]) -> None:
    result = run_without_database(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert result.stdout.startswith(f"Usage: streetloop {' '.join(path)}".rstrip())
    # FlaskGroup used to print the app's start-up traceback here and still exit 0.
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ("db", "upgrade"),
        ("db", "check"),
        ("seed", "credentials"),
        ("geocoder", "build", "--pbf", __file__),
        ("basemap", "build", "--pbf", __file__),
        ("worker",),
        ("routes",),
        ("shell",),
        ("users", "list"),
        ("users", "deactivate", "--email", "a@b.org"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_command_that_needs_the_database_says_so_without_a_traceback(
    args: tuple[str, ...],
) -> None:
    result = run_without_database(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: DATABASE_URL is not set.")
    assert "Traceback" not in result.output


def test_a_bad_setting_is_one_line_too() -> None:
    runner = CliRunner(
        env={
            "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "STREETLOOP_TOKEN_TTL_S": "soon",
            "FLASK_RUN_FROM_CLI": None,
        }
    )
    result = runner.invoke(main, ["db", "upgrade"], prog_name="streetloop")
    assert result.exit_code == 1
    assert result.stderr == "Error: STREETLOOP_TOKEN_TTL_S must be an integer, got 'soon'\n"


def test_an_unreachable_database_is_one_error_too() -> None:
    runner = CliRunner(
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "FLASK_RUN_FROM_CLI": None}
    )
    result = runner.invoke(main, ["users", "list"], prog_name="streetloop")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: database error: connection failed")
    assert "Traceback" not in result.output
