"""OR-Tools, the model of record: the whole constraint set (breaks, locks, route duration,
skills, capacities, windows, drop penalties), read from the best routes found before it
and improved by guided local search until the deadline. If it rejects those routes it
builds its own with `first_solution` (parallel cheapest insertion, which copes with tight
windows).

The only module of the code base that imports ortools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from dispatch import progress
from dispatch.model import Problem, arc_cost, span_cost
from dispatch.solver.params import SolveParams, WorkerPlan
from dispatch.solver.timing import pinned_in_order, trim_to_model


@dataclass(slots=True)
class _Model:
    """A routing model of a problem's `keep` jobs. Nodes are the jobs (node k is keep[k]),
    then one start and one end node per crew, since crews' positions may differ."""

    problem: Problem
    keep: list[str]
    manager: Any  # pywrapcp.RoutingIndexManager
    routing: Any  # pywrapcp.RoutingModel
    time: Any  # the "time" RoutingDimension
    node_of: dict[str, int]

    def index(self, job_id: str) -> int:
        return int(self.manager.NodeToIndex(self.node_of[job_id]))


def improve(
    problem: Problem,
    keep: list[str],
    initial: dict[str, list[str]] | None,
    deadline: float,
    params: SolveParams,
    lam: float,
    floor: int | None = None,
) -> WorkerPlan:
    """OR-Tools' plan for the `keep` jobs by `deadline` (a `time.time()`), starting from
    `initial` (job ids per crew) when it accepts them, with GLS lambda `lam`. `floor` is
    the best cost already reported as progress: only better days are reported again."""
    model = _build(problem, keep)
    routing, manager = model.routing, model.manager
    sp = _search_parameters(params, lam, deadline, len(keep))
    plan = WorkerPlan(lam=lam)
    if progress.active():
        routing.AddAtSolutionCallback(_progress_callback(model, floor))
    sol = None
    if initial is not None:
        initial = trim_to_model(problem, pinned_in_order(problem, initial))
        routes = [
            [
                manager.NodeToIndex(model.node_of[j])
                for j in initial.get(c.id, [])
                if j in model.node_of
            ]
            for c in problem.crews
        ]
        start = routing.ReadAssignmentFromRoutes(routes, True)
        if start is not None:
            plan.start_from = "vroom"
            sol = routing.SolveFromAssignmentWithParameters(start, sp)
    if sol is None:
        plan.start_from = (
            plan.start_from + ("+" if plan.start_from else "") + params.first_solution.lower()
        )
        sol = routing.SolveWithParameters(sp)
    plan.status = str(routing.status())
    if sol is not None:
        _read(model, sol, plan)
    return plan


def _build(problem: Problem, keep: list[str]) -> _Model:
    jobs = {j.id: j for j in problem.jobs}
    crews = problem.crews
    nj, nv = len(keep), len(crews)
    m = problem.matrix
    loc = np.array(
        [jobs[j].location for j in keep] + [c.start for c in crews] + [c.end for c in crews],
        dtype=np.int64,
    )
    service = np.array([jobs[j].service for j in keep] + [0] * (2 * nv), dtype=np.int64)
    starts = [nj + v for v in range(nv)]
    ends = [nj + nv + v for v in range(nv)]
    manager = pywrapcp.RoutingIndexManager(len(loc), nv, starts, ends)
    routing = pywrapcp.RoutingModel(manager)
    model = _Model(problem, keep, manager, routing, None, {jid: k for k, jid in enumerate(keep)})
    dist = m.distances[np.ix_(loc, loc)]
    dur = m.durations[np.ix_(loc, loc)]
    _add_arc_costs(model, dist, dur)
    model.time = _add_time(model, dur, service)
    _add_capacities(model)
    _bar_unable_crews(model)
    _add_drops(model, _lock_chains(model))
    _keep_pinned_order(model, len(loc))
    _bind_times(model)
    return model


def _add_arc_costs(model: _Model, dist: np.ndarray, dur: np.ndarray) -> None:
    """Each crew pays its distance cost per leg; one transit matrix per distinct rate."""
    routing = model.routing
    arc_cbs: dict[int, int] = {}
    for v, c in enumerate(model.problem.crews):
        if c.cost_per_km not in arc_cbs:
            arc_cbs[c.cost_per_km] = routing.RegisterTransitMatrix(arc_cost(c, dist, dur).tolist())
        routing.SetArcCostEvaluatorOfVehicle(arc_cbs[c.cost_per_km], v)


