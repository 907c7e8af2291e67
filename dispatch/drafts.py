"""A dispatcher's hand edits of a plan: move a stop (making room if asked), take a stop
off a draft, lock a stop to its crew.

An edited route is re-timed and must pass the same validator as the solver's routes, or
nothing changes; a refusal says why in a dispatcher's words. Each edit is audited on the
plan. Locks are taken as in `dispatch.plans`: the day, the plan, then work orders."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.db import existing
from core.errors import Conflict, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.route_plan import RoutePlanLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import PlanRoute, RoutePlan, WorkOrder
from core.status import PLAN_CURRENT, UNDER_WAY
from core.workorders import change_status
from dispatch.build import Built, TravelTimes
from dispatch.edit import time_route
from dispatch.model import urgency_weight
from dispatch.plans import (
    DEFAULT_DAY_RULES,
    DayRules,
    build_for,
    clock_for,
    lock_plan,
    route_geometry,
    route_stops,
)
from dispatch.validate import check_route


def _draft(s: Session, plan: RoutePlan) -> RoutePlan:
    lock_plan(s, plan)
    if plan.status != "ready":
        raise Conflict(
            f"plan {plan.id} is {plan.status}; only a draft (ready) plan is edited; re-plan a published day",
            current=plan.status,
        )
    return plan


def _orders(plan: RoutePlan, built: Built) -> dict[str, list[str]]:
    orders: dict[str, list[str]] = {c.id: [] for c in built.problem.crews}
    for pr in plan.routes:
        orders[str(pr.crew_id)] = [str(st.work_order_id) for st in pr.stops if st.kind == "job"]
    return orders


def _locked(plan: RoutePlan) -> set[str]:
    return {
        str(st.work_order_id)
        for pr in plan.routes
        for st in pr.stops
        if st.kind == "job" and st.locked
    }


def _rewrite(
    s: Session,
    plan: RoutePlan,
    built: Built,
    travel: TravelTimes,
    orders: dict[str, list[str]],
    changed: set[str],
    locked: set[str],
) -> None:
    """Re-time the changed routes, check them, and store them; ValidationFailed (nothing
    stored) with the violations in words when a route breaks a constraint."""
    problem = built.problem
    routes = {cid: time_route(problem, problem.crew(cid), orders[cid]) for cid in changed}
    problems = [
        v
        for cid in sorted(changed)
        for v in check_route(problem, problem.crew(cid), routes[cid], words=built.words)
    ]
    if problems:
        raise ValidationFailed(
            "the edited route breaks a constraint: " + "; ".join(problems),
            field="position",
            violations=problems,
        )
    by_crew = {str(pr.crew_id): pr for pr in plan.routes}
    for cid in changed:
        route = routes[cid]
        pr = by_crew.get(cid)
        if pr is None:
            pr = PlanRoute(
                plan=plan,
                crew_id=int(cid),
                shift_id=built.shifts[cid].id,
                start_at=built.at(route.depart),
                end_at=built.at(route.arrive),
                drive_s=0,
                distance_m=0,
            )
            s.add(pr)
        pr.stops.clear()
        s.flush()
        pr.start_at, pr.end_at = built.at(route.depart), built.at(route.arrive)
        pr.drive_s, pr.distance_m = route.duration, route.distance
        pr.geometry = route_geometry(travel, built, route) if route.stops else None
        pr.stops.extend(route_stops(built, route, locked))
    plan.stats = {
        **plan.stats,
        "edited": True,
        "scheduled": sum(1 for pr in plan.routes for st in pr.stops if st.kind == "job"),
    }


def _back_to_pool(
    s: Session, plan: RoutePlan, wo_ids: list[int], reason: str, message: str, actor: Actor
) -> None:
    for wo_id in sorted(wo_ids):
        plan.unassigned = [
            *(u for u in plan.unassigned if u.get("work_order_id") != wo_id),
            {"work_order_id": wo_id, "reason": reason, "message": message},
        ]
        # Work orders are never deleted, and these were on the plan's routes.
        wo = existing(s, WorkOrder, wo_id, with_for_update=True)
        if wo.status == "planned":
            change_status(s, wo, "new", actor=actor, note=f"taken off draft plan {plan.id}")


def move_stop(
    s: Session,
    plan: RoutePlan,
    *,
    work_order_id: int,
    crew_id: int,
    position: int,
    travel: TravelTimes,
    tz: ZoneInfo,
    actor: Actor,
    make_room: bool = False,
    rules: DayRules = DEFAULT_DAY_RULES,
    now: datetime | None = None,
) -> RoutePlan:
    """Move one job to `position` (1-based among jobs) on `crew_id`'s route of a draft.

    With `make_room`, when the crew's day cannot hold it, the least urgent stops of that
    route that are not locked go back to the pool, one at a time, until it fits; the plan
    lists them. Without it, or if even that fails, nothing changes."""
    _draft(s, plan)
    # The same problem the solver had (a re-plan's locks and start positions included), from now.
    built = build_for(s, plan, travel=travel, tz=tz, clock=clock_for(plan, rules, now))
    problem = built.problem
    orders = _orders(plan, built)
    jid, target = str(work_order_id), str(crew_id)
    if jid not in built.work_orders:
        raise ValidationFailed(
            f"work order {work_order_id} is not open for planning on {plan.plan_date}",
            field="work_order_id",
        )
    if target not in built.crews:
        raise ValidationFailed(
            "that crew is not on shift in this plan's day and scope", field="crew"
        )
    locked = _locked(plan)
    if jid in locked:
        raise Conflict(
            f"work order {work_order_id} is locked to its crew and place; unlock it first",
            current="locked",
        )
    source = next((cid for cid, seq in orders.items() if jid in seq), None)
    if source is not None:
        orders[source].remove(jid)
    if not 1 <= position <= len(orders[target]) + 1:
        raise ValidationFailed(
            f"position must be between 1 and {len(orders[target]) + 1}", field="position"
        )
    orders[target].insert(position - 1, jid)
    changed = {target} | ({source} if source else set())
    dropped: list[str] = []
    if make_room:
        job = {j.id: j for j in problem.jobs}
        held = set(problem.crew(target).held) | locked | {jid}
        crew = problem.crew(target)
        while check_route(problem, crew, time_route(problem, crew, orders[target])):
            spare = [j for j in orders[target] if j not in held]
            if not spare:
                break
            worst = min(
                spare,
                key=lambda j: (
                    urgency_weight(job[j], problem.now, problem.horizon_end),
                    -orders[target].index(j),
                ),
            )
            orders[target].remove(worst)
            dropped.append(worst)
    _rewrite(s, plan, built, travel, orders, changed, locked | set(problem.crew(target).held))
    who = built.crews[target].code
    if dropped:
        _back_to_pool(
            s,
            plan,
            [int(j) for j in dropped],
            "displaced_by_move",
            f"taken off {who} to make room for work order {work_order_id}",
            actor,
        )
    if source is None:
        plan.unassigned = [u for u in plan.unassigned if u.get("work_order_id") != work_order_id]
        # Open for planning (checked above), and work orders are never deleted.
        wo = existing(s, WorkOrder, work_order_id, with_for_update=True)
        if wo.status == "new":
            WorkOrderLifecycle.transition(
                s, wo, "planned", actor=actor, note=f"added to draft plan {plan.id} by hand"
            )
    room = f"; made room by taking off work order {', '.join(dropped)}" if dropped else ""
    RoutePlanLifecycle.annotate(
        s,
        plan,
        actor=actor,
        note=f"moved work order {work_order_id} to {who} at position {position}{room}",
    )
    return plan


def remove_stop(
    s: Session,
    plan: RoutePlan,
    *,
    work_order_id: int,
    travel: TravelTimes,
    tz: ZoneInfo,
    actor: Actor,
    rules: DayRules = DEFAULT_DAY_RULES,
    now: datetime | None = None,
) -> RoutePlan:
    """Take a stop off a draft: its work goes back to the pool, the route is re-timed."""
    _draft(s, plan)
    built = build_for(s, plan, travel=travel, tz=tz, clock=clock_for(plan, rules, now))
    orders = _orders(plan, built)
    jid = str(work_order_id)
    source = next((cid for cid, seq in orders.items() if jid in seq), None)
    if source is None:
        raise ValidationFailed(
            f"work order {work_order_id} is not on this plan's routes", field="work_order_id"
        )
    locked = _locked(plan) | set(built.problem.crew(source).held)
    if jid in locked:
        raise Conflict(
            f"work order {work_order_id} is locked (under way, committed or locked by hand); unlock it first",
            current="locked",
        )
    orders[source].remove(jid)
    _rewrite(s, plan, built, travel, orders, {source}, locked)
    _back_to_pool(
        s,
        plan,
        [work_order_id],
        "removed_by_dispatcher",
        f"taken off {built.crews[source].code} by hand",
        actor,
    )
    RoutePlanLifecycle.annotate(
        s, plan, actor=actor, note=f"took work order {work_order_id} off {built.crews[source].code}"
    )
    return plan


def set_lock(
    s: Session, plan: RoutePlan, *, work_order_id: int, locked: bool, actor: Actor
) -> RoutePlan:
    """Lock a stop to its crew and its place among the crew's locked stops (or unlock it).
    Moves and removals then leave it alone, and a re-plan of the day keeps it there."""
    lock_plan(s, plan)
    if plan.status not in PLAN_CURRENT:
        raise Conflict(
            f"plan {plan.id} is {plan.status}; stops are locked on a draft or the published plan",
            current=plan.status,
        )
    stop = next(
        (
            st
            for pr in plan.routes
            for st in pr.stops
            if st.kind == "job" and st.work_order_id == work_order_id
        ),
        None,
    )
    if stop is None:
        raise ValidationFailed(
            f"work order {work_order_id} is not on this plan's routes", field="work_order_id"
        )
    if stop.locked == locked:
        return plan
    status = stop.job_order.status
    if not locked and status in UNDER_WAY:
        raise Conflict(
            f"work order {work_order_id} is under way ({status}); it stays first on its route",
            current=status,
        )
    stop.locked = locked
    crew = stop.route.crew.code
    RoutePlanLifecycle.annotate(
        s,
        plan,
        actor=actor,
        at=datetime.now(UTC),
        note=f"{'locked' if locked else 'unlocked'} work order {work_order_id} on {crew} at stop {stop.sequence}",
    )
    return plan
