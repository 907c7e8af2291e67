"""ServiceRequest lifecycle: received → acknowledged → scheduled → in_progress → fixed,
or closed with an explicit outcome; closed requests can only be reopened.

`fixed` needs evidence: a verified completion (or a supervisor's explicit decision,
passed as `verified_by`). Nothing else can make a request look done."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.errors import MissingEvidence
from core.lifecycle.base import StateMachine
from core.models import REQUEST_CLOSED_STATUSES

_OUTCOMES = frozenset({"duplicate", "not_found", "no_action_needed", "referred", "cancelled"})
_WORKING = frozenset({"acknowledged", "scheduled", "in_progress"})


class ServiceRequestLifecycle(StateMachine):
    entity = "service_request"
    state_attr = "detailed_status"
    transitions = {
        "received": _WORKING | _OUTCOMES,
        "acknowledged": frozenset({"scheduled", "in_progress"}) | _OUTCOMES,
        # A re-plan can unschedule a request; it goes back to acknowledged.
        "scheduled": frozenset({"acknowledged", "in_progress", "fixed"}) | _OUTCOMES,
        "in_progress": frozenset({"scheduled", "acknowledged", "fixed"}) | _OUTCOMES,
        "reopened": _WORKING | _OUTCOMES,
        **{closed: frozenset({"reopened"}) for closed in REQUEST_CLOSED_STATUSES},
    }

    @classmethod
    def check(cls, obj: Any, target: str, **context: Any) -> None:
        super().check(obj, target, **context)
        if target == "fixed" and context.get("verified_completion_id") is None and context.get("verified_by") is None:
            raise MissingEvidence(
                f"service request {obj.public_id} can only be closed as fixed with a verified completion",
                current=obj.detailed_status,
                target=target,
            )

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target in REQUEST_CLOSED_STATUSES:
            obj.closed_at = when
        elif target == "reopened":
            obj.closed_at = None
