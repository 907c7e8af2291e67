"""The notification outbox: written in the transaction that changed a request, delivered later.

A reporter who left an e-mail address, and the client app that submitted the report
(if it registered a webhook), are told when the request is scheduled, closed (fixed or
another outcome) and reopened. The rows are written here, next to the status change;
`workers.delivery` sends them later, so a mail server being down never loses or blocks
a status change, and a rolled-back change never sends anything.

This module is the outbox's domain half, without any network I/O: which rows to write
(`enqueue`), which row a worker may send now (`claim`), what the message says (built at
send time from the current database state, so an after photo processed after the
closing is still included), and what a delivery attempt did to the row (`record_sent`,
`record_failure`: exponential backoff, then `failed`). The transports (SMTP, HTTP) and
the transaction choreography live in `workers.delivery`.

Row states: `pending` (due at `next_attempt_at`) → `sending` (leased to one worker until
`next_attempt_at`) → `sent`, or back to `pending` with a later `next_attempt_at`, or
`failed` after `MAX_ATTEMPTS` (or a permanent refusal). `attempts` counts attempts
started, so a message that crashes its worker every time still ends as `failed`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import public_requests
from core.db import after_commit, db_now
from core.models import (
    NOTIFICATION_CHANNELS,
    ApiKey,
    Notification,
    ServiceRequest,
    StatusEvent,
    Webhook,
)
from core.settings import Settings
from core.status import REQUEST_CLOSED_STATUSES, open311_status, words_for
from core.urls import absolute_url

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

log = logging.getLogger(__name__)

# Session.info key under which a session's owner (the web app) puts its job queue:
# anything with `defer(task_name, **kwargs)`. core cannot import `workers`; with no
# queue, the worker's periodic sweep still delivers within a minute.
JOB_QUEUE = "streetloop.job_queue"
DELIVERY_TASK = "deliver_notifications"
_DEFERRED_IN = "streetloop.notifications_deferred_in"

# Retry schedule: 1, 2, 4 … minutes, at most 4 hours apart; 10 attempts span about 8
# hours, long enough to ride out a mail server's bad night.
MAX_ATTEMPTS = 10
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=4)
# How long a claimed row belongs to its worker. Much longer than one send can take
# (the transports time out after tens of seconds), so a live worker never loses it.
LEASE = timedelta(minutes=5)
_ERROR_CHARS = 1000


def kind_of(to_status: str) -> str | None:
    """Which notification a request status change causes, if any."""
    if to_status == "scheduled":
        return "scheduled"
    if to_status == "fixed":
        return "fixed"
    if to_status in REQUEST_CLOSED_STATUSES:
        return "closed"
    if to_status == "reopened":
        return "reopened"
    return None


def _already_scheduled(session: Session, request_id: int) -> bool:
    """A re-plan can move a request out of `scheduled` and back; the resident is told
    once per opening (again after a reopen), not at every dispatcher's reshuffle."""
    last_reopen = (
        select(StatusEvent.id)
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == request_id,
            StatusEvent.to_status == "reopened",
        )
        .order_by(StatusEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        session.scalar(
            select(Notification.id)
            .where(
                Notification.service_request_id == request_id,
                Notification.kind == "scheduled",
                Notification.status_event_id > func.coalesce(last_reopen, 0),
            )
            .limit(1)
        )
        is not None
    )


