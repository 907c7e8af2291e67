"""completions carry their work order's type and district; an index of unproven ones

A year of CitiStat groups hundreds of thousands of completions by service type and
district; joining each to its work order cost half a second. The completion now keeps
both (the ORM copies them at insert). The partial index lists the few completions that
are not proof, which CitiStat checks every `fixed` request against.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 11:25:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("completions", sa.Column("service_type_id", sa.BigInteger(), nullable=True))
    op.add_column("completions", sa.Column("district_id", sa.BigInteger(), nullable=True))
    op.execute("""
        UPDATE completions c SET service_type_id = wo.service_type_id, district_id = wo.district_id
        FROM work_orders wo WHERE wo.id = c.work_order_id
    """)
    op.alter_column("completions", "service_type_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_completions_service_type_id_service_types"),
        "completions",
        "service_types",
        ["service_type_id"],
        ["id"],
    )
    op.create_foreign_key(
        op.f("fk_completions_district_id_districts"),
        "completions",
        "districts",
        ["district_id"],
        ["id"],
    )
    op.create_index(
        "ix_completions_unproven",
        "completions",
        ["id"],
        unique=False,
        postgresql_where=sa.text("verdict IN ('needs_review', 'rejected')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_completions_unproven",
        table_name="completions",
        postgresql_where=sa.text("verdict IN ('needs_review', 'rejected')"),
    )
    op.drop_constraint(
        op.f("fk_completions_district_id_districts"), "completions", type_="foreignkey"
    )
    op.drop_constraint(
        op.f("fk_completions_service_type_id_service_types"), "completions", type_="foreignkey"
    )
    op.drop_column("completions", "district_id")
    op.drop_column("completions", "service_type_id")
