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
from core.status import (
    JOINABLE,
    NOT_SET_BY_STAFF,
    ON_THE_WAY_NOTE,
    SETTLED,
    RequestStatus,
    WorkOrderStatus,
    note_for,
)

_R, _W = RequestStatus, WorkOrderStatus
# The status the requests take when their work order enters a state, and the public note
# they get (`core.status.WORDING`); other states leave the requests as they are.
_REQUEST_FOLLOWS: dict[str, tuple[RequestStatus, str]] = {
    _W.DISPATCHED: (_R.SCHEDULED, note_for(_R.SCHEDULED)),
    _W.EN_ROUTE: (_R.IN_PROGRESS, ON_THE_WAY_NOTE),
    _W.ON_SITE: (_R.IN_PROGRESS, note_for(_R.IN_PROGRESS)),
    _W.NEW: (_R.ACKNOWLEDGED, note_for(_R.ACKNOWLEDGED)),
    _W.CANCELLED: (_R.CANCELLED, note_for(_R.CANCELLED)),
}


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
    if wo.status in SETTLED:
        raise IllegalTransition(
            f"work order {wo.id} is {wo.status}: its requests are closed; a resident's new report reopens it",
            current=wo.status,
            target=target,
        )
    if target in NOT_SET_BY_STAFF:
        raise IllegalTransition(
            f"work orders reach {target!r} through a crew completion or a supervisor review, not directly",
            current=wo.status,
            target=target,
        )
    change_status(session, wo, target, actor=actor, note=note, **context)


def mark_must_do(
    session: Session, wo: WorkOrder, *, day: date, crew: Crew | None, actor: Actor, today: date
) -> None:
    """A dispatcher's "this is done on `day`" (optionally "by `crew`"): plans of that day
    include it, dropping lower-value work if they must, and say what they dropped."""
    # Work a dispatcher can still force into a day: not finished, not closed.
    if wo.status not in JOINABLE:
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
