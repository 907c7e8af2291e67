"""The crews' change feed: what a crew's phone must hear about its work, written in the
transaction of the change and numbered in commit order.

A phone syncs with `GET /crew/changes?since=<cursor>`. Numbering by status-event id
(what this replaced) skipped changes: ids are handed out when a row is written, not
when its transaction commits, so a phone that had seen id 12 never saw a slower
transaction's id 11 committing after it. Here every change is a `CrewChange` row of the
crew it concerns, and its `seq` is handed out by the commit hook below, under the lock
of the crew's row (`crews.feed_seq`): a second transaction numbering changes of the same
crew waits until the first has committed. So within a crew, seq order is commit order,
and a phone that has seen seq n has seen everything numbered before it, for good.

Who hears what is decided when the change is written, not when the phone asks, so a
change is announced once to each crew it concerns, however old it is when the phone
next syncs (a completion rejected three days later still reaches the crew that did it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from core.models import Crew, CrewChange, StatusEvent, WorkOrder
from core.status import CALLED_OFF, WorkOrderStatus

_PENDING = "streetloop.crew_changes_pending"
# A stop dispatched during the day at this priority or above is news to shout about.
URGENT_PRIORITY = 4
# Statuses that end the work for its crew without the crew having finished it.
_CANCELLING = CALLED_OFF


def record(
    session: Session,
    *,
    crew_id: int,
    change: str,
    work_order_id: int | None = None,
    plan_id: int | None = None,
    status: str | None = None,
    event_status: str | None = None,
    at: datetime | None = None,
) -> CrewChange:
    """Add one change to a crew's feed; it is numbered when the transaction commits."""
    row = CrewChange(
        crew_id=crew_id,
        change=change,
        work_order_id=work_order_id,
        plan_id=plan_id,
        status=status,
        event=event_status,
        at=at or datetime.now(UTC),
    )
    session.add(row)
    session.info[_PENDING] = True
    return row


def work_order_changed(
    session: Session,
    wo: WorkOrder,
    ev: StatusEvent,
    *,
    before_crew: int | None,
    before_status: str | None,
) -> None:
    """Tell the crews a work-order status change concerns: the crew that lost it, the one
    that got it, or the one that has it."""
    target, after = ev.to_status, wo.crew_id
    if before_status is None:
        return  # its birth is office business
    if target == WorkOrderStatus.PLANNED and before_status != WorkOrderStatus.PLANNED:
        return  # in a draft: office business until a plan is published
    if target == WorkOrderStatus.NEW and before_status == WorkOrderStatus.REJECTED:
        return  # the crew was told "rejected" a moment ago

    def tell(crew_id: int, change: str) -> None:
        record(
            session,
            crew_id=crew_id,
            change=change,
            work_order_id=wo.id,
            status=wo.status,
            event_status=target,
            at=ev.at,
        )

    if before_crew is not None and before_crew != after:
        lost = (
            "cancelled"
            if target in _CANCELLING
            else "rejected"
            if target == WorkOrderStatus.REJECTED
            else "removed"
        )
        tell(before_crew, lost)
    if after is None:
        return
    if after != before_crew:
        kind = (
            "urgent_stop"
            if wo.priority >= URGENT_PRIORITY or wo.must_do_on is not None
            else "assigned"
        )
    elif target in _CANCELLING:
        # Closed by a supervisor while on the route: for the crew as good as cancelled.
        kind = "cancelled"
    elif target == WorkOrderStatus.REJECTED:
        kind = "rejected"
    else:
        kind = "updated"
    tell(after, kind)


def work_order_noted(session: Session, wo: WorkOrder, ev: StatusEvent) -> None:
    """An audited change that keeps the status (a report joined, the place was pinned)."""
    if wo.crew_id is not None:
        record(
            session,
            crew_id=wo.crew_id,
            change="updated",
            work_order_id=wo.id,
            status=wo.status,
            event_status=ev.to_status,
            at=ev.at,
        )


def route_changed(session: Session, crew_id: int, plan_id: int, at: datetime | None = None) -> None:
    """A new plan version was published for the crew's day: its stops or times moved."""
    record(session, crew_id=crew_id, change="route", plan_id=plan_id, at=at)


def head(session: Session, crew_id: int) -> int:
    """The crew's newest committed seq: where a phone that has just read its route starts."""
    return session.scalar(select(Crew.feed_seq).where(Crew.id == crew_id)) or 0


_NUMBER = text("""
    WITH pending AS (
        SELECT id, crew_id, row_number() OVER (PARTITION BY crew_id ORDER BY id) AS n
        FROM crew_changes WHERE seq IS NULL
    ), counts AS (
        SELECT crew_id, max(n) AS n FROM pending GROUP BY crew_id
    ), heads AS (
        UPDATE crews c SET feed_seq = c.feed_seq + counts.n FROM counts
        WHERE c.id = counts.crew_id
        RETURNING c.id, c.feed_seq - counts.n AS base
    )
    UPDATE crew_changes cc SET seq = heads.base + pending.n
    FROM pending JOIN heads ON heads.id = pending.crew_id
    WHERE cc.id = pending.id
""")


def number_pending(session: Session) -> None:
    """Give this transaction's changes their seq. Only this transaction's rows lack one:
    every other transaction numbered its rows before it committed, and rows not yet
    committed are invisible here. The crews' rows are locked in id order first, so two
    transactions numbering changes of the same crews queue up instead of deadlocking."""
    crews = session.scalars(
        select(CrewChange.crew_id)
        .where(CrewChange.seq.is_(None))
        .distinct()
        .order_by(CrewChange.crew_id)
    ).all()
    if not crews:
        return
    # FOR NO KEY UPDATE, the lock the UPDATE takes anyway: it does not block the key-share
    # locks of rows being inserted that refer to the crew.
    session.execute(
        select(Crew.id).where(Crew.id.in_(crews)).order_by(Crew.id).with_for_update(key_share=True)
    )
    session.execute(_NUMBER)


@event.listens_for(Session, "before_commit")
def _number_before_commit(session: Session) -> None:
    # A savepoint being released fires this too: number at the real commit only, so the
    # crews' rows are locked once, in id order, for everything the transaction wrote.
    if session.in_nested_transaction():
        return
    if session.info.pop(_PENDING, False):
        session.flush()
        number_pending(session)


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    # After a savepoint's rollback the rows written before it are still pending.
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)
