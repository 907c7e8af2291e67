"""The worker's periodic jobs against committed rows: weekly patterns make the coming
shifts, and the day's routes are projected so that promises move with the crews."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import shifts as rota
from core.intake import Contact
from core.models import (
    CrewDay,
    Notification,
    PlanRoute,
    RoutePlan,
    RouteStop,
    ServiceRequest,
    Shift,
)
from core.workorders import change_status
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")


@pytest.fixture
def worker_env(
    committed: sessionmaker, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> sessionmaker[Session]:
    """The worker's own settings and sessions, pointed at the test database."""
    import workers.tasks

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STREETLOOP_TIMEZONE", "Europe/Andorra")
    monkeypatch.delenv("STREETLOOP_ROAD_DATA", raising=False)
    workers.tasks.close_resources()
    yield committed
    workers.tasks.close_resources()


def test_make_shifts_extends_the_weekly_patterns(worker_env: sessionmaker) -> None:
    from workers.tasks import make_shifts

    with worker_env() as s:
        crew = f.crew(s, "rota-worker")
        rota.create_pattern(
            s,
            crew=crew,
            spec=rota.PatternSpec(weekdays=(1, 2, 3, 4, 5, 6, 7), starts=time(7), ends=time(15)),
            actor=f.SYSTEM,
            tz=TZ,
            horizon_days=1,
        )
        s.commit()
        before = s.scalar(select(func.count()).select_from(Shift))
    make_shifts(timestamp=0)
    with worker_env() as s:
        # The setting's horizon (28 days) from today, today's shift aside if it is over.
        after = s.scalar(select(func.count()).select_from(Shift))
        assert after >= before + 26
    make_shifts(timestamp=0)  # and only once
    with worker_env() as s:
        assert s.scalar(select(func.count()).select_from(Shift)) == after


def test_refresh_promises_moves_a_late_promise_and_tells_the_resident(
    worker_env: sessionmaker,
) -> None:
    from workers.tasks import refresh_promises

    now = datetime.now(UTC)
    with worker_env() as s:
        depot = f.depot(s)
        f.service_type(s)
        crew = f.crew(s, "late-1")
        crew.depot_id = depot.id
        wo = f.report(
            s, lon=f.offset(f.LON, f.LAT, 1500)[0], contact=Contact(email="ana@example.org")
        ).work_order
        change_status(s, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
        day = now.astimezone(TZ).date()
        plan = RoutePlan(
            plan_date=day, version=1, status="published", time_limit_s=1, stats={"feasible": True}
        )
        route = PlanRoute(
            plan=plan,
            crew_id=crew.id,
            start_at=now - timedelta(hours=2),
            end_at=now + timedelta(hours=2),
            drive_s=0,
            distance_m=0,
        )
        due = now - timedelta(hours=1)  # the crew should have been there an hour ago
        route.stops.append(
            RouteStop(
                sequence=1,
                kind="job",
                work_order_id=wo.id,
                arrival_at=due,
                start_at=due,
                end_at=due,
            )
        )
        s.add_all([plan, route])
        s.flush()
        s.add(CrewDay(crew_id=crew.id, plan_date=day, plan_id=plan.id))
        for req in wo.requests:
            req.expected_at = req.promised_at = due
        s.commit()
        request_id = wo.requests[0].id
    refresh_promises(timestamp=0)
    with worker_env() as s:
        req = s.get(ServiceRequest, request_id)
        assert req.expected_at >= now and req.promised_at == req.expected_at
        kinds = s.scalars(
            select(Notification.kind)
            .where(Notification.service_request_id == request_id)
            .order_by(Notification.id)
        ).all()
        assert kinds == ["scheduled", "delayed"]


def test_purge_personal_data_follows_the_retention_settings(
    worker_env: sessionmaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.models import PositionPing, RequestContact, StatusEvent
    from core.spatial import point
    from workers.tasks import close_resources, purge_personal_data

    monkeypatch.setenv("STREETLOOP_RETAIN_TRACKS_DAYS", "7")
    monkeypatch.setenv("STREETLOOP_RETAIN_CONTACT_DAYS", "30")
    close_resources()  # settings are read once per worker process
    now = datetime.now(UTC)
    with worker_env() as s:
        f.service_type(s)
        crew = f.crew(s, "gps-1")
        for days in (20, 10, 9, 1):
            s.add(
                PositionPing(
                    crew_id=crew.id, at=now - timedelta(days=days), location=point(f.LON, f.LAT)
                )
            )
        sr = f.report(
            s, at=now - timedelta(days=41), contact=Contact(email="bo@example.org")
        ).request
        from core.lifecycle.service_request import ServiceRequestLifecycle

        ServiceRequestLifecycle.transition(
            s, sr, "cancelled", actor=f.SYSTEM, at=now - timedelta(days=40)
        )
        s.commit()
        crew_id, request_id = crew.id, sr.id
    purge_personal_data(timestamp=0)
    with worker_env() as s:
        ages = sorted(
            round((now - at).total_seconds() / 86400)
            for at in s.scalars(select(PositionPing.at).where(PositionPing.crew_id == crew_id))
        )
        assert ages == [1, 9]  # the last fix before the cutoff starts the next leg
        assert s.get(RequestContact, request_id) is None
        assert (
            s.scalar(
                select(func.count())
                .select_from(StatusEvent)
                .where(StatusEvent.note.like("retention:%"))
            )
            == 2
        )  # the crew's, the request's
