"""Work-order status changes that the resident's requests follow.

The request lifecycle mirrors the work (scheduled, in progress); closing as
`fixed` is not reachable from here: it needs a verified completion."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from core.errors import Conflict, IllegalTransition, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import Crew, WorkOrder

# What the resident sees when the work order enters a state (None: no change).
_REQUEST_FOLLOWS: dict[str, tuple[str, str] | None] = {
    "dispatched": ("scheduled", "Scheduled: a crew has been assigned."),
    "en_route": ("in_progress", "A crew is on the way."),
    "on_site": ("in_progress", "A crew is working on it."),
    "new": ("acknowledged", "Back in the queue to be scheduled again."),
    "cancelled": ("cancelled", "Cancelled by the city."),
}
# Reached only through their own flows (completion with proof, review).
STAFF_FORBIDDEN_TARGETS = frozenset({"completed", "verified", "rejected", "closed"})


def change_status(
    session: Session,
    wo: WorkOrder,
    target: str,
    *,
    actor: Actor,
    note: str | None = None,
    **context: Any,
) -> None:
    """Move a work order and bring its requests along, in the caller's transaction."""
    WorkOrderLifecycle.transition(session, wo, target, actor=actor, note=note, **context)
    follow = _REQUEST_FOLLOWS.get(target)
    if follow is None:
        return
    request_target, public_note = follow
    for req in wo.requests:
        if req.detailed_status == request_target:
            continue
        if ServiceRequestLifecycle.can(req.detailed_status, request_target):
            ServiceRequestLifecycle.transition(
                session,
                req,
                request_target,
                actor=actor,
                note=public_note,
                public=True,
                at=context.get("at"),
            )


def staff_change_status(
    session: Session,
    wo: WorkOrder,
    target: str,
    *,
    actor: Actor,
    note: str | None = None,
    **context: Any,
) -> None:
    if wo.status in ("verified", "closed"):
        raise IllegalTransition(
            f"work order {wo.id} is {wo.status}: its requests are closed; a resident's new report reopens it",
            current=wo.status,
            target=target,
        )
    if target in STAFF_FORBIDDEN_TARGETS:
        raise IllegalTransition(
            f"work orders reach {target!r} through a crew completion or a supervisor review, not directly",
            current=wo.status,
            target=target,
        )
    change_status(session, wo, target, actor=actor, note=note, **context)


# Work a dispatcher can still force into a day: not finished, not closed.
_MUST_DO_OPEN = frozenset(
    {"new", "planned", "dispatched", "en_route", "on_site", "unable", "rejected"}
)


def mark_must_do(
    session: Session, wo: WorkOrder, *, day: date, crew: Crew | None, actor: Actor, today: date
) -> None:
    """A dispatcher's "this is done on `day`" (optionally "by `crew`"): plans of that day
    include it, dropping lower-value work if they must, and say what they dropped."""
    if wo.status not in _MUST_DO_OPEN:
        raise Conflict(
            f"work order {wo.id} is {wo.status}; only open work can be made must-do",
            current=wo.status,
        )
    if day < today:
        raise ValidationFailed(f"{day} is over; choose today or a coming day", field="date")
    if crew is not None:
        if not crew.active:
            raise ValidationFailed(f"crew {crew.code} is not active", field="crew")
        if wo.skill not in crew.skills:
            raise ValidationFailed(
                f"crew {crew.code} lacks the skill {wo.skill!r} this work needs", field="crew"
            )
    wo.must_do_on, wo.must_do_crew_id = day, crew.id if crew else None
    by = f" by {crew.code}" if crew else ""
    WorkOrderLifecycle.annotate(session, wo, actor=actor, note=f"must be done on {day}{by}")


def clear_must_do(session: Session, wo: WorkOrder, *, actor: Actor) -> None:
    if wo.must_do_on is None:
        return
    wo.must_do_on, wo.must_do_crew_id = None, None
    WorkOrderLifecycle.annotate(session, wo, actor=actor, note="no longer must-do")
