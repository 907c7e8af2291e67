"""Closing the loop: only verified work closes a resident's request.

Three ways a request reaches a closed state, and no other:

1. A crew's completion whose proof the checks accept (`auto_verified`) closes the work
   order (`verified`) and every open request linked to it, duplicates included, with the
   completion's outcome, at once — unless the completion is drawn for an audit.
2. A supervisor's review of a doubtful (or audit-sampled) completion: verify it (as 1),
   reject it (the order goes back to the pool, its reopen counted, the crew's route
   changes on the next sync), or close the work with another outcome.
3. A supervisor closes a work order with an explicit outcome (not `fixed`: that needs a
   completion) without any crew visit, e.g. a duplicate, or referred to another owner.

Each runs in the caller's transaction and writes its audit events and the reporters'
outbox rows there too (`core.notifications` via the request lifecycle).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.completion import CompletionLifecycle
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import Completion, Review, ServiceRequest, ServiceType, WorkOrder
from core.photos import after_photo_url
from core.spatial import distance_metres, within_metres
from core.status import (
    CLOSABLE_WITHOUT_COMPLETION,
    CLOSE_OUTCOMES,
    PROVEN,
    REQUEST_OPEN_STATUSES,
    CompletionOutcome,
    RequestStatus,
    Verdict,
    WorkOrderStatus,
    note_for,
)
from core.workorders import change_status

AUTO_VERIFIED = Verdict.AUTO_VERIFIED
NEEDS_REVIEW = Verdict.NEEDS_REVIEW
# The reason code of a completion drawn for an audit (not a status).
AUDIT_SAMPLE = "audit_sample"
_W = WorkOrderStatus


@dataclass(frozen=True)
class InitialVerdict:
    verdict: str
    reasons: list[str]
    audit_sampled: bool


def initial_verdict(
    proof_verdict: str,
    reasons: list[str],
    outcome: str,
    *,
    sample_rate: float,
    draw: Callable[[], float] = random.random,
) -> InitialVerdict:
    """The verdict a new completion is stored with.

    Doubtful proof waits for a supervisor. So does "needs another crew": the work is not
    done, a supervisor sends it back or closes it with an outcome. Of the rest, a share
    `sample_rate` is drawn at random for an audit, so automatic verification stays
    honest: a crew cannot know which of its jobs a person will look at."""
    reasons = list(reasons)
    if outcome == CompletionOutcome.NEEDS_OTHER_CREW and outcome not in reasons:
        return InitialVerdict(NEEDS_REVIEW, [*reasons, CompletionOutcome.NEEDS_OTHER_CREW], False)
    if proof_verdict != AUTO_VERIFIED:
        return InitialVerdict(proof_verdict, reasons, False)
    if draw() < sample_rate:
        return InitialVerdict(NEEDS_REVIEW, [AUDIT_SAMPLE], True)
    return InitialVerdict(AUTO_VERIFIED, reasons, False)


def _close_requests(
    session: Session,
    wo: WorkOrder,
    outcome: str,
    *,
    actor: Actor,
    completion_id: int | None,
    status_notes: str | None,
    at: datetime,
) -> list[ServiceRequest]:
    """Every open request on the order, duplicates included, closes with `outcome`."""
    # What residents read when their request closes (status_notes and the timeline).
    notes = status_notes or note_for(RequestStatus(outcome))
    photo = (
        after_photo_url(session, completion_id)
        if completion_id is not None and outcome == RequestStatus.FIXED
        else None
    )
    closed = []
    for req in wo.requests:
        if req.detailed_status not in REQUEST_OPEN_STATUSES:
            continue
        req.status_notes = notes
        if photo is not None:
            # Open311's single media_url: the after photo shows the result, which is what
            # a resident checking on the report wants to see. Report photos stay listed.
            req.media_url = photo
        ServiceRequestLifecycle.transition(
            session,
            req,
            outcome,
            actor=actor,
            note=notes,
            public=True,
            at=at,
            verified_completion_id=completion_id,
        )
        closed.append(req)
    return closed


def _decide(
    session: Session,
    completion: Completion,
    target: str,
    review: Review,
    *,
    actor: Actor,
    at: datetime,
) -> None:
    CompletionLifecycle.transition(
        session, completion, target, actor=actor, note=review.reason or review.note, at=at
    )
    completion.decided_at = at
    session.add(review)


def close_verified(
    session: Session, completion: Completion, *, actor: Actor, at: datetime | None = None
) -> list[ServiceRequest]:
    """A verified completion closes its work order and the requests on it, with the crew's outcome."""
    at = at or datetime.now(UTC)
    if completion.verdict not in PROVEN:
        raise Conflict(
            f"completion {completion.id} is {completion.verdict}; only verified proof closes work",
            current=completion.verdict,
        )
    wo = completion.work_order
    WorkOrderLifecycle.transition(
        session,
        wo,
        _W.VERIFIED,
        actor=actor,
        at=at,
        note=f"completion {completion.id} verified ({completion.verdict}); outcome {completion.outcome}",
    )
    return _close_requests(
        session,
        wo,
        completion.outcome,
        actor=actor,
        completion_id=completion.id,
        status_notes=None,
        at=at,
    )


