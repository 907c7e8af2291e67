"""The crews' change feed: a commit-ordered cursor that never skips a slower transaction's
change, announces each change once, and reaches a crew however old the change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import Crew, CrewChange, WorkOrder
from core.workorders import change_status
from dispatch.feed import changes_since
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")


@pytest.fixture
def orders(committed: sessionmaker[Session]) -> dict:
    """Two orders dispatched to one crew, committed for real (other connections see them)."""
    with committed() as s:
        st = f.service_type(s, "feed")
        crew = f.crew(s, "feed-crew")
        ids = []
        for k in range(2):
            lon, lat = f.offset(f.LON, f.LAT, 500 * (k + 1))
            wo = f.report(s, st.code, lon=lon, lat=lat).work_order
            change_status(s, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
            ids.append(wo.id)
        s.commit()
        return {"crew": crew.id, "orders": ids}


def _feed(engine: Engine, crew_id: int, since: int) -> dict:
    with Session(engine) as s:
        return changes_since(s, s.get(Crew, crew_id), since, TZ)


def test_a_slower_transaction_is_not_skipped(engine: Engine, orders: dict) -> None:
    crew_id, (first, second) = orders["crew"], orders["orders"]
    start = _feed(engine, crew_id, 0)["cursor"]
    # The slow one writes first (with status-event ids, it got the lower id) and stays open.
    slow = Session(engine)
    try:
        WorkOrderLifecycle.annotate(
            slow, slow.get(WorkOrder, first), actor=f.SYSTEM, note="gate code 4411"
        )
        slow.flush()
        with Session(engine) as fast:
            WorkOrderLifecycle.annotate(
                fast, fast.get(WorkOrder, second), actor=f.SYSTEM, note="second report joined"
            )
            fast.commit()
        seen = _feed(engine, crew_id, start)
        assert [c["work_order_id"] for c in seen["changes"]] == [second]
        slow.commit()
    finally:
        slow.close()
    later = _feed(engine, crew_id, seen["cursor"])
    assert [(c["work_order_id"], c["change"]) for c in later["changes"]] == [(first, "updated")]
    assert later["cursor"] > seen["cursor"] > start
    assert _feed(engine, crew_id, later["cursor"])["changes"] == []


def test_numbers_follow_commit_order_and_have_no_gaps(engine: Engine, orders: dict) -> None:
    crew_id, (first, second) = orders["crew"], orders["orders"]
    with Session(engine) as a, Session(engine) as b:
        WorkOrderLifecycle.annotate(a, a.get(WorkOrder, first), actor=f.SYSTEM, note="a")
        a.flush()
        WorkOrderLifecycle.annotate(b, b.get(WorkOrder, second), actor=f.SYSTEM, note="b")
        b.commit()
        a.commit()
    with Session(engine) as s:
        rows = s.execute(
            select(CrewChange.seq, CrewChange.work_order_id)
            .where(CrewChange.crew_id == crew_id)
            .order_by(CrewChange.seq)
        ).all()
        head = s.scalar(select(Crew.feed_seq).where(Crew.id == crew_id))
    seqs = [r.seq for r in rows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and seqs[-1] == head
    # b committed first, so its change has the lower number although a wrote first.
    assert [r.work_order_id for r in rows[-2:]] == [second, first]


def test_a_rejection_days_later_reaches_the_crew_once(db: Session) -> None:
    f.service_type(db)
    crew = f.crew(db, "rej-1")
    wo = f.report(db).work_order
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
    for target in ("en_route", "on_site", "completed"):
        WorkOrderLifecycle.transition(db, wo, target, actor=f.SYSTEM)
    db.commit()
    synced = changes_since(db, crew, 0, TZ)["cursor"]
    later = datetime.now(UTC) + timedelta(days=3)
    WorkOrderLifecycle.transition(db, wo, "rejected", actor=f.SYSTEM, at=later)
    WorkOrderLifecycle.transition(db, wo, "new", actor=f.SYSTEM, at=later)
    db.commit()
    news = changes_since(db, crew, synced, TZ)
    assert [(c["work_order_id"], c["change"]) for c in news["changes"]] == [(wo.id, "rejected")]


def test_no_longer_yours_is_said_once_across_pages(db: Session) -> None:
    f.service_type(db)
    crew, other = f.crew(db, "pg-1"), f.crew(db, "pg-2")
    wo = f.report(db).work_order
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
    db.commit()
    start = changes_since(db, crew, 0, TZ)["cursor"]
    for k in range(3):
        WorkOrderLifecycle.annotate(db, wo, actor=f.SYSTEM, note=f"note {k}")
    change_status(db, wo, "new", actor=f.SYSTEM)
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=other.id)
    for k in range(3):
        WorkOrderLifecycle.annotate(db, wo, actor=f.SYSTEM, note=f"later note {k}")
    db.commit()
    kinds, cursor = [], start
    while True:
        page = changes_since(db, crew, cursor, TZ, limit=2)
        kinds += [c["change"] for c in page["changes"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    # The old crew hears the notes it had, then "removed", and nothing of the new crew's work.
    assert kinds == ["updated", "updated", "updated", "removed"]
    assert [c["change"] for c in changes_since(db, other, 0, TZ)["changes"]] == [
        "assigned",
        "updated",
        "updated",
        "updated",
    ]


def test_a_cursor_from_elsewhere_resets(db: Session) -> None:
    crew = f.crew(db, "reset-1")
    db.commit()
    answer = changes_since(db, crew, 10**12, TZ)
    assert answer["reset"] is True and answer["changes"] == [] and answer["cursor"] <= 10**12