def _add_time(model: _Model, dur: np.ndarray, service: np.ndarray) -> Any:
    """The time dimension: service then drive on each leg, job windows (the gaps between
    several windows removed), shifts, route duration limits, hourly cost on the span, and
    breaks as intervals that may not overlap a visit."""
    problem, routing, manager = model.problem, model.routing, model.manager
    crews = problem.crews
    jobs = {j.id: j for j in problem.jobs}
    horizon = max(c.shift.end for c in crews) if crews else 0
    time_cb = routing.RegisterTransitMatrix((dur + service[:, None]).tolist())
    routing.AddDimension(time_cb, horizon, horizon, False, "time")
    tdim = routing.GetDimensionOrDie("time")
    for k, jid in enumerate(model.keep):
        j = jobs[jid]
        cv = tdim.CumulVar(manager.NodeToIndex(k))
        if j.windows:
            cv.SetRange(j.windows[0].start, min(j.windows[-1].end, horizon))
            for before, after in pairwise(j.windows):
                cv.RemoveInterval(before.end + 1, after.start - 1)
    node_visit = [int(service[manager.IndexToNode(i)]) for i in range(routing.Size() + len(crews))]
    solver = routing.solver()
    for v, c in enumerate(crews):
        tdim.CumulVar(routing.Start(v)).SetRange(c.shift.start, c.shift.end)
        tdim.CumulVar(routing.End(v)).SetRange(c.shift.start, c.shift.end)
        if c.max_duration is not None:
            tdim.SetSpanUpperBoundForVehicle(c.max_duration, v)
        if c.cost_per_hour:
            tdim.SetSpanCostCoefficientForVehicle(span_cost(c, 1), v)
        if c.breaks:
            intervals = [
                solver.FixedDurationIntervalVar(
                    b.window.start, b.latest_start, b.duration, False, f"break|{c.id}|{b.id}"
                )
                for b in c.breaks
            ]
            tdim.SetBreakIntervalsOfVehicle(intervals, v, node_visit)
    return tdim


def _add_capacities(model: _Model) -> None:
    """One dimension per capacity dimension, each crew's capacity its limit."""
    problem, routing = model.problem, model.routing
    jobs = {j.id: j for j in problem.jobs}
    nv = len(problem.crews)
    for d, name in enumerate(problem.dimensions):
        cb = routing.RegisterUnaryTransitVector(
            [jobs[j].demand[d] for j in model.keep] + [0] * (2 * nv)
        )
        routing.AddDimensionWithVehicleCapacity(
            cb, 0, [c.capacity[d] for c in problem.crews], True, f"cap|{name}"
        )


def _bar_unable_crews(model: _Model) -> None:
    """A job needing a skill, or reserved for some crews, may not go to the others (a
    locked job is a fact on its crew, so its lock decides)."""
    problem = model.problem
    locked_ids = {jid for c in problem.crews for jid in c.locked_first}
    jobs = {j.id: j for j in problem.jobs}
    for jid in model.keep:
        job = jobs[jid]
        if (job.skills or job.crews) and jid not in locked_ids:
            barred = [v for v, c in enumerate(problem.crews) if not problem.may_do(c, job)]
            if barred:
                # SetAllowedVehiclesForIndex's Python binding rejects every list (ortools
                # 9.15, absl::Span<int const>); removing values keeps -1 (dropped) allowed.
                model.routing.VehicleVar(model.index(jid)).RemoveValues(barred)


def _lock_chains(model: _Model) -> set[str]:
    """Each crew's locked jobs open its route in their order; returns the jobs locked."""
    routing, solver = model.routing, model.routing.solver()
    locked: set[str] = set()
    for v, c in enumerate(model.problem.crews):
        prev = routing.Start(v)
        for jid in c.locked_first:
            if jid not in model.node_of:
                continue
            idx = model.index(jid)
            solver.Add(routing.NextVar(prev) == idx)
            prev = idx
            locked.add(jid)
    return locked


def _add_drops(model: _Model, locked: set[str]) -> None:
    """Every job but a locked one may be left out, at its drop penalty."""
    penalties = model.problem.penalties
    for jid in model.keep:
        if jid not in locked:
            model.routing.AddDisjunction([model.index(jid)], int(penalties[jid]))


