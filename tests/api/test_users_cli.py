"""`streetloop users`: the first admin of a bare database, and the logins after it."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.cli import ROLES, SESSIONS_KEY, main
from core import models
from core.models import StatusEvent, User
from tests import factories as f

PASSWORD = "first-admin-pass"
LOGIN = "ops-alice"


@pytest.fixture
def cli(sessions: sessionmaker[Session]) -> Any:
    """Run `streetloop ...` on the test's transaction, as the OS user ops-alice."""

    def run(*args: str, input: str | None = None) -> Result:
        info = ScriptInfo()
        info.data[SESSIONS_KEY] = sessions
        # getpass.getuser() reads LOGNAME first; FlaskGroup sets FLASK_RUN_FROM_CLI, put back after the run.
        runner = CliRunner(env={"LOGNAME": LOGIN, "FLASK_RUN_FROM_CLI": None})
        return runner.invoke(main, list(args), input=input, obj=info, prog_name="streetloop")

    return run


def login(client: Any, email: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"email": email, "password": password})


def bearer(client: Any, email: str, password: str) -> dict[str, str]:
    r = login(client, email, password)
    assert r.status_code == 200, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['access_token']}"}


def user_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(User)) or 0


def events(db: Session, user_id: int) -> list[StatusEvent]:
    return list(
        db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == "user", StatusEvent.entity_id == user_id)
            .order_by(StatusEvent.id)
        )
    )


def test_the_cli_roles_are_the_models_roles() -> None:
    assert sorted(ROLES) == sorted(models.ROLES)


# -- create -----------------------------------------------------------------------------


def test_first_admin_from_the_prompt_signs_in_and_administers(
    cli: Any, client: Any, db: Session
) -> None:
    result = cli(
        "users",
        "create",
        "--email",
        "You@City.gov",
        "--role",
        "admin",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "created admin You@city.gov; it signs in with POST /api/v1/auth/token\n"
    )
    assert "Password: " in result.stdout and "Repeat the password: " in result.stdout
    assert PASSWORD not in result.output  # hidden input is not echoed
    user = db.scalar(select(User).where(User.email == "You@city.gov"))
    assert user is not None and (user.role, user.name, user.active) == ("admin", "You", True)

    headers = bearer(client, "you@city.gov", PASSWORD)
    r = client.post("/api/v1/api-keys", json={"name": "Resident app"}, headers=headers)
    assert r.status_code == 201, r.get_json()

    [event] = events(db, user.id)
    assert (event.actor, event.actor_user_id, event.from_status, event.to_status, event.note) == (
        f"cli:{LOGIN}",
        None,
        None,
        "active",
        "created as admin",
    )
    assert PASSWORD not in str(event.note) and user.password_hash not in str(event.note)


def test_the_prompt_says_why_a_password_is_refused_and_asks_again(cli: Any, db: Session) -> None:
    answers = ["short", "you@city.gov", f"{PASSWORD}", "a-typo-in-it", PASSWORD, PASSWORD]
    result = cli(
        "users",
        "create",
        "--email",
        "you@city.gov",
        "--role",
        "admin",
        input="\n".join(answers) + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Error: the password needs at least 10 characters",
        "Error: the password must not be the e-mail address",
        "Error: the two passwords differ; once more",
    ]
    assert user_count(db) == 1


