"""The `streetloop` command: Flask's CLI plus database, seed, worker and geocoder commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from zoneinfo import ZoneInfoNotFoundError

import click
from flask.cli import FlaskGroup

from core.settings import PROJECT_ROOT, Settings


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

    command.upgrade(alembic_config(settings_from_env().database_url), revision)


@db.command("downgrade", with_appcontext=False)
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(settings_from_env().database_url), revision)


@db.command("check", with_appcontext=False)
def db_check() -> None:
    """Fail if the models and the migrated schema differ."""
    from alembic import command

    command.check(alembic_config(settings_from_env().database_url))


@main.group()
def seed() -> None:
    """Demo data."""


@seed.command("demo", with_appcontext=False)
@click.option("--pbf", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=PROJECT_ROOT / "data" / "osm" / "andorra.osm.pbf", show_default=True)
@click.option("--requests", "n_requests", default=300, show_default=True)
@click.option("--seed", "rng_seed", default=311, show_default=True)
def seed_demo(pbf: Path, n_requests: int, rng_seed: int) -> None:
    """Seed the demo city (Andorra) once; later runs see it is there and return."""
    from core.db import make_engine, make_sessionmaker
    from core.storage import storage_from_settings
    from geo.demo_city import seed_demo_city

    settings = settings_from_env()
    sessions = make_sessionmaker(make_engine(settings.database_url))
    with sessions.begin() as session:
        summary = seed_demo_city(session, pbf=pbf, n_requests=n_requests, rng_seed=rng_seed,
                                 storage=storage_from_settings(settings))
    click.echo(summary)


@seed.command("credentials", with_appcontext=False)
def seed_credentials() -> None:
    """Print the demo logins (they exist only in a database seeded with `seed demo`)."""
    from sqlalchemy import select

    from core.db import make_engine, make_sessionmaker
    from core.models import User
    from geo.demo_city import DEMO_API_KEY, DEMO_PASSWORD

    settings = settings_from_env()
    with make_sessionmaker(make_engine(settings.database_url))() as session:
        users = session.execute(select(User.email, User.role).where(User.email.like("%@demo")).order_by(User.role, User.email)).all()
    if not users:
        click.echo("no demo users: run `streetloop seed demo` first", err=True)
        sys.exit(1)
    for email, role in users:
        click.echo(f"  {role:<11} {email:<28} password: {DEMO_PASSWORD}")
    click.echo(f"  Open311 api_key: {DEMO_API_KEY}")


@main.command("worker", with_appcontext=False)
@click.option("--concurrency", default=2, show_default=True)
@click.option("--queues", default="", help="comma list; empty means all")
def worker(concurrency: int, queues: str) -> None:
    """Run the background job worker (photos, plans, notifications)."""
    from workers.app import bound_to
    from workers.tasks import close_resources

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with bound_to(settings_from_env()) as app:
            # run_worker opens (and closes) the app's async connection pool itself.
            app.run_worker(concurrency=concurrency, queues=[q for q in queues.split(",") if q] or None)
    finally:
        close_resources()


@main.group()
def roads() -> None:
    """Road data for travel times (Valhalla tiles built from an OSM extract)."""


@roads.command("build", with_appcontext=False)
@click.option("--pbf", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="tile folder; default $STREETLOOP_ROAD_DATA or var/roads")
@click.option("--force", is_flag=True, help="rebuild even if the tiles match the extract")
def roads_build(pbf: Path, out: Path | None, force: bool) -> None:
    """Build Valhalla tiles once; point STREETLOOP_ROAD_DATA at the folder to use them."""
    import os

    from geo.roads import RoadDataError, build_tiles

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
