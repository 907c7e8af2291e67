from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import IllegalTransition
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.models import RoutePlan, StatusEvent
from tests import factories as f


def test_plan_runs_publishes_and_is_superseded_with_audit(db: Session) -> None:
    plan = RoutePlan(plan_date=date(2026, 11, 26), version=1, time_limit_s=30)
    db.add(plan)
    db.flush()
    RoutePlanLifecycle.record_creation(db, plan, actor=f.SYSTEM)
    for target in ("running", "ready", "published", "superseded"):
        RoutePlanLifecycle.transition(db, plan, target, actor=f.SYSTEM)
    db.flush()
    assert plan.started_at and plan.finished_at and plan.published_at
    events = db.scalars(
        select(StatusEvent.to_status)
        .where(StatusEvent.entity == "route_plan", StatusEvent.entity_id == plan.id)
        .order_by(StatusEvent.id)
    ).all()
    assert events == ["queued", "running", "ready", "published", "superseded"]


@pytest.mark.parametrize(
    ("path", "illegal"),
    [([], "published"), (["running", "failed"], "running"), (["running"], "published")],
)
def test_illegal_plan_transitions(db: Session, path: list[str], illegal: str) -> None:
    plan = RoutePlan(plan_date=date(2026, 11, 26), version=1, time_limit_s=30)
    db.add(plan)
    db.flush()
    for target in path:
        RoutePlanLifecycle.transition(db, plan, target, actor=f.SYSTEM)
    with pytest.raises(IllegalTransition):
        RoutePlanLifecycle.transition(db, plan, illegal, actor=f.SYSTEM)
