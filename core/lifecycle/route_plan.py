"""RoutePlan lifecycle: queued → running → ready → published → superseded; failed on error.

A published plan is what crews drive; publishing a newer version of the same day
and scope supersedes it, so exactly one version is live at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.lifecycle.base import StateMachine


class RoutePlanLifecycle(StateMachine):
    entity = "route_plan"
    transitions = {
        # running → queued: a worker died mid-solve and the job is retried.
        "queued": frozenset({"running", "failed"}),
        "running": frozenset({"ready", "failed", "queued"}),
        "ready": frozenset({"published", "superseded"}),
        "published": frozenset({"superseded"}),
        "failed": frozenset(),
        "superseded": frozenset(),
    }

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        if target == "running":
            obj.started_at = when
        elif target in {"ready", "failed"}:
            obj.finished_at = when
        elif target == "published":
            obj.published_at = when
