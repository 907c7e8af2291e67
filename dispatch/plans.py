"""Route plans: request, solve, store, publish and re-plan (hand edits: `dispatch.drafts`).

The solve runs outside any transaction (it can take a minute); rows are read before
and written after, and work that changed in between is left out.

Locks are taken in one order everywhere: the day's advisory lock, then plan rows, then
work orders in id order. Everything that changes a day's plans takes the day's lock, so
two publishes of one day never interleave, and none deadlocks another."""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from geoalchemy2.shape import from_shape
from shapely.geometry import LineString, shape
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from core import crewfeed
from core.db import existing
from core.errors import Conflict, NotFound, ValidationFailed
from core.field import last_event_at
from core.lifecycle.base import SYSTEM, Actor
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.locks import AdvisoryLock
from core.models import Crew, CrewDay, PlanRoute, RoutePlan, RouteStop, WorkOrder
from core.promises import keep_promise
from core.status import (
    DONE,
    ON_A_ROUTE,
    PLAN_CURRENT,
    PLAN_SOLVING,
    PLANNABLE,
    PlanStatus,
    WorkOrderStatus,
)
from core.workorders import change_status
from dispatch.build import (
    FRESH_FIX,
    Built,
    Clock,
    Locks,
    Scope,
    TravelTimes,
    build_problem,
    left_over,
)
from dispatch.edit import refill_without
from dispatch.model import REASON_WORDS, BreakPlacement, Result, Route, Stop, replan
from dispatch.progress import Ticker, listening
from dispatch.solver import SolveParams
from dispatch.split import solve_split, split
from dispatch.validate import check

MAX_TIME_LIMIT_S = 600


@dataclass(frozen=True)
class PlanRequest:
    plan_date: date
    scope: Scope
    time_limit_s: int = 30


@dataclass(frozen=True)
class PartJobs:
    """How a worker solves a big day's parts as jobs of their own (see `run_plan`):
    `defer(session, part_ids)` queues one job per part inside the caller's transaction."""

    defer: Callable[[Session, list[int]], None]
    min_split_jobs: int = 150


@dataclass(frozen=True)
class DayRules:
    """The settings a plan of a day under way follows (STREETLOOP_PLAN_LEAD_MINUTES,
    STREETLOOP_FIX_MAX_AGE_MINUTES)."""

    lead: timedelta = timedelta(0)
    fix_max_age: timedelta = FRESH_FIX


# Default arguments here and in dispatch.drafts: both are immutable, so one value serves
# every call.
DEFAULT_DAY_RULES = DayRules()
UTC_ZONE = ZoneInfo("UTC")


class ReplanPending(Conflict):
    """A re-plan of this plan is already queued or running; asking again returns it."""

    code = "replan_pending"

    def __init__(self, plan: RoutePlan) -> None:
        super().__init__(f"re-plan {plan.id} of this day is already {plan.status}", plan_id=plan.id)
        self.plan = plan


def lock_day(session: Session, plan_date: date) -> None:
    """Serialise everything that changes one day's plans (version numbers, publishing,
    storing a solve, edits). Per day, not per scope: scopes overlap (a district and an
    agency share crews), and a crew must never be on two published plans of a day."""
    session.execute(
        select(func.pg_advisory_xact_lock(AdvisoryLock.PLAN_DAY, func.hashtext(str(plan_date))))
    )


def lock_plan(session: Session, plan: RoutePlan) -> RoutePlan:
    """The day's lock, then the plan's row, re-read as it is now."""
    lock_day(session, plan.plan_date)
    session.refresh(plan, with_for_update=True)
    return plan


