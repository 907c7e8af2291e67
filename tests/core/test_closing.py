"""Closing the loop (`core.closing`), called directly with a real database session: only
verified work closes a resident's request, a duplicate closes with its original, a
supervisor's outcome closes work no crew completed, and a resident's word reopens fixed
work. Each step writes its audit events and the reporters' outbox rows in the caller's
transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import closing
from core.errors import Conflict, IllegalTransition, ValidationFailed
from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import (
    Completion,
    Crew,
    Notification,
    Review,
    ServiceRequest,
    StatusEvent,
    WorkOrder,
)
from core.models import User as UserRow
from core.status import RequestStatus, Verdict, WorkOrderStatus, note_for
from core.workorders import change_status
from tests import factories as f

ACTOR = f.SYSTEM


class Site:
    """One problem reported twice (the second report joined the first's work order), with
    a crew that has been there and a supervisor."""

    def __init__(self, db: Session) -> None:
        f.service_type(db)
        self.crew: Crew = f.crew(db)
        self.crew_user: UserRow = f.user(db, "crew@example.org", "crew", crew=self.crew)
        self.supervisor: UserRow = f.user(db, "boss@example.org", "supervisor")
        first = f.report(db, contact=Contact(email="ana@example.org"))
        lon, lat = f.offset(f.LON, f.LAT, 10)
        second = f.report(db, lon=lon, lat=lat, contact=Contact(email="ben@example.org"))
        assert second.duplicate_of is not None and second.work_order.id == first.work_order.id
        self.wo: WorkOrder = first.work_order
        self.original: ServiceRequest = first.request
        self.duplicate: ServiceRequest = second.request

    @property
    def requests(self) -> list[ServiceRequest]:
        return [self.original, self.duplicate]

    def visit(self, db: Session) -> None:
        """Dispatched, on the way, there, done: what a crew's phone reports."""
        change_status(db, self.wo, WorkOrderStatus.DISPATCHED, actor=ACTOR, crew_id=self.crew.id)
        change_status(db, self.wo, WorkOrderStatus.EN_ROUTE, actor=ACTOR)
        change_status(db, self.wo, WorkOrderStatus.ON_SITE, actor=ACTOR)
        change_status(db, self.wo, WorkOrderStatus.COMPLETED, actor=ACTOR)

    def completion(self, db: Session, verdict: Verdict, outcome: str = "fixed") -> Completion:
        self.visit(db)
        c = f.completion(db, self.wo, self.crew, self.crew_user, verdict=verdict, outcome=outcome)
        db.refresh(c)  # its work_order relationship
        return c


def _events(db: Session, entity: str, entity_id: int) -> list[tuple[str | None, str]]:
    return [
        (e.from_status, e.to_status)
        for e in db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.id)
        )
    ]


def _outbox(db: Session, request: ServiceRequest) -> list[tuple[str, str]]:
    return [
        (n.kind, n.recipient)
        for n in db.scalars(
            select(Notification)
            .where(Notification.service_request_id == request.id, Notification.channel == "email")
            .order_by(Notification.id)
        )
    ]


# -- 1. verified proof closes the work and every open request on it ------------------------


def test_verified_proof_closes_the_work_order_and_the_duplicate_with_its_original(
    db: Session,
) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.AUTO_VERIFIED)

    closed = closing.close_verified(db, completion, actor=ACTOR)
    db.flush()

    assert site.wo.status == WorkOrderStatus.VERIFIED
    assert _events(db, "work_order", site.wo.id)[-1] == ("completed", "verified")
    assert closed == site.requests
    for req in site.requests:
        assert req.detailed_status == RequestStatus.FIXED and req.status == "closed"
        assert req.completion_id == completion.id and req.closed_at is not None
        assert req.status_notes == note_for(RequestStatus.FIXED)
        assert _events(db, "service_request", req.id)[-1] == ("in_progress", "fixed")
    # Each reporter is told, in the same transaction.
    assert _outbox(db, site.original)[-1] == ("fixed", "ana@example.org")
    assert _outbox(db, site.duplicate)[-1] == ("fixed", "ben@example.org")


