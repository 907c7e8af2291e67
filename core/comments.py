"""Residents' comments that a client app pushes in: FixMyStreet's `POST servicerequestupdates`.

A comment is a public note on the request's timeline, written by the client app (its
`Actor.client`), so everything that reads the public timeline shows it: Open311's
updates, the status page, the crew's route, a supervisor's redactions. Who wrote it (name,
e-mail, phone) is kept apart, private like a reporter's details (`RequestComment`).

What the comment says of the problem is heard, not obeyed. Only "it is back"
(FixMyStreet's REOPEN, which it sends, with extended statuses and `mark_reopen`, when a
resident says the problem is not fixed) can reopen, under the rules of a new report at
the place (`core.closing.why_a_comment_cannot_reopen`): work fixed within the reopen
window comes back to the pool, anything else stays closed and the resident is told, in a
public note, to make a new report. Any other status changes nothing but adds the note:
FixMyStreet starts every comment at OPEN and, in plain mode, sends OPEN while its own
copy of the report is open, which it still is between our fix and its next reading of
our updates, so OPEN on a closed request is most often a "thank you". "Fixed" or
"closed" from a resident never closes anything: only a crew's verified work does
(Closed Means Closed).

A comment longer than a description may be is kept shortened, with an ellipsis that
shows it was: FixMyStreet retries a comment we refuse, without end, so a refusal would
never get it through, and the whole text stays on the resident's FixMyStreet page.

A client sends a comment again when it did not read our answer (a timeout, a crash):
the same client's same update id is answered with the id it got the first time and
changes nothing. Two copies arriving at once are serialised by an advisory lock on that
pair, and the unique constraint on it stands behind the lock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import crewfeed
from core.closing import reopen_by_comment, why_a_comment_cannot_reopen
from core.errors import Conflict, NotFound, ValidationFailed
from core.field import check_client_time
from core.intake import MAX_DESCRIPTION, MAX_SHORT_TEXT, Contact, validate_contact
from core.lifecycle.base import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.locks import AdvisoryLock
from core.media_links import clean_media_links
from core.models import RequestComment, ServiceRequest, WorkOrder
from core.status import REQUEST_CLOSED_STATUSES

# FixMyStreet's word for "the problem is back" (extended statuses with `mark_reopen`).
# Its plain OPEN is not: see the module.
REOPEN = "REOPEN"
MAX_STATUS = 32
ELLIPSIS = "…"
# FixMyStreet's "unknown" for a name it does not have.
_NO_NAME = "-"


@dataclass(frozen=True)
class NewComment:
    service_request_id: str  # the request's public id (the confirmation number)
    client_update_id: str | None
    text: str | None
    status: str | None = None
    client_time: datetime | None = None
    media_url: str | None = None
    commenter: Contact = field(default_factory=Contact)


@dataclass(frozen=True)
class CommentResult:
    comment: RequestComment
    created: bool  # False: a resend, answered as the first time and nothing changed
    reopened: bool

    @property
    def update_id(self) -> str:
        """The id the client is answered, and the update_id Open311's updates list it with."""
        return str(self.comment.status_event_id)


def _required(value: str | None, name: str, limit: int | None) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationFailed(f"{name} is required", field=name)
    if limit is not None and len(value) > limit:
        raise ValidationFailed(
            f"{name} is {len(value)} characters; the limit is {limit}", field=name
        )
    return value


def _shortened(text: str, limit: int) -> str:
    """`text` if it fits, else its start and an ellipsis, `limit` characters in all."""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def _commenter(contact: Contact) -> Contact:
    def name(value: str | None) -> str | None:
        return None if value is not None and value.strip() == _NO_NAME else value

    return validate_contact(
        Contact(
            email=contact.email,
            first_name=name(contact.first_name),
            last_name=name(contact.last_name),
            phone=contact.phone,
        )
    )


def add_comment(
    session: Session,
    new: NewComment,
    *,
    api_key_id: int,
    actor: Actor,
    reopen_within: timedelta,
    now: datetime | None = None,
) -> CommentResult:
    """Store a resident's comment (see the module); the caller commits. Raises
    ValidationFailed (nothing stored), NotFound (no such request) or Conflict (the update
    id was used for another request)."""
    now = now or datetime.now(UTC)
    update_id = _required(new.client_update_id, "update_id", MAX_SHORT_TEXT)
    text = _shortened(_required(new.text, "description", None), MAX_DESCRIPTION)
    status = (new.status or "").strip().upper() or None
    if status is not None and len(status) > MAX_STATUS:
        raise ValidationFailed(f"status is longer than {MAX_STATUS} characters", field="status")
    if new.client_time is not None:
        check_client_time("updated_datetime", new.client_time, now=now)
    # Published as it is in Open311's updates: the checks of a report's links.
    media_url = next(iter(clean_media_links([new.media_url], limit=1)), None)
    commenter = _commenter(new.commenter)

    session.execute(
        select(
            func.pg_advisory_xact_lock(
                AdvisoryLock.COMMENT, func.hashtext(f"{api_key_id}:{update_id}")
            )
        )
    )
    request = session.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == new.service_request_id.strip())
    )
    if request is None:
        raise NotFound(
            f"service_request_id {new.service_request_id!r} not found", field="service_request_id"
        )
    earlier = session.scalar(
        select(RequestComment).where(
            RequestComment.api_key_id == api_key_id, RequestComment.client_update_id == update_id
        )
    )
    if earlier is not None:
        if earlier.service_request_id != request.id:
            raise Conflict(
                f"update_id {update_id!r} was already sent for another service request",
                field="update_id",
            )
        return CommentResult(earlier, created=False, reopened=False)

    # What a closing or a redaction locks, in their order (the work order, then the
    # request): a reopen decided here sees the request as it is, not as it was.
    if request.work_order_id is not None:
        session.execute(
            select(WorkOrder.id).where(WorkOrder.id == request.work_order_id).with_for_update()
        )
    session.refresh(request, with_for_update=True)

    event = ServiceRequestLifecycle.annotate(
        session, request, actor=actor, at=now, note=text, public=True
    )
    session.flush()
    comment = RequestComment(
        service_request_id=request.id,
        status_event_id=event.id,
        api_key_id=api_key_id,
        client_update_id=update_id,
        client_status=status,
        client_time=new.client_time,
        media_url=media_url,
        email=commenter.email,
        first_name=commenter.first_name,
        last_name=commenter.last_name,
        phone=commenter.phone,
    )
    session.add(comment)

    reopened = False
    if status == REOPEN and request.detailed_status in REQUEST_CLOSED_STATUSES:
        refusal = why_a_comment_cannot_reopen(request, within=reopen_within, now=now)
        if refusal is None:
            reopen_by_comment(session, request, actor=actor, at=now, comment=f"update {event.id}")
            reopened = True
        else:
            # Said in public: the client (FixMyStreet) shows it to the resident, and takes
            # the status with it, so its report follows ours back to closed.
            ServiceRequestLifecycle.annotate(
                session, request, actor=actor, at=now, note=refusal, public=True
            )
    if not reopened:
        _tell_the_crew(session, request, now)
    session.flush()
    return CommentResult(comment, created=True, reopened=reopened)


def _tell_the_crew(session: Session, request: ServiceRequest, now: datetime) -> None:
    """The crew's route shows residents' comments on its stops: the phone hears of a new
    one through its feed, as of a note on the work order. (A reopen sends the work back to
    the pool, which the crew hears of by the work order's own change.)"""
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
