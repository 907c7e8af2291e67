"""The `streetloop` command: Flask's CLI plus database, users, seed, worker and geocoder commands."""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfoNotFoundError

import click
from flask.cli import FlaskGroup, ScriptInfo

from core.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from core.lifecycle import Actor
    from core.models import User

# core.models.ROLES, repeated so `--help` does not import the models (a test keeps them equal).
ROLES = ("admin", "dispatcher", "supervisor", "crew", "call_taker")
# Where a caller (the tests) may hand the CLI its sessions, in click's ScriptInfo.data.
SESSIONS_KEY = "streetloop.sessions"


class StreetLoopGroup(FlaskGroup):
    """Flask's CLI (run, shell, routes, --env-file, --app) without its app-command lookup.

    FlaskGroup builds the app just to list or find commands registered on `app.cli`, so
    `--help` needed a database. StreetLoop registers none there: every command lives on
    this group, and the app is built only by a command that needs it (run, shell, routes)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(super(FlaskGroup, self).list_commands(ctx))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super(FlaskGroup, self).get_command(ctx, name)


def settings_from_env() -> Settings:
    """The settings, or a one-line error (exit code 1) instead of a traceback."""
    try:
        return Settings.from_env()
    except (RuntimeError, ValueError, ZoneInfoNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc


def _create_app():  # noqa: ANN202
    from api import create_app

    return create_app(settings_from_env())


def alembic_config(database_url: str | None = None):  # noqa: ANN201
    from alembic.config import Config

    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


@click.group(cls=StreetLoopGroup, create_app=_create_app, add_default_commands=True)
def main() -> None:
    """StreetLoop: 311 field operations (Open311 intake, dispatch, proof of work)."""


@main.group()
def db() -> None:
    """Schema migrations."""


@db.command("upgrade", with_appcontext=False)
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (PostGIS extension, tables, procrastinate's job schema)."""
    from alembic import command

    with _one_line_errors():
        command.upgrade(alembic_config(settings_from_env().database_url), revision)


@db.command("downgrade", with_appcontext=False)
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    from alembic import command

    with _one_line_errors():
        command.downgrade(alembic_config(settings_from_env().database_url), revision)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """A migration setting that is wrong, or another run that keeps the migration lock,
    is a one-line error (exit code 1), like a bad setting of the app's own."""
    from migrations.guard import MigrationLockTimeout, MigrationSettingError

    try:
        yield
    except (MigrationLockTimeout, MigrationSettingError) as exc:
        raise click.ClickException(str(exc)) from exc


@db.command("check", with_appcontext=False)
def db_check() -> None:
    """Fail if the models and the migrated schema differ."""
    from alembic import command

    command.check(alembic_config(settings_from_env().database_url))


@main.group()
def seed() -> None:
    """Demo data."""


@seed.command("demo", with_appcontext=False)
@click.option(
    "--pbf",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=PROJECT_ROOT / "data" / "osm" / "andorra.osm.pbf",
    show_default=True,
)
@click.option("--requests", "n_requests", default=300, show_default=True)
@click.option("--seed", "rng_seed", default=311, show_default=True)
def seed_demo(pbf: Path, n_requests: int, rng_seed: int) -> None:
    """Seed the demo city (Andorra) once; later runs see it is there and return."""
    from core.db import make_engine, make_sessionmaker
    from core.storage import storage_from_settings
    from demo.city import seed_demo_city

    settings = settings_from_env()
    sessions = make_sessionmaker(make_engine(settings.database_url))
    with sessions.begin() as session:
        summary = seed_demo_city(
            session,
            pbf=pbf,
            n_requests=n_requests,
            rng_seed=rng_seed,
            storage=storage_from_settings(settings),
            horizon_days=settings.shift_horizon_days,
        )
    click.echo(summary)


@seed.command("credentials", with_appcontext=False)
def seed_credentials() -> None:
    """Print the demo logins (they exist only in a database seeded with `seed demo`)."""
    from sqlalchemy import select

    from core.db import make_engine, make_sessionmaker
    from core.models import User
    from demo.city import DEMO_API_KEY, DEMO_PASSWORD

    settings = settings_from_env()
    with make_sessionmaker(make_engine(settings.database_url))() as session:
        users = session.execute(
            select(User.email, User.role)
            .where(User.email.like("%@demo"))
            .order_by(User.role, User.email)
        ).all()
    if not users:
        click.echo("no demo users: run `streetloop seed demo` first", err=True)
        sys.exit(1)
    for email, role in users:
        click.echo(f"  {role:<11} {email:<28} password: {DEMO_PASSWORD}")
    click.echo(f"  Open311 api_key: {DEMO_API_KEY}")


