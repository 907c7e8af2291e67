"""Processing stored photos: the public, metadata-free copy and the thumbnail."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Photo, ServiceRequest
from core.photos import after_photo_url, hold_media_write_lock, public_keys, public_url
from core.storage import Storage
from geo.photos import public_copies

log = logging.getLogger(__name__)


def process_photo(session: Session, storage: Storage, photo_id: int) -> Photo | None:
    """Make the public copy and thumbnail of one photo; idempotent, the caller commits."""
    photo = session.get(Photo, photo_id, with_for_update=True)
    if photo is None:
        log.warning("photo %s vanished before processing", photo_id)
        return None
    if photo.state == "ready":
        return photo
    full, thumb = public_copies(storage.get(photo.original_key))
    full_key, thumb_key = public_keys(photo)
    hold_media_write_lock(session)  # until the caller's commit names the copies
    storage.put(full_key, full)
    storage.put(thumb_key, thumb)
    photo.public_key, photo.thumbnail_key = full_key, thumb_key
    photo.state = "ready"
    request = photo.service_request
    if photo.kind == "report" and request is not None:
        # Open311's media_url: the resident's own photo, as everyone may see it, and of
        # several the first sent, whichever is processed first. (A link the report came
        # with stays its media_url, and an after photo that replaced it stays.) The row
        # lock keeps two photos of one report processed at once from both deciding.
        session.flush()
        session.refresh(request, with_for_update=True)
        mine = {
            public_url(p.public_key): p.id
            for p in request.photos
            if p.kind == "report" and p.public_key
        }
        if request.media_url is None or request.media_url in mine:
            request.media_url = min(mine.items(), key=lambda item: item[1])[0]
    elif photo.kind == "after" and photo.completion_id is not None:
        # Work closed before its after photo was processed: show the result now.
        url = after_photo_url(session, photo.completion_id)
        for req in session.scalars(
            select(ServiceRequest).where(
                ServiceRequest.completion_id == photo.completion_id,
                ServiceRequest.detailed_status == "fixed",
            )
        ):
            req.media_url = url
    return photo
