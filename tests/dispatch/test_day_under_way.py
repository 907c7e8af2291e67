"""A plan built while its day is under way starts now: no stop before now plus the lead
time, crews from their fresh GPS fix or their yard, passed windows and breaks gone,
crews that are off or whose shift is over left out with why (real PostGIS)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import shifts as rota
from core.field import Ping, ingest_positions
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import RoutePlan, ServiceRequest, Shift, ShiftBreak, WorkOrder
from dispatch.build import Clock, Scope, build_problem
from dispatch.plans import DayRules, PlanRequest, publish_plan, replan_plan, request_plan, run_plan
from geo.travel import StraightLineProvider
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider(detour_factor=1.3, speed_kmh=30)
LEAD = DayRules(lead=timedelta(minutes=15))


def _at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


def _on_shift(db: Session, code: str, depot, skills: list[str] = ["asphalt"]) -> int:  # noqa: ANN001, B006
    crew = f.crew(db, code, skills=skills)
    crew.depot_id = depot.id
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=_at(7),
            ends_at=_at(15, 30),
            start_depot_id=depot.id,
            end_depot_id=depot.id,
            breaks=[ShiftBreak(earliest_start=_at(11, 30), latest_end=_at(13, 30), minutes=30)],
        )
    )
    db.flush()
    return crew.id


@pytest.fixture
def city(db: Session) -> dict:
    depot = f.depot(db)
    f.service_type(db)
    crews = [_on_shift(db, "pothole-1", depot), _on_shift(db, "pothole-2", depot)]
    orders = []
    for i in range(6):
        lon, lat = f.offset(f.LON, f.LAT, 500 * (i + 1))
        orders.append(f.report(db, lon=lon, lat=lat).work_order)
    db.commit()
    return {"depot": depot, "crews": crews, "orders": orders}


def _solve(
    db: Session, sessions: sessionmaker, now: datetime, scope: Scope | None = None
) -> RoutePlan:
    plan = request_plan(db, PlanRequest(DAY, scope or Scope(), 1), actor=f.SYSTEM)
    db.commit()
    run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ, rules=LEAD, now=now)
    db.expire_all()
    return db.get(RoutePlan, plan.id)


def _job_stops(plan: RoutePlan) -> list:
    return [st for r in plan.routes for st in r.stops if st.kind == "job"]


def test_a_plan_built_at_one_oclock_starts_after_the_lead_time(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    plan = _solve(db, sessions, now=_at(13))
    assert (
        plan.status == "ready" and plan.stats["feasible"] is True and plan.stats["scheduled"] == 6
    )
    assert plan.planned_from == _at(13, 15)
    stops = _job_stops(plan)
    assert min(st.arrival_at for st in stops) >= _at(13, 15)
    assert all(r.start_at >= _at(13, 15) for r in plan.routes if r.stops)
    # Lunch had to start by 13:00: it is gone, not squeezed in.
    assert not any(st.kind == "break" for r in plan.routes for st in r.stops)
    publish_plan(db, plan, actor=f.SYSTEM, tz=TZ, now=_at(13, 5))
    db.commit()
    promised = db.scalars(
        select(ServiceRequest.expected_at).where(
            ServiceRequest.work_order_id.in_([o.id for o in city["orders"]])
        )
    )
    assert all(p >= _at(13, 15) for p in promised)


def test_an_old_draft_of_a_day_under_way_is_not_published(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    from core.errors import Conflict

    plan = _solve(db, sessions, now=_at(13))
    with pytest.raises(Conflict, match="first stops were due at 13:1"):
        publish_plan(
            db, plan, actor=f.SYSTEM, tz=TZ, stale_after=timedelta(minutes=15), now=_at(14)
        )


def test_a_crew_starts_at_its_fresh_fix_else_at_its_yard(db: Session, city: dict) -> None:
    far_lon, far_lat = f.offset(f.LON, f.LAT, 9000)
    ingest_positions(
        db, city["crews"][0], [Ping(at=_at(12, 55), lat=far_lat, lon=far_lon)], now=_at(13)
    )
    ingest_positions(
        db, city["crews"][1], [Ping(at=_at(12, 20), lat=far_lat, lon=far_lon)], now=_at(13)
    )
    built = build_problem(
        db,
        plan_date=DAY,
        scope=Scope(),
        tz=TZ,
        travel=TRAVEL,
        clock=Clock(now=_at(13), lead=timedelta(minutes=15), fix_max_age=timedelta(minutes=15)),
    )
    start = {built.crews[c.id].code: built.points[c.start] for c in built.problem.crews}
    assert start["pothole-1"] == (round(far_lon, 7), round(far_lat, 7))
    assert start["pothole-2"] == (
        round(f.LON, 7),
        round(f.LAT, 7),
    )  # its fix is 40 minutes old: the yard
    assert {c.shift.start for c in built.problem.crews} == {built.seconds(_at(13, 15))}


def test_work_whose_windows_have_passed_is_left_out_with_why(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    early = city["orders"][0]
    early.time_windows = [{"start": _at(8).isoformat(), "end": _at(10).isoformat()}]
    db.commit()
    plan = _solve(db, sessions, now=_at(13))
    assert {
        "work_order_id": early.id,
        "reason": "window_passed",
        "message": "its last time window ended at 10:00",
    } in plan.unassigned
    assert early.id not in {st.work_order_id for st in _job_stops(plan)}


def test_after_the_shifts_end_nothing_is_timed_and_every_crew_says_why(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    plan = _solve(db, sessions, now=_at(19))
    assert plan.status == "ready" and plan.routes == []
    assert [c["reason"] for c in plan.excluded_crews] == ["shift_over", "shift_over"]
    assert (
        plan.excluded_crews[0]["message"]
        == "pothole-1's shift ends at 15:30, before a new route could start"
    )
    assert {u["work_order_id"] for u in plan.unassigned} == {o.id for o in city["orders"]}
    assert {u["message"] for u in plan.unassigned} == {
        "no crew on shift in this plan has the skill asphalt"
    }


def test_crews_that_are_off_are_left_out_with_why(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    f.crew(db, "spare-1")
    day_off = f.crew(db, "pothole-3")
    shift = rota.create_shift(
        db, crew=day_off, starts_at=_at(7), ends_at=_at(15), actor=f.SYSTEM, tz=TZ
    )
    rota.cancel_shift(db, shift, reason="annual leave", actor=f.SYSTEM, tz=TZ, now=_at(6))
    db.commit()
    plan = _solve(db, sessions, now=_at(6))
    weekday = f"{DAY:%a} {DAY.day} {DAY:%b}"
    assert {c["crew"]: c["message"] for c in plan.excluded_crews} == {
        "pothole-3": f"pothole-3's shift on {weekday} is cancelled: annual leave",
        "spare-1": f"spare-1 has no shift on {weekday}",
    }
    assert {r.crew.code for r in plan.routes} == {"pothole-1", "pothole-2"}


def test_a_crew_sent_home_sick_is_left_out_of_the_replan_and_its_work_goes_to_others(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    plan = _solve(db, sessions, now=_at(6))
    publish_plan(db, plan, actor=f.SYSTEM, tz=TZ, now=_at(6, 30))
    db.commit()
    sick, other = city["crews"]
    theirs = [st for r in plan.routes if r.crew_id == sick for st in r.stops if st.kind == "job"]
    assert len(theirs) >= 3
    on_site = db.get(WorkOrder, theirs[0].work_order_id)
    WorkOrderLifecycle.transition(db, on_site, "on_site", actor=f.SYSTEM, at=_at(9))
    on_the_way = db.get(WorkOrder, theirs[1].work_order_id)
    WorkOrderLifecycle.transition(db, on_the_way, "en_route", actor=f.SYSTEM, at=_at(9, 50))
    shift = db.scalar(select(Shift).where(Shift.crew_id == sick))
    rota.end_shift(
        db, shift, at=_at(10), reason="went home sick", actor=f.SYSTEM, tz=TZ, now=_at(10)
    )
    db.commit()
    child = replan_plan(db, plan, actor=f.SYSTEM, now=_at(10, 5), time_limit_s=1)
    db.commit()
    run_plan(sessions, child.id, travel=TRAVEL, tz=TZ, rules=LEAD, now=_at(10, 5))
    db.expire_all()
    child = db.get(RoutePlan, child.id)
    assert child.excluded_crews == [
        {
            "crew": "pothole-1",
            "reason": "shift_over",
            "message": "pothole-1's shift ended early at 10:00: went home sick",
        }
    ]
    # What the crew is on, or on its way to, stays its own: left out, not handed over.
    assert {
        "work_order_id": on_site.id,
        "reason": "crew_off_shift",
        "message": "pothole-1 is on site there, but its shift is over",
    } in child.unassigned
    assert {
        "work_order_id": on_the_way.id,
        "reason": "crew_off_shift",
        "message": "pothole-1 is on its way there, but its shift is over",
    } in child.unassigned
    moved = {st.work_order_id for st in theirs[2:]}
    (route,) = child.routes
    assert route.crew_id == other and moved <= {
        st.work_order_id for st in route.stops if st.kind == "job"
    }
    assert min(st.arrival_at for st in route.stops) >= _at(10, 20)


def test_a_replan_of_a_version_replaced_since_is_not_published(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    from core.errors import Conflict

    live = _solve(db, sessions, now=_at(6))
    publish_plan(db, live, actor=f.SYSTEM, tz=TZ, now=_at(6, 30))
    db.commit()
    first = replan_plan(db, live, actor=f.SYSTEM, now=_at(9), time_limit_s=1)
    db.commit()
    run_plan(sessions, first.id, travel=TRAVEL, tz=TZ, rules=LEAD, now=_at(9))
    db.expire_all()
    # A second dispatcher re-plans the same live version while the first re-plan waits.
    second = replan_plan(
        db, db.get(RoutePlan, live.id), actor=f.SYSTEM, now=_at(9, 1), time_limit_s=1
    )
    db.commit()
    publish_plan(db, db.get(RoutePlan, first.id), actor=f.SYSTEM, tz=TZ, now=_at(9, 2))
    db.commit()
    run_plan(sessions, second.id, travel=TRAVEL, tz=TZ, rules=LEAD, now=_at(9, 3))
    db.expire_all()
    with pytest.raises(Conflict, match=f"re-plans version {live.version}, which is superseded now"):
        publish_plan(db, db.get(RoutePlan, second.id), actor=f.SYSTEM, tz=TZ, now=_at(9, 5))
    db.rollback()
    assert db.get(RoutePlan, first.id).status == "published"
    # A third dispatcher still has the live plan as it was read before that publish.
    from sqlalchemy.orm.attributes import set_committed_value

    on_screen = db.get(RoutePlan, live.id)
    set_committed_value(on_screen, "status", "published")
    with pytest.raises(Conflict, match="is superseded now; re-plan the day's published plan"):
        replan_plan(db, on_screen, actor=f.SYSTEM, now=_at(9, 6), time_limit_s=1)


def test_work_a_day_ended_without_goes_to_the_next_days_plan_or_back_to_the_queue(
    db: Session, sessions: sessionmaker, city: dict
) -> None:
    plan = _solve(db, sessions, now=_at(6))
    publish_plan(db, plan, actor=f.SYSTEM, tz=TZ, now=_at(6, 30))
    db.commit()
    # Nothing was done that day. The next day one crew works one short hour.
    nxt = DAY + timedelta(days=1)
    crew = city["crews"][0]
    db.add(
        Shift(
            crew_id=crew,
            starts_at=datetime.combine(nxt, time(7), TZ),
            ends_at=datetime.combine(nxt, time(8), TZ),
            start_depot_id=city["depot"].id,
            end_depot_id=city["depot"].id,
        )
    )
    db.commit()
    morning = datetime.combine(nxt, time(6), TZ)
    following = request_plan(db, PlanRequest(nxt, Scope(), 1), actor=f.SYSTEM)
    db.commit()
    run_plan(sessions, following.id, travel=TRAVEL, tz=TZ, rules=LEAD, now=morning)
    db.expire_all()
    following = db.get(RoutePlan, following.id)
    routed = {st.work_order_id for st in _job_stops(following)}
    left = {u["work_order_id"] for u in following.unassigned}
    assert routed and left and routed | left == {o.id for o in city["orders"]}
    publish_plan(db, following, actor=f.SYSTEM, tz=TZ, now=morning + timedelta(minutes=30))
    db.commit()
    db.expire_all()
    for wo_id in routed:
        wo = db.get(WorkOrder, wo_id)
        assert (wo.status, wo.crew_id) == ("dispatched", crew)
        assert all(r.expected_at.astimezone(TZ).date() == nxt for r in wo.requests)
    for wo_id in left:
        wo = db.get(WorkOrder, wo_id)
        assert wo.status == "new" and all(
            r.detailed_status == "acknowledged" and r.expected_at is None for r in wo.requests
        )