def _lock_work(session: Session, ids: Iterable[int]) -> dict[int, WorkOrder]:
    """Work orders locked in id order, the one order every writer of several uses."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(
        select(WorkOrder)
        .where(WorkOrder.id.in_(wanted))
        .order_by(WorkOrder.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {wo.id: wo for wo in rows}


def request_plan(
    session: Session,
    req: PlanRequest,
    *,
    actor: Actor,
    parent: RoutePlan | None = None,
    replan_from: datetime | None = None,
    tz: ZoneInfo | None = None,
) -> RoutePlan:
    """A queued plan (the caller defers the solve job after commit). With `tz`, the
    crews' weekly patterns first make the day's shifts, and a day already over is refused."""
    if not 1 <= req.time_limit_s <= MAX_TIME_LIMIT_S:
        raise ValidationFailed(
            f"time_limit_s must be between 1 and {MAX_TIME_LIMIT_S}", field="time_limit_s"
        )
    if tz is not None and req.plan_date < datetime.now(tz).date():
        raise ValidationFailed(f"{req.plan_date} is over; plan today or a coming day", field="date")
    lock_day(session, req.plan_date)
    if parent is not None:
        session.refresh(parent, with_for_update=True)
        if parent.status != "published":
            raise Conflict(
                f"plan {parent.id} is {parent.status} now; re-plan the day's published plan",
                current=parent.status,
            )
        pending = session.scalars(
            select(RoutePlan)
            .where(RoutePlan.parent_id == parent.id, RoutePlan.status.in_(PLAN_SOLVING))
            .limit(1)
        ).first()
        if pending is not None:
            raise ReplanPending(pending)
    else:
        live = session.scalar(
            select(RoutePlan).where(
                RoutePlan.plan_date == req.plan_date,
                RoutePlan.scope_key == req.scope.key,
                RoutePlan.status == PlanStatus.PUBLISHED,
            )
        )
        if live is not None:
            # A fresh plan knows nothing of the work already dispatched; publishing it would
            # take every crew's route away. A day under way is re-planned from its live plan.
            raise Conflict(
                f"plan {live.id} (version {live.version}) is published for this day and scope; "
                f"re-plan it with POST /api/v1/plans/{live.id}/replan",
                current="published",
                plan_id=live.id,
            )
    if tz is not None:
        from core.shifts import materialize

        materialize(session, tz=tz, start=req.plan_date, days=1)
    version = (
        session.scalar(
            select(func.max(RoutePlan.version)).where(
                RoutePlan.plan_date == req.plan_date, RoutePlan.scope_key == req.scope.key
            )
        )
        or 0
    ) + 1
    plan = RoutePlan(
        plan_date=req.plan_date,
        scope=req.scope.as_dict(),
        scope_key=req.scope.key,
        version=version,
        status="queued",
        time_limit_s=req.time_limit_s,
        parent_id=parent.id if parent else None,
        replan_from=replan_from,
        requested_by_id=actor.user_id,
    )
    session.add(plan)
    session.flush()
    note = (
        f"re-plan of version {parent.version} from {replan_from.isoformat()}"
        if parent and replan_from
        else None
    )
    RoutePlanLifecycle.record_creation(session, plan, actor=actor, note=note)
    return plan


def replan_plan(
    s: Session,
    plan: RoutePlan,
    *,
    actor: Actor,
    now: datetime | None = None,
    time_limit_s: int | None = None,
    tz: ZoneInfo | None = None,
) -> RoutePlan:
    """A new version of a published day, re-timed from `now` with what is under way kept.
    Raises ReplanPending (carrying it) while another re-plan of `plan` is queued or running."""
    if plan.status != "published":
        raise Conflict(
            f"plan {plan.id} is {plan.status}; only the published plan of a day is re-planned",
            current=plan.status,
        )
    return request_plan(
        s,
        PlanRequest(plan.plan_date, Scope(**plan.scope), time_limit_s or plan.time_limit_s),
        actor=actor,
        parent=plan,
        replan_from=now or datetime.now(UTC),
        tz=tz,
    )


def clock_for(plan: RoutePlan, rules: DayRules, now: datetime | None = None) -> Clock:
    """A re-plan starts at the later of when it was asked for and when it is built."""
    now = now or datetime.now(UTC)
    if plan.replan_from is not None:
        now = max(now, plan.replan_from)
    return Clock(now=now, lead=rules.lead, fix_max_age=rules.fix_max_age)


def locks_for_replan(s: Session, plan: RoutePlan, now: datetime) -> Locks:
    """What a re-plan keeps of its parent's day: the job each crew is on, the stop it is
    driving to, the stops a dispatcher locked to it, and the rest of the dispatched work
    (which may move). Finished work drops out; work moved to another crew by hand since
    is not the parent's to give."""
    # Plans are never deleted, and a re-plan's parent is set when it is asked for.
    parent = existing(s, RoutePlan, plan.parent_id)
    locks = Locks()
    for pr in parent.routes:
        for stop in pr.stops:
            wo = stop.work_order
            if wo is None:  # a break (only job stops have work: job_has_work_order)
                continue
            if wo.crew_id != pr.crew_id or wo.status in DONE:
                continue
            if wo.status == "on_site":
                arrived = last_event_at(s, wo, ("on_site",))
                left = wo.minutes_on_site * 60 - int((now - (arrived or now)).total_seconds())
                locks.in_progress[pr.crew_id] = (wo.id, max(0, left))
            elif wo.status == "en_route":
                locks.committed_next[pr.crew_id] = wo.id
            elif wo.status in (WorkOrderStatus.DISPATCHED, WorkOrderStatus.PLANNED):
                if stop.locked:
                    locks.pinned.setdefault(pr.crew_id, []).append(wo.id)
            else:
                continue
            locks.carried.append(wo)
    return locks


