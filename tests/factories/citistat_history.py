"""CitiStat's small hand-built history: nine requests over two weeks of March 2026, with
their work orders, completions, crews' plans and GPS tracks. The table of what happened
to each request, and the figures it must give, is tests/reports/test_citistat.py's
docstring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.lifecycle import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import (
    Completion,
    Crew,
    PlanRoute,
    PositionPing,
    RoutePlan,
    RouteStop,
    ServiceRequest,
    Shift,
    StatusEvent,
    User,
    WorkOrder,
)
from core.spatial import point
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
START, END = date(2026, 3, 2), date(2026, 3, 15)
NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
ACTOR = Actor(label="test")


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass
class History:
    crews: dict[str, Crew]
    users: dict[str, User]
    requests: dict[str, ServiceRequest]
    work_orders: dict[str, WorkOrder]


_seq = 0


def _request(
    db: Session, st_id: int, at: datetime, *, district_id: int | None = None, **kw: Any
) -> ServiceRequest:
    global _seq
    _seq += 1
    sr = ServiceRequest(
        public_id=f"CS-{_seq}",
        token=f"tok-secret-{_seq}",
        service_type_id=st_id,
        requested_at=at,
        updated_at=at,
        district_id=district_id,
        location=point(f.LON, f.LAT),
        description=f"report {_seq}",
        **kw,
    )
    db.add(sr)
    db.flush()
    return sr


def _wo(db: Session, st_id: int, district_id: int | None, crew_id: int | None) -> WorkOrder:
    wo = WorkOrder(
        service_type_id=st_id,
        priority=3,
        due_at=utc(3, 20),
        skill="asphalt",
        minutes_on_site=30,
        location=point(f.LON, f.LAT),
        district_id=district_id,
        crew_id=crew_id,
    )
    db.add(wo)
    db.flush()
    return wo


def _completion(
    db: Session,
    wo: WorkOrder,
    crew: Crew,
    user: User,
    verdict: str,
    at: datetime,
    outcome: str = "fixed",
    audit: bool = False,
    visit: tuple[datetime, datetime] | None = None,
) -> Completion:
    arrived, done = visit or (None, None)
    c = Completion(
        work_order_id=wo.id,
        crew_id=crew.id,
        user_id=user.id,
        outcome=outcome,
        verdict=verdict,
        submitted_at=at,
        audit_sampled=audit,
        arrived_at=arrived,
        completed_at=done,
    )
    db.add(c)
    db.flush()
    return c


def _wo_event(db: Session, wo: WorkOrder, to: str, at: datetime, user: User | None = None) -> None:
    db.add(
        StatusEvent(
            entity="work_order",
            entity_id=wo.id,
            to_status=to,
            at=at,
            actor="test",
            actor_user_id=user.id if user else None,
        )
    )


def _plan(
    db: Session,
    day: date,
    version: int,
    status: str,
    published: bool,
    routes: list[tuple[Crew, int, list[WorkOrder]]],
) -> RoutePlan:
    plan = RoutePlan(
        plan_date=day,
        scope_key="",
        version=version,
        status=status,
        time_limit_s=10,
        published_at=utc(3, 1) if published else None,
    )
    start = datetime(day.year, day.month, day.day, 7, tzinfo=UTC)
    for crew, drive_s, orders in routes:
        plan.routes.append(
            PlanRoute(
                crew_id=crew.id,
                start_at=start,
                end_at=start + timedelta(hours=8),
                drive_s=drive_s,
                distance_m=1000,
                stops=[
                    RouteStop(
                        sequence=i,
                        kind="job",
                        work_order_id=wo.id,
                        arrival_at=start,
                        start_at=start,
                        end_at=start,
                    )
                    for i, wo in enumerate(orders, 1)
                ],
            )
        )
    db.add(plan)
    db.flush()
    return plan


def build_citistat_history(db: Session) -> History:
    pothole = f.service_type(db, "pothole", sla_hours=72, agency="Roads")
    graffiti = f.service_type(db, "graffiti", sla_hours=24, agency="Sanitation", skill="graffiti")
    north = f.district(db, "north", (1.50, 42.49, 1.55, 42.52))
    south = f.district(db, "south", (1.50, 42.40, 1.55, 42.45))
    c1, c2 = f.crew(db, "c1"), f.crew(db, "c2")
    u1, u2 = (
        f.user(db, "c1@example.org", "crew", crew=c1),
        f.user(db, "c2@example.org", "crew", crew=c2),
    )
    # A reporter with contact details, to prove they never leave through public output.
    f.report(
        db,
        "pothole",
        at=utc(2, 1),
        contact=f.Contact(email="resident@example.org", phone="+376 555 0101"),
    )

    wo1 = _wo(db, pothole.id, north.id, c1.id)
    wo2 = _wo(db, pothole.id, north.id, c2.id)
    wo3 = _wo(db, pothole.id, north.id, None)
    wo5 = _wo(db, pothole.id, north.id, c1.id)
    wo6 = _wo(db, graffiti.id, south.id, c2.id)

    # Each completion with its visit (on site, finished): the on-site time.
    comp1 = _completion(
        db, wo1, c1, u1, "auto_verified", utc(3, 2, 18), visit=(utc(3, 2, 16), utc(3, 2, 17, 30))
    )
    comp_a = _completion(
        db, wo2, c2, u2, "auto_verified", utc(3, 3, 12), visit=(utc(3, 3, 11), utc(3, 3, 12))
    )
    comp2 = _completion(
        db, wo2, c2, u2, "verified", utc(3, 4, 3), audit=True, visit=(utc(3, 4, 2), utc(3, 4, 3))
    )
    comp3 = _completion(
        db, wo5, c1, u1, "needs_review", utc(3, 10, 13), visit=(utc(3, 10, 12), utc(3, 10, 12, 45))
    )
    _completion(db, wo3, c2, u2, "rejected", utc(3, 6, 9), visit=(utc(3, 6, 8), utc(3, 6, 9)))
    comp6 = _completion(
        db,
        wo6,
        c2,
        u2,
        "verified",
        utc(3, 6, 16),
        outcome="not_found",
        visit=(utc(3, 6, 15), utc(3, 6, 15, 30)),
    )
    _completion(
        db, wo3, c1, u1, "auto_verified", utc(3, 16, 2), visit=(utc(3, 16, 1), utc(3, 16, 2))
    )  # after the period

    reqs: dict[str, ServiceRequest] = {}
    reqs["P1"] = _request(
        db,
        pothole.id,
        utc(3, 2, 8),
        district_id=north.id,
        work_order_id=wo1.id,
        detailed_status="fixed",
        completion_id=comp1.id,
        closed_at=utc(3, 2, 18),
    )
    # P2 through the lifecycle: fixed, reopened by a resident, fixed again.
    p2 = reqs["P2"] = _request(
        db, pothole.id, utc(3, 3, 8), district_id=north.id, work_order_id=wo2.id
    )
    for target, at, ctx in [
        ("in_progress", utc(3, 3, 11), {}),
        ("fixed", utc(3, 3, 12), {"verified_completion_id": comp_a.id}),
        ("reopened", utc(3, 3, 15), {}),
        ("in_progress", utc(3, 4, 2), {}),
        ("fixed", utc(3, 4, 4), {"verified_completion_id": comp2.id}),
    ]:
        ServiceRequestLifecycle.transition(db, p2, target, actor=ACTOR, at=at, **ctx)
    p3 = reqs["P3"] = _request(
        db, pothole.id, utc(3, 4, 8), district_id=north.id, work_order_id=wo3.id
    )
    ServiceRequestLifecycle.transition(db, p3, "no_action_needed", actor=ACTOR, at=utc(3, 5, 8))
    ServiceRequestLifecycle.transition(db, p3, "reopened", actor=ACTOR, at=utc(3, 6, 8))
    reqs["P4"] = _request(
        db,
        pothole.id,
        utc(3, 14, 8),
        district_id=north.id,
        duplicate_of_id=p3.id,
        detailed_status="acknowledged",
    )
    reqs["P5"] = _request(
        db,
        pothole.id,
        utc(3, 10, 8),
        district_id=north.id,
        work_order_id=wo5.id,
        detailed_status="fixed",
        completion_id=comp3.id,
        closed_at=utc(3, 10, 13),
    )
    reqs["G0"] = _request(
        db, graffiti.id, utc(3, 1, 23, 30), detailed_status="cancelled", closed_at=utc(3, 2, 0, 30)
    )
    g1 = reqs["G1"] = _request(
        db,
        graffiti.id,
        utc(3, 5, 10),
        district_id=south.id,
        work_order_id=wo6.id,
        detailed_status="not_found",
        completion_id=comp6.id,
        closed_at=utc(3, 6, 16),
    )
    reqs["G2"] = _request(
        db,
        graffiti.id,
        utc(3, 9, 10),
        district_id=south.id,
        duplicate_of_id=g1.id,
        detailed_status="duplicate",
        closed_at=utc(3, 9, 12),
    )
    reqs["G3"] = _request(db, graffiti.id, utc(3, 15, 22, 30), district_id=south.id)
    # Just outside the period, on both sides (city time).
    _request(db, pothole.id, utc(3, 1, 22, 59), district_id=north.id)
    _request(
        db,
        graffiti.id,
        utc(3, 15, 23, 0),
        district_id=south.id,
        detailed_status="duplicate",
        closed_at=utc(3, 15, 23, 5),
    )

    # Work order timelines: on site → completed, by the crew's users (planned vs done reads them).
    for wo, on_site, done, user in [
        (wo1, utc(3, 2, 16), utc(3, 2, 17, 30), u1),
        (wo2, utc(3, 3, 11), utc(3, 3, 12), u2),
        (wo2, utc(3, 4, 2), utc(3, 4, 3), u2),
        (wo3, utc(3, 6, 8), utc(3, 6, 9), u2),
        (wo5, utc(3, 10, 12), utc(3, 10, 12, 45), u1),
        (wo6, utc(3, 6, 15), utc(3, 6, 15, 30), u2),
        (wo3, utc(3, 16, 1), utc(3, 16, 2), u1),  # after the period
    ]:
        _wo_event(db, wo, "dispatched", on_site - timedelta(hours=1), None)
        _wo_event(db, wo, "on_site", on_site, user)
        _wo_event(db, wo, "completed", done, user)

    for crew, day, hours in [(c1, 2, 8), (c1, 10, 8), (c2, 3, 10), (c1, 16, 8)]:
        db.add(Shift(crew_id=crew.id, starts_at=utc(3, day, 7), ends_at=utc(3, day, 7 + hours)))

    # 2 March: v1 published then superseded by v2 (in force); v3 superseded without ever
    # being published. 3 March: v1 in force. 16 March: outside the period.
    _plan(db, date(2026, 3, 2), 1, "superseded", True, [(c1, 3600, [wo1])])
    _plan(db, date(2026, 3, 2), 2, "published", True, [(c1, 5400, [wo1, wo3])])
    _plan(db, date(2026, 3, 2), 3, "superseded", False, [(c1, 9999, [wo1, wo3, wo5])])
    _plan(db, date(2026, 3, 3), 1, "published", True, [(c2, 1800, [wo2])])
    _plan(db, date(2026, 3, 16), 1, "published", True, [(c1, 7777, [wo3])])

    east = f.offset(f.LON, f.LAT, 1000)
    for crew, at, (lon, lat) in [
        (c1, utc(3, 2, 8), (f.LON, f.LAT)),
        (c1, utc(3, 2, 8, 5), east),
        (c1, utc(3, 2, 8, 10), (f.LON, f.LAT)),
        (c1, utc(3, 16, 8), east),  # after the period
        (c2, utc(3, 3, 9), (f.LON, f.LAT)),
        (c2, utc(3, 3, 9, 5), east),
    ]:
        db.add(PositionPing(crew_id=crew.id, at=at, location=point(lon, lat)))
    db.flush()
    return History(
        {"c1": c1, "c2": c2},
        {"u1": u1, "u2": u2},
        reqs,
        {"wo1": wo1, "wo2": wo2, "wo3": wo3, "wo5": wo5, "wo6": wo6},
    )
