"""Plans on real PostGIS: build from rows, solve, store, publish, re-plan."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import RoutePlan, ServiceRequest, Shift, StatusEvent, WorkOrder
from dispatch.build import Scope, build_problem
from dispatch.plans import PlanRequest, publish_plan, replan_plan, request_plan, run_plan
from tests import factories as f
from tests.factories.plans import DAY, TRAVEL, TZ, day_at


def test_build_problem_maps_rows_to_the_model(db: Session, day: dict) -> None:
    built = build_problem(db, plan_date=DAY, scope=Scope(), tz=TZ, travel=TRAVEL)
    p = built.problem
    assert {built.crews[c.id].code for c in p.crews} == {"pothole-1", "graffiti-1"}
    crew = next(c for c in p.crews if built.crews[c.id].code == "pothole-1")
    assert (crew.shift.start, crew.shift.end) == (7 * 3600, 15 * 3600 + 1800)
    (brk,) = crew.breaks
    assert (brk.duration, brk.window.start, brk.window.end) == (
        1800,
        11 * 3600 + 1800,
        13 * 3600 + 1800,
    )
    assert len(p.jobs) == 6 and {j.skills for j in p.jobs} == {
        frozenset({"asphalt"}),
        frozenset({"graffiti"}),
    }
    assert built.excluded == [
        {
            "work_order_id": day["unplaced"].id,
            "reason": "needs_pin",
            "message": "no place on the map yet: pin it first",
        }
    ]
    assert built.provider == "straight_line" or built.provider.startswith("straight")
    # The depot is one matrix point shared by both crews.
    assert len(built.points) == 7


def test_scope_by_agency(db: Session, day: dict) -> None:
    built = build_problem(db, plan_date=DAY, scope=Scope(agency="Sanitation"), tz=TZ, travel=TRAVEL)
    assert len(built.problem.jobs) == 3 and all(
        j.skills == {"graffiti"} for j in built.problem.jobs
    )


def test_plan_solve_store_publish_and_replan(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=2), actor=f.SYSTEM)
    db.commit()
    plan = run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    assert plan.status == "ready" and plan.stats["feasible"] is True
    assert plan.stats["scheduled"] == 6
    assert {u["reason"] for u in plan.unassigned} == {"needs_pin"}
    stops = [s for r in plan.routes for s in r.stops if s.kind == "job"]
    assert len(stops) == 6
    breaks = [s for r in plan.routes for s in r.stops if s.kind == "break"]
    assert all(day_at(11, 30) <= b.start_at and b.end_at <= day_at(13, 30) for b in breaks)
    assert all(r.geometry is not None for r in plan.routes if any(s.kind == "job" for s in r.stops))
    assert {db.get(WorkOrder, s.work_order_id).status for s in stops} == {"planned"}

    publish_plan(db, plan, actor=f.SYSTEM)
    db.commit()
    for r in plan.routes:
        for s in r.stops:
            if s.kind == "job":
                wo = db.get(WorkOrder, s.work_order_id)
                assert wo.status == "dispatched" and wo.crew_id == r.crew_id
                assert all(
                    req.expected_at == s.start_at and req.detailed_status == "scheduled"
                    for req in wo.requests
                )
    with pytest.raises(Conflict):
        publish_plan(db, plan, actor=f.SYSTEM)

    # Mid-morning: one crew is on site at its first stop; re-plan from then.
    first = min(
        (s for r in plan.routes for s in r.stops if s.kind == "job"), key=lambda s: s.start_at
    )
    wo = db.get(WorkOrder, first.work_order_id)
    WorkOrderLifecycle.transition(db, wo, "on_site", actor=f.SYSTEM, at=first.start_at)
    db.commit()
    child = replan_plan(
        db, plan, actor=f.SYSTEM, now=first.start_at + timedelta(minutes=5), time_limit_s=2
    )
    db.commit()
    child = run_plan(sessions, child.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    child = db.get(RoutePlan, child.id)
    assert child.version == 2 and child.parent_id == plan.id and child.stats["feasible"] is True
    route = next(r for r in child.routes if r.crew_id == wo.crew_id)
    lead = route.stops[0] if route.stops[0].kind == "job" else route.stops[1]
    assert lead.work_order_id == wo.id and lead.locked
    assert all(s.start_at >= first.start_at for r in child.routes for s in r.stops)
    publish_plan(db, child, actor=f.SYSTEM)
    db.commit()
    db.refresh(plan)
    assert plan.status == "superseded"
    events = db.scalars(
        select(StatusEvent.to_status)
        .where(StatusEvent.entity == "route_plan", StatusEvent.entity_id == plan.id)
        .order_by(StatusEvent.id)
    ).all()
    assert events == ["queued", "running", "ready", "published", "superseded"]


def test_a_failing_solve_marks_the_plan_failed(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=1), actor=f.SYSTEM)
    db.commit()

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("solver crashed")

    with pytest.raises(RuntimeError):
        run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ, solve_fn=broken)
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    assert plan.status == "failed" and "solver crashed" in plan.error
    assert db.scalar(select(ServiceRequest.detailed_status).limit(1)) == "received"


def test_replan_starts_a_crew_at_its_fresh_gps_fix(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    from core.field import Ping, ingest_positions

    plan = request_plan(db, PlanRequest(DAY, Scope(agency="Roads"), time_limit_s=1), actor=f.SYSTEM)
    db.commit()
    plan = run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    publish_plan(db, plan, actor=f.SYSTEM)
    (route,) = plan.routes
    now = day_at(9)
    far_lon, far_lat = f.offset(f.LON, f.LAT, 8000)
    ingest_positions(
        db,
        route.crew_id,
        [Ping(at=now - timedelta(minutes=2), lat=far_lat, lon=far_lon, accuracy_m=5)],
        now=now,
    )
    db.commit()
    child = replan_plan(db, plan, actor=f.SYSTEM, now=now, time_limit_s=1)
    db.commit()
    run_plan(sessions, child.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    child = db.get(RoutePlan, child.id)
    assert child.status == "ready"
    # From the fix 8 km east, the nearest job (2.4 km east) is 5.6 km away: 874 s at 30 km/h
    # with the 1.3 detour. From the yard it would have been 62 s.
    first = next(s for r in child.routes for s in r.stops if s.kind == "job")
    assert (first.arrival_at - now).total_seconds() >= 5600 * 1.3 / (30 / 3.6)


def test_times_are_right_on_a_daylight_saving_day(db: Session) -> None:
    # 2025-03-30: Andorra's clocks jump from 02:00 to 03:00, so 08:00 is 7 h after midnight.
    spring = date(2025, 3, 30)
    depot = f.depot(db)
    crew = f.crew(db, "dst-1")
    start = datetime.combine(spring, time(8), TZ)
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=start,
            ends_at=datetime.combine(spring, time(16), TZ),
            start_depot_id=depot.id,
            end_depot_id=depot.id,
        )
    )
    db.flush()
    built = build_problem(db, plan_date=spring, scope=Scope(), tz=TZ, travel=TRAVEL, now=start)
    (c,) = built.problem.crews
    assert c.shift.start == 7 * 3600 and built.at(c.shift.start) == start
    assert built.problem.now == 7 * 3600


def _published(db: Session, sessions: sessionmaker) -> RoutePlan:
    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=1), actor=f.SYSTEM)
    db.commit()
    run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    publish_plan(db, plan, actor=f.SYSTEM)
    db.commit()
    return plan


def test_a_fresh_plan_over_a_published_day_is_refused(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    live = _published(db, sessions)
    with pytest.raises(Conflict, match="replan"):
        request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=1), actor=f.SYSTEM)
    assert all(
        db.get(WorkOrder, s.work_order_id).status == "dispatched"
        for r in live.routes
        for s in r.stops
        if s.kind == "job"
    )


def test_publishing_a_replan_keeps_a_hand_dispatch_to_another_crew(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    from core.workorders import change_status

    live = _published(db, sessions)
    moved = next(
        s.work_order
        for r in live.routes
        for s in r.stops
        if s.kind == "job" and r.crew.code == "pothole-1"
    )
    spare = f.crew(db, "pothole-spare")
    change_status(db, moved, "new", actor=f.SYSTEM)
    change_status(db, moved, "dispatched", actor=f.SYSTEM, crew_id=spare.id)
    db.commit()
    child = replan_plan(db, live, actor=f.SYSTEM, now=day_at(7), time_limit_s=1)
    db.commit()
    run_plan(sessions, child.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    publish_plan(db, db.get(RoutePlan, child.id), actor=f.SYSTEM)
    db.commit()
    db.expire_all()
    kept = db.get(WorkOrder, moved.id)
    assert (kept.status, kept.crew_id) == ("dispatched", spare.id)


def test_moving_a_stop_in_a_replan_draft(db: Session, sessions: sessionmaker, day: dict) -> None:
    from dispatch.drafts import move_stop

    live = _published(db, sessions)
    child = replan_plan(db, live, actor=f.SYSTEM, now=day_at(7), time_limit_s=1)
    db.commit()
    run_plan(sessions, child.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    child = db.get(RoutePlan, child.id)
    route = next(r for r in child.routes if r.crew.code == "pothole-1")
    jobs = [s.work_order_id for s in route.stops if s.kind == "job"]
    move_stop(
        db,
        child,
        work_order_id=jobs[0],
        crew_id=route.crew_id,
        position=len(jobs),
        travel=TRAVEL,
        tz=TZ,
        actor=f.SYSTEM,
    )
    db.commit()
    db.expire_all()
    route = next(r for r in db.get(RoutePlan, child.id).routes if r.crew.code == "pothole-1")
    assert [s.work_order_id for s in route.stops if s.kind == "job"] == jobs[1:] + jobs[:1]


def test_a_plan_whose_worker_died_is_marked_failed(db: Session) -> None:
    from core.lifecycle.route_plan import RoutePlanLifecycle
    from dispatch.plans import fail_stale_plans

    plan = request_plan(db, PlanRequest(DAY, Scope(), time_limit_s=30), actor=f.SYSTEM)
    RoutePlanLifecycle.transition(
        db,
        plan,
        "running",
        actor=f.SYSTEM,
        at=datetime.now(ZoneInfo("UTC")) - timedelta(minutes=20),
    )
    fresh = request_plan(
        db, PlanRequest(DAY, Scope(agency="Roads"), time_limit_s=30), actor=f.SYSTEM
    )
    RoutePlanLifecycle.transition(db, fresh, "running", actor=f.SYSTEM)
    assert fail_stale_plans(db) == [plan.id]
    assert (
        plan.status == "failed" and "request it again" in plan.error and fresh.status == "running"
    )


def test_an_edit_keeps_the_lock_on_the_job_under_way(
    db: Session, sessions: sessionmaker, day: dict
) -> None:
    from dispatch.drafts import move_stop

    live = _published(db, sessions)
    route = next(r for r in live.routes if r.crew.code == "pothole-1")
    first = next(s for s in route.stops if s.kind == "job")
    WorkOrderLifecycle.transition(
        db, first.work_order, "on_site", actor=f.SYSTEM, at=first.start_at
    )
    db.commit()
    child = replan_plan(
        db, live, actor=f.SYSTEM, now=first.start_at + timedelta(minutes=5), time_limit_s=1
    )
    db.commit()
    run_plan(sessions, child.id, travel=TRAVEL, tz=TZ)
    db.expire_all()
    child = db.get(RoutePlan, child.id)
    jobs = [
        s
        for s in next(r for r in child.routes if r.crew.code == "pothole-1").stops
        if s.kind == "job"
    ]
    assert jobs[0].work_order_id == first.work_order_id and jobs[0].locked
    move_stop(
        db,
        child,
        work_order_id=jobs[-1].work_order_id,
        crew_id=route.crew_id,
        position=2,
        travel=TRAVEL,
        tz=TZ,
        actor=f.SYSTEM,
    )
    db.commit()
    db.expire_all()
    after = [
        s
        for s in next(
            r for r in db.get(RoutePlan, child.id).routes if r.crew.code == "pothole-1"
        ).stops
        if s.kind == "job"
    ]
    assert after[0].work_order_id == first.work_order_id and after[0].locked
    assert not any(s.locked for s in after[1:])