def test_a_crews_other_outcome_closes_the_requests_with_it(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.AUTO_VERIFIED, outcome="not_found")

    closing.close_verified(db, completion, actor=ACTOR)

    for req in site.requests:
        assert req.detailed_status == RequestStatus.NOT_FOUND
        assert req.status_notes == note_for(RequestStatus.NOT_FOUND)
        assert _outbox(db, req)[-1][0] == "closed"


def test_doubtful_proof_closes_nothing(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)
    before = _events(db, "work_order", site.wo.id)

    with pytest.raises(Conflict, match="only verified proof closes work"):
        closing.close_verified(db, completion, actor=ACTOR)

    assert site.wo.status == WorkOrderStatus.COMPLETED
    assert _events(db, "work_order", site.wo.id) == before
    assert [r.detailed_status for r in site.requests] == ["in_progress", "in_progress"]


def test_a_request_closed_before_is_left_as_it_is(db: Session) -> None:
    """Only open requests close with the work: one already closed keeps its own outcome."""
    site = Site(db)
    completion = site.completion(db, Verdict.AUTO_VERIFIED)
    closing.close_verified(db, completion, actor=ACTOR)
    first_closed_at = site.original.closed_at
    assert first_closed_at is not None
    # A resident's report brings the work back; the duplicate is reopened with it.
    closing.reopen_fixed(db, site.original, actor=ACTOR, at=datetime.now(UTC), by_report="SR-later")
    # The duplicate's reporter withdrew it meanwhile.
    ServiceRequestLifecycle.transition(db, site.duplicate, RequestStatus.CANCELLED, actor=ACTOR)
    second = site.completion(db, Verdict.AUTO_VERIFIED)

    closed = closing.close_verified(db, second, actor=ACTOR)

    assert closed == [site.original]
    assert site.duplicate.detailed_status == RequestStatus.CANCELLED
    assert site.original.closed_at is not None and site.original.closed_at >= first_closed_at


# -- 2. a supervisor's review ----------------------------------------------------------


def test_a_supervisor_verifies_doubtful_proof_and_the_work_closes(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)

    closing.verify(
        db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR, note="looks fine"
    )

    assert completion.verdict == Verdict.VERIFIED and completion.decided_at is not None
    review = db.scalars(select(Review).where(Review.completion_id == completion.id)).one()
    assert (review.decision, review.note) == ("verify", "looks fine")
    assert _events(db, "completion", completion.id)[-1] == ("needs_review", "verified")
    assert site.wo.status == WorkOrderStatus.VERIFIED
    assert {r.detailed_status for r in site.requests} == {RequestStatus.FIXED}


def test_a_decided_completion_cannot_be_decided_again(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)
    closing.verify(db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR)

    with pytest.raises(Conflict, match="already decided: verified"):
        closing.reject(
            db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR, reason="no photo"
        )


def test_needing_another_crew_is_not_verified(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW, outcome="needs_other_crew")

    with pytest.raises(Conflict, match="another crew is needed"):
        closing.verify(db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR)
    assert completion.verdict == Verdict.NEEDS_REVIEW


def test_a_rejection_sends_the_work_back_to_the_pool_and_the_requests_stay_open(
    db: Session,
) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)

    wo = closing.reject(
        db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR, reason="wrong street"
    )

    assert wo is site.wo and wo.status == WorkOrderStatus.NEW and wo.crew_id is None
    assert wo.reopen_count == 1
    assert _events(db, "work_order", wo.id)[-2:] == [("completed", "rejected"), ("rejected", "new")]
    assert completion.verdict == Verdict.REJECTED
    for req in site.requests:
        assert req.status == "open" and req.detailed_status == RequestStatus.ACKNOWLEDGED
        assert req.completion_id is None


