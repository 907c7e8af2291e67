"""From database rows to a `Problem`: open work orders, crews on shift, depots, breaks.

Times become integer seconds since local midnight of the plan day; points become
indices into one travel-time matrix, computed once for the plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from geoalchemy2.shape import to_shape
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from core.models import Crew as CrewRow
from core.models import Depot, District, ServiceType, Shift, WorkOrder
from dispatch.model import Break, Crew, Job, Matrix, Problem, TimeWindow

# Work waiting for a plan: never dispatched yet, or only in an unpublished draft.
PLANNABLE_STATUSES = ("new", "planned")


class MatrixLike(Protocol):
    durations: Any
    distances: Any


class TravelTimes(Protocol):
    name: str

    def matrix(self, points: Sequence[tuple[float, float]]) -> MatrixLike: ...


@dataclass(frozen=True)
class Scope:
    """Which part of the city a plan covers; empty means all of it."""

    agency: str | None = None
    depot: str | None = None
    district: str | None = None

    @property
    def key(self) -> str:
        return ";".join(f"{k}={v}" for k, v in (("agency", self.agency), ("depot", self.depot), ("district", self.district)) if v)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("agency", self.agency), ("depot", self.depot), ("district", self.district)) if v}


@dataclass
class Built:
    """The problem plus what is needed to turn its answer back into rows."""

    problem: Problem
    midnight: datetime  # local midnight of the plan day, as a UTC instant
    points: list[tuple[float, float]]
    crews: dict[str, CrewRow]
    shifts: dict[str, Shift]
    work_orders: dict[str, WorkOrder]
    provider: str
    # Open work in scope the solver never saw, with why (no location yet).
    excluded: list[dict[str, Any]] = field(default_factory=list)
    # Work already dispatched by the plan being re-planned: it may move.
    carried: set[str] = field(default_factory=set)

    def at(self, seconds: int) -> datetime:
        return self.midnight + timedelta(seconds=seconds)

    def seconds(self, when: datetime) -> int:
        return int((when - self.midnight).total_seconds())


class _Points:
    """Deduplicated matrix points: two jobs on one corner share a row."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []
        self._index: dict[tuple[float, float], int] = {}

    def add(self, lon: float, lat: float) -> int:
        key = (round(lon, 7), round(lat, 7))
        if key not in self._index:
            self._index[key] = len(self.points)
            self.points.append(key)
        return self._index[key]


def _lonlat(element: Any) -> tuple[float, float]:
    shape = to_shape(element)
    return shape.x, shape.y


def crews_on_shift(session: Session, plan_date: date, tz: ZoneInfo, scope: Scope) -> list[tuple[CrewRow, Shift]]:
    midnight = datetime.combine(plan_date, time(0), tz)
    q: Select = (
        select(CrewRow, Shift)
        .join(Shift, Shift.crew_id == CrewRow.id)
        .where(CrewRow.active.is_(True), Shift.starts_at >= midnight, Shift.starts_at < midnight + timedelta(days=1))
        .options(selectinload(Shift.breaks), selectinload(CrewRow.depot))
        .order_by(CrewRow.code, Shift.starts_at)
    )
    if scope.agency:
        q = q.where(CrewRow.agency == scope.agency)
    if scope.depot:
        q = q.where(CrewRow.depot_id.in_(select(Depot.id).where(Depot.code == scope.depot)))
    seen: set[int] = set()
    out = []
    for crew, shift in session.execute(q).all():
        if crew.id in seen:  # one shift per crew and day; a split shift is a later refinement
            continue
        seen.add(crew.id)
        out.append((crew, shift))
    return out


def open_work(session: Session, scope: Scope, skills: set[str], *, statuses: Sequence[str] = PLANNABLE_STATUSES) -> list[WorkOrder]:
    q = (
        select(WorkOrder)
        .where(WorkOrder.status.in_(statuses), WorkOrder.skill.in_(sorted(skills)))
        .options(selectinload(WorkOrder.service_type))
        .order_by(WorkOrder.id)
    )
    if scope.agency:
        q = q.where(WorkOrder.service_type_id.in_(select(ServiceType.id).where(ServiceType.agency == scope.agency)))
    if scope.district:
        q = q.where(WorkOrder.district_id.in_(select(District.id).where(District.code == scope.district)))
    return list(session.scalars(q))