def _keep_pinned_order(model: _Model, nodes: int) -> None:
    """Stops a dispatcher locked to a crew keep their order: a count of stops along the
    route (the rank) must grow from one to the next."""
    chains = [[j for j in c.pinned if j in model.node_of] for c in model.problem.crews]
    if not any(len(chain) > 1 for chain in chains):
        return
    routing, solver = model.routing, model.routing.solver()
    rank_cb = routing.RegisterUnaryTransitCallback(lambda i: 1)
    routing.AddDimension(rank_cb, 0, nodes, True, "rank")
    rank = routing.GetDimensionOrDie("rank")
    for chain in chains:
        for a, b in pairwise(chain):
            solver.Add(rank.CumulVar(model.index(a)) < rank.CumulVar(model.index(b)))


def _bind_times(model: _Model) -> None:
    """Bind times so reported stops are concrete: finish as early as possible, then leave
    as late as that finish allows (no idle wait on site), then serve each stop early."""
    routing, tdim = model.routing, model.time
    nv = len(model.problem.crews)
    for v in range(nv):
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(routing.End(v)))
    for v in range(nv):
        routing.AddVariableMaximizedByFinalizer(tdim.CumulVar(routing.Start(v)))
    for k in range(len(model.keep)):
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(model.manager.NodeToIndex(k)))


def _search_parameters(params: SolveParams, lam: float, deadline: float, nj: int) -> Any:
    sp = pywrapcp.DefaultRoutingSearchParameters()
    sp.first_solution_strategy = getattr(
        routing_enums_pb2.FirstSolutionStrategy, params.first_solution
    )
    # Guided local search; the workers differ in its lambda. (OR-Tools 9.15's iterated
    # local search with SISR ruin-and-recreate stopped at the first local optimum when
    # tried through these Python bindings, so it is not offered.)
    sp.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    sp.guided_local_search_lambda_coefficient = lam
    sp.log_search = params.log_search
    # Leave time to read the solution back and re-time it: more on larger days.
    remaining = max(0.05, deadline - time.time() - 0.05 * (1 + nj / 200))
    sp.time_limit.FromMilliseconds(int(remaining * 1000))
    return sp


def _read(model: _Model, sol: Any, plan: WorkerPlan) -> None:
    """The solution's routes, departures, returns and break starts into `plan`."""
    routing, manager, tdim = model.routing, model.manager, model.time
    plan.objective = int(sol.ObjectiveValue())
    for v, c in enumerate(model.problem.crews):
        idx = routing.Start(v)
        plan.depart[c.id] = int(sol.Min(tdim.CumulVar(idx)))
        stops = []
        idx = sol.Value(routing.NextVar(idx))
        while not routing.IsEnd(idx):
            stops.append((model.keep[manager.IndexToNode(idx)], int(sol.Min(tdim.CumulVar(idx)))))
            idx = sol.Value(routing.NextVar(idx))
        plan.arrive[c.id] = int(sol.Min(tdim.CumulVar(idx)))
        plan.routes[c.id] = stops
    ivs = sol.IntervalVarContainer()
    for i in range(ivs.Size()):
        e = ivs.Element(i)
        _, cid, bid = e.Var().Name().split("|", 2)
        plan.breaks.setdefault(cid, []).append((bid, int(e.StartMin())))


def _progress_callback(model: _Model, floor: int | None) -> Callable[[], None]:
    """OR-Tools' solutions as progress reports: only those better than what was reported
    before (guided local search also passes through worse ones), and at most twice a
    second, since reading a whole assignment back costs a pass over every node."""
    routing, manager, problem = model.routing, model.manager, model.problem
    best: int | None = floor
    last_at = 0.0

    def at_solution() -> None:
        nonlocal best, last_at
        cost = int(routing.CostVar().Value())
        now = time.monotonic()
        if (best is not None and cost >= best) or now - last_at < 0.5:
            return
        best, last_at = cost, now
        routes: dict[str, list[str]] = {}
        for v, c in enumerate(problem.crews):
            idx = routing.NextVar(routing.Start(v)).Value()
            seq = routes.setdefault(c.id, [])
            while not routing.IsEnd(idx):
                seq.append(model.keep[manager.IndexToNode(idx)])
                idx = routing.NextVar(idx).Value()
        progress.report(problem, routes)

    return at_solution