def test_create_with_password_stdin_for_scripts(cli: Any, client: Any, db: Session) -> None:
    f.crew(db, "north-1")
    result = cli(
        "users",
        "create",
        "--email",
        "n1@city.gov",
        "--role",
        "crew",
        "--crew",
        "north-1",
        "--name",
        "North One",
        "--password-stdin",
        input=f"{PASSWORD}\r\nignored second line\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password" not in result.stdout
    assert (
        result.stdout
        == "created crew n1@city.gov (crew north-1); it signs in with POST /api/v1/auth/token\n"
    )
    me = client.get("/api/v1/auth/me", headers=bearer(client, "n1@city.gov", PASSWORD)).get_json()
    assert (me["name"], me["role"], me["crew_code"]) == ("North One", "crew", "north-1")


def test_a_call_taker_is_created_and_listed(cli: Any, client: Any, db: Session) -> None:
    result = cli(
        "users",
        "create",
        "--email",
        "agent@city.gov",
        "--role",
        "call_taker",
        "--name",
        "Agent",
        "--password-stdin",
        input=f"{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert (
        result.stdout
        == "created call_taker agent@city.gov; it signs in with POST /api/v1/auth/token\n"
    )
    assert (
        client.get(
            "/api/v1/auth/me", headers=bearer(client, "agent@city.gov", PASSWORD)
        ).get_json()["role"]
        == "call_taker"
    )
    listed = cli("users", "list", "--role", "call_taker")
    assert (
        listed.exit_code == 0
        and "agent@city.gov" in listed.stdout
        and "call_taker" in listed.stdout
    )


def test_there_is_no_option_that_takes_a_password() -> None:
    ctx = click.Context(main)
    group = main.get_command(ctx, "users")
    assert isinstance(group, click.Group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        for param in command.params:
            if "password" in (param.name or ""):
                assert isinstance(param, click.Option) and param.is_flag, (name, param.name)


@pytest.mark.parametrize(
    "command",
    [
        ["create", "--email", "x@city.gov", "--role", "admin"],
        ["set-password", "--email", "x@city.gov"],
    ],
    ids=["create", "set-password"],
)
def test_a_password_in_argv_is_refused(cli: Any, db: Session, command: list[str]) -> None:
    result = cli("users", *command, "--password", PASSWORD)
    assert result.exit_code == 2
    assert "No such option '--password'" in result.stderr
    assert user_count(db) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--email", "taken@city.gov", "--role", "admin"],
            "Error: a user with the e-mail taken@city.gov exists",
        ),
        (
            ["--email", "TAKEN@city.gov", "--role", "admin"],
            "Error: a user with the e-mail TAKEN@city.gov exists",
        ),
        (
            ["--email", "nobody", "--role", "admin"],
            "Error: 'nobody' does not look like an e-mail address",
        ),
        (
            ["--email", "c@city.gov", "--role", "crew"],
            "Error: a crew login needs the code of its crew",
        ),
        (["--email", "c@city.gov", "--role", "crew", "--crew", "ghost"], "Error: no crew 'ghost'"),
        (
            ["--email", "d@city.gov", "--role", "dispatcher", "--crew", "north-1"],
            "Error: only crew logins belong to a crew; a dispatcher has none",
        ),
    ],
    ids=[
        "duplicate",
        "duplicate-other-case",
        "bad-email",
        "crew-without-crew",
        "unknown-crew",
        "crew-for-dispatcher",
    ],
)
def test_bad_accounts_are_refused_before_the_password_is_asked(
    cli: Any, db: Session, args: list[str], message: str
) -> None:
    f.crew(db, "north-1")
    f.user(db, "taken@city.gov", "dispatcher")
    result = cli("users", "create", *args, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1, result.output
    assert result.stderr == message + "\n"
    assert "Password" not in result.stdout
    assert "Traceback" not in result.output
    assert user_count(db) == 1


def test_a_bad_role_is_a_usage_error(cli: Any, db: Session) -> None:
    result = cli(
        "users",
        "create",
        "--email",
        "x@city.gov",
        "--role",
        "mayor",
        "--password-stdin",
        input=f"{PASSWORD}\n",
    )
    assert result.exit_code == 2
    assert "'mayor' is not one of 'admin', 'dispatcher', 'supervisor', 'crew'" in result.stderr
    assert user_count(db) == 0


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "--password-stdin: the first line of stdin is empty"),
        ("\n", "--password-stdin: the first line of stdin is empty"),
        ("123\n", "the password needs at least 10 characters"),
    ],
    ids=["nothing", "empty-line", "weak"],
)
def test_a_bad_password_on_stdin_stores_nothing(
    cli: Any, db: Session, stdin: str, message: str
) -> None:
    result = cli(
        "users",
        "create",
        "--email",
        "x@city.gov",
        "--role",
        "admin",
        "--password-stdin",
        input=stdin,
    )
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert user_count(db) == 0


