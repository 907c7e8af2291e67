"""Throwaway databases beside the session's own, for tests that need one to themselves
(a migration run from empty, the fuzz stage's live server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

from core.settings import libpq_url


@contextmanager
def scratch_database(database_url: str, prefix: str = "streetloop_mig") -> Iterator[str]:
    """An empty database of its own on the same server, dropped afterwards; its URL."""
    admin = make_url(database_url).set(database="postgres")
    admin_dsn = libpq_url(admin.render_as_string(hide_password=False))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
