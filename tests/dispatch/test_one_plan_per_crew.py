"""No crew is on two published plans of a day: refused with the plan and crews named,
enforced by the database, and concurrent publishes and re-plans neither deadlock nor
start solver jobs that nothing reconciles."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Conflict
from core.models import CrewDay, RoutePlan, Shift, ShiftBreak
from dispatch.build import Scope
from dispatch.plans import PlanRequest, publish_plan, request_plan, run_plan
from geo.travel import StraightLineProvider
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider()


def _at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


def _world(s: Session) -> None:
    """Two pothole crews (Roads) in the 'centre' district's yard, work in and out of it."""
    depot = f.depot(s)
    f.district(s, "centre", bbox=(1.50, 42.49, 1.535, 42.52))
    f.service_type(s)
    for code in ("pothole-1", "pothole-2"):
        crew = f.crew(s, code)
        crew.depot_id = depot.id
        s.add(
            Shift(
                crew_id=crew.id,
                starts_at=_at(7),
                ends_at=_at(15, 30),
                start_depot_id=depot.id,
                end_depot_id=depot.id,
                breaks=[ShiftBreak(earliest_start=_at(11, 30), latest_end=_at(13, 30), minutes=30)],
            )
        )
    s.flush()
    for i in range(4):
        lon, lat = f.offset(f.LON, f.LAT, 900 * (i + 1))
        f.report(s, lon=lon, lat=lat)


def _ready(s: Session, sessions: sessionmaker, scope: Scope) -> RoutePlan:
    plan = request_plan(s, PlanRequest(DAY, scope, 1), actor=f.SYSTEM)
    s.commit()
    run_plan(sessions, plan.id, travel=TRAVEL, tz=TZ)
    s.expire_all()
    return s.get(RoutePlan, plan.id)


def test_a_district_plan_and_an_agency_plan_cannot_both_publish(
    db: Session, sessions: sessionmaker
) -> None:
    _world(db)
    db.commit()
    district = _ready(db, sessions, Scope(district="centre"))
    agency = _ready(db, sessions, Scope(agency="Roads"))
    publish_plan(db, agency, actor=f.SYSTEM, tz=TZ)
    db.commit()
    with pytest.raises(Conflict) as refused:
        publish_plan(db, district, actor=f.SYSTEM, tz=TZ)
    assert (
        f"plan {agency.id} (version 1" in refused.value.message
        and "pothole-1, pothole-2" in refused.value.message
    )
    assert refused.value.details["plan_id"] == agency.id and refused.value.details["crews"] == [
        "pothole-1",
        "pothole-2",
    ]
    db.rollback()
    assert db.get(RoutePlan, district.id).status == "ready"
    held = db.execute(select(CrewDay.plan_id, func.count()).group_by(CrewDay.plan_id)).all()
    assert held == [(agency.id, 2)]


def test_a_draft_built_before_a_later_publish_is_stale(db: Session, sessions: sessionmaker) -> None:
    _world(db)
    db.commit()
    older = _ready(db, sessions, Scope(district="centre"))
    live = _ready(db, sessions, Scope(agency="Roads"))
    publish_plan(db, live, actor=f.SYSTEM, tz=TZ)
    db.commit()
    # The agency's plan steps down for a new version; the district draft is still older than it.
    db.execute(text("UPDATE route_plans SET status = 'superseded' WHERE id = :id"), {"id": live.id})
    db.execute(text("DELETE FROM crew_days"))
    db.commit()
    with pytest.raises(
        Conflict,
        match=f"plan {live.id} .* was published for pothole-1, pothole-2 at .*after this draft was built",
    ):
        publish_plan(db, older, actor=f.SYSTEM, tz=TZ)


def test_the_database_holds_a_crew_to_one_published_plan_a_day(
    db: Session, sessions: sessionmaker
) -> None:
    _world(db)
    db.commit()
    plan = _ready(db, sessions, Scope())
    other = _ready(db, sessions, Scope(agency="Roads"))
    crew_id = plan.routes[0].crew_id
    db.add(CrewDay(crew_id=crew_id, plan_date=DAY, plan_id=plan.id))
    db.flush()
    with pytest.raises(IntegrityError), db.begin_nested():
        db.add(CrewDay(crew_id=crew_id, plan_date=DAY, plan_id=other.id))
        db.flush()


