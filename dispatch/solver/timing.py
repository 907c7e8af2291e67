"""Concrete times for routes in a fixed order, and the `Result` built from a worker's plan.

OR-Tools binds times loosely when only distance costs (a crew may idle for hours before
lunch), so the reported times are re-derived here (`asap`) and checked with the
validator before they replace OR-Tools' own.
"""

from __future__ import annotations

from itertools import pairwise

from dispatch.model import (
    BreakPlacement,
    Crew,
    Job,
    Problem,
    Result,
    Route,
    Stop,
    Unassigned,
    objective_of,
)
from dispatch.solver.params import WorkerPlan
from dispatch.validate import check_route

BreakSpan = tuple[int, int, str]
"""A placed break: (start, end, break id)."""


def to_result(problem: Problem, plan: WorkerPlan, reasons: dict[str, str]) -> Result:
    """The plan as routes with concrete times; every job not on a route is unassigned,
    for its pre-check reason or else "dropped_for_cost"."""
    routes: list[Route] = []
    routed: set[str] = set()
    for c in problem.crews:
        seq = plan.routes.get(c.id, [])
        brk = {b.id: b for b in c.breaks}
        placed = sorted((s, s + brk[bid].duration, bid) for bid, s in plan.breaks.get(c.id, []))
        if not seq and not placed:  # an idle crew with no breaks placed takes them early
            placed = sorted((b.window.start, b.window.start + b.duration, b.id) for b in c.breaks)
        depart = plan.depart.get(c.id, c.shift.start)
        arrive = plan.arrive.get(c.id, depart)
        route = build_route(problem, c, seq, depart, arrive, placed)
        if seq:
            order = [jid for jid, _ in seq]
            again = asap(problem, c, order)
            if again is not None:
                d2, starts, placed2, a2 = again
                cand = build_route(
                    problem, c, list(zip(order, starts, strict=True)), d2, a2, sorted(placed2)
                )
                if not check_route(problem, c, cand):
                    route = cand
        routed.update(s.job_id for s in route.stops)
        routes.append(route)
    unassigned = [
        Unassigned(j.id, reasons.get(j.id, "dropped_for_cost"))
        for j in problem.jobs
        if j.id not in routed
    ]
    return Result(
        problem, tuple(routes), tuple(unassigned), objective_of(problem, routes, unassigned), {}
    )


def trim_to_model(problem: Problem, routes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Trim routes the full model rejects (VROOM has no route-duration limit) by dropping
    their last free jobs until the route re-times cleanly; OR-Tools may re-insert them."""
    out = {}
    for c in problem.crews:
        seq = list(routes.get(c.id, []))
        fixed = len([j for j in c.locked_first if j in seq])
        while len(seq) > fixed:
            again = asap(problem, c, seq)
            if again is not None:
                d, starts, placed, a = again
                route = build_route(
                    problem, c, list(zip(seq, starts, strict=True)), d, a, sorted(placed)
                )
                if not check_route(problem, c, route):
                    break
            seq.pop()
        out[c.id] = seq
    return out


def pinned_in_order(problem: Problem, routes: dict[str, list[str]]) -> dict[str, list[str]]:
    """VROOM cannot keep a crew's pinned stops in order; put them back in their order,
    in the places they hold, before the full model reads the routes."""
    out = dict(routes)
    for c in problem.crews:
        seq = out.get(c.id)
        if not seq or len(c.pinned) < 2:
            continue
        wanted = [j for j in c.pinned if j in set(seq)]
        slots = iter(wanted)
        out[c.id] = [next(slots) if j in set(wanted) else j for j in seq]
    return out


def _open_at(j: Job, t: int) -> int | None:
    """The earliest service start at or after `t` inside one of the job's windows."""
    if not j.windows:
        return t
    return next((max(t, w.start) for w in j.windows if w.end >= t), None)


def asap(
    problem: Problem, c: Crew, seq: list[str]
) -> tuple[int, list[int], list[BreakSpan], int] | None:
    """Earliest schedule for a fixed sequence: (depart, service starts, breaks, arrive).

    Serve each stop as early as possible, take a break during a wait when it fits there,
    otherwise on the leg before the first stop after which it could no longer start.
    None if this greedy fails (the caller then keeps OR-Tools' own times)."""
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    pending = sorted(c.breaks, key=lambda b: (b.latest_start, b.window.start))
    t, pos = c.shift.start, c.start
    starts: list[int] = []
    placed: list[BreakSpan] = []
    end = t
    for k in range(len(seq) + 1):
        j = jobs[seq[k]] if k < len(seq) else None
        loc = j.location if j is not None else c.end
        drive = int(m.durations[pos, loc])
        while pending:
            b = pending[0]
            arrival = t + drive
            s0 = _open_at(j, arrival) if j is not None else arrival
            if s0 is None:
                return None
            # A wait long enough for the break costs nothing.
            bs = max(arrival, b.window.start)
            if j is not None and bs <= b.latest_start and bs + b.duration <= s0:
                placed.append((bs, bs + b.duration, b.id))
                pending.pop(0)
                continue
            done_here = s0 + (j.service if j is not None else 0)
            if j is not None and done_here <= b.latest_start:
                break  # it can still be taken after this stop
            bs = max(t, b.window.start)
            if bs > b.latest_start:
                return None
            placed.append((bs, bs + b.duration, b.id))
            t = bs + b.duration
            pending.pop(0)
        arrival = t + drive
        if j is None:
            if arrival > c.shift.end:
                return None
            end = arrival
            break
        start = _open_at(j, arrival)
        if start is None:
            return None
        starts.append(start)
        t, pos = start + j.service, loc
    # Leave as late as the first stop allows when no break comes before it.
    depart = c.shift.start
    if seq:
        first_break = min((b0 for b0, _, _ in placed), default=None)
        latest = starts[0] - int(m.durations[c.start, jobs[seq[0]].location])
        if first_break is None or first_break >= starts[0]:
            depart = max(depart, latest)
    if c.max_duration is not None and end - depart > c.max_duration:
        return None
    return depart, starts, placed, end


def build_route(
    problem: Problem,
    c: Crew,
    seq: list[tuple[str, int]],
    depart: int,
    arrive: int,
    placed: list[BreakSpan],
) -> Route:
    """The route of `c` serving `seq` (job, service start) with breaks `placed`: arrivals
    as late as the breaks on each leg allow, distance and drive time from the matrix."""
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    stops: list[Stop] = []
    pos, free = c.start, depart
    for jid, start in seq:
        j = jobs[jid]
        on_leg = sum(b1 - b0 for b0, b1, _ in placed if free <= b0 and b1 <= start)
        arrival = min(start, free + int(m.durations[pos, j.location]) + on_leg)
        stops.append(Stop(jid, j.location, arrival, start, start + j.service))
        pos, free = j.location, start + j.service
    if not stops:
        arrive = depart
    legs = list(pairwise([c.start] + [s.location for s in stops] + [c.end]))
    d = sum(int(m.distances[a, b]) for a, b in legs) if stops else 0
    t = sum(int(m.durations[a, b]) for a, b in legs) if stops else 0
    bps = tuple(
        BreakPlacement(bid, b0, b1, sum(1 for s in stops if s.end <= b0) - 1)
        for b0, b1, bid in placed
    )
    return Route(c.id, depart, tuple(stops), bps, arrive, d, t)