def build_for(
    s: Session, plan: RoutePlan, *, travel: TravelTimes, tz: ZoneInfo, clock: Clock
) -> Built:
    """The problem a plan solves: the day's open work from `clock`, and for a re-plan
    what is under way."""
    locks = locks_for_replan(s, plan, clock.now) if plan.parent_id else None
    built = build_problem(
        s,
        plan_date=plan.plan_date,
        scope=Scope(**plan.scope),
        tz=tz,
        travel=travel,
        clock=clock,
        locks=locks,
    )
    if locks is not None and (locks.in_progress or locks.committed_next):
        ours = set(built.crews)
        built.problem = replan(
            built.problem,
            now=max(0, built.seconds(clock.now)),
            in_progress={
                str(c): (str(w), left)
                for c, (w, left) in locks.in_progress.items()
                if str(c) in ours and str(w) in built.work_orders
            },
            committed_next={
                str(c): str(w)
                for c, w in locks.committed_next.items()
                if str(c) in ours and str(w) in built.work_orders
            },
        )
    return built


def _forced(built: Built, plan_date: date) -> set[str]:
    """Must-do work of the day (a dispatcher's choice; locked stops are not counted)."""
    pinned = {j for c in built.problem.crews for j in c.pinned}
    return {
        jid
        for jid, wo in built.work_orders.items()
        if wo.must_do_on == plan_date and jid not in pinned
    }


def solve_with_must_do(
    built: Built,
    plan_date: date,
    params: SolveParams,
    solve_fn: Callable[..., Result] = solve_split,
) -> tuple[Result, set[str]]:
    """Solve; with must-do work, also say which jobs it displaced: those the plan left
    out that fit again once the must-do work is taken off its routes (`refill_without`),
    so the answer names what made room, not what another search happened to pick."""
    result = solve_fn(built.problem, params)
    return result, displaced_by_must_do(built, plan_date, result)


def displaced_by_must_do(built: Built, plan_date: date, result: Result) -> set[str]:
    """The jobs a solve left out that fit again once its must-do work is taken off."""
    forced = _forced(built, plan_date)
    if not forced:
        return set()
    return refill_without(built.problem, result, forced)


