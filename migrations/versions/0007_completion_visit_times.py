"""completion visit times: when the crew was on site and when it finished

CitiStat's on-site hours paired each work order's `completed` event with the `on_site`
event before it, a window over millions of audit rows (3 s for a year of a large
city, even with 0006's index, which this revision drops again: every status event paid
for it). The completion now records both instants when it is made. Existing completions
get them from the audit trail: the latest `completed` event of their order at or before
submission, and the latest `on_site` event at or before that.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 11:15:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(
        "ix_status_events_work_order_visits",
        table_name="status_events",
        postgresql_where=sa.text("entity = 'work_order' AND to_status IN ('on_site', 'completed')"),
    )
    op.add_column("completions", sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "completions", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("""
        UPDATE completions c SET completed_at = (
            SELECT max(e.at) FROM status_events e
            WHERE e.entity = 'work_order' AND e.entity_id = c.work_order_id AND e.to_status = 'completed'
              AND e.at <= c.submitted_at)
    """)
    op.execute("""
        UPDATE completions c SET arrived_at = (
            SELECT max(e.at) FROM status_events e
            WHERE e.entity = 'work_order' AND e.entity_id = c.work_order_id AND e.to_status = 'on_site'
              AND e.at <= c.completed_at)
        WHERE c.completed_at IS NOT NULL
    """)


def downgrade() -> None:
    op.drop_column("completions", "completed_at")
    op.drop_column("completions", "arrived_at")
    op.create_index(
        "ix_status_events_work_order_visits",
        "status_events",
        ["entity_id", "at", "id"],
        unique=False,
        postgresql_include=["to_status", "actor_user_id"],
        postgresql_where=sa.text("entity = 'work_order' AND to_status IN ('on_site', 'completed')"),
    )
