"""From database rows to a `Problem`: open work orders, crews on shift, depots, breaks.

Times become integer seconds since local midnight of the plan day; points become
indices into one travel-time matrix, computed once for the plan.

A plan built while its day is under way starts now: every crew starts no earlier than
`now` plus the lead time (at its fresh GPS fix, else at its yard), breaks whose window
has passed are gone, work whose every time window has passed is left out, and so are
crews whose shift is over. Crews and work left out are listed with why, in words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from geoalchemy2.shape import to_shape
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from core.models import Crew as CrewRow
from core.models import (
    CrewDay,
    CrewPosition,
    Depot,
    District,
    PlanRoute,
    RouteStop,
    ServiceType,
    Shift,
    StatusEvent,
    WorkOrder,
)
from core.status import PLANNABLE
from dispatch.model import Break, Crew, Job, Matrix, Problem, TimeWindow
from dispatch.validate import Words

# The default age limit of a GPS fix that says where a crew is (STREETLOOP_FIX_MAX_AGE_MINUTES).
FRESH_FIX = timedelta(minutes=15)


class TravelTimes(Protocol):
    """What a plan needs of a travel-time provider (geo.travel's providers, for one)."""

    name: str

    def matrix(self, points: Sequence[tuple[float, float]]) -> Matrix: ...


@dataclass(frozen=True)
class Scope:
    """Which part of the city a plan covers; empty means all of it."""

    agency: str | None = None
    depot: str | None = None
    district: str | None = None

    @property
    def key(self) -> str:
        return ";".join(
            f"{k}={v}"
            for k, v in (
                ("agency", self.agency),
                ("depot", self.depot),
                ("district", self.district),
            )
            if v
        )

    def as_dict(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("agency", self.agency),
                ("depot", self.depot),
                ("district", self.district),
            )
            if v
        }


@dataclass(frozen=True)
class Clock:
    """When the plan is built: `now`, the lead time a crew needs before its first stop,
    and the age limit of a GPS fix that still says where a crew is."""

    now: datetime
    lead: timedelta = timedelta(0)
    fix_max_age: timedelta = FRESH_FIX

    @property
    def earliest(self) -> datetime:
        return self.now + self.lead


@dataclass
class Locks:
    """What a re-plan keeps of the day under way (see `dispatch.plans`): the job each crew
    is on (with seconds left on site), the stop it is driving to, the stops a dispatcher
    locked to it, and the work the live plan had given out."""

    in_progress: dict[int, tuple[int, int]] = field(
        default_factory=dict
    )  # crew row id -> (work order id, s left)
    committed_next: dict[int, int] = field(default_factory=dict)  # crew row id -> work order id
    pinned: dict[int, list[int]] = field(
        default_factory=dict
    )  # crew row id -> work order ids, in order
    carried: list[WorkOrder] = field(default_factory=list)


@dataclass
class Built:
    """The problem plus what is needed to turn its answer back into rows."""

    problem: Problem
    midnight: datetime  # local midnight of the plan day, as a UTC instant
    tz: ZoneInfo
    points: list[tuple[float, float]]
    crews: dict[str, CrewRow]
    shifts: dict[str, Shift]
    work_orders: dict[str, WorkOrder]
    provider: str
    # Open work in scope the solver never saw, and crews of the scope left out, with why.
    excluded: list[dict[str, Any]] = field(default_factory=list)
    excluded_crews: list[dict[str, Any]] = field(default_factory=list)
    # Work already dispatched (by the plan being re-planned, or on a day that ended
    # without it): it may move, or go back to the queue.
    carried: set[str] = field(default_factory=set)
    # A day under way: the instant its routes start from (now plus the lead time).
    planned_from: datetime | None = None

    def at(self, seconds: int) -> datetime:
        return self.midnight + timedelta(seconds=seconds)

    def seconds(self, when: datetime) -> int:
        return int((when - self.midnight).total_seconds())

    def clock(self, seconds: int) -> str:
        return self.at(seconds).astimezone(self.tz).strftime("%H:%M")

    @property
    def words(self) -> Words:
        """Violations as a dispatcher reads them: crew codes, work order numbers, clock times."""
        return Words(
            crew=lambda cid: self.crews[cid].code if cid in self.crews else f"crew {cid}",
            job=lambda jid: f"work order {jid}",
            clock=self.clock,
        )


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