# -- users ----------------------------------------------------------------------------


def _sessions() -> sessionmaker[Session]:
    info = click.get_current_context().ensure_object(ScriptInfo)
    if SESSIONS_KEY not in info.data:
        from core.db import make_engine, make_sessionmaker

        info.data[SESSIONS_KEY] = make_sessionmaker(make_engine(settings_from_env().database_url))
    return info.data[SESSIONS_KEY]


@contextmanager
def _transaction() -> Iterator[Session]:
    """One committed transaction; what goes wrong in it is a one-line error, not a traceback."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from core.errors import DomainError

    try:
        with _sessions().begin() as session:
            yield session
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except OperationalError as exc:
        raise click.ClickException(f"database error: {str(exc.orig).strip()}") from exc
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
            raise click.ClickException(
                "the database has no schema yet: run `streetloop db upgrade` first"
            ) from exc
        raise


def _cli_actor() -> Actor:
    from core.lifecycle import Actor

    try:
        login = getpass.getuser()
    except OSError:  # no login name in the environment nor in the password database
        login = "unknown"
    return Actor.cli(login)


def _read_password(email: str, from_stdin: bool) -> str:
    """From the first line of stdin, or prompted for twice with the input hidden. There is
    deliberately no option for it: argv is visible to every user of the machine (ps)."""
    from core.errors import ValidationFailed
    from core.users import check_password

    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise click.ClickException("--password-stdin: the first line of stdin is empty")
        try:
            check_password(password, email=email)
        except ValidationFailed as exc:
            raise click.ClickException(exc.message) from exc
        return password
    while True:
        password = click.prompt("Password", hide_input=True)
        try:
            check_password(password, email=email)
        except ValidationFailed as exc:
            # click's own value_proc check would hide the reason behind hide_input.
            click.echo(f"Error: {exc.message}", err=True)
            continue
        if click.prompt("Repeat the password", hide_input=True) == password:
            return password
        click.echo("Error: the two passwords differ; once more", err=True)


def _describe(user: User) -> str:
    return f"{user.role} {user.email}" + (f" (crew {user.crew.code})" if user.crew else "")


email_option = click.option("--email", required=True, help="the login's e-mail address (any case)")
password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="read the password from the first line of stdin instead of prompting",
)


@main.group()
def users() -> None:
    """Staff and crew logins; a new database starts with `users create --role admin`."""


@users.command("create", with_appcontext=False)
@email_option
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--crew",
    "crew_code",
    metavar="CODE",
    help="the crew's code; required with --role crew, refused otherwise",
)
@click.option("--name", help="the name staff see", show_default="the e-mail's local part")
@password_stdin_option
def users_create(
    email: str, role: str, crew_code: str | None, name: str | None, password_stdin: bool
) -> None:
    """Create a login, e.g. the city's first admin. The password is prompted for (or read
    with --password-stdin), never given as an argument."""
    from core.users import check_new_user, create_user

    name = name if name is not None else email.strip().partition("@")[0]
    # Everything but the password is checked first, so nobody types one twice for nothing.
    with _transaction() as session:
        check_new_user(session, email=email, name=name, role=role, crew_code=crew_code)
    password = _read_password(email, password_stdin)
    with _transaction() as session:
        user = create_user(
            session,
            email=email,
            name=name,
            role=role,
            password=password,
            crew_code=crew_code,
            actor=_cli_actor(),
        )
    click.echo(f"created {_describe(user)}; it signs in with POST /api/v1/auth/token")


@users.command("list", with_appcontext=False)
@click.option("--role", type=click.Choice(ROLES), help="only this role")
def users_list(role: str | None) -> None:
    """Every login, inactive ones too: e-mail, role, crew, active."""
    from core.users import list_users

    with _transaction() as session:
        rows = [
            (u.email, u.role, u.crew.code if u.crew else "-", "yes" if u.active else "no")
            for u in list_users(session, role=role)
        ]
    if not rows:
        click.echo(
            "no users yet: create the first admin with `streetloop users create --email ... --role admin`",
            err=True,
        )
        return
    header = ("EMAIL", "ROLE", "CREW", "ACTIVE")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@users.command("set-password", with_appcontext=False)
@email_option
@password_stdin_option
def users_set_password(email: str, password_stdin: bool) -> None:
    """Reset a login's password; its tokens are revoked, so it is signed out everywhere."""
    from core.users import find_user, set_password

    with _transaction() as session:
        email = find_user(session, email).email
    password = _read_password(email, password_stdin)
    with _transaction() as session:
        user = find_user(session, email, for_update=True)
        revoked = set_password(session, user, password=password, actor=_cli_actor())
    click.echo(f"password of {user.email} reset; {revoked} token(s) revoked")


