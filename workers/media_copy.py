"""Copying a report's photo link into our own storage, from the hosts an admin allowed.

A link (a report's media_url) whose host is in STREETLOOP_MEDIA_COPY_HOSTS is queued at
intake (`copy_state` pending). The job here fetches it and, if the answer is a real
photo, stores it as one of the report's photos and processes it like an upload: the crew
then sees it as a photo (kept on the phone for the day) instead of a link that needs the
network. What the other host did wrong (no answer, a 404, not a photo...) is recorded on
the link (`failed`, `copy_error` in our own words) and logged; the link stays shown as a
link, and it is not fetched again.

Tried a few times at most, never forever: each try is claimed before its fetch (one more
of `copy_attempts`, `copy_claimed_at` now, committed). A job that finds the link claimed
recently leaves it to the one that claimed it (two jobs for one link, which the queueing
lock makes rare, fetch once). Our own failures (the storage, the database, a bug) leave
the link pending with the error's name; so does a worker killed mid-fetch, without one.
The pending-photo sweep queues such a link again once its claim is old, and the job that
finds MAX_ATTEMPTS tries spent gives up: `failed`, "gave up after N attempts".

The guards, all decided before a connection is made unless said otherwise:
- the policy (`core.media_links.CopyPolicy`): the host is listed, https (plain http only
  for the hosts listed for it), verified with the system's CAs and the city's
  (STREETLOOP_WEBHOOK_CA_FILE, the CA file for all outgoing https);
- the host is resolved once, by `resolve` (tests inject the answer), every address it
  gave must be public (STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL allows loopback and private
  ones, never link-local), and the socket is opened to a checked address only
  (`workers.outbound`), so DNS cannot send the second look-up elsewhere;
- no redirect is followed (a 3xx is a failure: its target is a host nobody checked);
- connect and each read time out after FETCH_TIMEOUT_S, and the whole exchange (headers
  included) ends after FETCH_DEADLINE_S (a host that sends a byte or a header line a second);
- the body is read in pieces and abandoned past the upload limit (never more is read,
  and a Content-Length above it is refused before any of the body);
- the bytes must be a photo `geo.photos.inspect_photo` accepts, as for an upload.
"""

from __future__ import annotations

import http.client
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.media_links import CopyPolicy
from core.models import MediaLink, Photo
from core.photos import process_photo, store_photo
from core.settings import Settings
from core.storage import Storage
from geo.photos import InspectedPhoto, PhotoLimits, PhotoRejected, inspect_photo
from workers.outbound import (
    Resolver,
    Unreachable,
    checked_addresses,
    failure_words,
    pinned_connection,
    resolve_host,
)

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0
FETCH_DEADLINE_S = 60.0
# Tries of one link before it is given up (a crash, a killed worker, our storage down).
MAX_ATTEMPTS = 3
# A claim younger than this is a fetch still under way (or one that just ended): another
# job for the link leaves it alone. Longer than a try can last (connect, FETCH_DEADLINE_S,
# storing), shorter than the sweep's 10 minutes, so the sweep's next pass after a killed
# worker finds the claim old and the link's job tries again.
CLAIM_FOR = timedelta(minutes=5)
_CHUNK = 64 * 1024
_ACCEPT = "image/jpeg, image/png, image/webp, image/heic;q=0.9"


