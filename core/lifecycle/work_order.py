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
        "new": frozenset({"planned", "dispatched", "cancelled", "closed"}),
        "planned": frozenset({"new", "dispatched", "cancelled", "closed"}),
        "dispatched": frozenset(
            {"new", "planned", "en_route", "on_site", "unable", "cancelled", "closed"}
        ),
        "en_route": frozenset({"dispatched", "on_site", "unable", "new", "cancelled", "closed"}),
        "on_site": frozenset({"completed", "unable"}),
        "completed": frozenset({"verified", "rejected", "closed"}),
        "rejected": frozenset({"new"}),
        "unable": frozenset({"new", "closed", "cancelled"}),
        "verified": frozenset({"new"}),
        "closed": frozenset(),
        "cancelled": frozenset(),
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
        if target == "unable":
            reason = context.get("reason")
            if reason not in UNABLE_REASONS:
                raise ValidationFailed(
                    f"'unable' needs a reason, one of: {', '.join(sorted(UNABLE_REASONS))}",
                    field="reason",
                )
        if target == "dispatched" and obj.crew_id is None and context.get("crew_id") is None:
            raise ValidationFailed(
                "a work order is dispatched to a crew; none given", field="crew_id"
            )
        if target in {"planned", "dispatched"} and obj.location is None:
            raise ValidationFailed(
                f"work order {obj.id} has no location yet; pin its request before routing it",
                field="location",
            )

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target == "unable":
            obj.unable_reason = context["reason"]
        elif target == "dispatched" and context.get("crew_id") is not None:
            obj.crew_id = context["crew_id"]
        elif target == "new":
            # Back in the pool: no crew owns it until it is planned again.
            obj.crew_id = None
            if previous in ("rejected", "verified"):
                obj.reopen_count += 1