def enqueue(
    session: Session, request: ServiceRequest, event: StatusEvent, *, kind: str | None = None
) -> list[Notification]:
    """Outbox rows for one status event of `request`, one per recipient; the caller commits.
    `kind` names a notification that is no status change (a promised time that slipped)."""
    kind = kind or kind_of(event.to_status)
    if kind is None:
        return []
    if kind == "scheduled" and _already_scheduled(session, request.id):
        return []
    if event.id is None:
        session.flush()
    payload = {"to_status": event.to_status, "at": event.at.isoformat(), "note": event.note}
    rows: list[Notification] = []
    contact = request.contact
    if contact is not None and contact.email:
        rows.append(
            Notification(
                status_event_id=event.id,
                service_request_id=request.id,
                kind=kind,
                channel="email",
                recipient=contact.email,
                payload=payload,
            )
        )
    if request.api_key_id is not None:
        # A revoked key's app is no longer a client of the city: it is told nothing more
        # about the reports it submitted, although its webhooks stay registered.
        hooks = session.scalars(
            select(Webhook)
            .join(ApiKey, ApiKey.id == Webhook.api_key_id)
            .where(Webhook.api_key_id == request.api_key_id, Webhook.active, ApiKey.active)
            .order_by(Webhook.id)
        )
        rows += [
            Notification(
                status_event_id=event.id,
                service_request_id=request.id,
                kind=kind,
                channel="webhook",
                recipient=hook.url,
                webhook_id=hook.id,
                payload=payload,
            )
            for hook in hooks
        ]
    session.add_all(rows)
    if rows:
        _defer_delivery(session)
    return rows


class JobQueue(Protocol):
    def defer(self, task_name: str, **kwargs: Any) -> int: ...


def _defer_delivery(session: Session) -> None:
    """Ask for a delivery job once this transaction commits (once per transaction: a
    work order closing twenty requests queues one job, not twenty)."""
    queue: JobQueue | None = session.info.get(JOB_QUEUE)
    if queue is None:
        return
    transaction = session.get_transaction()
    if session.info.get(_DEFERRED_IN) is transaction:
        return
    session.info[_DEFERRED_IN] = transaction

    def defer() -> None:
        # The status change is already committed: a queue hiccup must not turn it into
        # an error for the user. The periodic sweep picks the rows up anyway.
        try:
            queue.defer(DELIVERY_TASK)
        except Exception:
            log.warning(
                "could not queue %s; the periodic sweep will deliver", DELIVERY_TASK, exc_info=True
            )

    after_commit(session, defer)


# -- claiming and recording attempts ------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A row leased to this worker until `lease_until`; the lease is the row's
    `next_attempt_at`, so recording an outcome can check the row is still ours."""

    notification_id: int
    channel: str
    attempt: int
    lease_until: datetime


def claim(
    session: Session,
    *,
    channels: Collection[str] = NOTIFICATION_CHANNELS,
    now: datetime | None = None,
    lease: timedelta = LEASE,
    max_attempts: int = MAX_ATTEMPTS,
) -> Claim | None:
    """Lease the next due row, or None. The caller commits at once, before sending.

    A `sending` row whose lease has run out belonged to a worker that died (or hung):
    it is due again. `SKIP LOCKED` lets concurrent workers take different rows instead
    of queueing behind each other's locks."""
    if not channels:
        return None
    now = now or db_now(session)
    while True:
        row = session.scalars(
            select(Notification)
            .where(
                Notification.state.in_(("pending", "sending")),
                Notification.next_attempt_at <= now,
                Notification.channel.in_(tuple(channels)),
            )
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            # The row as locked now, not as this session may remember it.
            .execution_options(populate_existing=True)
        ).first()
        if row is None:
            return None
        if row.state == "sending" and row.attempts >= max_attempts:
            # Its worker died during the last allowed attempt (a message that kills the
            # worker every time must not be retried for ever).
            row.state = "failed"
            row.last_error = f"the worker stopped during attempt {row.attempts}" + (
                f"; before that: {row.last_error}" if row.last_error else ""
            )
            row.last_error = row.last_error[:_ERROR_CHARS]
            session.flush()
            continue
        break
    row.state = "sending"
    row.attempts += 1
    row.next_attempt_at = now + lease
    session.flush()
    return Claim(row.id, row.channel, row.attempts, row.next_attempt_at)


