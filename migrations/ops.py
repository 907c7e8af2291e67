"""Operations our migrations use beyond alembic's `op`, with their types.

- GeoAlchemy2's geospatial table and index operations. geoalchemy2.alembic_helpers
  registers them on alembic's Operations when imported, so `op.create_geospatial_table`
  works at run time, but alembic's typed `op` does not know them and every call was a
  type error. The same operations are invoked here through `op.invoke`, which is typed.
  (Autogenerate still writes `op.create_geospatial_table(...)`: import it from here.)
- Indexes built concurrently, for the tables in LARGE_TABLES (migrations/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from alembic import op
from geoalchemy2.alembic_helpers import (
    CreateGeospatialIndexOp,
    CreateGeospatialTableOp,
    DropGeospatialIndexOp,
    DropGeospatialTableOp,
)
from sqlalchemy import Connection, Table, text
from sqlalchemy.sql.schema import SchemaItem

# Tables that grow with every report, every crew's day or every import, and that the app
# reads and writes all day: building an index on one of them in the usual way (CREATE
# INDEX takes a SHARE lock) stops every write to it for as long as the build takes. A
# migration after CONCURRENT_INDEXES_FROM builds its indexes on these concurrently;
# tests/migrations/test_concurrent_indexes.py fails otherwise.
LARGE_TABLES = frozenset(
    {
        "address_points",
        "basemap_features",
        "completions",
        "crew_changes",
        "crew_track_days",
        "media_links",
        "notifications",
        "photos",
        "position_pings",
        "request_comments",
        "request_contacts",
        "reviews",
        "route_stops",
        "service_requests",
        "status_events",
        "work_orders",
    }
)
# The head when the rule was made; earlier migrations ran on small databases and stay as
# they are.
CONCURRENT_INDEXES_FROM = "0020"


def create_geospatial_table(table_name: str, *columns: SchemaItem, **kw: Any) -> Table:
    return op.invoke(CreateGeospatialTableOp(table_name, columns, **kw))


def drop_geospatial_table(table_name: str, schema: str | None = None, **kw: Any) -> None:
    op.invoke(DropGeospatialTableOp(table_name, schema=schema, table_kw=kw))


def create_geospatial_index(
    index_name: str, table_name: str, columns: Sequence[str], **kw: Any
) -> None:
    op.invoke(CreateGeospatialIndexOp(index_name, table_name, columns, **kw))


def drop_geospatial_index(index_name: str, *, table_name: str, column_name: str, **kw: Any) -> None:
    op.invoke(
        DropGeospatialIndexOp(index_name, table_name=table_name, column_name=column_name, **kw)
    )


def create_index_concurrently(
    index_name: str, table_name: str, columns: Sequence[str], **kw: Any
) -> None:
    """CREATE INDEX CONCURRENTLY, outside the migration's transaction (PostgreSQL refuses
    it inside one), so that writes to the table go on while the index is built.

    A concurrent build that fails (a lock timeout, a duplicate in a unique index) leaves
    an INVALID index behind, which PostgreSQL keeps updating but never reads: it is
    dropped first, so that running the migration again builds it again. The build waits
    for the transactions open on the table to end and scans the table twice, so the
    run's lock and statement timeouts are lifted for this statement: it blocks neither
    reads nor writes while it waits or works."""
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        if not op.get_context().as_sql and _is_invalid_index(bind, index_name):
            op.drop_index(index_name, table_name=table_name, postgresql_concurrently=True)
        with _no_timeouts(bind):
            op.create_index(index_name, table_name, columns, postgresql_concurrently=True, **kw)


def drop_index_concurrently(index_name: str, table_name: str) -> None:
    """DROP INDEX CONCURRENTLY: the way back of create_index_concurrently, for the same
    reason (a plain DROP INDEX waits for, then blocks, every query on the table)."""
    with op.get_context().autocommit_block():
        op.drop_index(
            index_name, table_name=table_name, postgresql_concurrently=True, if_exists=True
        )


def _is_invalid_index(bind: Connection, index_name: str) -> bool:
    return bool(
        bind.scalar(
            text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": index_name},
        )
    )


@contextmanager
def _no_timeouts(bind: Connection) -> Iterator[None]:
    if op.get_context().as_sql:
        yield
        return
    saved = {
        name: bind.scalar(text("SELECT current_setting(:n)"), {"n": name})
        for name in ("lock_timeout", "statement_timeout")
    }
    for name in saved:
        bind.execute(text("SELECT set_config(:n, '0', false)"), {"n": name})
    try:
        yield
    finally:
        for name, value in saved.items():
            bind.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