# -- list, set-password, deactivate, reactivate -------------------------------------------------


def test_list_prints_every_login_as_a_table(cli: Any, db: Session) -> None:
    assert cli("users", "list").stderr.startswith("no users yet: create the first admin")
    crew = f.crew(db, "north-1")
    f.user(db, "zed@city.gov", "admin")
    f.user(db, "north-1@city.gov", "crew", crew=crew)
    f.user(db, "Gone@city.gov", "dispatcher").active = False
    db.flush()
    result = cli("users", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "EMAIL             ROLE        CREW     ACTIVE",
        "Gone@city.gov     dispatcher  -        no",
        "north-1@city.gov  crew        north-1  yes",
        "zed@city.gov      admin       -        yes",
    ]
    assert cli("users", "list", "--role", "admin").stdout.splitlines()[1:] == [
        "zed@city.gov  admin  -     yes"
    ]


def test_set_password_signs_the_user_out_and_the_new_password_in(
    cli: Any, client: Any, db: Session
) -> None:
    f.user(db, "disp@city.gov", "dispatcher")
    old = bearer(client, "disp@city.gov", "secret-pass")
    result = cli(
        "users",
        "set-password",
        "--email",
        "DISP@city.gov",
        input="a-fresh-password\na-fresh-password\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("password of disp@city.gov reset; 1 token(s) revoked\n")
    assert client.get("/api/v1/auth/me", headers=old).status_code == 401
    assert login(client, "disp@city.gov", "secret-pass").status_code == 401
    assert login(client, "disp@city.gov", "a-fresh-password").status_code == 200
    user = db.scalar(select(User).where(User.email == "disp@city.gov"))
    assert user is not None
    assert [(e.actor, e.note) for e in events(db, user.id)] == [
        (f"cli:{LOGIN}", "password reset; 1 token revoked")
    ]


def test_set_password_of_nobody_asks_for_nothing(cli: Any) -> None:
    result = cli(
        "users",
        "set-password",
        "--email",
        "ghost@city.gov",
        input="a-fresh-password\na-fresh-password\n",
    )
    assert result.exit_code == 1
    assert result.stderr == "Error: no user with the e-mail 'ghost@city.gov'\n"
    assert "Password" not in result.stdout


def test_deactivate_makes_the_old_token_401_and_reactivate_undoes_it(
    cli: Any, client: Any, db: Session
) -> None:
    f.user(db, "boss@city.gov", "admin")
    f.user(db, "disp@city.gov", "dispatcher")
    old = bearer(client, "disp@city.gov", "secret-pass")
    result = cli("users", "deactivate", "--email", "disp@city.gov", "--reason", "moved to parks")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deactivated disp@city.gov; 1 token(s) revoked\n"
    assert client.get("/api/v1/auth/me", headers=old).status_code == 401
    assert login(client, "disp@city.gov", "secret-pass").status_code == 401

    again = cli("users", "deactivate", "--email", "disp@city.gov")
    assert (again.exit_code, again.stderr) == (1, "Error: disp@city.gov is already inactive\n")

    assert (
        cli("users", "reactivate", "--email", "disp@city.gov").stdout
        == "reactivated dispatcher disp@city.gov\n"
    )
    assert login(client, "disp@city.gov", "secret-pass").status_code == 200
    user = db.scalar(select(User).where(User.email == "disp@city.gov"))
    assert user is not None
    assert [(e.from_status, e.to_status, e.actor, e.note) for e in events(db, user.id)] == [
        ("active", "inactive", f"cli:{LOGIN}", "deactivated; 1 token revoked: moved to parks"),
        ("inactive", "active", f"cli:{LOGIN}", "reactivated"),
    ]


def test_the_last_active_admin_cannot_be_deactivated(cli: Any, client: Any, db: Session) -> None:
    f.user(db, "boss@city.gov", "admin")
    result = cli("users", "deactivate", "--email", "boss@city.gov")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: cannot deactivate boss@city.gov: it is the last active admin; make another admin first\n"
    )
    assert login(client, "boss@city.gov", "secret-pass").status_code == 200