def run_plan(
    sessions: sessionmaker[Session],
    plan_id: int,
    *,
    travel: TravelTimes,
    tz: ZoneInfo,
    solve_fn: Callable[..., Result] = solve_split,
    workers: int = 1,
    rules: DayRules = DEFAULT_DAY_RULES,
    now: datetime | None = None,
    progress_every_s: float | None = None,
    parts: PartJobs | None = None,
) -> RoutePlan:
    """The job: mark running, build, solve (no transaction held), store. Failures mark the plan failed.

    The plan's `progress` says how far the solve is: written at each phase, and with
    `progress_every_s` also that often from a thread of its own (the worker: every second),
    with the best day found so far (`dispatch.progress`).

    With `parts`, a day that separates into independent parts and is big enough
    (`parts.min_split_jobs`) is not solved here: its parts are stored and one job per part
    is queued (`parts.defer`, in the same transaction), each solved by whichever worker
    takes it, and the worker that finishes the last one stores the plan
    (`dispatch.parts`). The plan stays `running` until then; this job returns at once."""
    with sessions.begin() as s:
        plan = s.get(RoutePlan, plan_id, with_for_update=True)
        if plan is None:
            raise NotFound(f"plan {plan_id} not found")
        if plan.status != "queued":
            return plan  # a retried job for a plan already handled
        RoutePlanLifecycle.transition(s, plan, "running", actor=SYSTEM)
        time_limit_s = plan.time_limit_s
    try:
        # The ticker stops before the result is stored: its writes and the store's lock of
        # the plan's row never wait on each other.
        with Ticker(sessions, plan_id, time_limit_s, every_s=progress_every_s) as ticker:
            # The plan is there: it was found above, and plans are never deleted.
            with sessions() as s:
                plan = existing(s, RoutePlan, plan_id)
                built = build_for(s, plan, travel=travel, tz=tz, clock=clock_for(plan, rules, now))
                s.expunge_all()
            cut = split(built.problem, min_split_jobs=parts.min_split_jobs) if parts else None
            if cut is None:
                # Timed from before the ticker starts its clock (and writes the phase), so
                # the time stored at the end is never less than the last one it showed.
                started = clock.monotonic()
                ticker.solving()
                with listening(ticker):
                    result, displaced = solve_with_must_do(
                        built,
                        plan.plan_date,
                        SolveParams(time_limit_s=plan.time_limit_s, workers=workers),
                        solve_fn,
                    )
                solve_s = clock.monotonic() - started
        if cut is not None:
            assert parts is not None  # a day is cut only for a worker that solves parts
            from dispatch.parts import store_parts

            with sessions.begin() as s:
                plan = existing(s, RoutePlan, plan_id, with_for_update=True)
                if plan.status != "running":
                    return plan  # failed meanwhile (a sweep): nothing to queue
                parts.defer(s, store_parts(s, plan, built, cut, at_once=workers))
                return plan
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id)
            lock_plan(s, plan)
            store_ready(
                s,
                plan,
                built,
                result,
                travel=travel,
                solve_s=solve_s,
                displaced=displaced,
                progress=ticker.snapshot(),
            )
            return plan
    except Exception as exc:
        with sessions.begin() as s:
            plan = existing(s, RoutePlan, plan_id, with_for_update=True)
            plan.error = f"{type(exc).__name__}: {exc}"[:2000]
            if RoutePlanLifecycle.can(plan.status, "failed"):
                from dispatch.parts import drop_inputs

                RoutePlanLifecycle.transition(s, plan, "failed", actor=SYSTEM, note=plan.error)
                drop_inputs(s, plan.id)  # a build again that failed leaves no earlier parts
        raise


def store_ready(
    s: Session,
    plan: RoutePlan,
    built: Built,
    result: Result,
    *,
    travel: TravelTimes,
    solve_s: float,
    displaced: set[str],
    progress: dict[str, Any],
) -> None:
    """The solved day stored on its plan (locked by the caller), and the plan `ready`."""
    _store(s, plan, built, result, travel=travel, solve_s=solve_s, displaced=displaced)
    # The last word: the time the solve took, and the day as stored.
    plan.progress = {
        **progress,
        "phase": "done",
        "elapsed_s": round(solve_s, 1),
        "best": {
            "scheduled": plan.stats["scheduled"],
            "unassigned": plan.stats["jobs"] - plan.stats["scheduled"],
            "drive_s": plan.stats["drive_s"],
            "distance_m": plan.stats["distance_m"],
        },
        "updated_at": datetime.now(UTC).isoformat(),
    }
    RoutePlanLifecycle.transition(s, plan, "ready", actor=SYSTEM)