def build_problem(
    session: Session,
    *,
    plan_date: date,
    scope: Scope,
    tz: ZoneInfo,
    travel: TravelTimes,
    now: datetime | None = None,
    extra_work_orders: Sequence[WorkOrder] = (),
    start_positions: dict[int, tuple[float, float]] | None = None,
) -> Built:
    """The day's routing problem. `now` (re-plans) is when overdue-ness is measured;
    `start_positions` (crew row id -> lon, lat) start those crews where they are."""
    # Seconds are real elapsed time from local midnight, counted in UTC: on the two
    # daylight-saving days a local-time sum would put every stop an hour off.
    midnight = datetime.combine(plan_date, time(0), tz).astimezone(UTC)
    points = _Points()
    crews: list[Crew] = []
    crew_rows: dict[str, CrewRow] = {}
    shifts: dict[str, Shift] = {}
    on_shift = crews_on_shift(session, plan_date, tz, scope)
    dimensions = sorted({dim for crew, _ in on_shift for dim in (crew.capacity or {})})
    sec = lambda when: int((when - midnight).total_seconds())  # noqa: E731

    for crew, shift in on_shift:
        start_depot = session.get(Depot, shift.start_depot_id) if shift.start_depot_id else crew.depot
        end_depot = session.get(Depot, shift.end_depot_id) if shift.end_depot_id else crew.depot
        if start_depot is None or end_depot is None:
            continue  # a crew with no yard cannot be routed; it shows up in stats below
        cid = str(crew.id)
        crew_rows[cid] = crew
        shifts[cid] = shift
        here = (start_positions or {}).get(crew.id)
        crews.append(
            Crew(
                id=cid,
                start=points.add(*here) if here else points.add(*_lonlat(start_depot.location)),
                end=points.add(*_lonlat(end_depot.location)),
                shift=TimeWindow(sec(shift.starts_at), sec(shift.ends_at)),
                breaks=tuple(
                    Break(id=str(b.id), duration=b.minutes * 60, window=TimeWindow(sec(b.earliest_start), sec(b.latest_end)))
                    for b in shift.breaks
                ),
                skills=frozenset(crew.skills),
                capacity=tuple(int((crew.capacity or {}).get(d, 0)) for d in dimensions),
            )
        )

    skills = {s for c in crews for s in c.skills}
    work = open_work(session, scope, skills) if crews else []
    seen_ids = {wo.id for wo in work}
    work += [wo for wo in extra_work_orders if wo.id not in seen_ids]
    jobs: list[Job] = []
    work_orders: dict[str, WorkOrder] = {}
    excluded: list[dict[str, Any]] = []
    for wo in work:
        if wo.location is None:
            excluded.append({"work_order_id": wo.id, "reason": "needs_pin"})
            continue
        windows = tuple(
            TimeWindow(sec(datetime.fromisoformat(w["start"])), sec(datetime.fromisoformat(w["end"])))
            for w in (wo.time_windows or [])
        )
        jid = str(wo.id)
        work_orders[jid] = wo
        jobs.append(
            Job(
                id=jid,
                location=points.add(*_lonlat(wo.location)),
                service=wo.minutes_on_site * 60,
                windows=windows,
                skills=frozenset({wo.skill}),
                demand=tuple(int((wo.demand or {}).get(d, 0)) for d in dimensions),
                priority=max(0, min(5, wo.priority)),
                due=sec(wo.due_at),
            )
        )

    matrix = travel.matrix(points.points) if points.points else None
    problem = Problem(
        matrix=Matrix(matrix.durations, matrix.distances) if matrix is not None else Matrix([[0]], [[0]]),
        crews=tuple(crews),
        jobs=tuple(jobs),
        dimensions=tuple(dimensions),
        # Overdue-ness is judged at the start of the plan day, or now for a day under way.
        now=max(0, sec(now or datetime.now(tz))),
    )
    return Built(
        problem=problem,
        midnight=midnight,
        points=points.points,
        crews=crew_rows,
        shifts=shifts,
        work_orders=work_orders,
        provider=getattr(matrix, "provider", travel.name),
        excluded=excluded,
        carried={str(wo.id) for wo in extra_work_orders if str(wo.id) in work_orders},
    )