class CopyFailed(Exception):
    """Why a link was not copied; `reason` is a short phrase of our own (what admins
    read on the link), never what the other host said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch_photo(
    url: str,
    policy: CopyPolicy,
    *,
    max_bytes: int,
    resolve: Resolver = resolve_host,
    timeout: float = FETCH_TIMEOUT_S,
    deadline_s: float = FETCH_DEADLINE_S,
    ca_file: Path | None = None,
) -> bytes:
    """The body of a GET of `url`, at most `max_bytes`, under the guards above."""
    refusal = policy.refusal(url)
    if refusal is not None:
        raise CopyFailed(refusal)
    parts = urlsplit(url)
    host = (parts.hostname or "").removesuffix(".")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses = checked_addresses(host, port, resolve, policy.address_refusal)
    except Unreachable as exc:
        raise CopyFailed(exc.reason) from None

    # From here on every wait, the headers' included, ends by the deadline.
    deadline = time.monotonic() + deadline_s
    conn = pinned_connection(
        parts.scheme.lower(), host, port, addresses, timeout, ca_file, deadline=deadline
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(
            "GET",
            target,
            headers={"Accept": _ACCEPT, "User-Agent": "StreetLoop (copy of a report's photo)"},
        )
        resp = conn.getresponse()
        if 300 <= resp.status < 400:
            raise CopyFailed("redirect not followed")
        if resp.status != 200:
            raise CopyFailed(f"HTTP {resp.status}")
        declared = resp.getheader("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise CopyFailed("too large")
        body = bytearray()
        while chunk := resp.read1(min(_CHUNK, max_bytes + 1 - len(body))):
            body += chunk
            if len(body) > max_bytes:
                raise CopyFailed("too large")
        return bytes(body)
    except (OSError, http.client.HTTPException) as exc:
        raise CopyFailed(failure_words(exc)) from None
    finally:
        conn.close()


@dataclass(frozen=True)
class _Claim:
    """A link this job may fetch: it counted the try and committed its claim."""

    url: str
    request_id: int
    attempt: int


def copy_link(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    link_id: int,
    *,
    resolve: Resolver = resolve_host,
    timeout: float = FETCH_TIMEOUT_S,
    deadline_s: float = FETCH_DEADLINE_S,
) -> str | None:
    """Copy one pending link; the link's state afterwards (None: no such link; pending: it
    is another job's now, or this try failed on our side and the sweep will queue it again).

    No transaction is open during the fetch: a slow host holds no row lock."""
    policy = CopyPolicy.from_settings(settings)
    claim = _claim(sessions, link_id, policy)
    if not isinstance(claim, _Claim):
        return claim
    try:
        return _copy(
            sessions,
            storage,
            settings,
            link_id,
            claim,
            policy,
            resolve=resolve,
            timeout=timeout,
            deadline_s=deadline_s,
        )
    except Exception as exc:
        # Our side failed (the storage, the database, a bug): not the link's fault, so it
        # is tried again, a few times at most. The error's text stays in the log only.
        log.exception(
            "photo link %s of request %s: copy attempt %d of %d failed on our side",
            link_id,
            claim.request_id,
            claim.attempt,
            MAX_ATTEMPTS,
        )
        return _record_crash(sessions, link_id, exc)


def _claim(
    sessions: sessionmaker[Session], link_id: int, policy: CopyPolicy
) -> _Claim | str | None:
    """This job's claim on the link, committed; else the link's state (None: no link)."""
    with sessions.begin() as s:
        row = s.execute(
            select(MediaLink, (MediaLink.copy_claimed_at > func.now() - CLAIM_FOR).label("busy"))
            .where(MediaLink.id == link_id)
            .with_for_update(of=MediaLink)
        ).one_or_none()
        if row is None:
            return None
        link, busy = row
        if link.copy_state != "pending" or busy:
            return link.copy_state
        if not policy.allows(link.url):
            # A host taken off the list since intake: the link stays a link, unfetched.
            link.copy_state = "link"
            return link.copy_state
        if link.copy_attempts >= MAX_ATTEMPTS:
            # Each try ended without a verdict (killed, or our own error): enough.
            _give_up(link)
            return link.copy_state
        link.copy_attempts += 1
        link.copy_claimed_at = func.now()
        return _Claim(url=link.url, request_id=link.service_request_id, attempt=link.copy_attempts)


def _give_up(link: MediaLink) -> None:
    link.copy_state, link.copy_error = "failed", f"gave up after {link.copy_attempts} attempts"
    log.warning(
        "photo link %s of request %s (host %s) not copied: %s",
        link.id,
        link.service_request_id,
        urlsplit(link.url).hostname,
        link.copy_error,
    )


def _copy(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    link_id: int,
    claim: _Claim,
    policy: CopyPolicy,
    *,
    resolve: Resolver,
    timeout: float,
    deadline_s: float,
) -> str | None:
    data, info, failure = b"", None, None
    try:
        data = fetch_photo(
            claim.url,
            policy,
            max_bytes=settings.max_upload_bytes,
            resolve=resolve,
            timeout=timeout,
            deadline_s=deadline_s,
            ca_file=settings.webhook_ca_file,
        )
        info = inspect_photo(data, PhotoLimits.from_settings(settings))
    except CopyFailed as exc:
        failure = exc.reason
    except PhotoRejected as exc:
        failure = "too large" if exc.too_large else "not an image of an accepted type"

    with sessions.begin() as s:
        link = s.get(MediaLink, link_id, with_for_update=True)
        if link is None or link.copy_state != "pending":
            return None if link is None else link.copy_state
        if info is None:
            link.copy_state, link.copy_error = "failed", failure
            log.warning(
                "photo link %s of request %s (host %s) not copied: %s",
                link_id,
                claim.request_id,
                urlsplit(claim.url).hostname,
                failure,
            )
            return link.copy_state
        photo = _store(s, storage, claim.request_id, info, data)
        link.photo_id, link.copy_state, link.copy_error, link.copied_at = (
            photo.id,
            "copied",
            None,
            datetime.now(UTC),
        )
        photo_id, ready = photo.id, photo.state == "ready"
    log.info("photo link %s of request %s copied as photo %s", link_id, claim.request_id, photo_id)
    if not ready:
        # Processed like an upload; should it fail, the pending-photo sweep queues it again.
        with sessions.begin() as s:
            process_photo(s, storage, photo_id)
    return "copied"


def _record_crash(sessions: sessionmaker[Session], link_id: int, exc: Exception) -> str | None:
    """The link after a try that failed on our side: pending with the error's name (what
    admins read), or given up when that was its last try."""
    with sessions.begin() as s:
        link = s.get(MediaLink, link_id, with_for_update=True)
        if link is None or link.copy_state != "pending":
            return None if link is None else link.copy_state
        if link.copy_attempts >= MAX_ATTEMPTS:
            _give_up(link)
        else:
            link.copy_error = f"internal error ({type(exc).__name__}; see the worker's log)"
        return link.copy_state


def _store(
    s: Session, storage: Storage, request_id: int, info: InspectedPhoto, data: bytes
) -> Photo:
    """The report's photo with these bytes: the one it has already (the same picture
    uploaded, or linked twice), else a new one, stored like an upload."""
    same = s.scalar(
        select(Photo)
        .where(
            Photo.service_request_id == request_id,
            Photo.kind == "report",
            Photo.sha256 == info.sha256,
        )
        .order_by(Photo.id)
        .limit(1)
    )
    if same is not None:
        return same
    return store_photo(s, storage, info, data, kind="report", request_id=request_id)