def due_count(session: Session, channel: str, now: datetime | None = None) -> int:
    return session.execute(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.state.in_(("pending", "sending")),
            Notification.channel == channel,
            Notification.next_attempt_at <= (now or func.now()),
        )
    ).scalar_one()


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 1 min, 2, 4, … capped."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


def _update_ours(session: Session, claimed: Claim, values: dict[str, Any]) -> bool:
    """Write `values` into the claimed row if it is still ours; whether it was."""
    # An UPDATE's result is a CursorResult, which has the rowcount; Session.execute is
    # typed for every statement, so it says Result.
    result = cast(
        "CursorResult[Any]",
        session.execute(update(Notification).where(_ours(claimed)).values(**values)),
    )
    return result.rowcount == 1


def _ours(claimed: Claim) -> Any:
    return (
        (Notification.id == claimed.notification_id)
        & (Notification.state == "sending")
        & (Notification.next_attempt_at == claimed.lease_until)
    )


def record_sent(session: Session, claimed: Claim, *, now: datetime | None = None) -> bool:
    """Mark the row sent. False if the lease was lost meanwhile (another worker may have
    sent it too: the receiver sees the same Message-ID / delivery id twice)."""
    return _update_ours(session, claimed, {"state": "sent", "sent_at": now or func.now()})


