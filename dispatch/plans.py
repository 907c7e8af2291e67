"""Route plans: request, solve, store, publish, re-plan and edit.

The solve runs outside any transaction (it can take a minute); rows are read
before and written after, and work that changed in between is left out."""

from __future__ import annotations

import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from geoalchemy2.shape import from_shape
from shapely.geometry import LineString, shape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from core.errors import Conflict, NotFound, ValidationFailed
from core.lifecycle.base import SYSTEM, Actor
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import CrewPosition, PlanRoute, RoutePlan, RouteStop, StatusEvent, WorkOrder
from core.workorders import change_status
from dispatch.build import PLANNABLE_STATUSES, Built, Scope, TravelTimes, build_problem
from dispatch.model import Result, Route, replan
from dispatch.solver import SolveParams
from dispatch.split import solve_split

MAX_TIME_LIMIT_S = 600
# A phone fix older than this says where the crew was, not where it is.
FRESH_FIX_S = 15 * 60


@dataclass(frozen=True)
class PlanRequest:
    plan_date: date
    scope: Scope
    time_limit_s: int = 30


def _lock_day(session: Session, plan_date: date, scope_key: str) -> None:
    """Serialise everything that changes one day's plans (version numbers, publishing):
    two publishes of the same day would otherwise lock each other's rows and deadlock."""
    session.execute(select(func.pg_advisory_xact_lock(31101, func.hashtext(f"{plan_date}|{scope_key}"))))


def request_plan(session: Session, req: PlanRequest, *, actor: Actor, parent: RoutePlan | None = None,
                 replan_from: datetime | None = None) -> RoutePlan:
    """A queued plan (the caller defers the solve job after commit)."""
    if not 1 <= req.time_limit_s <= MAX_TIME_LIMIT_S:
        raise ValidationFailed(f"time_limit_s must be between 1 and {MAX_TIME_LIMIT_S}", field="time_limit_s")
    _lock_day(session, req.plan_date, req.scope.key)
    if parent is None:
        live = session.scalar(select(RoutePlan).where(
            RoutePlan.plan_date == req.plan_date, RoutePlan.scope_key == req.scope.key, RoutePlan.status == "published"))
        if live is not None:
            # A fresh plan knows nothing of the work already dispatched; publishing it would
            # take every crew's route away. A day under way is re-planned from its live plan.
            raise Conflict(
                f"plan {live.id} (version {live.version}) is published for this day and scope; "
                f"re-plan it with POST /api/v1/plans/{live.id}/replan",
                current="published", plan_id=live.id,
            )
    version = (session.scalar(
        select(func.max(RoutePlan.version)).where(RoutePlan.plan_date == req.plan_date, RoutePlan.scope_key == req.scope.key)
    ) or 0) + 1
    plan = RoutePlan(
        plan_date=req.plan_date, scope=req.scope.as_dict(), scope_key=req.scope.key, version=version,
        status="queued", time_limit_s=req.time_limit_s, parent_id=parent.id if parent else None,
        replan_from=replan_from, requested_by_id=actor.user_id,
    )
    session.add(plan)
    session.flush()
    note = f"re-plan of version {parent.version} from {replan_from.isoformat()}" if parent and replan_from else None
    RoutePlanLifecycle.record_creation(session, plan, actor=actor, note=note)
    return plan


