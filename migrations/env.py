"""Alembic environment: our models' metadata, GeoAlchemy2's helpers, one run at a time
and the timeouts of each run (migrations/guard.py)."""

from __future__ import annotations

import contextlib

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import Connection

import core.models  # noqa: F401  (registers every table on Base.metadata)
from core.db import Base, make_engine
from core.settings import Settings
from migrations.guard import Limits, release_migration_lock, take_migration_lock
from migrations.schema_filter import include_object

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url")
    return url or Settings.from_env().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
        render_item=alembic_helpers.render_item,
        process_revision_directives=alembic_helpers.writer,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        # Also when a migration fails: a pooled connection left open would outlive the
        # command (and trip ResourceWarning in the test suite).
        engine.dispose()


def _run(connection: Connection) -> None:
    # A caller's connection that is already in a transaction keeps it: alembic then runs
    # every migration inside it, the lock is the transaction's, and the caller commits.
    external = connection.in_transaction()
    take_migration_lock(connection, Limits.from_env(), for_transaction=external)
    if not external:
        # The lock and the timeouts are the session's: ending this transaction keeps them
        # and lets alembic open one transaction per migration, as configured below.
        connection.commit()
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            render_item=alembic_helpers.render_item,
            process_revision_directives=alembic_helpers.writer,
            compare_type=True,
            compare_server_default=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    except BaseException:
        if not external:
            # The failed migration's transaction is rolled back already. If the connection
            # itself is gone, so is the lock: nothing here may hide the migration's error.
            with contextlib.suppress(Exception):
                connection.rollback()
                _release(connection)
        raise
    if not external:
        _release(connection)


def _release(connection: Connection) -> None:
    # Released here rather than with the connection, which a caller may keep.
    release_migration_lock(connection)
    connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