def record_failure(
    session: Session,
    claimed: Claim,
    error: str,
    *,
    permanent: bool = False,
    now: datetime | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> str | None:
    """Schedule the next attempt with backoff, or give up (`failed`) after `max_attempts`
    or a permanent refusal. Returns the row's new state, None if the lease was lost.
    `last_error` is kept after a later success too: it tells why a message was late."""
    now = now or db_now(session)
    give_up = permanent or claimed.attempt >= max_attempts
    values: dict[str, Any] = {"last_error": error[:_ERROR_CHARS]}
    if give_up:
        values |= {"state": "failed", "next_attempt_at": now}
    else:
        values |= {"state": "pending", "next_attempt_at": now + backoff(claimed.attempt)}
    if not _update_ours(session, claimed, values):
        return None
    return values["state"]


# -- what the message says ---------------------------------------------------------------


class Undeliverable(Exception):
    """The row can never be delivered as it stands (its webhook was removed or switched
    off, or its app's key was revoked)."""


# The subject's end for each kind of notification; the status itself is in the residents'
# words of the status page (`core.status.WORDING`).
_HEADLINES = {
    "scheduled": "is scheduled",
    "fixed": "has been fixed",
    "closed": "has been closed",
    "reopened": "has been reopened",
    "delayed": "will be later than we said",
}


@dataclass(frozen=True)
class Update:
    """One status event of a request as the reporter or the client app is told it."""

    kind: str
    public_id: str
    service_name: str
    detailed_status: str
    status: str  # Open311's open/closed
    at: datetime
    status_notes: str | None
    # Absolute links; None when no public base URL is configured (a relative link in an
    # e-mail leads nowhere).
    media_url: str | None
    after_photo_url: str | None
    status_page: str | None


def update_for(session: Session, notification: Notification, settings: Settings) -> Update:
    """The event as it reads now. The status and time are the event's own (a request
    fixed and then reopened before the mail went out gets two true messages, in order);
    notes and photo come from the request, as the public reads it (`core.public_requests`),
    while it is still in that status."""
    event = session.get(StatusEvent, notification.status_event_id)
    request = public_requests.by_id(session, notification.service_request_id)
    if event is None or request is None:
        raise Undeliverable(f"notification {notification.id}: its request or event is gone")
    base = settings.public_base_url
    current = request.detailed_status == event.to_status
    notes = event.note if event.public and event.note else None
    if notes is None and current:
        notes = request.status_notes
    after = None
    if event.to_status == "fixed" and current and request.completion_id is not None:
        # The first of the crew's after photos, once processed.
        photos = public_requests.after_photos(session, {request.completion_id})
        taken = photos[request.completion_id]
        after = absolute_url(taken[0].url, base) if taken else None
    media = after or (absolute_url(request.media_url, base) if current else None)
    return Update(
        kind=notification.kind,
        public_id=request.public_id,
        service_name=request.service_name,
        detailed_status=event.to_status,
        status=open311_status(event.to_status),
        at=event.at,
        status_notes=notes,
        media_url=media,
        after_photo_url=after,
        status_page=f"{base}/status/{request.public_id}" if base else None,
    )


def _local_time(at: datetime, settings: Settings) -> str:
    local = at.astimezone(settings.tz)
    return f"{local.day} {local:%B %Y, %H:%M} ({local.tzname()})"


def message_id(notification: Notification, settings: Settings) -> str:
    """Stable across retries, so a receiver can spot the copy a crash made us resend."""
    domain = settings.mail_from.rpartition("@")[2].strip(" >") or "streetloop.invalid"
    return f"<notification.{notification.id}.{notification.status_event_id}@{domain}>"


def email_message(
    session: Session, notification: Notification, settings: Settings, *, now: datetime | None = None
) -> EmailMessage:
    """The plain-text e-mail for one outbox row, in the city's words."""
    update_ = update_for(session, notification, settings)
    request = session.get(ServiceRequest, notification.service_request_id)
    first_name = (
        request.contact.first_name if request is not None and request.contact is not None else None
    )
    subject = f"Your report {update_.public_id} ({update_.service_name}) {_HEADLINES[update_.kind]}"
    lines = [f"Hello {first_name}," if first_name else "Hello,", "", f"{subject}.", ""]
    lines.append(f"Status: {words_for(update_.detailed_status)}")
    lines.append(f"When: {_local_time(update_.at, settings)}")
    if update_.status_notes:
        lines.append(f"Notes from the city: {update_.status_notes}")
    if update_.after_photo_url:
        lines.append(f"Photo of the finished work: {update_.after_photo_url}")
    if update_.status_page:
        lines.append(f"Follow your report: {update_.status_page}")
    lines += [
        "",
        f"Please quote your confirmation number {update_.public_id} if you contact us at {settings.contact_email}.",
        "You receive this message because you left this e-mail address with your report.",
    ]
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.mail_from
    msg["To"] = notification.recipient
    msg["Date"] = format_datetime(now or db_now(session))
    msg["Message-ID"] = message_id(notification, settings)
    # RFC 3834: out-of-office robots must not answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join(lines) + "\n")
    return msg


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def signature(secret: str, body: bytes) -> str:
    """`X-StreetLoop-Signature`: the client app recomputes it with its secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_request(
    session: Session, notification: Notification, settings: Settings
) -> WebhookRequest:
    """The signed POST for one outbox row; Undeliverable if its webhook is gone or off."""
    hook = (
        session.get(Webhook, notification.webhook_id)
        if notification.webhook_id is not None
        else None
    )
    if hook is None:
        raise Undeliverable("the webhook was deleted")
    if not hook.active:
        raise Undeliverable(f"webhook {hook.id} was deactivated")
    if not hook.api_key.active:
        # Queued before the key was revoked: given up rather than sent.
        raise Undeliverable(f"api key {hook.api_key_id} was revoked")
    update_ = update_for(session, notification, settings)
    body = json.dumps(
        {
            "event": update_.kind,
            "service_request_id": update_.public_id,
            "status": update_.status,
            "detailed_status": update_.detailed_status,
            "updated_datetime": update_.at.isoformat(),
            "status_notes": update_.status_notes,
            "media_url": update_.media_url,
            "status_page": update_.status_page,
        },
        separators=(",", ":"),
    ).encode()
    return WebhookRequest(
        url=hook.url,
        body=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "StreetLoop-Webhook/1",
            "X-StreetLoop-Event": update_.kind,
            # Stable across retries: the receiver ignores a delivery id it has seen.
            "X-StreetLoop-Delivery": str(notification.id),
            "X-StreetLoop-Signature": signature(hook.secret, body),
        },
    )