def run_plan(sessions: sessionmaker[Session], plan_id: int, *, travel: TravelTimes, tz: ZoneInfo,
             solve_fn: Callable[..., Result] = solve_split, workers: int = 1) -> RoutePlan:
    """The job: mark running, build, solve (no transaction held), store. Failures mark the plan failed."""
    with sessions.begin() as s:
        plan = s.get(RoutePlan, plan_id, with_for_update=True)
        if plan is None:
            raise NotFound(f"plan {plan_id} not found")
        if plan.status != "queued":
            return plan  # a retried job for a plan already handled
        RoutePlanLifecycle.transition(s, plan, "running", actor=SYSTEM)
    try:
        with sessions() as s:
            plan = s.get(RoutePlan, plan_id)
            built = _build_for(s, plan, travel=travel, tz=tz)
            s.expunge_all()
        started = clock.monotonic()
        result = solve_fn(built.problem, SolveParams(time_limit_s=plan.time_limit_s, workers=workers))
        solve_s = clock.monotonic() - started
        with sessions.begin() as s:
            plan = s.get(RoutePlan, plan_id, with_for_update=True)
            _store(s, plan, built, result, travel=travel, solve_s=solve_s)
            RoutePlanLifecycle.transition(s, plan, "ready", actor=SYSTEM)
            return plan
    except Exception as exc:
        with sessions.begin() as s:
            plan = s.get(RoutePlan, plan_id, with_for_update=True)
            plan.error = f"{type(exc).__name__}: {exc}"[:2000]
            if RoutePlanLifecycle.can(plan.status, "failed"):
                RoutePlanLifecycle.transition(s, plan, "failed", actor=SYSTEM, note=plan.error)
        raise


@dataclass
class _Locks:
    """What a re-plan must respect: where crews are, what they are doing, what they committed to."""

    now: datetime
    work_orders: list[WorkOrder]
    positions: dict[int, tuple[float, float]]
    in_progress: dict[int, tuple[int, int]]  # crew row id -> (work order id, seconds left on site)
    committed_next: dict[int, int]  # crew row id -> work order id it is driving to

    def apply(self, built: Built) -> None:
        sec = built.seconds(self.now)
        built.problem = replan(
            built.problem,
            now=max(0, sec),
            in_progress={str(c): (str(w), left) for c, (w, left) in self.in_progress.items() if str(c) in built.crews},
            committed_next={str(c): str(w) for c, w in self.committed_next.items() if str(c) in built.crews},
        )


def _locks_for_replan(s: Session, plan: RoutePlan) -> _Locks:
    from geoalchemy2.shape import to_shape

    now = plan.replan_from or datetime.now(UTC)
    parent = s.get(RoutePlan, plan.parent_id)
    carried: list[WorkOrder] = []
    positions: dict[int, tuple[float, float]] = {}
    in_progress: dict[int, tuple[int, int]] = {}
    committed: dict[int, int] = {}
    for pr in parent.routes:
        last_done: WorkOrder | None = None
        for stop in pr.stops:
            if stop.kind != "job":
                continue
            wo = stop.work_order
            if wo.crew_id != pr.crew_id:
                continue  # moved to another crew by hand since
            if wo.status in {"completed", "verified", "closed", "cancelled"}:
                last_done = wo
            elif wo.status == "on_site":
                arrived = s.scalar(
                    select(func.max(StatusEvent.at)).where(
                        StatusEvent.entity == "work_order", StatusEvent.entity_id == wo.id, StatusEvent.to_status == "on_site"
                    )
                ) or now
                left = max(0, wo.minutes_on_site * 60 - int((now - arrived).total_seconds()))
                in_progress[pr.crew_id] = (wo.id, left)
                carried.append(wo)
            elif wo.status == "en_route":
                committed[pr.crew_id] = wo.id
                carried.append(wo)
            elif wo.status in {"dispatched", "planned"}:
                carried.append(wo)
        if pr.crew_id in in_progress:
            continue  # it starts from the job it is on
        # Where the crew is: its phone's latest fix if fresh, else its last finished job.
        fix = s.get(CrewPosition, pr.crew_id)
        if fix is not None and abs((now - fix.at).total_seconds()) <= FRESH_FIX_S:
            pt = to_shape(fix.location)
            positions[pr.crew_id] = (pt.x, pt.y)
        elif last_done is not None and last_done.location is not None:
            pt = to_shape(last_done.location)
            positions[pr.crew_id] = (pt.x, pt.y)
    return _Locks(now=now, work_orders=carried, positions=positions, in_progress=in_progress, committed_next=committed)


