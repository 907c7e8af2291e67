"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""
from __future__ import annotations

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op

${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}

# Before keeping what autogenerate wrote (migrations/README.md):
# - an index on a large table (migrations.ops.LARGE_TABLES) is built concurrently, in a
#   migration of its own: ops.create_index_concurrently(name, table, columns) and
#   ops.drop_index_concurrently(name, table) instead of op.create_index/op.drop_index;
#   tests/migrations/test_concurrent_indexes.py fails on a plain one;
# - op.create_geospatial_table/index: call the typed ones from migrations.ops instead;
# - each migration runs under lock_timeout and statement_timeout (migrations/guard.py).


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