def route_geometry(travel: TravelTimes, built: Built, route: Route) -> Any:
    crew = built.problem.crew(route.crew_id)
    idx = [crew.start] + [s.location for s in route.stops] + [crew.end]
    pts = [built.points[i] for i in idx]
    geometry_fn = getattr(travel, "route_geometry", None)
    line = shape(geometry_fn(pts)) if geometry_fn else LineString(pts)
    if line.geom_type != "LineString" or len(line.coords) < 2:
        line = LineString(pts if len(pts) > 1 else pts * 2)
    return from_shape(line, srid=4326)


def route_stops(
    built: Built, route: Route, locked: set[str], skip: Callable[[str], bool] = lambda job_id: False
) -> list[RouteStop]:
    """A route's jobs and breaks as stop rows, in time order, numbered from 1."""
    # A break that starts when a job does comes first (0 before 1).
    items: list[tuple[int, int, Stop | BreakPlacement]] = sorted(
        [(st.start, 1, st) for st in route.stops] + [(b.start, 0, b) for b in route.breaks],
        key=lambda it: it[:2],
    )
    rows: list[RouteStop] = []
    for _, _, item in items:
        if isinstance(item, Stop):
            if skip(item.job_id):
                continue
            row = RouteStop(
                kind="job",
                work_order_id=int(item.job_id),
                arrival_at=built.at(item.arrival),
                start_at=built.at(item.start),
                end_at=built.at(item.end),
                locked=item.job_id in locked,
            )
        else:
            row = RouteStop(
                kind="break",
                arrival_at=built.at(item.start),
                start_at=built.at(item.start),
                end_at=built.at(item.end),
            )
        row.sequence = len(rows) + 1
        rows.append(row)
    return rows


def unassigned_entry(
    built: Built,
    job_id: str,
    reason: str,
    *,
    forced: set[str],
    displaced_by: list[str] | None = None,
) -> dict[str, Any]:
    """One piece of work left out of a plan, with its reason in a dispatcher's words."""
    if displaced_by:
        message = f"dropped to make room for must-do work order {', '.join(displaced_by)}"
        reason = "displaced_by_must_do"
    else:
        message = REASON_WORDS.get(reason, reason.replace("_", " "))
        if reason == "no_skill":
            skills = ", ".join(sorted(built.problem.job(job_id).skills))
            message = f"no crew on shift in this plan has the skill {skills}" + (
                " or is the crew it is reserved for" if built.problem.job(job_id).crews else ""
            )
    if job_id in forced:
        message = f"must-do, but {message}"
    return {"work_order_id": int(job_id), "reason": reason, "message": message}


