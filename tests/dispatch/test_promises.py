"""Promises kept: during the day the crews' ETAs follow their progress and GPS fixes, a
resident's expected time moves with them, and one whose promise slips by more than the
setting is told once through the outbox (real PostGIS)."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.field import Ping, ingest_positions
from core.intake import Contact
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import Notification, RoutePlan, ServiceRequest, Shift, StatusEvent, WorkOrder
from core.notifications import email_message
from dispatch.build import Scope
from dispatch.plans import PlanRequest, publish_plan, request_plan, run_plan
from dispatch.promises import refresh_promises
from geo.travel import StraightLineProvider
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider(detour_factor=1.3, speed_kmh=30)
SLIP = timedelta(minutes=30)


def _at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


@pytest.fixture
def live(db: Session, sessions: sessionmaker) -> dict[str, Any]:
    depot = f.depot(db)
    f.service_type(db)
    crew = f.crew(db, "pothole-1")
    crew.depot_id = depot.id
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=_at(7),
            ends_at=_at(15, 30),
            start_depot_id=depot.id,
            end_depot_id=depot.id,
        )
    )
    for i in range(3):
        lon, lat = f.offset(f.LON, f.LAT, 1000 * (i + 1))
        f.report(db, lon=lon, lat=lat, contact=Contact(email=f"resident{i}@example.org"))
    db.commit()
    plan = request_plan(db, PlanRequest(DAY, Scope(), 1), actor=f.SYSTEM)
    db.commit()
    run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ, now=_at(6))
    db.expire_all()
    plan = db.get(RoutePlan, plan.id)
    publish_plan(db, plan, actor=f.SYSTEM, tz=TZ, now=_at(6, 30))
    db.commit()
    (route,) = plan.routes
    stops = [st for st in route.stops if st.kind == "job"]
    return {"plan": plan, "crew": crew, "stops": stops}


def _minute_up(t: datetime) -> datetime:
    return (
        t
        if t.second == 0 and t.microsecond == 0
        else t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    )


def _drive(db: Session, stop: Any, frm: tuple[float, float] = (f.LON, f.LAT)) -> timedelta:
    """Straight-line driving time to a stop, as the projection prices it."""
    from core.spatial import lon_lat

    to = lon_lat(db.get(WorkOrder, stop.work_order_id).location)
    return timedelta(seconds=int(TRAVEL.matrix([frm, to]).durations[0][1]))


def _request(db: Session, stop: Any) -> ServiceRequest:
    return db.scalars(
        select(ServiceRequest).where(ServiceRequest.work_order_id == stop.work_order_id)
    ).one()


def _delayed(db: Session) -> list[Notification]:
    return list(
        db.scalars(
            select(Notification).where(Notification.kind == "delayed").order_by(Notification.id)
        )
    )


def test_publishing_promises_the_plans_times(db: Session, live: dict) -> None:
    for st in live["stops"]:
        req = _request(db, st)
        assert req.expected_at == req.promised_at == st.start_at


def test_a_crew_that_has_not_set_off_makes_its_day_slip_and_residents_are_told_once(
    db: Session, live: dict, settings
) -> None:  # noqa: ANN001
    first, second, third = live["stops"]
    assert first.start_at < _at(7, 30)
    done = refresh_promises(db, travel=TRAVEL, tz=TZ, slip=SLIP, now=_at(9))
    db.commit()
    assert (done.routes, done.stops, done.late, done.told) == (1, 3, 3, 3)
    # From the yard at 09:00, driving at 30 km/h with the 1.3 detour, to the minute.
    eta = _minute_up(_at(9) + _drive(db, first))
    assert first.projected_start_at == eta and first.projected_at == _at(9)
    assert second.projected_start_at > first.projected_start_at + timedelta(minutes=30)
    req = _request(db, first)
    assert req.expected_at == req.promised_at == eta
    note = db.scalars(
        select(StatusEvent)
        .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == req.id)
        .order_by(StatusEvent.id.desc())
    ).first()
    assert (
        note.public
        and note.note
        == f"The work is running late: a crew is now expected by {eta.astimezone(TZ):%H:%M}."
    )
    assert sorted((n.recipient, n.kind) for n in _delayed(db)) == [
        (f"resident{i}@example.org", "delayed") for i in range(3)
    ]
    mail = email_message(
        db, next(n for n in _delayed(db) if n.service_request_id == req.id), settings
    )
    assert mail["Subject"] == f"Your report {req.public_id} (Pothole) will be later than we said"
    assert f"Notes from the city: {note.note}" in mail.get_content()
    # Ten minutes on, still in the yard: the expected times follow, nobody is told again.
    refresh_promises(db, travel=TRAVEL, tz=TZ, slip=SLIP, now=_at(9, 10))
    db.commit()
    assert (
        _request(db, first).expected_at == eta + timedelta(minutes=10)
        and _request(db, first).promised_at == eta
    )
    assert len(_delayed(db)) == 3


def test_progress_and_a_fresh_fix_drive_the_projection(db: Session, live: dict) -> None:
    first, second, _ = live["stops"]
    wo = db.get(WorkOrder, first.work_order_id)
    WorkOrderLifecycle.transition(db, wo, "on_site", actor=f.SYSTEM, at=first.start_at)
    WorkOrderLifecycle.transition(
        db, wo, "completed", actor=f.SYSTEM, at=first.start_at + timedelta(minutes=30)
    )
    from core.spatial import lon_lat

    lon, lat = lon_lat(
        db.get(WorkOrder, second.work_order_id).location
    )  # at the second stop already
    ingest_positions(
        db,
        live["crew"].id,
        [Ping(at=first.end_at + timedelta(minutes=1), lat=lat, lon=lon)],
        now=first.end_at,
    )
    db.commit()
    refresh_promises(db, travel=TRAVEL, tz=TZ, slip=SLIP, now=first.end_at + timedelta(minutes=2))
    db.commit()
    assert first.projected_start_at is None  # done
    # Standing at the stop two minutes after finishing the first: it starts now, on plan.
    assert second.projected_start_at == _minute_up(first.end_at + timedelta(minutes=2))
    assert abs(second.projected_start_at - second.start_at) < SLIP and _delayed(db) == []
    assert _request(db, second).expected_at == second.projected_start_at


def test_dispatchers_see_the_late_stops(client: Any, db: Session, live: dict) -> None:
    headers = f.token_for(db, f.user(db, "d@test", "dispatcher"))
    refresh_promises(db, travel=TRAVEL, tz=TZ, slip=SLIP, now=_at(9))
    db.commit()
    late = client.get(
        "/api/v1/plans/late-stops",
        query_string={"date": DAY.isoformat(), "min_minutes": 30},
        headers=headers,
    )
    assert late.status_code == 200, late.data
    rows = late.get_json()
    assert sorted(r["work_order_id"] for r in rows) == sorted(
        st.work_order_id for st in live["stops"]
    )
    assert all(r["crew"] == "pothole-1" and r["late_minutes"] >= 30 for r in rows)
    assert [r["late_minutes"] for r in rows] == sorted(
        (r["late_minutes"] for r in rows), reverse=True
    )
    detail = client.get(f"/api/v1/plans/{live['plan'].id}", headers=headers).get_json()
    stop = next(
        s
        for s in detail["routes"][0]["stops"]
        if s["work_order_id"] == live["stops"][0].work_order_id
    )
    first = live["stops"][0]
    eta = _minute_up(_at(9) + _drive(db, first))
    assert stop["late_minutes"] == math.ceil((eta - first.start_at).total_seconds() / 60)
