"""ServiceRequest lifecycle: received → acknowledged → scheduled → in_progress → fixed,
or closed with an explicit outcome; closed requests can only be reopened.

`fixed` needs evidence: a verified completion, passed as `verified_completion_id` and
kept on the request (the database refuses a `fixed` request without one). Other
closing outcomes come from a verified completion too, or from a supervisor's explicit
decision. Nothing else can make a request look done."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from core import notifications
from core.errors import MissingEvidence
from core.lifecycle.base import StateMachine
from core.models import StatusEvent
from core.status import (
    REQUEST_CLOSED_STATUSES,
    REQUEST_OTHER_OUTCOMES,
    REQUEST_WORKING,
    RequestStatus,
)

_R = RequestStatus
_OUTCOMES = frozenset(REQUEST_OTHER_OUTCOMES)
_WORKING = frozenset(REQUEST_WORKING)


def public_time(request: Any, at: datetime | None) -> datetime:
    """When a change shows on the request's public record: the later of when it happened
    and the request's last public change. A phone that was offline reports work done
    before the office's latest step (an `en_route` timed before the dispatch); the work
    order's audit keeps the device's time, but residents must not see "In progress"
    before "Scheduled", nor Open311's `updated_datetime` go back."""
    when = at or datetime.now(UTC)
    previous = request.updated_at
    return max(when, previous) if previous is not None else when


class ServiceRequestLifecycle(StateMachine):
    entity = "service_request"
    state_attr = "detailed_status"
    # `fixed` is reachable from every open state (a duplicate that joined after dispatch
    # is still `received`); what guards it is the evidence check below.
    transitions = {
        _R.RECEIVED: _WORKING | _OUTCOMES | {_R.FIXED},
        _R.ACKNOWLEDGED: frozenset({_R.SCHEDULED, _R.IN_PROGRESS, _R.FIXED}) | _OUTCOMES,
        # A re-plan can unschedule a request; it goes back to acknowledged.
        _R.SCHEDULED: frozenset({_R.ACKNOWLEDGED, _R.IN_PROGRESS, _R.FIXED}) | _OUTCOMES,
        _R.IN_PROGRESS: frozenset({_R.SCHEDULED, _R.ACKNOWLEDGED, _R.FIXED}) | _OUTCOMES,
        _R.REOPENED: _WORKING | _OUTCOMES | {_R.FIXED},
        **{closed: frozenset({_R.REOPENED}) for closed in REQUEST_CLOSED_STATUSES},
    }

    @classmethod
    def check(cls, obj: Any, target: str, **context: Any) -> None:
        super().check(obj, target, **context)
        if target == _R.FIXED and context.get("verified_completion_id") is None:
            raise MissingEvidence(
                f"service request {obj.public_id} can only be closed as fixed with a verified completion",
                current=obj.detailed_status,
                target=target,
            )

    @classmethod
    def transition(
        cls, session: Session, obj: Any, target: str, *, at: datetime | None = None, **kwargs: Any
    ) -> StatusEvent:
        """Change the request's status and, in the same transaction, put the reporter's
        notification (if any) in the outbox."""
        event = super().transition(session, obj, target, at=public_time(obj, at), **kwargs)
        notifications.enqueue(session, obj, event)
        return event

    @classmethod
    def annotate(
        cls,
        session: Session,
        obj: Any,
        *,
        at: datetime | None = None,
        public: bool = False,
        **kwargs: Any,
    ) -> StatusEvent:
        when = public_time(obj, at)
        event = super().annotate(session, obj, at=when, public=public, **kwargs)
        if public:
            obj.updated_at = when  # news on the public timeline is an update to the request
        return event

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target in REQUEST_CLOSED_STATUSES:
            obj.closed_at = when
            obj.completion_id = context.get("verified_completion_id")
        elif target in (_R.ACKNOWLEDGED, _R.REOPENED):
            # Off any crew's route: a plan's ETA no longer holds (the SLA due time does).
            obj.expected_at = None
            obj.promised_at = None
        if target == _R.REOPENED:
            obj.closed_at = None
            obj.completion_id = None
            obj.reopen_count = (obj.reopen_count or 0) + 1