def _hhmm(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%H:%M")


def scope_crews(session: Session, scope: Scope) -> list[CrewRow]:
    """The active crews a plan of this scope may route (by agency and yard)."""
    q = (
        select(CrewRow)
        .where(CrewRow.active.is_(True))
        .options(selectinload(CrewRow.depot))
        .order_by(CrewRow.code)
    )
    if scope.agency:
        q = q.where(CrewRow.agency == scope.agency)
    if scope.depot:
        q = q.where(CrewRow.depot_id.in_(select(Depot.id).where(Depot.code == scope.depot)))
    return list(session.scalars(q))


def _day_shifts(
    session: Session, crews: list[CrewRow], plan_date: date, tz: ZoneInfo
) -> dict[int, Shift]:
    """Each crew's shift starting on the plan day, cancelled ones included (so a day off
    can be told from no shift at all). One shift per crew and day: the first."""
    midnight = datetime.combine(plan_date, time(0), tz)
    rows = session.scalars(
        select(Shift)
        .where(
            Shift.crew_id.in_([c.id for c in crews]),
            Shift.starts_at >= midnight,
            Shift.starts_at < midnight + timedelta(days=1),
        )
        .options(selectinload(Shift.breaks))
        .order_by(Shift.crew_id, Shift.cancelled_at.is_not(None), Shift.starts_at)
    )
    out: dict[int, Shift] = {}
    for sh in rows:
        out.setdefault(sh.crew_id, sh)
    return out


def _left_out(
    crew: CrewRow, shift: Shift | None, plan_date: date, tz: ZoneInfo, clock: Clock | None
) -> dict[str, Any] | None:
    """Why a crew of the scope cannot be routed on the plan day, or None."""
    day = f"{plan_date:%a} {plan_date.day} {plan_date:%b}"
    if shift is None:
        return {"crew": crew.code, "reason": "off", "message": f"{crew.code} has no shift on {day}"}
    if shift.cancelled_at is not None:
        why = f": {shift.end_reason}" if shift.end_reason else ""
        return {
            "crew": crew.code,
            "reason": "off",
            "message": f"{crew.code}'s shift on {day} is cancelled{why}",
        }
    if clock is not None and shift.ends_at <= clock.earliest:
        if shift.ended_early_at is not None:
            message = (
                f"{crew.code}'s shift ended early at {_hhmm(shift.ends_at, tz)}: {shift.end_reason}"
            )
        else:
            message = f"{crew.code}'s shift ends at {_hhmm(shift.ends_at, tz)}, before a new route could start"
        return {"crew": crew.code, "reason": "shift_over", "message": message}
    return None


def fresh_fix(
    session: Session, crew_id: int, now: datetime, max_age: timedelta
) -> tuple[float, float] | None:
    """Where the crew's latest GPS fix puts it, if that fix is younger than `max_age`."""
    fix = session.get(CrewPosition, crew_id)
    if fix is None or abs(now - fix.at) > max_age:
        return None
    return _lonlat(fix.location)


def open_work(
    session: Session,
    scope: Scope,
    skills: set[str],
    *,
    statuses: Sequence[str] = PLANNABLE,
    must_do_on: date | None = None,
    left_over_since: date | None = None,
    tz: ZoneInfo | None = None,
) -> list[WorkOrder]:
    """Open work in scope that the scope's crews have the skills for, and the scope's
    must-do work of the day whatever it needs (a plan must say why it cannot be done).
    With `left_over_since` (today) and `tz`, also work left over from an earlier day
    (see `left_over`): a day that ended without it hands it to the next plans."""
    wanted: ColumnElement[bool] = WorkOrder.skill.in_(sorted(skills))
    if must_do_on is not None:
        wanted = or_(wanted, WorkOrder.must_do_on == must_do_on)
    status: ColumnElement[bool] = WorkOrder.status.in_(statuses)
    if left_over_since is not None and tz is not None:
        status = or_(status, WorkOrder.id.in_(left_over(left_over_since, tz)))
    q = (
        select(WorkOrder)
        .where(status, wanted)
        .options(selectinload(WorkOrder.service_type), selectinload(WorkOrder.must_do_crew))
        .order_by(WorkOrder.id)
    )
    if scope.agency:
        q = q.where(
            WorkOrder.service_type_id.in_(
                select(ServiceType.id).where(ServiceType.agency == scope.agency)
            )
        )
    if scope.district:
        q = q.where(
            WorkOrder.district_id.in_(select(District.id).where(District.code == scope.district))
        )
    return list(session.scalars(q))


def left_over(today: date, tz: ZoneInfo) -> Any:
    """Ids of work still dispatched, not started, dispatched before today and on no
    published route of today or later: its day ended without it."""
    latest = (
        select(StatusEvent.entity_id, func.max(StatusEvent.at).label("at"))
        .where(StatusEvent.entity == "work_order", StatusEvent.to_status == "dispatched")
        .group_by(StatusEvent.entity_id)
        .subquery()
    )
    routed = (
        select(RouteStop.work_order_id)
        .join(PlanRoute, PlanRoute.id == RouteStop.route_id)
        .join(
            CrewDay, (CrewDay.plan_id == PlanRoute.plan_id) & (CrewDay.crew_id == PlanRoute.crew_id)
        )
        .where(CrewDay.plan_date >= today, RouteStop.work_order_id.is_not(None))
    )
    return (
        select(WorkOrder.id)
        .join(latest, latest.c.entity_id == WorkOrder.id)
        .where(
            WorkOrder.status == "dispatched",
            latest.c.at < datetime.combine(today, time(0), tz),
            WorkOrder.id.notin_(routed),
        )
    )


# -- the problem, step by step: the day, the crews, the work, the matrix -----------------


@dataclass(frozen=True)
class _PlanDay:
    """The plan day and its clock: the solver's times are seconds since local midnight."""

    plan_date: date
    tz: ZoneInfo
    midnight: datetime  # local midnight of the plan day, as a UTC instant

    @classmethod
    def of(cls, plan_date: date, tz: ZoneInfo) -> _PlanDay:
        # Seconds are real elapsed time from local midnight, counted in UTC: on the two
        # daylight-saving days a local-time sum would put every stop an hour off.
        return cls(plan_date, tz, datetime.combine(plan_date, time(0), tz).astimezone(UTC))

    def sec(self, when: datetime) -> int:
        return int((when - self.midnight).total_seconds())


@dataclass
class _Vehicles:
    """The scope's crews as the solver's vehicles, and the crews left out with why."""

    dimensions: list[str]  # capacity dimensions, in the order of every capacity and demand
    skills: set[str]  # of every crew in scope, routable or not: the work to look at
    under_way: bool  # some crew's shift began before the plan can start
    excluded: list[dict[str, Any]]
    crews: list[Crew] = field(default_factory=list)
    rows: dict[str, CrewRow] = field(default_factory=dict)
    shifts: dict[str, Shift] = field(default_factory=dict)


@dataclass
class _Jobs:
    """Open work as the solver's jobs, and the work left out with why."""

    jobs: list[Job] = field(default_factory=list)
    work_orders: dict[str, WorkOrder] = field(default_factory=dict)
    excluded: list[dict[str, Any]] = field(default_factory=list)


def _vehicles(
    session: Session,
    scope: Scope,
    day: _PlanDay,
    clock: Clock | None,
    locks: Locks,
    points: _Points,
) -> _Vehicles:
    """The crews of the scope that can be routed on the day, each with its shift, yards,
    breaks, skills and capacity; the others are left out with why."""
    in_scope = scope_crews(session, scope)
    day_shifts = _day_shifts(session, in_scope, day.plan_date, day.tz)
    excluded: list[dict[str, Any]] = []
    routable: list[tuple[CrewRow, Shift]] = []
    for crew in in_scope:
        why = _left_out(crew, day_shifts.get(crew.id), day.plan_date, day.tz, clock)
        if why is not None:
            excluded.append(why)
        else:
            routable.append((crew, day_shifts[crew.id]))
    out = _Vehicles(
        dimensions=sorted({dim for crew, _ in routable for dim in (crew.capacity or {})}),
        skills={s for c in in_scope for s in c.skills},
        under_way=clock is not None and any(clock.earliest > sh.starts_at for _, sh in routable),
        excluded=excluded,
    )
    for crew, shift in routable:
        yards = _yards(session, crew, shift)
        if yards is None:
            out.excluded.append(
                {
                    "crew": crew.code,
                    "reason": "no_depot",
                    "message": f"{crew.code} has no yard to start from",
                }
            )
            continue
        cid = str(crew.id)
        out.rows[cid] = crew
        out.shifts[cid] = shift
        out.crews.append(
            _vehicle(
                session,
                crew,
                shift,
                yards,
                day=day,
                clock=clock,
                locks=locks,
                points=points,
                dimensions=out.dimensions,
            )
        )
    return out


def _yards(session: Session, crew: CrewRow, shift: Shift) -> tuple[Depot, Depot] | None:
    """The yards the crew starts and ends its shift at (the shift's, else the crew's own),
    or None when it has none to start or end at."""
    start = session.get(Depot, shift.start_depot_id) if shift.start_depot_id else crew.depot
    end = session.get(Depot, shift.end_depot_id) if shift.end_depot_id else crew.depot
    return None if start is None or end is None else (start, end)


def _vehicle(
    session: Session,
    crew: CrewRow,
    shift: Shift,
    yards: tuple[Depot, Depot],
    *,
    day: _PlanDay,
    clock: Clock | None,
    locks: Locks,
    points: _Points,
    dimensions: list[str],
) -> Crew:
    """One crew on its shift: from its yard (or, on a day under way, from where its fresh
    GPS fix puts it), no earlier than the plan can start, with the breaks still to take."""
    start_at = shift.starts_at
    here = None
    if clock is not None:
        # A crew on site is working now; one that must read a new route first starts after
        # the lead time.
        start_at = max(
            shift.starts_at, clock.now if crew.id in locks.in_progress else clock.earliest
        )
        if start_at > shift.starts_at:
            here = fresh_fix(session, crew.id, clock.now, clock.fix_max_age)
    # A break whose window has passed, or has too little of it left, is gone.
    breaks = [
        Break(
            id=str(b.id),
            duration=b.minutes * 60,
            window=TimeWindow(day.sec(max(b.earliest_start, start_at)), day.sec(b.latest_end)),
        )
        for b in shift.breaks
        if b.latest_end - max(b.earliest_start, start_at) >= timedelta(minutes=b.minutes)
    ]
    start_yard, end_yard = yards
    return Crew(
        id=str(crew.id),
        start=points.add(*here) if here else points.add(*_lonlat(start_yard.location)),
        end=points.add(*_lonlat(end_yard.location)),
        shift=TimeWindow(day.sec(start_at), day.sec(shift.ends_at)),
        breaks=tuple(breaks),
        skills=frozenset(crew.skills),
        capacity=tuple(int((crew.capacity or {}).get(d, 0)) for d in dimensions),
    )


def _work(
    session: Session,
    scope: Scope,
    day: _PlanDay,
    clock: Clock | None,
    locks: Locks,
    vehicles: _Vehicles,
) -> tuple[list[WorkOrder], set[int]]:
    """The work the plan looks at: open work in scope, left-over work of earlier days and
    the work a re-plan carries; and the ids of the left-over work among it."""
    today = clock.now.astimezone(day.tz).date() if clock is not None else None
    work = open_work(
        session, scope, vehicles.skills, must_do_on=day.plan_date, left_over_since=today, tz=day.tz
    )
    leftovers = {wo.id for wo in work if wo.status == "dispatched"}
    seen_ids = {wo.id for wo in work}
    work += [wo for wo in locks.carried if wo.id not in seen_ids]
    return work, leftovers


def _jobs(
    session: Session,
    work: list[WorkOrder],
    day: _PlanDay,
    clock: Clock | None,
    locks: Locks,
    vehicles: _Vehicles,
    points: _Points,
) -> _Jobs:
    """Each piece of work as a job with its windows, priority, due time and the crew it is
    reserved for, or left out with why."""
    pinned_to = {
        wo_id: crew_id
        for crew_id, ids in locks.pinned.items()
        for wo_id in ids
        if str(crew_id) in vehicles.rows
    }
    # Work a crew is on, or driving to, stays its own (it is not handed to another crew
    # behind its back): with the crew off shift, it is left out with why.
    held_by = {
        wo_id: (crew_id, "is on site there") for crew_id, (wo_id, _) in locks.in_progress.items()
    }
    held_by |= {
        wo_id: (crew_id, "is on its way there") for crew_id, wo_id in locks.committed_next.items()
    }
    earliest = day.sec(clock.earliest) if clock is not None else None
    out = _Jobs()
    for wo in work:
        if wo.location is None:
            out.excluded.append(
                {
                    "work_order_id": wo.id,
                    "reason": "needs_pin",
                    "message": "no place on the map yet: pin it first",
                }
            )
            continue
        windows = _windows(wo, day)
        why = _work_left_out(
            session,
            wo,
            windows,
            day,
            held=held_by.get(wo.id),
            pinned=wo.id in pinned_to,
            earliest=earliest,
            vehicles=vehicles,
        )
        if why is not None:
            out.excluded.append(why)
            continue
        required, reserved = _reserved(wo, day, pinned_to)
        jid = str(wo.id)
        out.work_orders[jid] = wo
        out.jobs.append(
            Job(
                id=jid,
                location=points.add(*_lonlat(wo.location)),
                service=wo.minutes_on_site * 60,
                windows=windows,
                skills=frozenset({wo.skill}),
                demand=tuple(int((wo.demand or {}).get(d, 0)) for d in vehicles.dimensions),
                priority=max(0, min(5, wo.priority)),
                due=day.sec(wo.due_at),
                required=required,
                crews=reserved,
            )
        )
    return out


def _windows(wo: WorkOrder, day: _PlanDay) -> tuple[TimeWindow, ...]:
    """The work order's time windows, as stored (ISO instants), in seconds of the day."""
    return tuple(
        TimeWindow(
            day.sec(datetime.fromisoformat(w["start"])), day.sec(datetime.fromisoformat(w["end"]))
        )
        for w in (wo.time_windows or [])
    )


def _work_left_out(
    session: Session,
    wo: WorkOrder,
    windows: tuple[TimeWindow, ...],
    day: _PlanDay,
    *,
    held: tuple[int, str] | None,
    pinned: bool,
    earliest: int | None,
    vehicles: _Vehicles,
) -> dict[str, Any] | None:
    """Why placed work cannot be in the plan, or None: the crew that holds it is off shift,
    its last window has passed, or the crew it must be done by is not routed."""
    if held is not None and str(held[0]) not in vehicles.rows:
        crew_id, doing = held
        # Crews are deactivated, never deleted: the row is there; the fallback only keeps
        # the message readable.
        holder = session.get(CrewRow, crew_id)
        code = holder.code if holder is not None else f"crew {crew_id}"
        return {
            "work_order_id": wo.id,
            "reason": "crew_off_shift",
            "message": f"{code} {doing}, but its shift is over",
        }
    if windows and earliest is not None and held is None and max(w.end for w in windows) < earliest:
        last = day.midnight + timedelta(seconds=max(w.end for w in windows))
        return {
            "work_order_id": wo.id,
            "reason": "window_passed",
            "message": f"its last time window ended at {_hhmm(last, day.tz)}",
        }
    if (
        not pinned
        and wo.must_do_on == day.plan_date
        and wo.must_do_crew_id is not None
        and str(wo.must_do_crew_id) not in vehicles.rows
    ):
        code = wo.must_do_crew.code if wo.must_do_crew else str(wo.must_do_crew_id)
        crew_why = next(
            (c["message"] for c in vehicles.excluded if c["crew"] == code),
            f"{code} is not in this plan's scope",
        )
        return {
            "work_order_id": wo.id,
            "reason": "must_do_crew_unavailable",
            "message": f"it must be done by {code}: {crew_why}",
        }
    return None


def _reserved(
    wo: WorkOrder, day: _PlanDay, pinned_to: dict[int, int]
) -> tuple[bool, frozenset[str]]:
    """Whether the job must be done, and the crews it is reserved for (empty: any crew):
    the crew a dispatcher pinned it to, else the crew it must be done by today."""
    if wo.id in pinned_to:
        return True, frozenset({str(pinned_to[wo.id])})
    must = wo.must_do_on == day.plan_date
    if must and wo.must_do_crew_id is not None:
        return True, frozenset({str(wo.must_do_crew_id)})
    return must, frozenset()


def _matrix(travel: TravelTimes, points: _Points) -> tuple[Matrix, str]:
    """Travel between every point of the plan, computed once, and the provider's name."""
    if not points.points:
        return Matrix([[0]], [[0]]), travel.name
    matrix = travel.matrix(points.points)
    return matrix, matrix.provider or travel.name


def build_problem(
    session: Session,
    *,
    plan_date: date,
    scope: Scope,
    tz: ZoneInfo,
    travel: TravelTimes,
    now: datetime | None = None,
    clock: Clock | None = None,
    locks: Locks | None = None,
) -> Built:
    """The day's routing problem. `clock` (a plan built during its day) starts the day
    from then; without it (`now` alone, or nothing) only overdue-ness is measured at
    `now`. `locks` is what a re-plan keeps of the day under way."""
    day = _PlanDay.of(plan_date, tz)
    locks = locks or Locks()
    points = _Points()  # crews' starts and ends first, then the jobs', in that order
    vehicles = _vehicles(session, scope, day, clock, locks, points)
    work, leftovers = _work(session, scope, day, clock, locks, vehicles)
    jobs = _jobs(session, work, day, clock, locks, vehicles, points)
    pinned = {
        str(cid): tuple(str(w) for w in ids if str(w) in jobs.work_orders)
        for cid, ids in locks.pinned.items()
    }
    crews = [replace(c, pinned=pinned.get(c.id, ())) for c in vehicles.crews]
    matrix, provider = _matrix(travel, points)
    at_now = clock.now if clock is not None else now
    problem = Problem(
        matrix=matrix,
        crews=tuple(crews),
        jobs=tuple(jobs.jobs),
        dimensions=tuple(vehicles.dimensions),
        # Overdue-ness is judged at the start of the plan day, or now for a day under way.
        now=max(0, day.sec(at_now or datetime.now(tz))),
    )
    return Built(
        problem=problem,
        midnight=day.midnight,
        tz=tz,
        points=points.points,
        crews=vehicles.rows,
        shifts=vehicles.shifts,
        work_orders=jobs.work_orders,
        provider=provider,
        excluded=jobs.excluded,
        excluded_crews=vehicles.excluded,
        carried={str(wo.id) for wo in locks.carried if str(wo.id) in jobs.work_orders}
        | {str(i) for i in leftovers if str(i) in jobs.work_orders},
        planned_from=clock.earliest if vehicles.under_way and clock is not None else None,
    )
