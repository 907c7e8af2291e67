"""Operations our migrations use beyond alembic's `op`, with their types.

- GeoAlchemy2's geospatial table and index operations. geoalchemy2.alembic_helpers
  registers them on alembic's Operations when imported, so `op.create_geospatial_table`
  works at run time, but alembic's typed `op` does not know them and every call was a
  type error. The same operations are invoked here through `op.invoke`, which is typed.
  (Autogenerate still writes `op.create_geospatial_table(...)`: import it from here.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alembic import op
from geoalchemy2.alembic_helpers import (
    CreateGeospatialIndexOp,
    CreateGeospatialTableOp,
    DropGeospatialIndexOp,
    DropGeospatialTableOp,
)
from sqlalchemy import Table
from sqlalchemy.sql.schema import SchemaItem


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
