"""The public read model of a service request: what a resident may see of it.

Open311 (GeoReport v2, in JSON and XML), the public status page and the notifications
to reporters and client apps read a request through this module, so all of them show
the same request: its status, dates, place, photos and public timeline, and never the
reporter, the token, staff notes or who was on the crew. A supervisor's redaction
replaces the public text in the very columns read here (`core.redaction`), so every
reader shows the redaction without knowing about it.

The reads are set-based: a page of 1,000 requests is one query, and its details (the
timelines, photos, photo links and the originals of duplicates) five more, never one
per request (`bench/open311_requests.py` times it). How a value is printed (time zone,
absolute URLs, wording, the protocols' field names) is each reader's business.

The models are NamedTuples rather than frozen dataclasses: just as immutable and typed,
but built from a row in one step instead of one `object.__setattr__` per field, which
measured 2 µs against 0.3 µs for a request's 22 fields: 2 ms more on a page of 1,000."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    any_,
    bindparam,
    case,
    func,
    null,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from core.models import (
    MediaLink,
    Photo,
    RequestComment,
    ServiceRequest,
    ServiceType,
    StatusEvent,
    WorkOrder,
)
from core.photos import public_url
from core.status import REQUEST_CLOSED_STATUSES, REQUEST_OPEN_STATUSES

# Looked up once per request of a page: a set, not the tuple.
_CLOSED = frozenset(REQUEST_CLOSED_STATUSES)


class PublicPhoto(NamedTuple):
    """A processed photo's public copies (never the original: its EXIF and GPS stay private)."""

    kind: str  # "report" (the resident's) or "after" (the crew's, of the finished work)
    url: str  # a path of ours, "/media/…": see core.urls.absolute_url
    thumbnail_url: str
    # Our copy of a photo link the report came with (the link is in PublicDetails.links).
    copy_of_link: bool


class PublicEvent(NamedTuple):
    """One event of a request's public timeline."""

    id: int  # Open311's update_id
    at: datetime
    from_status: str | None
    to_status: str
    note: str | None
    # A resident's comment (`core.comments`): a reader may say it is one, never by whom.
    resident_comment: bool

    @property
    def changes_status(self) -> bool:
        """An annotation keeps the status: it is news, not a change."""
        return self.from_status != self.to_status


class PublicDetails(NamedTuple):
    """What one request's page shows beyond its own row."""

    duplicate_of: str | None  # the confirmation number of the report this one joined
    timeline: tuple[PublicEvent, ...]  # oldest first
    photos: tuple[PublicPhoto, ...]  # the report's, in the order they came
    # The crew's after photos of the completion that closed the request; none once it is
    # reopened (a reopen clears completion_id: a fix that did not hold proves nothing).
    after_photos: tuple[PublicPhoto, ...]
    links: tuple[str, ...]  # the photo links the report came with, in the order sent


class PublicRequest(NamedTuple):
    """A request as a resident may see it. The fields up to `agency` are `_COLUMNS`, in
    its order: a row of `request_query()` is one of these without its details."""

    id: int  # our key, to join on; never shown (the confirmation number is public_id)
    public_id: str
    detailed_status: str
    status_notes: str | None
    service_notice: str | None
    description: str
    requested_at: datetime
    updated_at: datetime
    expected_at: datetime | None  # see expected_at_expr
    due_at: datetime | None  # the work order's SLA due time
    completion_id: int | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    # GeoReport v2's one media_url: a path of ours or a resident's link (core.urls).
    media_url: str | None
    duplicate_of_id: int | None
    lat: float | None
    lon: float | None
    service_code: str
    service_name: str
    agency: str
    # Loaded when asked for (`details=True`); None otherwise, never an empty stand-in.
    details: PublicDetails | None = None

    @property
    def closed(self) -> bool:
        return self.detailed_status in _CLOSED


def expected_at_expr() -> ColumnElement[datetime | None]:
    """When an open request should be done: the ETA of the published plan (kept current
    during the day, see `dispatch.promises`), else the work order's SLA due time. Never
    a time already past: late work with no visit planned expects nothing, and the status
    page says it is late. A closed request expects nothing. Needs the work order
    outer-joined to the request."""
    return case(
        (ServiceRequest.detailed_status.in_(REQUEST_CLOSED_STATUSES), null()),
        (ServiceRequest.expected_at >= func.now(), ServiceRequest.expected_at),
        (WorkOrder.due_at >= func.now(), WorkOrder.due_at),
        else_=null(),
    )