@users.command("deactivate", with_appcontext=False)
@email_option
@click.option("--reason", help="kept in the account's audit trail")
def users_deactivate(email: str, reason: str | None) -> None:
    """Close a login and revoke its tokens. The last active admin cannot be deactivated."""
    from core.users import deactivate, find_user

    with _transaction() as session:
        user = find_user(session, email, for_update=True)
        revoked = deactivate(session, user, actor=_cli_actor(), note=reason)
    click.echo(f"deactivated {user.email}; {revoked} token(s) revoked")


@users.command("reactivate", with_appcontext=False)
@email_option
def users_reactivate(email: str) -> None:
    """Open a deactivated login again, with its old password (reset it if in doubt)."""
    from core.users import find_user, reactivate

    with _transaction() as session:
        user = find_user(session, email, for_update=True)
        reactivate(session, user, actor=_cli_actor())
    click.echo(f"reactivated {_describe(user)}")


@main.command("worker", with_appcontext=False)
@click.option("--concurrency", default=2, show_default=True)
@click.option("--queues", default="", help="comma list; empty means all")
def worker(concurrency: int, queues: str) -> None:
    """Run the background job worker (photos, plans, notifications).

    It waits for a database that went away and goes on when it is back; it exits with
    status 1 if it crashes (so a supervisor restarts it) and 0 on SIGINT/SIGTERM."""
    from core.settings import libpq_url
    from workers.app import bound_to
    from workers.runner import WorkerOptions, run_worker
    from workers.tasks import close_resources

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings_from_env()
    options = WorkerOptions(
        concurrency=concurrency,
        queues=tuple(q for q in queues.split(",") if q) or None,
        stalled_after_s=settings.worker_stalled_after_s,
        reconnect_max_s=settings.worker_reconnect_max_s,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    try:
        with bound_to(settings) as app:
            # The runner opens (and closes) the app's async connection pool per worker run.
            status = run_worker(app, libpq_url(settings.database_url), options)
    finally:
        close_resources()
    sys.exit(status)


@main.group()
def roads() -> None:
    """Road data for travel times (Valhalla tiles built from an OSM extract)."""


@roads.command("build", with_appcontext=False)
@click.option("--pbf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="tile folder; default $STREETLOOP_ROAD_DATA or var/roads",
)
@click.option("--force", is_flag=True, help="rebuild even if the tiles match the extract")
def roads_build(pbf: Path, out: Path | None, force: bool) -> None:
    """Build Valhalla tiles once; point STREETLOOP_ROAD_DATA at the folder to use them."""
    import os

    from geo.roads import RoadDataError, build_tiles

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    out = out or Path(os.environ.get("STREETLOOP_ROAD_DATA") or PROJECT_ROOT / "var" / "roads")
    try:
        config = build_tiles(pbf, out, force=force)
    except RoadDataError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"road data ready in {out} (config {config}); set STREETLOOP_ROAD_DATA={out}")


@main.group()
def geocoder() -> None:
    """The address index used to place reports that come with only an address."""


@geocoder.command("build", with_appcontext=False)
@click.option("--pbf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def geocoder_build(pbf: Path) -> None:
    """Replace the address index with the addresses and streets of an OSM extract."""
    from core.db import make_engine, make_sessionmaker
    from geo.geocode import build_address_index

    sessions = make_sessionmaker(make_engine(settings_from_env().database_url))
    with sessions.begin() as session:
        count = build_address_index(session, pbf)
    click.echo(f"indexed {count} addresses and streets from {pbf}")


@main.group()
def basemap() -> None:
    """The offline basemap: vector tiles of the city's own OSM extract, served at /tiles/."""


@basemap.command("build", with_appcontext=False)
@click.option("--pbf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option(
    "--force", is_flag=True, help="rebuild even if the basemap was built from this same file"
)
def basemap_build(pbf: Path, force: bool) -> None:
    """Import the streets, water, parks and buildings of an OSM extract for the maps' tiles.
    Later runs with the same file (path, size, mtime) see it is there and return."""
    from geo.basemap import BasemapError, build_basemap

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with _transaction() as session:
            summary = build_basemap(session, pbf, force=force)
    except BasemapError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary)


if __name__ == "__main__":
    # `python -m api.cli worker` (the browser stage starts its worker so, with the running
    # interpreter, without relying on the venv's console script being on PATH).
    main()