def _lock_pending(session: Session, completion_id: int) -> Completion:
    completion = session.get(
        Completion, completion_id, with_for_update=True, populate_existing=True
    )
    if completion is None:
        raise NotFound(f"completion {completion_id} not found")
    if completion.verdict != NEEDS_REVIEW:
        raise Conflict(
            f"completion {completion.id} was already decided: {completion.verdict}",
            current=completion.verdict,
        )
    session.refresh(completion.work_order, with_for_update=True)
    return completion


def verify(
    session: Session, completion_id: int, *, reviewer_id: int, actor: Actor, note: str | None = None
) -> list[ServiceRequest]:
    """A supervisor accepts the proof: the work closes with the crew's outcome."""
    completion = _lock_pending(session, completion_id)
    if completion.outcome == CompletionOutcome.NEEDS_OTHER_CREW:
        raise Conflict(
            "the crew said another crew is needed: reject it to send the work back to the pool, "
            "or close it with an outcome",
            current=completion.verdict,
        )
    at = datetime.now(UTC)
    _decide(
        session,
        completion,
        Verdict.VERIFIED,
        Review(completion_id=completion.id, reviewer_id=reviewer_id, decision="verify", note=note),
        actor=actor,
        at=at,
    )
    return close_verified(session, completion, actor=actor, at=at)


def reject(
    session: Session,
    completion_id: int,
    *,
    reviewer_id: int,
    actor: Actor,
    reason: str,
    note: str | None = None,
) -> WorkOrder:
    """A supervisor rejects the proof: the work order goes back to the pool (reopen counted);
    its requests stay open and the crew's route drops the job on the next sync."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a rejection needs a reason the crew can act on", field="reason")
    completion = _lock_pending(session, completion_id)
    at = datetime.now(UTC)
    _decide(
        session,
        completion,
        Verdict.REJECTED,
        Review(
            completion_id=completion.id,
            reviewer_id=reviewer_id,
            decision="reject",
            reason=reason,
            note=note,
        ),
        actor=actor,
        at=at,
    )
    wo = completion.work_order
    change_status(
        session,
        wo,
        _W.REJECTED,
        actor=actor,
        at=at,
        note=f"completion {completion.id} rejected: {reason}",
    )
    change_status(
        session, wo, _W.NEW, actor=actor, at=at, note="back in the pool after a rejected completion"
    )
    return wo


def close_with_outcome(
    session: Session,
    completion_id: int,
    *,
    reviewer_id: int,
    actor: Actor,
    outcome: str,
    note: str | None = None,
    status_notes: str | None = None,
) -> list[ServiceRequest]:
    """A supervisor accepts the visit but closes the work with another outcome than the crew's."""
    _check_outcome(outcome)
    completion = _lock_pending(session, completion_id)
    at = datetime.now(UTC)
    _decide(
        session,
        completion,
        Verdict.VERIFIED,
        Review(
            completion_id=completion.id,
            reviewer_id=reviewer_id,
            decision="close",
            outcome=outcome,
            note=note,
        ),
        actor=actor,
        at=at,
    )
    wo = completion.work_order
    WorkOrderLifecycle.transition(
        session,
        wo,
        _W.CLOSED,
        actor=actor,
        at=at,
        note=f"closed by a supervisor as {outcome} after completion {completion.id}",
    )
    return _close_requests(
        session,
        wo,
        outcome,
        actor=actor,
        completion_id=completion.id,
        status_notes=status_notes,
        at=at,
    )


def close_work_order(
    session: Session,
    wo: WorkOrder,
    *,
    actor: Actor,
    outcome: str,
    note: str | None = None,
    status_notes: str | None = None,
) -> list[ServiceRequest]:
    """A supervisor's explicit outcome for work no crew completed (a duplicate, a referral)."""
    _check_outcome(outcome)
    if wo.status not in CLOSABLE_WITHOUT_COMPLETION:
        raise Conflict(
            f"work order {wo.id} is {wo.status}; "
            + (
                "review its completion instead"
                if wo.status == _W.COMPLETED
                else "it cannot be closed now"
            ),
            current=wo.status,
        )
    at = datetime.now(UTC)
    WorkOrderLifecycle.transition(
        session,
        wo,
        _W.CLOSED,
        actor=actor,
        at=at,
        note=f"closed by a supervisor as {outcome}" + (f": {note}" if note else ""),
    )
    return _close_requests(
        session, wo, outcome, actor=actor, completion_id=None, status_notes=status_notes, at=at
    )


