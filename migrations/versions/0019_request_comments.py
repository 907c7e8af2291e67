"""request comments: residents' comments that client apps push in (FixMyStreet)

- `request_comments`: one row per comment a client app posted with
  `POST /open311/v2/servicerequestupdates`, keyed by the client's own id of it
  (unique per API key, so a resent comment is recognised), pointing at the public status
  event that holds its text, with the commenter's details (private, deleted by retention
  with the request's contact details; a partial index finds the rows that still have them).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 04:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_CONTACT = (
    "email IS NOT NULL OR first_name IS NOT NULL OR last_name IS NOT NULL OR phone IS NOT NULL"
)


def upgrade() -> None:
    op.create_table(
        "request_comments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("service_request_id", sa.BigInteger(), nullable=False),
        sa.Column("status_event_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("client_update_id", sa.String(length=255), nullable=False),
        sa.Column("client_status", sa.String(length=32), nullable=True),
        sa.Column("client_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("media_url", sa.Text(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "client_time >= '2000-01-01T00:00:00+00:00' AND client_time < '2200-01-01T00:00:00+00:00'",
            name=op.f("ck_request_comments_client_time_sane"),
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_request_comments_api_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_request_comments_service_request_id_service_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["status_event_id"],
            ["status_events.id"],
            name=op.f("fk_request_comments_status_event_id_status_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_comments")),
        sa.UniqueConstraint(
            "api_key_id", "client_update_id", name="uq_request_comments_api_key_update"
        ),
        sa.UniqueConstraint("status_event_id", name=op.f("uq_request_comments_status_event_id")),
    )
    op.create_index(
        op.f("ix_request_comments_service_request_id"),
        "request_comments",
        ["service_request_id"],
        unique=False,
    )
    op.create_index(
        "ix_request_comments_with_contact",
        "request_comments",
        ["service_request_id"],
        unique=False,
        postgresql_where=sa.text(_HAS_CONTACT),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_request_comments_with_contact",
        table_name="request_comments",
        postgresql_where=sa.text(_HAS_CONTACT),
    )
    op.drop_index(op.f("ix_request_comments_service_request_id"), table_name="request_comments")
    op.drop_table("request_comments")
