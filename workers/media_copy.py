"""Copying a report's photo link into our own storage, from the hosts an admin allowed.

A link (a report's media_url) whose host is in STREETLOOP_MEDIA_COPY_HOSTS is queued at
intake (`copy_state` pending). The job here fetches it once and, if the answer is a real
photo, stores it as one of the report's photos and processes it like an upload: the crew
then sees it as a photo (kept on the phone for the day) instead of a link that needs the
network. Whatever goes wrong is recorded on the link (`failed`, `copy_error` in our own
words) and logged; the link stays shown as a link, and it is not fetched again.

The guards, all decided before a connection is made unless said otherwise:
- the policy (`core.media_links.CopyPolicy`): the host is listed, https (plain http only
  for the hosts listed for it);
- the host is resolved once, by `resolve` (tests inject the answer), every address it
  gave must be public (unless STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL), and the socket is
  opened to a checked address only (`workers.outbound`), so DNS cannot send the second
  look-up elsewhere;
- no redirect is followed (a 3xx is a failure: its target is a host nobody checked);
- connect and each read time out after FETCH_TIMEOUT_S, the whole download after
  FETCH_DEADLINE_S (a host that sends a byte a second);
- the body is read in pieces and abandoned past the upload limit (never more is read,
  and a Content-Length above it is refused before any of the body);
- the bytes must be a photo `geo.photos.inspect_photo` accepts, as for an upload.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.media_links import CopyPolicy
from core.models import MediaLink, Photo
from core.photos import hold_media_write_lock
from core.settings import Settings
from core.storage import Storage
from core.webhook_targets import IPAddress, literal_address
from geo.media import process_photo
from geo.photos import InspectedPhoto, PhotoLimits, PhotoRejected, inspect_photo
from workers.outbound import Resolver, failure_words, pinned_connection, resolve_host

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0
FETCH_DEADLINE_S = 60.0
_CHUNK = 64 * 1024
_ACCEPT = "image/jpeg, image/png, image/webp, image/heic;q=0.9"


class CopyFailed(Exception):
    """Why a link was not copied; `reason` is a short phrase of our own (what admins
    read on the link), never what the other host said."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fetch_photo(url: str, policy: CopyPolicy, *, max_bytes: int, resolve: Resolver = resolve_host,
                timeout: float = FETCH_TIMEOUT_S, deadline_s: float = FETCH_DEADLINE_S,
                ca_file: Path | None = None) -> bytes:
    """The body of a GET of `url`, at most `max_bytes`, under the guards above."""
    refusal = policy.refusal(url)
    if refusal is not None:
        raise CopyFailed(refusal)
    parts = urlsplit(url)
    host = (parts.hostname or "").removesuffix(".")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve(host, port)]
        except (OSError, UnicodeError, ValueError):  # socket.gaierror is an OSError
            raise CopyFailed("host name not found") from None
        if not addresses:
            raise CopyFailed("host name not found")
    for address in addresses:
        # Every address, not only the one used: a name that points inside the network at
        # all is refused, whatever else it answers.
        refusal = policy.address_refusal(address)
        if refusal is not None:
            raise CopyFailed(f"refused: {refusal}")

    conn = pinned_connection(parts.scheme.lower(), host, port, addresses, timeout, ca_file)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        conn.request("GET", target, headers={"Accept": _ACCEPT, "User-Agent": "StreetLoop (copy of a report's photo)"})
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
            if time.monotonic() - started > deadline_s:
                raise CopyFailed("timeout")
        return bytes(body)
    except (OSError, http.client.HTTPException) as exc:
        raise CopyFailed(failure_words(exc)) from None
    finally:
        conn.close()


def copy_link(sessions: sessionmaker[Session], storage: Storage, settings: Settings, link_id: int, *,
              resolve: Resolver = resolve_host, timeout: float = FETCH_TIMEOUT_S,
              deadline_s: float = FETCH_DEADLINE_S, ca_file: Path | None = None) -> str | None:
    """Copy one pending link; the link's state afterwards (None: no such link).

    No transaction is open during the fetch: a slow host holds no row lock."""
    with sessions() as s:
        link = s.get(MediaLink, link_id)
        if link is None or link.copy_state != "pending":
            return None if link is None else link.copy_state
        url, request_id = link.url, link.service_request_id

    policy = CopyPolicy.from_settings(settings)
    data, info, failure = b"", None, None
    # A host taken off the list since intake: the link stays a link, unfetched.
    if policy.allows(url):
        try:
            data = fetch_photo(url, policy, max_bytes=settings.max_upload_bytes, resolve=resolve, timeout=timeout,
                               deadline_s=deadline_s, ca_file=ca_file)
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
            link.copy_state = "failed" if failure else "link"
            link.copy_error = failure
            if failure:
                log.warning("photo link %s of request %s (host %s) not copied: %s", link_id, request_id,
                            urlsplit(url).hostname, failure)
            return link.copy_state
        photo = _store(s, storage, request_id, info, data)
        link.photo_id, link.copy_state, link.copied_at = photo.id, "copied", datetime.now(UTC)
        photo_id, ready = photo.id, photo.state == "ready"
    log.info("photo link %s of request %s copied as photo %s", link_id, request_id, photo_id)
    if not ready:
        # Processed like an upload; should it fail, the pending-photo sweep queues it again.
        with sessions.begin() as s:
            process_photo(s, storage, photo_id)
    return "copied"


def _store(s: Session, storage: Storage, request_id: int, info: InspectedPhoto, data: bytes) -> Photo:
    """The report's photo with these bytes: the one it has already (the same picture
    uploaded, or linked twice), else a new one, stored like an upload."""
    same = s.scalar(select(Photo).where(Photo.service_request_id == request_id, Photo.kind == "report",
                                        Photo.sha256 == info.sha256).order_by(Photo.id).limit(1))
    if same is not None:
        return same
    original_key = f"private/photos/{info.sha256[:2]}/{info.sha256}.{info.extension}"
    hold_media_write_lock(s)  # until the commit: the orphan sweep must not take the file
    storage.put(original_key, data)
    photo = Photo(kind="report", service_request_id=request_id, sha256=info.sha256, content_type=info.content_type,
                  byte_size=info.byte_size, width=info.width, height=info.height, original_key=original_key)
    s.add(photo)
    s.flush()
    return photo
