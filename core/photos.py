"""Queries about stored photos that several domain services share."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Photo


def after_photo_url(session: Session, completion_id: int) -> str | None:
    """The public copy of a completion's first after photo, once processed (its own photo,
    not a request's `media_url`, which may still be the resident's report photo)."""
    key = session.scalar(
        select(Photo.public_key)
        .where(Photo.completion_id == completion_id, Photo.kind == "after", Photo.state == "ready")
        .order_by(Photo.id)
        .limit(1)
    )
    return f"/media/{key}" if key else None
