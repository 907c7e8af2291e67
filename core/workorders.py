"""Work-order status changes that the resident's requests follow.

The request lifecycle mirrors the work (scheduled, in progress); closing as
`fixed` is not reachable from here: it needs a verified completion."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.errors import IllegalTransition
from core.lifecycle.base import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import WorkOrder

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
                session, req, request_target, actor=actor, note=public_note, public=True, at=context.get("at")
            )


def staff_change_status(session: Session, wo: WorkOrder, target: str, *, actor: Actor, note: str | None = None, **context: Any) -> None:
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
