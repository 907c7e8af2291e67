"""Where photos are kept and how they are named: storing a photo (a resident's report
photo or a crew's proof) with its row, the names of its files and its public address,
queries about stored photos that several domain services share, and the sweep of stored
photo files no row names."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.locks import AdvisoryLock
from core.models import Photo, ServiceRequest
from core.storage import TEMP_PREFIX, Storage
from geo.photos import InspectedPhoto, public_copies, to_signed64

log = logging.getLogger(__name__)

# A resident's photo of a report; a crew's of the site before and after the work.
type PhotoKind = Literal["report", "before", "after"]

# api.media serves the public copies under this path, by their storage key (which starts
# with `public/`): the route and every link to a photo are built from it.
MEDIA_PATH = "/media"


def public_url(key: str) -> str:
    """The address of a public copy (`Photo.public_key`, `thumbnail_key`), from the site's
    root; callers that hand it to another system put the site's base in front."""
    return f"{MEDIA_PATH}/{key}"


def after_photo_url(session: Session, completion_id: int) -> str | None:
    """The public copy of a completion's first after photo, once processed (its own photo,
    not a request's `media_url`, which may still be the resident's report photo)."""
    key = session.scalar(
        select(Photo.public_key)
        .where(Photo.completion_id == completion_id, Photo.kind == "after", Photo.state == "ready")
        .order_by(Photo.id)
        .limit(1)
    )
    return public_url(key) if key else None


# -- stored files without a row ------------------------------------------------------
# An upload writes the original, then commits its Photo row; the worker writes the public
# copies, then commits their keys. A process killed in between leaves a file no row names
# (only a retry of the same photo, by its content-addressed key, used to reclaim it). The
# sweep below removes such files. A writer holds MEDIA_WRITE_LOCK (shared, so writers
# never wait for each other) from before its write until its commit; the sweep holds it
# exclusively, a batch at a time, while it decides and deletes. So it never sees a file
# whose row is about to be committed, nor deletes one a writer found (`exists`) and is
# about to name. The grace period is a second guard, for writers that take no lock.

MEDIA_WRITE_LOCK = (AdvisoryLock.MEDIA_WRITE, 1)
PHOTO_PREFIXES = ("private/photos", "public/photos")
_ORIGINAL = re.compile(r"^private/photos/[0-9a-f]{2}/(?P<sha>[0-9a-f]{64})\.(?:jpg|png|webp|heic)$")
_PUBLIC = re.compile(r"^public/photos/(?P<id>\d{1,18})-[0-9a-f]{16}(?:-thumb)?\.jpg$")
_BATCH = 500


def hold_media_write_lock(session: Session) -> None:
    """Call before writing a photo file whose row this transaction commits (see above).
    Taking it again in the same transaction is harmless (it is held until the commit)."""
    session.execute(select(func.pg_advisory_xact_lock_shared(*MEDIA_WRITE_LOCK)))


def original_key(info: InspectedPhoto) -> str:
    """Where a photo's original is kept: private, named by its content (the same bytes are
    one file), in the form the orphan sweep recognises (`_ORIGINAL`)."""
    return f"private/photos/{info.sha256[:2]}/{info.sha256}.{info.extension}"


def public_keys(photo: Photo) -> tuple[str, str]:
    """Where a photo's public copy and its thumbnail are kept, in the form the orphan sweep
    recognises (`_PUBLIC`). Unguessable: the id alone would let anyone walk every photo."""
    stem = f"public/photos/{photo.id}-{photo.sha256[:16]}"
    return f"{stem}.jpg", f"{stem}-thumb.jpg"


def store_photo(
    session: Session,
    storage: Storage,
    info: InspectedPhoto,
    data: bytes,
    *,
    kind: PhotoKind,
    request_id: int | None = None,
    completion_id: int | None = None,
    phash: int | None = None,
) -> Photo:
    """Keep a photo: its original, private and named by its content, and its row, added and
    flushed (state pending: the caller queues its processing after the commit).

    A report's photo (`kind` "report", an upload at intake or a copied link) belongs to
    its request; a crew's (`kind` "before" or "after") to its completion. `phash` is the
    perceptual hash (geo.photos.perceptual_hash) the reuse check compares, when known.

    The file is written unless it is there already: the same bytes are the same file,
    whoever sent them first. Holds the media write lock until the caller's commit, taken
    before the look, so the orphan sweep can neither take the file written here nor one
    found here and about to be named by this row."""
    if kind == "report":
        owned = request_id is not None and completion_id is None
    else:
        owned = completion_id is not None and request_id is None
    if not owned:
        raise ValueError("a report's photo belongs to its request, a crew's to its completion")
    key = original_key(info)
    hold_media_write_lock(session)
    if not storage.exists(key):
        storage.put(key, data)
    photo = Photo(
        kind=kind,
        service_request_id=request_id,
        completion_id=completion_id,
        sha256=info.sha256,
        content_type=info.content_type,
        byte_size=info.byte_size,
        width=info.width,
        height=info.height,
        original_key=key,
        phash=to_signed64(phash) if phash is not None else None,
    )
    session.add(photo)
    session.flush()
    return photo


@dataclass
class OrphanSweep:
    removed: list[str] = field(default_factory=list)
    young: int = 0  # no row, but newer than the grace period: perhaps still being written
    kept: int = 0  # a row names it
    unknown: int = 0  # not a name StreetLoop writes: left alone
    busy: bool = False  # uploads held the lock all through `lock_timeout_ms`: next time


def sweep_orphan_files(
    sessions: sessionmaker[Session],
    storage: Storage,
    *,
    grace: timedelta,
    now: datetime | None = None,
    lock_timeout_ms: int = 5000,
) -> OrphanSweep:
    """Delete photo files older than `grace` that no photo row names; what it did."""
    cutoff = (now or datetime.now(UTC)) - grace
    result = OrphanSweep()
    candidates: list[str] = []
    for prefix in PHOTO_PREFIXES:
        for stored in storage.files(prefix):
            if stored.modified >= cutoff:
                result.young += 1
            elif (
                _ORIGINAL.match(stored.key)
                or _PUBLIC.match(stored.key)
                or stored.key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)
            ):
                candidates.append(stored.key)
            else:
                result.unknown += 1
    for start in range(0, len(candidates), _BATCH):
        batch = candidates[start : start + _BATCH]
        with sessions.begin() as s:
            if not _take_exclusively(s, lock_timeout_ms):
                result.busy = True
                return result
            named = _named_keys(s, batch)
            for key in batch:
                if key in named:
                    result.kept += 1
                else:
                    storage.delete(key)
                    result.removed.append(key)
    return result


def _take_exclusively(s: Session, timeout_ms: int) -> bool:
    """The write lock, exclusively, tried until `timeout_ms` has passed. Tried, never
    waited for: a waiting exclusive request would queue every new upload behind it, and
    an upload that waits for the lock while holding another could deadlock with it."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not s.scalar(select(func.pg_try_advisory_xact_lock(*MEDIA_WRITE_LOCK))):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _named_keys(s: Session, keys: list[str]) -> set[str]:
    """Which of `keys` a photo row names, looked up by the sha256 and id in the names
    (both indexed) rather than by the key columns (not indexed)."""
    shas = [m["sha"] for k in keys if (m := _ORIGINAL.match(k))]
    ids = [int(m["id"]) for k in keys if (m := _PUBLIC.match(k))]
    rows = s.execute(
        select(Photo.original_key, Photo.public_key, Photo.thumbnail_key).where(
            or_(Photo.sha256.in_(shas), Photo.id.in_(ids))
        )
    ).all()
    return {key for row in rows for key in row if key}


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
