"""WorkOrder lifecycle: new → planned → dispatched → en_route → on_site → completed → verified;
completed → rejected → new (a counted reopen); verified → new when a resident reports the
fix did not hold (counted too); closed by a supervisor with an explicit outcome; unable →
new or closed; cancelled from anywhere before completion."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core import crewfeed
from core.errors import ValidationFailed
from core.lifecycle.base import StateMachine
from core.models import StatusEvent
from core.status import WorkOrderStatus

_W = WorkOrderStatus

UNABLE_REASONS = frozenset(
    {
        "blocked_by_vehicle",
        "no_access",
        "needs_other_crew",
        "needs_equipment",
        "not_found",
        "unsafe",
        "weather",
        "other",
    }
)


class WorkOrderLifecycle(StateMachine):
    entity = "work_order"
    transitions = {
        _W.NEW: frozenset({_W.PLANNED, _W.DISPATCHED, _W.CANCELLED, _W.CLOSED}),
        _W.PLANNED: frozenset({_W.NEW, _W.DISPATCHED, _W.CANCELLED, _W.CLOSED}),
        _W.DISPATCHED: frozenset(
            {_W.NEW, _W.PLANNED, _W.EN_ROUTE, _W.ON_SITE, _W.UNABLE, _W.CANCELLED, _W.CLOSED}
        ),
        _W.EN_ROUTE: frozenset(
            {_W.DISPATCHED, _W.ON_SITE, _W.UNABLE, _W.NEW, _W.CANCELLED, _W.CLOSED}
        ),
        _W.ON_SITE: frozenset({_W.COMPLETED, _W.UNABLE}),
        _W.COMPLETED: frozenset({_W.VERIFIED, _W.REJECTED, _W.CLOSED}),
        _W.REJECTED: frozenset({_W.NEW}),
        _W.UNABLE: frozenset({_W.NEW, _W.CLOSED, _W.CANCELLED}),
        _W.VERIFIED: frozenset({_W.NEW}),
        _W.CLOSED: frozenset(),
        _W.CANCELLED: frozenset(),
    }

    @classmethod
    def transition(cls, session: Session, obj: Any, target: str, **kwargs: Any) -> StatusEvent:
        """Change the order's status and, in the same transaction, tell the crews it
        concerns through their change feed."""
        before_crew, before_status = obj.crew_id, obj.status
        event = super().transition(session, obj, target, **kwargs)
        crewfeed.work_order_changed(
            session, obj, event, before_crew=before_crew, before_status=before_status
        )
        return event

    @classmethod
    def annotate(cls, session: Session, obj: Any, **kwargs: Any) -> StatusEvent:
        event = super().annotate(session, obj, **kwargs)
        crewfeed.work_order_noted(session, obj, event)
        return event

    @classmethod
    def check(cls, obj: Any, target: str, **context: Any) -> None:
        super().check(obj, target, **context)
        if target == _W.UNABLE:
            reason = context.get("reason")
            if reason not in UNABLE_REASONS:
                raise ValidationFailed(
                    f"'unable' needs a reason, one of: {', '.join(sorted(UNABLE_REASONS))}",
                    field="reason",
                )
        if target == _W.DISPATCHED and obj.crew_id is None and context.get("crew_id") is None:
            raise ValidationFailed(
                "a work order is dispatched to a crew; none given", field="crew_id"
            )
        if target in (_W.PLANNED, _W.DISPATCHED) and obj.location is None:
            raise ValidationFailed(
                f"work order {obj.id} has no location yet; pin its request before routing it",
                field="location",
            )

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target == _W.UNABLE:
            obj.unable_reason = context["reason"]
        elif target == _W.DISPATCHED and context.get("crew_id") is not None:
            obj.crew_id = context["crew_id"]
        elif target == _W.NEW:
            # Back in the pool: no crew owns it until it is planned again.
            obj.crew_id = None
            if previous in (_W.REJECTED, _W.VERIFIED):
                obj.reopen_count += 1
