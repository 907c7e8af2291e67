"""The migrations build exactly the schema the models describe, and run both ways."""

from __future__ import annotations

import uuid

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from api.cli import alembic_config
from core.db import Base, make_engine
from core.settings import libpq_url
from migrations.schema_filter import include_object


def test_migrated_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True, "target_metadata": Base.metadata}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_every_model_table_and_procrastinate_schema_exist(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert {"procrastinate_jobs", "procrastinate_events", "procrastinate_workers"} <= tables


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    admin = make_url(database_url).set(database="postgres")
    name = f"streetloop_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(admin.render_as_string(hide_password=False)), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        command.downgrade(cfg, "base")
        eng = make_engine(url)
        with eng.connect() as conn:
            left = set(inspect(conn).get_table_names()) - {"spatial_ref_sys", "alembic_version"}
            procs = conn.scalar(text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'"))
        eng.dispose()
        assert left == set()
        assert procs == 0
        command.upgrade(cfg, "head")
    finally:
        with psycopg.connect(libpq_url(admin.render_as_string(hide_password=False)), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
