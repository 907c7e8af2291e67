"""Indexes on the large tables are built concurrently from 0021 on (migrations/README.md).

The rule is checked on what the migrations send, not on their source: every statement of
an upgrade from CONCURRENT_INDEXES_FROM to head is recorded, and a CREATE INDEX on one of
LARGE_TABLES without CONCURRENTLY fails the test, whether it came from op.create_index,
GeoAlchemy2's helpers or raw SQL. So does a UNIQUE or PRIMARY KEY constraint added with
an index of its own (`ADD CONSTRAINT ... UNIQUE USING INDEX` is the concurrent way)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event

from api.cli import alembic_config
from core.settings import libpq_url
from migrations.ops import CONCURRENT_INDEXES_FROM, LARGE_TABLES
from tests.databases import scratch_database
from tests.migrations.later import config_with_later, write_migration

_TABLE = r"(?:ONLY\s+)?(?:\"?\w+\"?\.)?\"?(?P<table>\w+)\"?"
_BLOCKING = (
    re.compile(
        r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY\b)(?:IF\s+NOT\s+EXISTS\s+)?"
        rf"\S+\s+ON\s+{_TABLE}",
        re.IGNORECASE,
    ),
    re.compile(
        rf"^\s*ALTER\s+TABLE\s+{_TABLE}\s+ADD\s+(?:CONSTRAINT\s+\S+\s+)?"
        r"(?:UNIQUE|PRIMARY\s+KEY)\s*\(",
        re.IGNORECASE,
    ),
)


def blocking_index_builds(cfg: Config, revision: str = "head") -> list[str]:
    """The statements of an upgrade to `revision` that build an index on a large table
    while they keep its writers waiting."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    # On the Engine class: the migrations run on an engine env.py makes for itself.
    event.listen(Engine, "before_cursor_execute", record)
    try:
        command.upgrade(cfg, revision)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return [
        " ".join(statement.split())
        for statement in sent
        for pattern in _BLOCKING
        if (found := pattern.search(statement)) and found["table"] in LARGE_TABLES
    ]


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url) as scratch:
        command.upgrade(alembic_config(scratch), CONCURRENT_INDEXES_FROM)
        yield scratch


def _index_valid(url: str, name: str) -> bool | None:
    with psycopg.connect(libpq_url(url.replace("+psycopg", ""))) as conn:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
        ).fetchone()
    return None if row is None else bool(row[0])


def test_no_migration_after_the_rule_builds_a_blocking_index_on_a_large_table(url: str) -> None:
    assert blocking_index_builds(alembic_config(url)) == []


def test_the_rule_catches_a_plain_index_on_a_large_table_and_leaves_small_ones_alone(
    url: str, tmp_path: Path
) -> None:
    write_migration(
        tmp_path,
        'op.create_index("ix_crews_probe", "crews", ["name"]); '
        'op.create_index("ix_status_events_probe", "status_events", ["note"]); '
        'op.execute("CREATE UNIQUE INDEX ix_photos_probe ON public.photos (id, sha256)"); '
        'op.create_unique_constraint("uq_notifications_probe", "notifications", ["id", "kind"])',
    )
    cfg = config_with_later(url, tmp_path)
    assert blocking_index_builds(cfg) == [
        "CREATE INDEX ix_status_events_probe ON status_events (note)",
        "CREATE UNIQUE INDEX ix_photos_probe ON public.photos (id, sha256)",
        "ALTER TABLE notifications ADD CONSTRAINT uq_notifications_probe UNIQUE (id, kind)",
    ]


def test_an_index_built_with_create_index_concurrently_passes_the_rule_and_is_valid(
    url: str, tmp_path: Path
) -> None:
    write_migration(
        tmp_path,
        'ops.create_index_concurrently("ix_status_events_probe", "status_events", ["note"])',
        'ops.drop_index_concurrently("ix_status_events_probe", "status_events")',
    )
    cfg = config_with_later(url, tmp_path)
    assert blocking_index_builds(cfg) == []
    assert _index_valid(url, "ix_status_events_probe") is True
    command.downgrade(cfg, CONCURRENT_INDEXES_FROM)
    assert _index_valid(url, "ix_status_events_probe") is None


def test_an_invalid_index_a_failed_build_left_is_built_again(url: str, tmp_path: Path) -> None:
    dsn = libpq_url(url.replace("+psycopg", ""))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO status_events (entity, entity_id, to_status, actor, note) "
            "VALUES ('work_order', 1, 'new', 'test', 'same'), "
            "('work_order', 2, 'new', 'test', 'same')"
        )
        # A concurrent build that fails is not undone: it leaves an INVALID index.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "CREATE UNIQUE INDEX CONCURRENTLY ix_status_events_probe ON status_events (note)"
            )
        conn.execute("DELETE FROM status_events WHERE entity_id = 2")
    assert _index_valid(url, "ix_status_events_probe") is False
    write_migration(
        tmp_path,
        'ops.create_index_concurrently("ix_status_events_probe", "status_events", ["note"], '
        "unique=True)",
    )
    assert blocking_index_builds(config_with_later(url, tmp_path)) == []
    assert _index_valid(url, "ix_status_events_probe") is True
