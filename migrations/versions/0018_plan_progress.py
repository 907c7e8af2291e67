"""route plans: the solve's progress while it runs

- `route_plans.progress` (JSONB, null until the job starts): the phase, the seconds the
  search has used of its limit and the best day found so far, rewritten every second by
  the solving job, so the dispatch console can show a plan being made. Nothing to fill:
  plans solved before have none.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 01:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "route_plans", sa.Column("progress", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("route_plans", "progress")