def _store(
    s: Session,
    plan: RoutePlan,
    built: Built,
    result: Result,
    *,
    travel: TravelTimes,
    solve_s: float,
    displaced: frozenset[str] | set[str] = frozenset(),
) -> None:
    forced = _forced(built, plan.plan_date)
    # Work that changed while the solver ran (dispatched by hand, cancelled) is not ours to plan.
    current = {
        str(wo_id): status
        for wo_id, status in s.execute(
            select(WorkOrder.id, WorkOrder.status).where(
                WorkOrder.id.in_([int(j) for j in built.work_orders])
            )
        )
    }
    locked = {jid for c in built.problem.crews for jid in c.held}
    unassigned = list(built.excluded)
    scheduled_forced = sorted(
        {st.job_id for r in result.routes for st in r.stops} & forced, key=int
    )
    for u in result.unassigned:
        unassigned.append(
            unassigned_entry(
                built,
                u.job_id,
                u.reason,
                forced=forced,
                displaced_by=scheduled_forced if u.job_id in displaced else None,
            )
        )
    routes = {r.crew_id: r for r in result.routes}
    for c in built.problem.crews:
        # Every crew of the plan gets its row, idle or not: the plan holds the crew's day.
        route = routes.get(c.id) or Route(c.id, c.shift.start, (), (), c.shift.start, 0, 0)
        crew_row = built.crews[c.id]
        pr = PlanRoute(
            plan=plan,
            crew_id=crew_row.id,
            shift_id=built.shifts[c.id].id,
            start_at=built.at(route.depart),
            end_at=built.at(route.arrive),
            drive_s=route.duration,
            distance_m=route.distance,
            geometry=route_geometry(travel, built, route) if route.stops else None,
        )
        s.add(pr)

        def changed(job_id: str) -> bool:
            still_ours = current.get(job_id) in PLANNABLE or (
                job_id in built.carried and current.get(job_id) in ON_A_ROUTE
            )
            if still_ours or job_id in locked:
                return False
            unassigned.append(
                {
                    "work_order_id": int(job_id),
                    "reason": "changed_during_planning",
                    "message": "it changed while the plan was being made (dispatched by hand or closed)",
                }
            )
            return True

        pr.stops.extend(route_stops(built, route, locked, skip=changed))
    obj = result.objective
    # The validator's findings, in a dispatcher's words.
    violations = check(built.problem, result, built.words)
    plan.provider = built.provider
    plan.unassigned = unassigned
    plan.excluded_crews = built.excluded_crews
    plan.planned_from = built.planned_from
    plan.stats = {
        **{k: v for k, v in dict(result.stats).items() if isinstance(v, int | float | str | bool)},
        "solve_seconds": round(solve_s, 3),
        "jobs": len(built.problem.jobs),
        "crews": len(built.problem.crews),
        "scheduled": sum(len(r.stops) for r in result.routes),
        "distance_m": obj.distance,
        "drive_s": obj.drive_time,
        "route_s": obj.route_duration,
        "penalty": obj.penalty,
        "feasible": not violations,
        "violations": violations,
    }
    if forced:
        plan.stats["must_do"] = {
            "work_orders": sorted(map(int, forced)),
            "scheduled": list(map(int, scheduled_forced)),
            "displaced": sorted(map(int, displaced)),
        }
    # The draft holds its work: planned, so staff see it is in a plan (it stays plannable
    # for other drafts; publishing one supersedes the rest).
    s.flush()
    ids = [st.job_order_id for pr in plan.routes for st in pr.stops if st.kind == "job"]
    for wo in _lock_work(s, ids).values():
        if wo.status == "new":
            WorkOrderLifecycle.transition(
                s, wo, "planned", actor=SYSTEM, note=f"in draft plan {plan.id} v{plan.version}"
            )


def _crews_of(s: Session, plan_id: int) -> set[int]:
    return set(s.scalars(select(PlanRoute.crew_id).where(PlanRoute.plan_id == plan_id)))


def _codes(s: Session, crew_ids: Iterable[int]) -> str:
    return ", ".join(
        s.scalars(select(Crew.code).where(Crew.id.in_(list(crew_ids))).order_by(Crew.code))
    )


def _refuse_overlaps(s: Session, plan: RoutePlan, crews: set[int], tz: ZoneInfo) -> None:
    """A crew drives one published plan a day. Refused: a draft whose crews another plan
    of the day has since been published for (it was built on a day that has changed),
    and one whose crews a live plan of another scope holds."""
    built_at = plan.started_at or plan.created_at
    for other in s.scalars(
        select(RoutePlan)
        .where(
            RoutePlan.plan_date == plan.plan_date,
            RoutePlan.id != plan.id,
            RoutePlan.published_at.is_not(None),
        )
        .order_by(RoutePlan.published_at.desc())
    ):
        shared = crews & _crews_of(s, other.id)
        if not shared:
            continue
        codes = _codes(s, shared)
        published_at = other.published_at
        assert published_at is not None  # the query asks for published plans only
        if published_at > built_at:
            raise Conflict(
                f"plan {other.id} (version {other.version}) was published for {codes} at "
                f"{published_at.astimezone(tz):%H:%M}, after this draft was built; plan again or re-plan",
                plan_id=other.id,
                crews=codes.split(", "),
                current=plan.status,
            )
        if other.status == "published" and other.scope_key != plan.scope_key:
            raise Conflict(
                f"plan {other.id} (version {other.version}, scope {other.scope_key or 'the whole city'}) is published "
                f"for {codes} on {plan.plan_date}; a crew drives one published plan a day: re-plan that one",
                plan_id=other.id,
                crews=codes.split(", "),
                current=plan.status,
            )