def late_since(
    detailed_status: str, expected_at: datetime | None, due_at: datetime | None
) -> datetime | None:
    """Open, past its due time and no visit planned: a reader says so (since `due_at`)
    rather than promise a time already past."""
    if (
        detailed_status not in REQUEST_CLOSED_STATUSES
        and expected_at is None
        and due_at is not None
        and due_at < datetime.now(UTC)
    ):
        return due_at
    return None


# -- requests ------------------------------------------------------------------------

_COLUMNS = (
    ServiceRequest.id,
    ServiceRequest.public_id,
    ServiceRequest.detailed_status,
    ServiceRequest.status_notes,
    ServiceRequest.service_notice,
    ServiceRequest.description,
    ServiceRequest.requested_at,
    ServiceRequest.updated_at,
    expected_at_expr().label("expected_at"),
    WorkOrder.due_at,
    ServiceRequest.completion_id,
    ServiceRequest.address,
    ServiceRequest.address_id,
    ServiceRequest.zipcode,
    ServiceRequest.media_url,
    ServiceRequest.duplicate_of_id,
    func.ST_Y(ServiceRequest.location).label("lat"),
    func.ST_X(ServiceRequest.location).label("lon"),
    ServiceType.code.label("service_code"),
    ServiceType.name.label("service_name"),
    ServiceType.agency.label("agency"),
)


def request_query() -> Select[*tuple[Any, ...]]:
    """Every request as `PublicRequest` rows, newest first (Open311's order); the readers
    below add their conditions."""
    return (
        select(*_COLUMNS)
        .join(ServiceType, ServiceType.id == ServiceRequest.service_type_id)
        .outerjoin(WorkOrder, WorkOrder.id == ServiceRequest.work_order_id)
        .order_by(ServiceRequest.requested_at.desc(), ServiceRequest.id.desc())
    )


@dataclass(frozen=True)
class RequestFilter:
    """Open311's GET requests filters, checked by the caller: the service codes (any of
    them; none: every service), requested between `start` and `end` (both inclusive),
    open or closed (None: both), and which page of `page_size`."""

    start: datetime
    end: datetime | None = None
    service_codes: tuple[str, ...] = ()
    status: Literal["open", "closed"] | None = None
    page: int = 1
    page_size: int = 1000

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.service_codes:
            found.append(ServiceType.code.in_(self.service_codes))
        found.append(ServiceRequest.requested_at >= self.start)
        if self.end is not None:
            found.append(ServiceRequest.requested_at <= self.end)
        if self.status == "open":
            found.append(ServiceRequest.detailed_status.in_(REQUEST_OPEN_STATUSES))
        elif self.status == "closed":
            found.append(ServiceRequest.detailed_status.in_(REQUEST_CLOSED_STATUSES))
        return found


def page_query(wanted: RequestFilter) -> Select[*tuple[Any, ...]]:
    """The statement of `page` (bench/open311_requests.py times it on its own)."""
    return (
        request_query()
        .where(and_(*wanted.conditions()))
        .limit(wanted.page_size)
        .offset((wanted.page - 1) * wanted.page_size)
    )


def page(session: Session, wanted: RequestFilter, *, details: bool = False) -> list[PublicRequest]:
    """One page of the requests `wanted` asks for, newest first."""
    return _read(session, page_query(wanted), details)


def by_public_ids(
    session: Session, public_ids: Collection[str], *, details: bool = False
) -> list[PublicRequest]:
    """The requests with these confirmation numbers (unknown ones are left out), newest first."""
    return _read(
        session, request_query().where(ServiceRequest.public_id.in_(list(public_ids))), details
    )


def by_public_id(
    session: Session, public_id: str, *, details: bool = False
) -> PublicRequest | None:
    found = _read(session, request_query().where(ServiceRequest.public_id == public_id), details)
    return found[0] if found else None


