"""media links: every photo link a report came with

- `media_links`: one row per media_url value of a report, in the order sent (FixMyStreet's
  multi_photos sends several); `service_requests.media_url` stays GeoReport v2's single
  link. A link from a host STREETLOOP_MEDIA_COPY_HOSTS allows is copied into our storage
  once (`copy_state`, `photo_id`); each try is counted (`copy_attempts`) and claimed
  (`copy_claimed_at`) before the fetch, so a copy that keeps crashing ends as failed
  instead of being fetched again forever. `photo_id` is indexed: deleting a photo sets it
  to NULL here (ON DELETE SET NULL), a look-up by photo_id. Existing reports' media_url links are carried over
  (as links: nothing is fetched for them); a media_url that is already one of our own
  photos (/media/...) is not a link.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 04:20:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("service_request_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("copy_state", sa.String(length=16), server_default="link", nullable=False),
        sa.Column("copy_error", sa.String(length=200), nullable=True),
        sa.Column("photo_id", sa.BigInteger(), nullable=True),
        sa.Column("copied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("copy_attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("copy_claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "copy_state IN ('link', 'pending', 'copied', 'failed')",
            name=op.f("ck_media_links_copy_state"),
        ),
        sa.CheckConstraint("char_length(url) <= 2048", name=op.f("ck_media_links_url_length")),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["photos.id"],
            name=op.f("fk_media_links_photo_id_photos"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["service_request_id"],
            ["service_requests.id"],
            name=op.f("fk_media_links_service_request_id_service_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_links")),
        sa.UniqueConstraint(
            "service_request_id", "position", name=op.f("uq_media_links_service_request_id")
        ),
    )
    op.create_index(op.f("ix_media_links_photo_id"), "media_links", ["photo_id"], unique=False)
    # Reports sent before: their one link becomes the first (and only) media link. A
    # closed request's media_url may be its after photo (/media/...): that is ours, not a link.
    op.execute(
        "INSERT INTO media_links (service_request_id, position, url) "
        "SELECT id, 0, media_url FROM service_requests WHERE media_url ~* '^https?://'"
    )


def downgrade() -> None:
    op.drop_table("media_links")