def publish_plan(
    s: Session,
    plan: RoutePlan,
    *,
    actor: Actor,
    tz: ZoneInfo = UTC_ZONE,
    stale_after: timedelta = timedelta(minutes=15),
    slip: timedelta = timedelta(minutes=30),
    now: datetime | None = None,
) -> RoutePlan:
    """Crews get this plan: its work is dispatched, residents see expected times, older
    versions of the day and scope step down. Refused (409) when the plan is not ready or
    not feasible, when its first stops are more than `stale_after` in the past, or when
    another published plan of the day holds one of its crews. A resident whose promised
    time the new version moves later by more than `slip` is told (`core.promises`)."""
    now = now or datetime.now(UTC)
    lock_plan(s, plan)
    if plan.status != "ready":
        raise Conflict(
            f"plan {plan.id} is {plan.status}; only a ready plan can be published",
            current=plan.status,
        )
    if not plan.stats.get("feasible", False):
        raise Conflict(
            f"plan {plan.id} does not pass the feasibility check; it cannot be published: "
            + "; ".join(plan.stats.get("violations") or []),
            violations=plan.stats.get("violations") or [],
        )
    starts = [
        st.start_at for pr in plan.routes for st in pr.stops if st.kind == "job" and not st.locked
    ]
    if starts and min(starts) < now - stale_after:
        raise Conflict(
            f"plan {plan.id}'s first stops were due at {min(starts).astimezone(tz):%H:%M}, and it is "
            f"{now.astimezone(tz):%H:%M}: plan the day again (or re-plan it) so it starts now",
            current="ready",
        )
    if plan.parent_id is not None:
        parent = existing(s, RoutePlan, plan.parent_id)  # plans are never deleted
        if parent.status != "published":
            # Its locks were read from a day another version has replaced since.
            raise Conflict(
                f"plan {plan.id} re-plans version {parent.version}, which is {parent.status} now; "
                "re-plan the day's published plan",
                current=plan.status,
                plan_id=parent.id,
            )
    crews = {pr.crew_id for pr in plan.routes}
    _refuse_overlaps(s, plan, crews, tz)
    older = s.scalars(
        select(RoutePlan)
        .where(
            RoutePlan.plan_date == plan.plan_date,
            RoutePlan.scope_key == plan.scope_key,
            RoutePlan.id != plan.id,
            RoutePlan.status.in_(PLAN_CURRENT),
        )
        .order_by(RoutePlan.id)
        .with_for_update()
        .options(selectinload(RoutePlan.routes).selectinload(PlanRoute.stops))
    ).all()
    mine = [st for pr in plan.routes for st in pr.stops if st.kind == "job"]
    theirs = [(pr, st) for old in older for pr in old.routes for st in pr.stops if st.kind == "job"]
    today = now.astimezone(tz).date()
    stale = set(
        s.scalars(
            left_over(today, tz).where(
                WorkOrder.id.in_([u["work_order_id"] for u in plan.unassigned])
            )
        )
    )
    orders = _lock_work(
        s,
        [st.job_order_id for st in mine] + [st.job_order_id for _, st in theirs] + sorted(stale),
    )
    planned_here: set[int] = set()
    for pr in plan.routes:
        for stop in pr.stops:
            if stop.kind != "job":
                continue
            wo = orders[stop.job_order_id]
            planned_here.add(wo.id)
            if wo.status in PLANNABLE or (wo.status == "dispatched" and wo.crew_id != pr.crew_id):
                if wo.status == "dispatched":
                    # Straight to its new crew: residents need no "back in the queue" in between.
                    change_status(
                        s,
                        wo,
                        "planned",
                        actor=actor,
                        note=f"moved by plan {plan.id} v{plan.version}",
                    )
                if wo.status == "new":
                    WorkOrderLifecycle.transition(s, wo, "planned", actor=actor)
                change_status(
                    s,
                    wo,
                    "dispatched",
                    actor=actor,
                    crew_id=pr.crew_id,
                    note=f"plan {plan.id} v{plan.version}",
                )
            for req in wo.requests:
                if req.status == "open":
                    # Never a promise in the past: a stop due a few minutes ago is expected now.
                    keep_promise(s, req, stop.start_at, slip=slip, tz=tz, actor=actor, now=now)
    for pr, stop in theirs:
        if stop.job_order_id in planned_here:
            continue
        wo = orders[stop.job_order_id]
        # Dropped by the newer version: back to the queue for another day. Work a
        # dispatcher has since given to another crew by hand stays where it is.
        if wo.status == "planned" or (wo.status == "dispatched" and wo.crew_id == pr.crew_id):
            change_status(s, wo, "new", actor=actor, note=f"not in plan {plan.id} v{plan.version}")
            for req in wo.requests:
                req.expected_at = req.promised_at = None
    for wo_id in sorted(stale - planned_here):
        wo = orders[wo_id]
        if wo.status == "dispatched":
            # Dispatched for a day that ended without it, and not in this plan: back to
            # the queue, so residents are not told a crew is coming.
            change_status(
                s,
                wo,
                "new",
                actor=actor,
                note=f"not done on its day, nor in plan {plan.id} v{plan.version}",
            )
            for req in wo.requests:
                req.expected_at = req.promised_at = None
    dropped = set()
    for old in older:
        dropped |= {pr.crew_id for pr in old.routes}
        RoutePlanLifecycle.transition(
            s, old, "superseded", actor=actor, note=f"by version {plan.version}"
        )
    _hold_crew_days(s, plan, crews, [old.id for old in older])
    for crew_id in sorted(crews | dropped):
        crewfeed.route_changed(s, crew_id, plan.id, at=now)
    RoutePlanLifecycle.transition(s, plan, "published", actor=actor)
    return plan