def _build_for(s: Session, plan: RoutePlan, *, travel: TravelTimes, tz: ZoneInfo) -> Built:
    """The problem a plan solves: the day's open work, and for a re-plan what is under way."""
    locks = _locks_for_replan(s, plan) if plan.parent_id else None
    built = build_problem(
        s, plan_date=plan.plan_date, scope=Scope(**plan.scope), tz=tz, travel=travel, now=plan.replan_from,
        extra_work_orders=locks.work_orders if locks else (),
        start_positions=locks.positions if locks else None,
    )
    if locks:
        locks.apply(built)
    return built


def replan_plan(s: Session, plan: RoutePlan, *, actor: Actor, now: datetime | None = None,
                time_limit_s: int | None = None) -> RoutePlan:
    """A new version of a published day, re-timed from `now` with what is under way locked."""
    if plan.status != "published":
        raise Conflict(f"plan {plan.id} is {plan.status}; only the published plan of a day is re-planned", current=plan.status)
    return request_plan(
        s, PlanRequest(plan.plan_date, Scope(**plan.scope), time_limit_s or plan.time_limit_s),
        actor=actor, parent=plan, replan_from=now or datetime.now(UTC),
    )


def _geometry(travel: TravelTimes, built: Built, route: Route) -> Any:
    crew = built.problem.crew(route.crew_id)
    idx = [crew.start] + [s.location for s in route.stops] + [crew.end]
    pts = [built.points[i] for i in idx]
    geometry_fn = getattr(travel, "route_geometry", None)
    line = shape(geometry_fn(pts)) if geometry_fn else LineString(pts)
    if line.geom_type != "LineString" or len(line.coords) < 2:
        line = LineString(pts if len(pts) > 1 else pts * 2)
    return from_shape(line, srid=4326)


def _route_stops(built: Built, route: Route, locked: set[str],
                 skip: Callable[[str], bool] = lambda job_id: False) -> list[RouteStop]:
    """A route's jobs and breaks as stop rows, in time order, numbered from 1."""
    items = sorted([(st.start, 1, st) for st in route.stops] + [(b.start, 0, b) for b in route.breaks], key=lambda it: it[:2])
    rows: list[RouteStop] = []
    for _, is_job, item in items:
        if is_job:
            if skip(item.job_id):
                continue
            row = RouteStop(kind="job", work_order_id=int(item.job_id), arrival_at=built.at(item.arrival),
                            start_at=built.at(item.start), end_at=built.at(item.end), locked=item.job_id in locked)
        else:
            row = RouteStop(kind="break", arrival_at=built.at(item.start), start_at=built.at(item.start), end_at=built.at(item.end))
        row.sequence = len(rows) + 1
        rows.append(row)
    return rows


def _store(s: Session, plan: RoutePlan, built: Built, result: Result, *, travel: TravelTimes, solve_s: float) -> None:
    # Work that changed while the solver ran (dispatched by hand, cancelled) is not ours to plan.
    current = {
        str(wo_id): status
        for wo_id, status in s.execute(select(WorkOrder.id, WorkOrder.status).where(WorkOrder.id.in_([int(j) for j in built.work_orders])))
    }
    locked = {jid for c in built.problem.crews for jid in c.locked_first}
    unassigned = list(built.excluded)
    for u in result.unassigned:
        unassigned.append({"work_order_id": int(u.job_id), "reason": u.reason})
    for route in result.routes:
        if not route.stops and not route.breaks:
            continue
        crew_row = built.crews[route.crew_id]
        pr = PlanRoute(
            plan=plan, crew_id=crew_row.id, shift_id=built.shifts[route.crew_id].id,
            start_at=built.at(route.depart), end_at=built.at(route.arrive),
            drive_s=route.duration, distance_m=route.distance,
            geometry=_geometry(travel, built, route) if route.stops else None,
        )
        s.add(pr)
        def changed(job_id: str) -> bool:
            still_ours = current.get(job_id) in PLANNABLE_STATUSES or (
                job_id in built.carried and current.get(job_id) in {"dispatched", "en_route", "on_site"}
            )
            if still_ours or job_id in locked:
                return False
            unassigned.append({"work_order_id": int(job_id), "reason": "changed_during_planning"})
            return True

        pr.stops.extend(_route_stops(built, route, locked, skip=changed))
    obj = result.objective
    plan.provider = built.provider
    plan.unassigned = unassigned
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
        "feasible": result.is_feasible(),
    }
    # The draft holds its work: planned, so staff see it is in a plan (it stays plannable
    # for other drafts; publishing one supersedes the rest).
    for pr in plan.routes:
        for stop in pr.stops:
            if stop.kind == "job":
                wo = s.get(WorkOrder, stop.work_order_id)
                if wo.status == "new":
                    WorkOrderLifecycle.transition(s, wo, "planned", actor=SYSTEM, note=f"in draft plan {plan.id} v{plan.version}")