def by_id(session: Session, request_id: int, *, details: bool = False) -> PublicRequest | None:
    found = _read(session, request_query().where(ServiceRequest.id == request_id), details)
    return found[0] if found else None


def public_id_for_token(session: Session, token: str) -> str | None:
    """The confirmation number of the request a client was given `token` for (Open311's
    GET tokens: the client's handle on a request before it has a number)."""
    return session.scalar(select(ServiceRequest.public_id).where(ServiceRequest.token == token))


def _read(session: Session, query: Select[*tuple[Any, ...]], details: bool) -> list[PublicRequest]:
    rows = session.execute(query).all()
    if not details or not rows:
        return [PublicRequest(*row) for row in rows]
    extra = _details(session, rows)
    return [PublicRequest._make((*row, extra[row.id])) for row in rows]


def _ids(name: str, ids: Sequence[int]) -> Any:
    """`ids` as one array parameter: a page of 1,000 is one bind value and one cached
    statement, not 1,000 placeholders."""
    return any_(bindparam(name, ids, type_=ARRAY(BigInteger)))


def _details(session: Session, rows: Sequence[Any]) -> dict[int, PublicDetails]:
    """The details of every request in `rows`: five queries, whatever their number."""
    ids = [r.id for r in rows]
    timelines = _timelines(session, ids)
    links, copies = _links(session, ids)
    photos = _report_photos(session, ids, copies)
    after = after_photos(session, {r.completion_id for r in rows if r.completion_id is not None})
    originals = _public_ids(session, {r.duplicate_of_id for r in rows if r.duplicate_of_id})
    return {
        r.id: PublicDetails(
            duplicate_of=originals.get(r.duplicate_of_id) if r.duplicate_of_id else None,
            timeline=tuple(timelines[r.id]),
            photos=tuple(photos[r.id]),
            after_photos=tuple(after.get(r.completion_id, ())) if r.completion_id else (),
            links=tuple(links[r.id]),
        )
        for r in rows
    }


def _timelines(session: Session, ids: list[int]) -> dict[int, list[PublicEvent]]:
    """The public events of each request, oldest first, residents' comments marked."""
    found: dict[int, list[PublicEvent]] = {i: [] for i in ids}
    for ev in session.execute(
        select(
            StatusEvent.entity_id,
            StatusEvent.id,
            StatusEvent.at,
            StatusEvent.from_status,
            StatusEvent.to_status,
            StatusEvent.note,
            RequestComment.id.is_not(None).label("resident_comment"),
        )
        .outerjoin(RequestComment, RequestComment.status_event_id == StatusEvent.id)
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == _ids("ids", ids),
            StatusEvent.public.is_(True),
        )
        .order_by(StatusEvent.at, StatusEvent.id)
    ):
        found[ev.entity_id].append(PublicEvent(*ev[1:]))
    return found


def _links(session: Session, ids: list[int]) -> tuple[dict[int, list[str]], set[int]]:
    """The photo links of each request in the order sent, and the ids of the photos that
    are our copies of one of them."""
    found: dict[int, list[str]] = {i: [] for i in ids}
    copies: set[int] = set()
    for link in session.execute(
        select(MediaLink.service_request_id, MediaLink.url, MediaLink.photo_id)
        .where(MediaLink.service_request_id == _ids("lids", ids))
        .order_by(MediaLink.service_request_id, MediaLink.position)
    ):
        found[link.service_request_id].append(link.url)
        if link.photo_id is not None:
            copies.add(link.photo_id)
    return found, copies


def _report_photos(
    session: Session, ids: list[int], copies: set[int]
) -> dict[int, list[PublicPhoto]]:
    """The processed photos of each report, in the order they came."""
    found: dict[int, list[PublicPhoto]] = {i: [] for i in ids}
    for p in session.execute(
        select(Photo.id, Photo.service_request_id, Photo.public_key, Photo.thumbnail_key)
        .where(
            Photo.service_request_id == _ids("pids", ids),
            Photo.kind == "report",
            Photo.state == "ready",
            Photo.public_key.is_not(None),
        )
        .order_by(Photo.id)
    ):
        found[p.service_request_id].append(
            _photo("report", p.public_key, p.thumbnail_key, p.id in copies)
        )
    return found


