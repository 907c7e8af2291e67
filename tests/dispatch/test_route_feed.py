"""What a crew's phone is given (`dispatch.feed.route_feed`) and which crew hears of a
change to a work order (`core.crewfeed.work_order_changed`), called directly with a real
database session. The cursor's commit order is in test_crewfeed.py."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import crewfeed
from core.comments import NewComment, add_comment
from core.intake import Contact
from core.lifecycle.work_order import UNABLE_REASONS, WorkOrderLifecycle
from core.models import Crew, CrewChange, CrewDay, PlanRoute, RoutePlan, RouteStop, WorkOrder
from core.status import COMPLETION_OUTCOMES, PlanStatus
from core.workorders import change_status
from dispatch.feed import route_feed
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date(2026, 3, 2)
BASE = "http://127.0.0.1"


def _at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=TZ)


def _orders(db: Session, n: int, code: str = "pothole") -> list[WorkOrder]:
    """`n` separate problems, 300 m apart (too far to join one another)."""
    out = []
    for k in range(n):
        lon, lat = f.offset(f.LON, f.LAT, 300 * k)
        out.append(f.report(db, code, lon=lon, lat=lat, description=f"hole {k}").work_order)
    return out


def _dispatch(db: Session, wo: WorkOrder, crew: Crew) -> None:
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id)


def _publish(db: Session, crew: Crew, stops: list[WorkOrder | None]) -> RoutePlan:
    """A published plan of DAY whose route for `crew` visits `stops` in this order, half an
    hour each from 08:00 (None: the crew's break), and holds the crew's day."""
    plan = RoutePlan(
        plan_date=DAY, version=1, status=PlanStatus.PUBLISHED, time_limit_s=1, stats={}
    )
    route = PlanRoute(
        plan=plan, crew_id=crew.id, start_at=_at(7), end_at=_at(15), drive_s=600, distance_m=5000
    )
    for seq, wo in enumerate(stops, start=1):
        start = _at(8) + timedelta(minutes=30 * (seq - 1))
        route.stops.append(
            RouteStop(
                sequence=seq,
                kind="job" if wo is not None else "break",
                work_order_id=wo.id if wo is not None else None,
                arrival_at=start - timedelta(minutes=5),
                start_at=start,
                end_at=start + timedelta(minutes=30),
            )
        )
    db.add_all([plan, route])
    db.flush()
    db.add(CrewDay(crew_id=crew.id, plan_date=DAY, plan_id=plan.id))
    db.flush()
    return plan


def test_the_route_is_the_published_plans_with_what_changed_since(db: Session) -> None:
    f.service_type(db)
    crew, other = f.crew(db, "feed-1"), f.crew(db, "feed-2")
    first, second, moved, cancelled, by_hand = _orders(db, 5)
    for wo in (first, second, moved, cancelled):
        _dispatch(db, wo, crew)
    plan = _publish(db, crew, [second, moved, None, first, cancelled])
    # After publishing: one stop goes to another crew, one is cancelled, the crew finishes
    # one, and a dispatcher gives it one more by hand.
    change_status(db, moved, "new", actor=f.SYSTEM)
    _dispatch(db, moved, other)
    change_status(db, cancelled, "cancelled", actor=f.SYSTEM)
    for target in ("en_route", "on_site", "completed"):
        change_status(db, second, target, actor=f.SYSTEM)
    _dispatch(db, by_hand, crew)
    db.flush()
    cursor = crewfeed.head(db, crew.id)

    feed = route_feed(db, crew, DAY, TZ, BASE)

    assert (feed["plan_id"], feed["plan_version"], feed["date"]) == (plan.id, 1, "2026-03-02")
    stops = feed["stops"]
    # The plan's order, without what is no longer the crew's; the hand-dispatched one last.
    assert [s["work_order_id"] for s in stops] == [second.id, first.id, by_hand.id]
    assert [s["sequence"] for s in stops] == [1, 2, 3]
    assert [s["status"] for s in stops] == ["completed", "dispatched", "dispatched"]
    # The planned times in the city's zone; work given by hand has none.
    assert stops[0]["eta"] == "2026-03-02T08:00:00+01:00"
    assert stops[0]["arrival"] == "2026-03-02T07:55:00+01:00"
    assert stops[1]["eta"] == "2026-03-02T09:30:00+01:00"
    assert stops[2]["eta"] is None and stops[2]["arrival"] is None
    assert feed["breaks"] == [
        {"start": "2026-03-02T09:00:00+01:00", "end": "2026-03-02T09:30:00+01:00"}
    ]
    assert feed["changes_cursor"] == cursor
    # The choices the phone offers, offline too: exactly what the API accepts.
    assert feed["outcomes"] == list(COMPLETION_OUTCOMES)
    assert feed["unable_reasons"] == sorted(UNABLE_REASONS)
    # The other crew has no published route: its direct work only.
    theirs = route_feed(db, other, DAY, TZ, BASE)
    assert [s["work_order_id"] for s in theirs["stops"]] == [moved.id]
    assert theirs["plan_id"] is None


def test_without_a_plan_the_route_is_the_work_on_the_crews_way_most_urgent_first(
    db: Session,
) -> None:
    f.service_type(db)
    crew = f.crew(db, "direct-1")
    low, urgent, there, done, waiting = _orders(db, 5)
    urgent.priority = 5
    for wo in (low, urgent, there, done):
        _dispatch(db, wo, crew)
    change_status(db, there, "on_site", actor=f.SYSTEM)
    for target in ("on_site", "completed"):
        change_status(db, done, target, actor=f.SYSTEM)
    db.flush()

    feed = route_feed(db, crew, DAY, TZ, BASE)

    assert feed["plan_id"] is None and feed["geometry"] is None and feed["breaks"] == []
    # Finished work and work not dispatched to it are not on its way.
    ids = [s["work_order_id"] for s in feed["stops"]]
    assert ids[0] == urgent.id and set(ids) == {urgent.id, low.id, there.id}
    assert done.id not in ids and waiting.id not in ids
    assert all(s["eta"] is None for s in feed["stops"])


def test_a_stop_says_what_residents_reported_and_said_never_who(db: Session) -> None:
    f.service_type(db)
    key = f.api_key(db)
    crew = f.crew(db, "stop-1")
    first = f.report(db, description="Deep hole", contact=Contact(email="ana@example.org"))
    lon, lat = f.offset(f.LON, f.LAT, 10)
    joined = f.report(
        db, lon=lon, lat=lat, description="Near the bus stop", contact=Contact(phone="+376 555")
    )
    wo = first.work_order
    assert joined.work_order.id == wo.id
    _dispatch(db, wo, crew)
    WorkOrderLifecycle.annotate(db, wo, actor=f.SYSTEM, note="gate code 4411")
    add_comment(
        db,
        NewComment(
            service_request_id=first.request.public_id,
            client_update_id="fms-1",
            text="It is deeper now",
            commenter=Contact(email="carla@example.org", first_name="Carla"),
        ),
        api_key_id=key.id,
        actor=f.SYSTEM,
        reopen_within=timedelta(days=30),
    )
    db.flush()

    (stop,) = route_feed(db, crew, DAY, TZ, BASE)["stops"]

    assert stop["reports"] == 2
    assert stop["description"] == "Deep hole"
    assert stop["descriptions"] == ["Deep hole", "Near the bus stop"]
    assert [n["note"] for n in stop["notes"]][-1] == "gate code 4411"
    assert [c["text"] for c in stop["comments"]] == ["It is deeper now"]
    assert abs(stop["lat"] - f.LAT) < 1e-6 and abs(stop["lon"] - f.LON) < 1e-6
    text = json.dumps(stop)
    for private in ("ana@example.org", "+376 555", "carla@example.org", "Carla"):
        assert private not in text


def _heard(db: Session, *crews: Crew) -> dict[str, list[str]]:
    db.flush()
    return {
        c.code: list(
            db.scalars(
                select(CrewChange.change).where(CrewChange.crew_id == c.id).order_by(CrewChange.id)
            )
        )
        for c in crews
    }


def test_each_crew_hears_what_concerns_it_once(db: Session) -> None:
    f.service_type(db)
    a, b = f.crew(db, "hear-a"), f.crew(db, "hear-b")
    wo, urgent, closed = _orders(db, 3)

    # Given to a: "assigned"; moved to b: a hears "removed", b "assigned".
    _dispatch(db, wo, a)
    assert _heard(db, a, b) == {"hear-a": ["assigned"], "hear-b": []}
    change_status(db, wo, "new", actor=f.SYSTEM)
    _dispatch(db, wo, b)
    assert _heard(db, a, b) == {"hear-a": ["assigned", "removed"], "hear-b": ["assigned"]}
    # b's own steps are updates to b; cancelled by the city, b hears it as such.
    change_status(db, wo, "en_route", actor=f.SYSTEM)
    change_status(db, wo, "cancelled", actor=f.SYSTEM)
    assert _heard(db, b)["hear-b"] == ["assigned", "updated", "cancelled"]

    # Urgent work dispatched during the day is shouted about.
    urgent.priority = 4
    _dispatch(db, urgent, a)
    assert _heard(db, a)["hear-a"][-1] == "urgent_stop"

    # A re-plan moving dispatched work back into a draft is office business: nobody hears.
    before = _heard(db, a, b)
    change_status(db, urgent, "planned", actor=f.SYSTEM)
    assert _heard(db, a, b) == before

    # Closed by a supervisor while on a's way: for a as good as cancelled.
    _dispatch(db, closed, a)
    WorkOrderLifecycle.transition(db, closed, "closed", actor=f.SYSTEM)
    assert _heard(db, a)["hear-a"][-2:] == ["assigned", "cancelled"]


def test_a_rejected_completion_is_told_once_and_the_pool_says_nothing_more(
    db: Session,
) -> None:
    f.service_type(db)
    crew = f.crew(db, "rej-a")
    (wo,) = _orders(db, 1)
    _dispatch(db, wo, crew)
    for target in ("on_site", "completed", "rejected", "new"):
        WorkOrderLifecycle.transition(db, wo, target, actor=f.SYSTEM)

    assert _heard(db, crew)["rej-a"] == ["assigned", "updated", "updated", "rejected"]
    rows = db.scalars(select(CrewChange).where(CrewChange.crew_id == crew.id)).all()
    # The last word is the rejection itself, as the order stood then.
    assert [(r.status, r.event) for r in rows][-1] == ("rejected", "rejected")
