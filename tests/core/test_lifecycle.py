"""State machines: legal moves write their audit event; illegal ones raise and write nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import IllegalTransition, MissingEvidence, ValidationFailed
from core.lifecycle import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import StatusEvent
from core.spatial import point
from core.workorders import change_status, staff_change_status
from tests import factories as f

ACTOR = Actor(label="user:dispatcher@test", user_id=None)


def _events(db: Session, entity: str, entity_id: int) -> list[StatusEvent]:
    return list(
        db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.id)
        )
    )


def test_work_order_happy_path_writes_one_event_per_step(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db)
    wo = f.report(db).work_order
    steps = ["planned", "dispatched", "en_route", "on_site", "completed", "verified"]
    for target in steps:
        WorkOrderLifecycle.transition(
            db, wo, target, actor=ACTOR, crew_id=crew.id, location=point(f.LON, f.LAT)
        )
    db.flush()
    events = _events(db, "work_order", wo.id)
    assert [(e.from_status, e.to_status) for e in events] == [(None, "new")] + list(
        zip(["new", *steps[:-1]], steps, strict=True)
    )
    assert all(e.actor == ACTOR.label for e in events[1:])
    assert events[-1].location is not None
    assert wo.status == "verified" and wo.crew_id == crew.id


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "completed"),
        ([], "verified"),
        (["planned", "dispatched"], "completed"),
        (["planned", "dispatched", "on_site", "completed", "verified"], "planned"),
        (["cancelled"], "planned"),
    ],
)
def test_illegal_work_order_transition_raises_and_writes_nothing(
    db: Session, path: list[str], illegal: str
) -> None:
    f.service_type(db)
    crew = f.crew(db)
    wo = f.report(db).work_order
    for target in path:
        WorkOrderLifecycle.transition(db, wo, target, actor=ACTOR, crew_id=crew.id)
    db.flush()
    before = db.scalar(select(func.count()).select_from(StatusEvent))
    status = wo.status
    with pytest.raises(IllegalTransition) as err:
        WorkOrderLifecycle.transition(db, wo, illegal, actor=ACTOR)
    db.flush()
    assert wo.status == status
    assert db.scalar(select(func.count()).select_from(StatusEvent)) == before
    assert err.value.details["current"] == status


def test_unable_needs_a_reason_code(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db)
    wo = f.report(db).work_order
    WorkOrderLifecycle.transition(db, wo, "dispatched", actor=ACTOR, crew_id=crew.id)
    with pytest.raises(ValidationFailed):
        WorkOrderLifecycle.transition(db, wo, "unable", actor=ACTOR)
    with pytest.raises(ValidationFailed):
        WorkOrderLifecycle.transition(db, wo, "unable", actor=ACTOR, reason="too lazy")
    WorkOrderLifecycle.transition(db, wo, "unable", actor=ACTOR, reason="blocked_by_vehicle")
    assert (wo.status, wo.unable_reason) == ("unable", "blocked_by_vehicle")


def test_rejected_back_to_new_counts_a_reopen_and_frees_the_crew(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db)
    wo = f.report(db).work_order
    for target in ["dispatched", "on_site", "completed", "rejected", "new"]:
        WorkOrderLifecycle.transition(db, wo, target, actor=ACTOR, crew_id=crew.id)
    assert wo.reopen_count == 1
    assert wo.crew_id is None


def test_dispatch_needs_a_crew_and_a_location(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db)
    wo = f.report(db).work_order
    with pytest.raises(ValidationFailed, match="crew"):
        WorkOrderLifecycle.transition(db, wo, "dispatched", actor=ACTOR)
    unplaced = f.report(db, lon=None, lat=None, address_string="somewhere unknown").work_order
    with pytest.raises(ValidationFailed, match="no location"):
        WorkOrderLifecycle.transition(db, unplaced, "dispatched", actor=ACTOR, crew_id=crew.id)


def test_request_cannot_close_as_fixed_without_verified_evidence(db: Session) -> None:
    f.service_type(db)
    req = f.report(db).request
    ServiceRequestLifecycle.transition(db, req, "scheduled", actor=ACTOR)
    db.flush()
    before = db.scalar(select(func.count()).select_from(StatusEvent))
    with pytest.raises(MissingEvidence):
        ServiceRequestLifecycle.transition(db, req, "fixed", actor=ACTOR)
    db.flush()
    assert req.detailed_status == "scheduled" and req.closed_at is None
    assert db.scalar(select(func.count()).select_from(StatusEvent)) == before
    crew = f.crew(db)
    proof = f.completion(
        db, req.work_order, crew, f.user(db, "c@test", "crew", crew=crew), verdict="auto_verified"
    )
    ServiceRequestLifecycle.transition(
        db, req, "fixed", actor=ACTOR, verified_completion_id=proof.id
    )
    db.flush()
    assert req.status == "closed" and req.closed_at is not None and req.completion_id == proof.id


def test_database_refuses_a_fixed_request_without_its_completion(db: Session) -> None:
    """Closed Means Closed holds for any writer, not only for this application's code."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    f.service_type(db)
    req = f.report(db).request
    with (
        pytest.raises(IntegrityError, match="ck_service_requests_fixed_has_completion"),
        db.begin_nested(),
    ):
        db.execute(
            text(
                "UPDATE service_requests SET detailed_status = 'fixed', closed_at = now() WHERE id = :id"
            ),
            {"id": req.id},
        )


def test_closed_request_only_reopens(db: Session) -> None:
    f.service_type(db)
    req = f.report(db).request
    ServiceRequestLifecycle.transition(db, req, "not_found", actor=ACTOR, note="nothing there")
    assert req.status == "closed"
    with pytest.raises(IllegalTransition):
        ServiceRequestLifecycle.transition(db, req, "in_progress", actor=ACTOR)
    ServiceRequestLifecycle.transition(db, req, "reopened", actor=ACTOR)
    assert req.status == "open" and req.closed_at is None


def test_requests_follow_their_work_order(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db)
    first = f.report(db)
    dup = f.report(db, lon=f.LON + 0.0001)
    assert dup.work_order is first.work_order
    change_status(db, first.work_order, "dispatched", actor=ACTOR, crew_id=crew.id)
    assert {r.detailed_status for r in (first.request, dup.request)} == {"scheduled"}
    change_status(db, first.work_order, "en_route", actor=ACTOR)
    assert {r.detailed_status for r in (first.request, dup.request)} == {"in_progress"}
    db.flush()
    public = [e for e in _events(db, "service_request", dup.request.id) if e.public]
    assert [e.to_status for e in public] == ["received", "scheduled", "in_progress"]


def test_staff_cannot_complete_or_verify_directly(db: Session) -> None:
    f.service_type(db)
    wo = f.report(db).work_order
    for target in ["completed", "verified", "rejected", "closed"]:
        with pytest.raises(IllegalTransition):
            staff_change_status(db, wo, target, actor=ACTOR)
    assert wo.status == "new"