def _public_ids(session: Session, ids: set[int]) -> dict[int, str]:
    """The confirmation numbers of these requests (the originals of duplicates)."""
    if not ids:
        return {}
    rows = session.execute(
        select(ServiceRequest.id, ServiceRequest.public_id).where(ServiceRequest.id.in_(ids))
    )
    return {row.id: row.public_id for row in rows}


def _photo(kind: str, public_key: str, thumbnail_key: str | None, copy: bool) -> PublicPhoto:
    # Processing writes a photo's two copies and marks it ready in one step (core.photos.process_photo);
    # the fallback only keeps a half-written row from naming "/media/None".
    thumbnail = thumbnail_key or public_key
    return PublicPhoto(kind, public_url(public_key), public_url(thumbnail), copy)


def after_photos(session: Session, completion_ids: Collection[int]) -> dict[int, list[PublicPhoto]]:
    """The public copies of the after photos of these completions, by completion, in the
    order taken. Only processed copies: the crew's originals (EXIF, GPS) and before
    photos stay private."""
    found: dict[int, list[PublicPhoto]] = {i: [] for i in completion_ids}
    if not completion_ids:
        return found
    for p in session.execute(
        select(Photo.completion_id, Photo.public_key, Photo.thumbnail_key)
        .where(
            Photo.completion_id == _ids("cids", sorted(completion_ids)),
            Photo.kind == "after",
            Photo.state == "ready",
            Photo.public_key.is_not(None),
        )
        .order_by(Photo.id)
    ):
        found[p.completion_id].append(_photo("after", p.public_key, p.thumbnail_key, False))
    return found


# -- the public timeline of every request, by time (Open311's servicerequestupdates) ----


class PublicUpdate(NamedTuple):
    """One public event of some request, as a client polling for changes reads it."""

    id: int  # Open311's update_id (a comment is listed under the one its client was given)
    at: datetime
    to_status: str
    note: str | None
    public_id: str
    # The after photo of the fix that closed the request, else a resident's comment's
    # photo link: a path of ours or a link (core.urls), or None.
    media_url: str | None


def updates_query(start: datetime, end: datetime) -> Select[*tuple[Any, ...]]:
    """Public request events with at in [start, end], oldest first, with what is needed to
    tell whether an event is the fix that closed its request, and a resident's comment's
    photo link."""
    return (
        select(
            StatusEvent.id,
            StatusEvent.at,
            StatusEvent.to_status,
            StatusEvent.note,
            ServiceRequest.public_id,
            ServiceRequest.detailed_status,
            ServiceRequest.closed_at,
            ServiceRequest.completion_id,
            RequestComment.media_url.label("comment_media_url"),
        )
        .join(ServiceRequest, ServiceRequest.id == StatusEvent.entity_id)
        # A resident's comment may carry a photo (a link on the client's site).
        .outerjoin(RequestComment, RequestComment.status_event_id == StatusEvent.id)
        # Spelled as the partial index ix_status_events_public_request_at is, so it is used.
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.public,
            StatusEvent.at >= start,
            StatusEvent.at <= end,
        )
        .order_by(StatusEvent.at, StatusEvent.id)
    )


def updates(session: Session, start: datetime, end: datetime) -> list[PublicUpdate]:
    """The public timeline of every request between `start` and `end` (both inclusive),
    oldest first."""
    rows = session.execute(updates_query(start, end)).all()

    def closed_this(r: Any) -> bool:
        # The fix that closed the request now: its transition wrote closed_at and the event's
        # time from one clock reading. A reopen clears completion_id, so a fix that did not
        # hold no longer shows its photo as proof. Like the request's own media_url, only a
        # fix carries the after photo.
        return (
            r.completion_id is not None
            and r.to_status == "fixed"
            and r.detailed_status == "fixed"
            and r.closed_at == r.at
        )

    after = after_photos(session, {r.completion_id for r in rows if closed_this(r)})
    found = []
    for r in rows:
        photos = after.get(r.completion_id, []) if closed_this(r) else []
        media = photos[0].url if photos else r.comment_media_url
        found.append(PublicUpdate(r.id, r.at, r.to_status, r.note, r.public_id, media))
    return found
