"""privacy: what CitiStat keeps of a crew's purged GPS fixes, and supervisors' redactions

- `crew_track_days`: per crew and city-local day, the distances CitiStat's gps_km sums,
  written by the retention purge before it deletes the fixes (no positions are kept).
- `redactions`: a request's public text as it was before a supervisor redacted it,
  readable by staff only; the public column holds the redacted text.
- `position_pings` gets an index on `at`: the purge reads every crew's oldest fixes.
- The audit trail takes `crew` (a purge of a crew's GPS fixes is recorded on the crew).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 22:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENTITIES = (
    "service_request",
    "work_order",
    "route_plan",
    "completion",
    "user",
    "shift",
    "shift_pattern",
    "service_area",
)


def _entities(values: tuple[str, ...]) -> None:
    name = op.f("ck_status_events_entity")
    op.drop_constraint(name, "status_events", type_="check")
    op.create_check_constraint(
        name, "status_events", f"entity IN ({', '.join(repr(v) for v in values)})"
    )


def upgrade() -> None:
    op.create_table(
        "crew_track_days",
        sa.Column("crew_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metres", sa.Float(), nullable=False),
        sa.Column("fixes", sa.Integer(), nullable=False),
        sa.Column("first_leg_m", sa.Float(), nullable=True),
        sa.Column("first_leg_from", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["crew_id"],
            ["crews.id"],
            name=op.f("fk_crew_track_days_crew_id_crews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("crew_id", "day", name=op.f("pk_crew_track_days")),
    )
    op.create_table(
        "redactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("service_request_id", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("status_event_id", sa.BigInteger(), nullable=True),
        sa.Column("original", sa.Text(), nullable=True),
        sa.Column("redacted", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("redacted_by_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "field IN ('description', 'status_notes', 'note')", name=op.f("ck_redactions_field")
        ),
        sa.CheckConstraint(
            "(field = 'note') = (status_event_id IS NOT NULL)",
            name=op.f("ck_redactions_note_has_event"),
        ),
        sa.ForeignKeyConstraint(
            ["redacted_by_id"], ["users.id"], name=op.f("fk_redactions_redacted_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_redactions_service_request_id_service_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["status_event_id"],
            ["status_events.id"],
            name=op.f("fk_redactions_status_event_id_status_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redactions")),
    )
    op.create_index(
        op.f("ix_redactions_service_request_id"), "redactions", ["service_request_id"], unique=False
    )
    op.create_index(op.f("ix_position_pings_at"), "position_pings", ["at"], unique=False)
    _entities(_ENTITIES + ("crew",))


def downgrade() -> None:
    op.execute("DELETE FROM status_events WHERE entity = 'crew'")
    _entities(_ENTITIES)
    op.drop_index(op.f("ix_position_pings_at"), table_name="position_pings")
    op.drop_index(op.f("ix_redactions_service_request_id"), table_name="redactions")
    op.drop_table("redactions")
    op.drop_table("crew_track_days")
