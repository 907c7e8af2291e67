"""RoutePlan lifecycle: queued → running → ready → published → superseded; failed on error.

A published plan is what crews drive; publishing a newer version of the same day
and scope supersedes it, so exactly one version is live at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.lifecycle.base import StateMachine
from core.status import PlanStatus

_P = PlanStatus


class RoutePlanLifecycle(StateMachine):
    entity = "route_plan"
    transitions = {
        # running → queued: a worker died mid-solve and the job is retried.
        _P.QUEUED: frozenset({_P.RUNNING, _P.FAILED}),
        _P.RUNNING: frozenset({_P.READY, _P.FAILED, _P.QUEUED}),
        _P.READY: frozenset({_P.PUBLISHED, _P.SUPERSEDED}),
        _P.PUBLISHED: frozenset({_P.SUPERSEDED}),
        _P.FAILED: frozenset(),
        _P.SUPERSEDED: frozenset(),
    }

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target == _P.RUNNING:
            obj.started_at = when
        elif target in (_P.READY, _P.FAILED):
            obj.finished_at = when
        elif target == _P.PUBLISHED:
            obj.published_at = when