def publish_plan(s: Session, plan: RoutePlan, *, actor: Actor) -> RoutePlan:
    """Crews get this plan: its work is dispatched, residents see expected times, older versions step down."""
    _lock_day(s, plan.plan_date, plan.scope_key)
    s.refresh(plan)
    if plan.status != "ready":
        raise Conflict(f"plan {plan.id} is {plan.status}; only a ready plan can be published", current=plan.status)
    if not plan.stats.get("feasible", False):
        raise Conflict(f"plan {plan.id} does not pass the feasibility check; it cannot be published")
    planned_here: set[int] = set()
    for pr in plan.routes:
        for stop in pr.stops:
            if stop.kind != "job":
                continue
            wo = s.get(WorkOrder, stop.work_order_id, with_for_update=True)
            planned_here.add(wo.id)
            if wo.status in {"new", "planned"} or (wo.status == "dispatched" and wo.crew_id != pr.crew_id):
                if wo.status == "dispatched":
                    # Straight to its new crew: residents need no "back in the queue" in between.
                    change_status(s, wo, "planned", actor=actor, note=f"moved by plan {plan.id} v{plan.version}")
                if wo.status == "new":
                    WorkOrderLifecycle.transition(s, wo, "planned", actor=actor)
                change_status(s, wo, "dispatched", actor=actor, crew_id=pr.crew_id, note=f"plan {plan.id} v{plan.version}")
            for req in wo.requests:
                if req.status == "open":
                    req.expected_at = stop.start_at
    for old in s.scalars(
        select(RoutePlan)
        .where(RoutePlan.plan_date == plan.plan_date, RoutePlan.scope_key == plan.scope_key,
               RoutePlan.id != plan.id, RoutePlan.status.in_(("published", "ready")))
        .options(selectinload(RoutePlan.routes).selectinload(PlanRoute.stops))
    ):
        for pr in old.routes:
            for stop in pr.stops:
                if stop.kind == "job" and stop.work_order_id not in planned_here:
                    wo = s.get(WorkOrder, stop.work_order_id, with_for_update=True)
                    # Dropped by the newer version: back to the queue for another day. Work a
                    # dispatcher has since given to another crew by hand stays where it is.
                    if wo.status == "planned" or (wo.status == "dispatched" and wo.crew_id == pr.crew_id):
                        change_status(s, wo, "new", actor=actor, note=f"not in plan {plan.id} v{plan.version}")
                        for req in wo.requests:
                            req.expected_at = None
        RoutePlanLifecycle.transition(s, old, "superseded", actor=actor, note=f"by version {plan.version}")
    RoutePlanLifecycle.transition(s, plan, "published", actor=actor)
    return plan