def _threads(n: int, fn) -> list:  # noqa: ANN001
    results: list = [None] * n
    gate = threading.Barrier(n)

    def run(k: int) -> None:
        gate.wait()
        try:
            results[k] = fn(k)
        except Exception as exc:  # noqa: BLE001  (the test reports what each thread met)
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_publishes_of_two_drafts_never_deadlock(
    committed: sessionmaker, settings
) -> None:  # noqa: ANN001
    from api import create_app

    with committed() as s:
        _world(s)
        admin = f.user(s, "d@test", "dispatcher")
        headers = f.token_for(s, admin)
        s.commit()
        drafts = [_ready(s, committed, Scope()).id, _ready(s, committed, Scope()).id]
    app = create_app(settings, sessions=committed, queue=_NoQueue())

    def publish(k: int) -> int:
        with app.test_client() as client:
            return client.post(
                f"/api/v1/plans/{drafts[k % 2]}/publish", headers=headers
            ).status_code

    answers = Counter(_threads(10, publish))
    assert answers == {200: 1, 409: 9}, answers
    with committed() as s:
        statuses = sorted(s.scalars(select(RoutePlan.status).where(RoutePlan.id.in_(drafts))))
        assert statuses == ["published", "superseded"]
        assert s.scalar(select(func.count()).select_from(CrewDay)) == 2


def test_concurrent_replans_start_one_solve(committed: sessionmaker, settings) -> None:  # noqa: ANN001
    from api import create_app
    from workers.app import Queue

    with committed() as s:
        _world(s)
        headers = f.token_for(s, f.user(s, "d@test", "dispatcher"))
        s.commit()
        live = _ready(s, committed, Scope())
        publish_plan(s, live, actor=f.SYSTEM, tz=TZ)
        s.commit()
    queue = Queue(settings)
    app = create_app(settings, sessions=committed, queue=queue)
    try:

        def replan(k: int) -> tuple[int, int]:
            with app.test_client() as client:
                r = client.post(
                    f"/api/v1/plans/{live.id}/replan", json={"time_limit_s": 1}, headers=headers
                )
                return r.status_code, r.get_json()["id"]

        answers = _threads(6, replan)
    finally:
        queue.close()
    assert {a for a in answers} == {(202, answers[0][1])}, answers
    with committed() as s:
        jobs = (
            s.execute(text("SELECT args FROM procrastinate_jobs WHERE task_name = 'optimise_plan'"))
            .scalars()
            .all()
        )
        assert jobs == [{"plan_id": answers[0][1]}]
        assert (
            s.scalar(
                select(func.count()).select_from(RoutePlan).where(RoutePlan.parent_id == live.id)
            )
            == 1
        )


class _NoQueue:
    def defer(self, task_name: str, **kwargs: object) -> int:
        return 0


def test_publishes_of_two_days_sharing_crews_at_once_never_deadlock(
    committed: sessionmaker, monkeypatch
) -> None:  # noqa: ANN001
    """Each day has its own lock, so two days publish side by side; their crews' feed rows
    are locked once each, at commit, in id order. A pause inside the publish (after its
    savepoint) widens the window in which crews used to be taken in two orders."""
    import time as pause

    from core import crewfeed
    from dispatch import plans as plans_module

    days = [DAY + timedelta(days=1), DAY + timedelta(days=2)]
    with committed() as s:
        depot = f.depot(s)
        f.service_type(s, "pothole", skill="asphalt")
        f.service_type(s, "graffiti", skill="paint")
        f.district(s, "west", bbox=(1.40, 42.40, 1.5199, 42.60))
        f.district(s, "east", bbox=(1.5201, 42.40, 1.70, 42.60))
        for code, skills in (("a-low", ["asphalt"]), ("b-high", ["paint"])):
            crew = f.crew(s, code, skills=skills)
            crew.depot_id = depot.id
            for d in days:
                s.add(
                    Shift(
                        crew_id=crew.id,
                        starts_at=datetime.combine(d, time(7), TZ),
                        ends_at=datetime.combine(d, time(15), TZ),
                        start_depot_id=depot.id,
                        end_depot_id=depot.id,
                    )
                )
        s.flush()
        f.report(s, "graffiti", lon=1.515, lat=42.507)  # west: for the higher crew id
        f.report(s, "pothole", lon=1.525, lat=42.507)  # east: for the lower one
        s.commit()
        drafts = []
        for d, scope in ((days[0], Scope(district="west")), (days[1], Scope(district="east"))):
            plan = request_plan(s, PlanRequest(d, scope, 1), actor=f.SYSTEM)
            s.commit()
            run_plan(committed, plan.id, travel=TRAVEL, tz=TZ)
            drafts.append(plan.id)
    real, paused = crewfeed.route_changed, set()

    def slow(session, crew_id, plan_id, at=None):  # noqa: ANN001, ANN202
        if threading.get_ident() not in paused:
            paused.add(threading.get_ident())
            pause.sleep(1.5)
        return real(session, crew_id, plan_id, at=at)

    monkeypatch.setattr(plans_module.crewfeed, "route_changed", slow)

    def publish(k: int) -> str:
        with committed() as s:
            publish_plan(s, s.get(RoutePlan, drafts[k]), actor=f.SYSTEM, tz=TZ)
            s.commit()
            return "published"

    assert _threads(2, publish) == ["published", "published"]