def _check_outcome(outcome: str) -> None:
    if outcome not in CLOSE_OUTCOMES:
        raise ValidationFailed(
            f"outcome must be one of {', '.join(CLOSE_OUTCOMES)}; 'fixed' needs a verified completion",
            field="outcome",
        )


# -- residents reopening fixed work ------------------------------------------------------


def find_reopenable(
    session: Session,
    service_type: ServiceType,
    lon: float,
    lat: float,
    *,
    within: timedelta,
    now: datetime,
) -> ServiceRequest | None:
    """The nearest request of this type fixed at this place within the reopen window."""
    if service_type.duplicate_radius_m <= 0 or within <= timedelta(0):
        return None
    return session.scalar(
        reopenable_query(service_type, lon, lat, within=within, now=now)
        .limit(1)
        .with_for_update(of=WorkOrder)
    )


def reopenable_query(
    service_type: ServiceType, lon: float, lat: float, *, within: timedelta, now: datetime
) -> Select[ServiceRequest]:
    """Requests of this type fixed at this place within the reopen window, nearest first
    (the intake desk lists what `find_reopenable` would pick, without locking it)."""
    return (
        select(ServiceRequest)
        .join(WorkOrder, ServiceRequest.work_order_id == WorkOrder.id)
        .where(
            ServiceRequest.service_type_id == service_type.id,
            ServiceRequest.detailed_status == RequestStatus.FIXED,
            ServiceRequest.duplicate_of_id.is_(None),
            ServiceRequest.closed_at >= now - within,
            WorkOrder.status == _W.VERIFIED,
            within_metres(ServiceRequest.location, lon, lat, service_type.duplicate_radius_m),
        )
        .order_by(distance_metres(ServiceRequest.location, lon, lat), ServiceRequest.id)
    )


def reopen_fixed(
    session: Session, original: ServiceRequest, *, actor: Actor, at: datetime, by_report: str
) -> WorkOrder:
    """A resident says the fix did not hold: the work order goes back to the pool with a new
    SLA clock and every request that closed with it reopens."""
    return _reopen(
        session,
        original,
        actor=actor,
        at=at,
        staff_note=f"reopened by report {by_report}",
        public_note=f"Reopened: a new report ({by_report}) says the problem is back or was not fixed.",
    )


def _reopen(
    session: Session,
    original: ServiceRequest,
    *,
    actor: Actor,
    at: datetime,
    staff_note: str,
    public_note: str,
) -> WorkOrder:
    wo = original.work_order
    assert wo is not None
    WorkOrderLifecycle.transition(session, wo, _W.NEW, actor=actor, at=at, note=staff_note)
    wo.due_at = at + timedelta(hours=wo.service_type.sla_hours)
    for req in wo.requests:
        if req.detailed_status == RequestStatus.FIXED:
            req.status_notes = public_note
            ServiceRequestLifecycle.transition(
                session,
                req,
                RequestStatus.REOPENED,
                actor=actor,
                note=public_note,
                public=True,
                at=at,
            )
    return wo


def why_a_comment_cannot_reopen(
    request: ServiceRequest, *, within: timedelta, now: datetime
) -> str | None:
    """Why a resident's comment saying the problem is back does not reopen `request` (a
    closed one), in words for the resident; None when it does.

    The request itself must have been fixed by verified work within the reopen window,
    as `reopenable_query` asks of what a new report at the place reopens; work closed
    with another outcome (a duplicate a supervisor closed as one included), or fixed
    longer ago, stays closed, and a new report starts new work. Unlike that query, a
    duplicate is not left out: a client knows its own report, which may have joined an
    earlier one's work order here, and was fixed by the same work. Its comment reopens
    that work order, with the original and every request fixed with it (`_reopen`), just
    as a new report does through the original. (The query leaves duplicates out so that
    a work order is found once, and shown by its original's number.)"""
    again = "If the problem is back, please make a new report."
    if request.detailed_status != RequestStatus.FIXED:
        return f"This request stays closed: it was not closed as fixed. {again}"
    wo = request.work_order
    if (
        wo is None
        or wo.status != _W.VERIFIED
        or within <= timedelta(0)
        or request.closed_at is None
    ):
        return f"This request stays closed. {again}"
    if request.closed_at < now - within:
        return f"This request stays closed: it was fixed more than {within.days} days ago. {again}"
    return None


def reopen_by_comment(
    session: Session, request: ServiceRequest, *, actor: Actor, at: datetime, comment: str
) -> WorkOrder:
    """A resident's comment on a request fixed within the window says the problem is back:
    the same as a new report there (`reopen_fixed`). Check `why_a_comment_cannot_reopen` first."""
    return _reopen(
        session,
        request,
        actor=actor,
        at=at,
        staff_note=f"reopened by a resident's comment ({comment})",
        public_note="Reopened: a resident's comment says the problem is back or was not fixed.",
    )