def move_stop(s: Session, plan: RoutePlan, *, work_order_id: int, crew_id: int, position: int,
              travel: TravelTimes, tz: ZoneInfo, actor: Actor) -> RoutePlan:
    """Move one job to `position` (1-based among jobs) on `crew_id`'s route of a draft plan.

    The changed routes are re-timed and must pass the validator, or nothing changes."""
    from dispatch.edit import time_route
    from dispatch.validate import check_route

    if plan.status != "ready":
        raise Conflict(f"plan {plan.id} is {plan.status}; only a draft (ready) plan is edited; re-plan a published day",
                       current=plan.status)
    # The same problem the solver had (a re-plan's locks and start positions included).
    built = _build_for(s, plan, travel=travel, tz=tz)
    problem = built.problem
    orders: dict[str, list[str]] = {c.id: [] for c in problem.crews}
    for pr in plan.routes:
        orders.setdefault(str(pr.crew_id), [])
        orders[str(pr.crew_id)] = [str(st.work_order_id) for st in pr.stops if st.kind == "job"]
    jid, target = str(work_order_id), str(crew_id)
    if jid not in built.work_orders:
        raise ValidationFailed(f"work order {work_order_id} is not open for planning on {plan.plan_date}", field="work_order_id")
    if target not in built.crews:
        raise ValidationFailed("that crew has no shift in this plan's day and scope", field="crew")
    source = next((cid for cid, seq in orders.items() if jid in seq), None)
    if source is not None:
        orders[source].remove(jid)
    if not 1 <= position <= len(orders[target]) + 1:
        raise ValidationFailed(f"position must be between 1 and {len(orders[target]) + 1}", field="position")
    orders[target].insert(position - 1, jid)

    locked = {j for c in problem.crews for j in c.locked_first}
    changed = {target} | ({source} if source else set())
    routes = {cid: time_route(problem, problem.crew(cid), orders[cid]) for cid in changed}
    problems = [v for cid in changed for v in check_route(problem, problem.crew(cid), routes[cid])]
    if problems:
        raise ValidationFailed("the edited route breaks a constraint: " + "; ".join(problems), field="position", violations=problems)

    by_crew = {str(pr.crew_id): pr for pr in plan.routes}
    for cid in changed:
        route = routes[cid]
        pr = by_crew.get(cid)
        if pr is None:
            pr = PlanRoute(plan=plan, crew_id=int(cid), shift_id=built.shifts[cid].id, start_at=built.at(route.depart),
                           end_at=built.at(route.arrive), drive_s=0, distance_m=0)
            s.add(pr)
        pr.stops.clear()
        s.flush()
        pr.start_at, pr.end_at = built.at(route.depart), built.at(route.arrive)
        pr.drive_s, pr.distance_m = route.duration, route.distance
        pr.geometry = _geometry(travel, built, route) if route.stops else None
        pr.stops.extend(_route_stops(built, route, locked))
    if source is None:
        plan.unassigned = [u for u in plan.unassigned if u.get("work_order_id") != work_order_id]
        wo = s.get(WorkOrder, work_order_id)
        if wo.status == "new":
            WorkOrderLifecycle.transition(s, wo, "planned", actor=actor, note=f"added to draft plan {plan.id} by hand")
    plan.stats = {**plan.stats, "edited": True, "scheduled": sum(1 for pr in plan.routes for st in pr.stops if st.kind == "job")}
    RoutePlanLifecycle.annotate(
        s, plan, actor=actor,
        note=f"moved work order {work_order_id} to crew {built.crews[target].code} at position {position}",
    )
    return plan


def fail_stale_plans(s: Session, *, now: datetime | None = None, grace_s: int = 600) -> list[int]:
    """Plans still `running` well past their time limit lost their worker (a crash, a
    deploy): mark them failed so dispatchers see it and ask again."""
    now = now or datetime.now(UTC)
    stale = s.scalars(select(RoutePlan).where(RoutePlan.status == "running").with_for_update(skip_locked=True)).all()
    failed = []
    for plan in stale:
        started = plan.started_at or plan.created_at
        if (now - started).total_seconds() > plan.time_limit_s + grace_s:
            plan.error = "the worker stopped before the plan was ready; request it again"
            RoutePlanLifecycle.transition(s, plan, "failed", actor=SYSTEM, note=plan.error)
            failed.append(plan.id)
    return failed