def test_a_rejection_needs_a_reason_and_writes_nothing_without_one(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)

    with pytest.raises(ValidationFailed, match="needs a reason"):
        closing.reject(db, completion.id, reviewer_id=site.supervisor.id, actor=ACTOR, reason="  ")
    assert completion.verdict == Verdict.NEEDS_REVIEW
    assert site.wo.status == WorkOrderStatus.COMPLETED


def test_a_supervisor_closes_a_visit_with_another_outcome(db: Session) -> None:
    site = Site(db)
    completion = site.completion(db, Verdict.NEEDS_REVIEW)

    closed = closing.close_with_outcome(
        db,
        completion.id,
        reviewer_id=site.supervisor.id,
        actor=ACTOR,
        outcome="referred",
        status_notes="The gas company owns this cover.",
    )

    assert closed == site.requests
    assert site.wo.status == WorkOrderStatus.CLOSED
    assert completion.verdict == Verdict.VERIFIED
    for req in site.requests:
        assert req.detailed_status == RequestStatus.REFERRED
        assert req.status_notes == "The gas company owns this cover."
        # The visit is kept as what closed it.
        assert req.completion_id == completion.id


# -- 3. closing without a completion ---------------------------------------------------------


def test_a_supervisor_closes_unvisited_work_as_a_duplicate_with_its_requests(
    db: Session,
) -> None:
    site = Site(db)

    closed = closing.close_work_order(db, site.wo, actor=ACTOR, outcome="duplicate", note="SR-1")

    assert closed == site.requests
    assert site.wo.status == WorkOrderStatus.CLOSED
    assert _events(db, "work_order", site.wo.id)[-1] == ("new", "closed")
    for req in site.requests:
        assert req.detailed_status == RequestStatus.DUPLICATE and req.completion_id is None
        assert req.status_notes == note_for(RequestStatus.DUPLICATE)
        assert _events(db, "service_request", req.id)[-1] == ("received", "duplicate")


@pytest.mark.parametrize("status", ["new", "planned", "dispatched", "en_route", "unable"])
def test_work_no_crew_has_claimed_can_be_closed_without_a_completion(
    db: Session, status: str
) -> None:
    site = Site(db)
    path = {
        "planned": ["planned"],
        "dispatched": ["dispatched"],
        "en_route": ["dispatched", "en_route"],
        "unable": ["dispatched", "en_route", "unable"],
    }.get(status, [])
    for target in path:
        WorkOrderLifecycle.transition(
            db, site.wo, target, actor=ACTOR, crew_id=site.crew.id, reason="no_access"
        )
    assert site.wo.status == status

    closing.close_work_order(db, site.wo, actor=ACTOR, outcome="no_action_needed")

    assert site.wo.status == WorkOrderStatus.CLOSED
    assert {r.detailed_status for r in site.requests} == {RequestStatus.NO_ACTION_NEEDED}


def test_completed_work_is_closed_through_its_review_not_without_it(db: Session) -> None:
    site = Site(db)
    site.completion(db, Verdict.NEEDS_REVIEW)

    with pytest.raises(Conflict, match="review its completion instead"):
        closing.close_work_order(db, site.wo, actor=ACTOR, outcome="not_found")
    assert site.wo.status == WorkOrderStatus.COMPLETED


def test_on_site_work_cannot_be_closed_from_the_office(db: Session) -> None:
    site = Site(db)
    change_status(db, site.wo, "dispatched", actor=ACTOR, crew_id=site.crew.id)
    change_status(db, site.wo, "on_site", actor=ACTOR)

    with pytest.raises(Conflict, match="cannot be closed now"):
        closing.close_work_order(db, site.wo, actor=ACTOR, outcome="referred")


