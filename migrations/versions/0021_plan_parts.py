"""plan parts: a split plan's parts as jobs of their own, on any worker

- `plan_inputs`: a split plan's whole problem (JSON plus its travel matrix as bytes, in
  dispatch.wire's versioned form) and what turns its answer into rows, so that the worker
  that finishes the last part can assemble the plan. One row per plan.
- `plan_parts`: one row per independent part (its sub-problem, time limit, status, tries,
  the worker and process that ran it, when, its result or error).

Once the plan is assembled its `plan_inputs` row is deleted and its parts' inputs are
emptied: the plan's own rows then hold the day, and only the parts' record stays.

Both are new and empty: nothing to copy, no lock on a large table.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 13:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_inputs",
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("problem", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("matrix", sa.LargeBinary(), nullable=False),
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["route_plans.id"],
            name=op.f("fk_plan_inputs_plan_id_route_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", name=op.f("pk_plan_inputs")),
    )
    op.create_table(
        "plan_parts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("crews", sa.Integer(), nullable=False),
        sa.Column("jobs", sa.Integer(), nullable=False),
        sa.Column("time_limit_s", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("problem", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("matrix", sa.LargeBinary(), nullable=True),
        sa.Column("places", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("ck_plan_parts_status"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["route_plans.id"],
            name=op.f("fk_plan_parts_plan_id_route_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_parts")),
        sa.UniqueConstraint("plan_id", "position", name=op.f("uq_plan_parts_plan_position")),
    )


def downgrade() -> None:
    op.drop_table("plan_parts")
    op.drop_table("plan_inputs")