def _hold_crew_days(s: Session, plan: RoutePlan, crews: set[int], superseded: list[int]) -> None:
    """The plan takes its crews' day. The primary key refuses a crew already held by
    another published plan, whatever raced past the checks above."""
    if superseded:
        s.execute(delete(CrewDay).where(CrewDay.plan_id.in_(superseded)))
    if not crews:
        return
    try:
        with s.begin_nested():
            s.execute(
                insert(CrewDay),
                [
                    {"crew_id": c, "plan_date": plan.plan_date, "plan_id": plan.id}
                    for c in sorted(crews)
                ],
            )
    except IntegrityError:
        held = s.execute(
            select(CrewDay.plan_id, CrewDay.crew_id).where(
                CrewDay.plan_date == plan.plan_date, CrewDay.crew_id.in_(sorted(crews))
            )
        ).all()
        other = held[0].plan_id if held else None
        raise Conflict(
            f"plan {other} is published for {_codes(s, {c for _, c in held})} on {plan.plan_date}; "
            "a crew drives one published plan a day",
            plan_id=other,
            crews=_codes(s, {c for _, c in held}).split(", "),
        ) from None


def fail_stale_plans(s: Session, *, now: datetime | None = None, grace_s: int = 600) -> list[int]:
    """Plans still `running` well past their time limit lost their worker (a crash, a
    deploy): mark them failed so dispatchers see it and ask again."""
    from dispatch.parts import drop_inputs, unfinished_parts

    now = now or datetime.now(UTC)
    stale = s.scalars(
        select(RoutePlan).where(RoutePlan.status == "running").with_for_update(skip_locked=True)
    ).all()
    failed = []
    for plan in stale:
        started = plan.started_at or plan.created_at
        if (now - started).total_seconds() > plan.time_limit_s + grace_s:
            # A plan solved in parts says which parts never came back.
            undone = unfinished_parts(s, plan.id)
            plan.error = (
                f"{'; '.join(undone)} long past the plan's time limit; request it again"
                if undone
                else "the worker stopped before the plan was ready; request it again"
            )
            RoutePlanLifecycle.transition(s, plan, "failed", actor=SYSTEM, note=plan.error)
            drop_inputs(s, plan.id)
            failed.append(plan.id)
    return failed


def requeue_orphaned_plan(s: Session, plan_id: int, *, note: str) -> bool:
    """A plan left `running` by a worker that died: back to `queued` (audited), so the
    retried job solves it again instead of taking it for handled. False if it is not running."""
    plan = s.get(RoutePlan, plan_id, with_for_update=True)
    if plan is None or plan.status != "running":
        return False
    RoutePlanLifecycle.transition(s, plan, "queued", actor=SYSTEM, note=note)
    return True