def test_fixed_is_never_an_outcome_without_proof(db: Session) -> None:
    site = Site(db)

    with pytest.raises(ValidationFailed, match="'fixed' needs a verified completion"):
        closing.close_work_order(db, site.wo, actor=ACTOR, outcome="fixed")
    assert site.wo.status == WorkOrderStatus.NEW
    assert {r.detailed_status for r in site.requests} == {RequestStatus.RECEIVED}


# -- 4. residents reopening fixed work ---------------------------------------------------------


def _fixed(db: Session) -> Site:
    site = Site(db)
    closing.close_verified(db, site.completion(db, Verdict.AUTO_VERIFIED), actor=ACTOR)
    db.flush()
    return site


def test_a_new_report_reopens_fixed_work_with_every_request_fixed_with_it(db: Session) -> None:
    site = _fixed(db)
    at = datetime.now(UTC) + timedelta(days=2)

    wo = closing.reopen_fixed(db, site.original, actor=ACTOR, at=at, by_report="SR-9")

    assert wo.status == WorkOrderStatus.NEW and wo.reopen_count == 1
    # A new SLA clock from the reopening.
    assert wo.due_at == at + timedelta(hours=72)
    for req in site.requests:
        assert req.detailed_status == RequestStatus.REOPENED and req.status == "open"
        assert req.closed_at is None and req.completion_id is None and req.reopen_count == 1
        assert "SR-9" in (req.status_notes or "")
        assert _outbox(db, req)[-1][0] == "reopened"


def test_the_nearest_fixed_request_within_the_window_is_the_one_reopened(db: Session) -> None:
    site = _fixed(db)
    st = site.wo.service_type
    now = datetime.now(UTC)
    lon, lat = f.offset(f.LON, f.LAT, 5)

    found = closing.find_reopenable(db, st, lon, lat, within=timedelta(days=30), now=now)
    # The original is found, not its duplicate: the work order once, by its first report.
    assert found is site.original
    assert closing.find_reopenable(db, st, lon, lat, within=timedelta(0), now=now) is None
    later = now + timedelta(days=31)
    assert closing.find_reopenable(db, st, lon, lat, within=timedelta(days=30), now=later) is None
    far = f.offset(f.LON, f.LAT, 500)
    assert closing.find_reopenable(db, st, *far, within=timedelta(days=30), now=now) is None


def test_why_a_comment_cannot_reopen_a_request(db: Session) -> None:
    site = _fixed(db)
    now = datetime.now(UTC)
    window = timedelta(days=30)

    assert closing.why_a_comment_cannot_reopen(site.duplicate, within=window, now=now) is None
    too_late = closing.why_a_comment_cannot_reopen(
        site.original, within=window, now=now + timedelta(days=40)
    )
    assert too_late is not None and "fixed more than 30 days ago" in too_late

    # Another problem, which a supervisor closed as a duplicate: not fixed work.
    f.service_type(db, "graffiti")
    other = f.report(db, "graffiti").work_order
    closing.close_work_order(db, other, actor=ACTOR, outcome="duplicate")
    not_fixed = closing.why_a_comment_cannot_reopen(other.requests[0], within=window, now=now)
    assert not_fixed is not None and "not closed as fixed" in not_fixed


def test_a_comment_reopens_the_shared_work_through_a_duplicate(db: Session) -> None:
    site = _fixed(db)

    wo = closing.reopen_by_comment(
        db, site.duplicate, actor=ACTOR, at=datetime.now(UTC), comment="still a hole"
    )

    assert wo is site.wo and wo.status == WorkOrderStatus.NEW
    assert {r.detailed_status for r in site.requests} == {RequestStatus.REOPENED}


def test_closed_work_cannot_be_reopened_by_hand(db: Session) -> None:
    """Reopening is for verified work; work closed with an outcome stays closed."""
    site = Site(db)
    closing.close_work_order(db, site.wo, actor=ACTOR, outcome="referred")

    with pytest.raises(IllegalTransition):
        closing.reopen_fixed(db, site.original, actor=ACTOR, at=datetime.now(UTC), by_report="x")
