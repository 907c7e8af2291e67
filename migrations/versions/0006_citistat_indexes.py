"""citistat indexes: work-order visits (on_site → completed) in time order per order

CitiStat's on-site time pairs each `completed` event with the event before it among the
order's on_site/completed events. This partial covering index gives those events already
sorted by (order, time) with the columns the query needs, so the window function reads
an index-only scan instead of sorting the whole audit trail.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 10:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_status_events_work_order_visits",
        "status_events",
        ["entity_id", "at", "id"],
        unique=False,
        postgresql_include=["to_status", "actor_user_id"],
        postgresql_where=sa.text("entity = 'work_order' AND to_status IN ('on_site', 'completed')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_status_events_work_order_visits",
        table_name="status_events",
        postgresql_where=sa.text("entity = 'work_order' AND to_status IN ('on_site', 'completed')"),
    )
