"""Supervisors redact a request's public text: a description or a note that names a person.

Open311, the status page, the crews' feed and the notifications all read the public
columns, so the redacted text replaces the original there (every reader shows the
redaction, none needs to know about it). A redacted note that is a resident's comment
is published without the comment's photo link too (see `_record`). The original is kept
in `redactions`, which only supervisors and admins can read, until the request's contact
details are purged (`core.retention`). Each redaction is audited on the request's timeline (who and why, not
public, in the same transaction); the audit note never repeats the original."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Text, cast, func, literal_column, select, update
from sqlalchemy.orm import Session

from core import crewfeed
from core.errors import Conflict, NotFound, ValidationFailed
from core.lifecycle import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import (
    REDACTABLE_FIELDS,
    Notification,
    Redaction,
    RequestComment,
    ServiceRequest,
    StatusEvent,
    WorkOrder,
)

REDACTED = "[redacted]"
# The description's own limit (the column's check); notes are shorter in practice.
MAX_TEXT = 4000
MAX_REASON = 1000
_LABELS = {
    "description": "the description",
    "status_notes": "the status notes",
    "note": "the note of event {id}",
}


def redact(
    session: Session,
    request: ServiceRequest,
    *,
    field: str,
    reason: str,
    actor: Actor,
    event_id: int | None = None,
    replacement: str | None = None,
    now: datetime | None = None,
) -> list[Redaction]:
    """Replace `field` of `request` (or the note of its public event `event_id`) with
    `replacement` (default "[redacted]"), keeping the original; the caller commits.

    Status notes are also written into the public timeline by the change that set them
    (a closing's note), and a closing writes them into every request on the work order,
    duplicates included: redacting them (or the timeline note that is the status notes)
    redacts the same text in the status notes and public timeline of every request on
    the order, one redaction each and one audit event per request, or the name would
    still show there. The rows are locked first, as a closing locks them (the work order,
    then its requests in id order), so a closing in progress is waited for and what it
    wrote is what gets redacted."""
    now = now or datetime.now(UTC)
    if field not in REDACTABLE_FIELDS:
        raise ValidationFailed(
            f"field must be one of {', '.join(REDACTABLE_FIELDS)}", field="field"
        )
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise ValidationFailed(f"say why, in 1 to {MAX_REASON} characters", field="reason")
    new = REDACTED if replacement is None else replacement.strip()
    if not new or len(new) > MAX_TEXT:
        raise ValidationFailed(
            f"the text to show instead must be 1 to {MAX_TEXT} characters", field="text"
        )
    if (field == "note") != (event_id is not None):
        raise ValidationFailed(
            "event_id names the public event whose note is redacted, and only for field 'note'",
            field="event_id",
        )

    request, siblings = _lock(session, request)
    event = None
    if field == "note":
        event = session.scalar(
            select(StatusEvent).where(
                StatusEvent.id == event_id,
                StatusEvent.entity == "service_request",
                StatusEvent.entity_id == request.id,
            )
        )
        if event is None:
            raise NotFound(f"request {request.public_id} has no event {event_id}", field="event_id")
        if not event.public:
            raise ValidationFailed(
                f"event {event_id} is not public: only staff see its note", field="event_id"
            )
        original = event.note
    else:
        original = getattr(request, field)
    if not original:
        raise Conflict(
            f"{_LABELS[field].format(id=event_id)} of request {request.public_id} is empty: nothing to redact"
        )
    if original == new:
        raise ValidationFailed("the text to show instead is the text shown now", field="text")

    done: dict[int, list[Redaction]] = {request.id: []}
    if field == "description":
        done[request.id].append(
            _record(session, request, field, None, original, new, reason, actor, now)
        )
        request.description = new
        _tell_the_crew(session, request, now)
    else:
        if event is not None:
            done[request.id].append(
                _record(session, request, "note", event, original, new, reason, actor, now)
            )
        if field == "status_notes" or original == request.status_notes:
            # The closing's note: the same text on every request of the order.
            for req in [request, *siblings]:
                rows = _redact_notes(session, req, original, new, reason, actor, now, skip=event)
                if rows:
                    done.setdefault(req.id, []).extend(rows)
    by_id = {r.id: r for r in [request, *siblings]}
    for req_id, rows in done.items():
        req = by_id[req_id]
        # Open311 clients fetch what changed since their last poll: this did.
        req.updated_at = now
        labels = ", ".join(_LABELS[r.field].format(id=r.status_event_id) for r in rows)
        ServiceRequestLifecycle.annotate(
            session, req, actor=actor, at=now, note=f"redacted {labels}: {reason}"
        )
    session.flush()
    return [r for rows in done.values() for r in rows]


def _lock(session: Session, request: ServiceRequest) -> tuple[ServiceRequest, list[ServiceRequest]]:
    """Lock the request's work order and then every request on it in id order (what a
    closing locks and rewrites, in its order), reloaded as committed. Returns the request
    and the others on its order."""
    for _ in range(3):
        wo_id = request.work_order_id
        if wo_id is None:
            locked = session.scalars(
                select(ServiceRequest)
                .where(ServiceRequest.id == request.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
        else:
            session.execute(select(WorkOrder.id).where(WorkOrder.id == wo_id).with_for_update())
            locked = session.scalars(
                select(ServiceRequest)
                .where(ServiceRequest.work_order_id == wo_id)
                .order_by(ServiceRequest.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
        if request in locked and request.work_order_id == wo_id:
            return request, [r for r in locked if r is not request]
        # It moved to another work order before the lock was taken: lock that one.
        session.refresh(request)
    raise Conflict(f"request {request.public_id} is being moved between work orders; try again")


def _redact_notes(
    session: Session,
    req: ServiceRequest,
    original: str,
    new: str,
    reason: str,
    actor: Actor,
    now: datetime,
    *,
    skip: StatusEvent | None,
) -> list[Redaction]:
    """The status notes of `req` and the notes of its public events that hold `original`."""
    rows = []
    if req.status_notes == original:
        rows.append(_record(session, req, "status_notes", None, original, new, reason, actor, now))
        req.status_notes = new
    for same in session.scalars(
        select(StatusEvent)
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == req.id,
            StatusEvent.public,
            StatusEvent.note == original,
        )
        .order_by(StatusEvent.id)
    ):
        if same is not skip:
            rows.append(_record(session, req, "note", same, original, new, reason, actor, now))
    return rows


def _tell_the_crew(session: Session, request: ServiceRequest, now: datetime) -> None:
    """The crew's route shows the descriptions of the requests on its work order: its
    phone hears the change through its feed (as a note on the order is heard)."""
    wo = (
        session.get(WorkOrder, request.work_order_id) if request.work_order_id is not None else None
    )
    if wo is not None and wo.crew_id is not None:
        crewfeed.record(
            session,
            crew_id=wo.crew_id,
            change="updated",
            work_order_id=wo.id,
            status=wo.status,
            event_status=wo.status,
            at=now,
        )


def _record(
    session: Session,
    request: ServiceRequest,
    field: str,
    event: StatusEvent | None,
    original: str,
    new: str,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Redaction:
    if event is not None:
        event.note = new
        # The outbox's copy of the note (what a webhook was or will be sent) follows it.
        session.execute(
            update(Notification)
            .where(Notification.status_event_id == event.id, Notification.payload.has_key("note"))
            .values(
                payload=func.jsonb_set(
                    Notification.payload,
                    literal_column("'{note}'::text[]"),
                    func.to_jsonb(cast(new, Text)),
                )
            )
            .execution_options(synchronize_session=False)
        )
        # A resident's comment (the note is its text) may carry a photo link, which
        # Open311's updates publish with it: the photo may show what the text named (a
        # face, a number plate), so the link is unpublished with the text. It is not kept
        # here: it points at the client's own public photo (FixMyStreet's), which stays
        # there for its moderators.
        session.execute(
            update(RequestComment)
            .where(RequestComment.status_event_id == event.id)
            .values(media_url=None)
        )
    row = Redaction(
        service_request_id=request.id,
        field=field,
        status_event_id=event.id if event else None,
        original=original,
        redacted=new,
        reason=reason,
        redacted_by_id=actor.user_id,
        at=now,
    )
    session.add(row)
    return row


def redactions_of(session: Session, request: ServiceRequest) -> list[Redaction]:
    return list(
        session.scalars(
            select(Redaction)
            .where(Redaction.service_request_id == request.id)
            .order_by(Redaction.id)
        )
    )
