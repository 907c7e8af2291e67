"""The notification outbox: written in the transaction that changed a request.

A reporter who left an e-mail address, and the client app that submitted the report
(if it registered a webhook), are told when the request is scheduled, closed (fixed or
another outcome) and reopened. The rows are written here, next to the status change;
`workers` deliver them later, so a mail server being down never loses or blocks a
status change, and a rolled-back change never sends anything."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import REQUEST_CLOSED_STATUSES, Notification, ServiceRequest, StatusEvent, Webhook


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
        .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == request_id,
               StatusEvent.to_status == "reopened")
        .order_by(StatusEvent.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return session.scalar(
        select(Notification.id)
        .where(Notification.service_request_id == request_id, Notification.kind == "scheduled",
               Notification.status_event_id > func.coalesce(last_reopen, 0))
        .limit(1)
    ) is not None


def enqueue(session: Session, request: ServiceRequest, event: StatusEvent) -> list[Notification]:
    """Outbox rows for one status event of `request`, one per recipient; the caller commits."""
    kind = kind_of(event.to_status)
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
        rows.append(Notification(status_event_id=event.id, service_request_id=request.id, kind=kind,
                                 channel="email", recipient=contact.email, payload=payload))
    if request.api_key_id is not None:
        hooks = session.scalars(
            select(Webhook).where(Webhook.api_key_id == request.api_key_id, Webhook.active).order_by(Webhook.id)
        )
        rows += [
            Notification(status_event_id=event.id, service_request_id=request.id, kind=kind, channel="webhook",
                         recipient=hook.url, webhook_id=hook.id, payload=payload)
            for hook in hooks
        ]
    session.add_all(rows)
    return rows
