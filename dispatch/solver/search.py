"""`solve`: the pipeline, and its search on one or two processes.

Worker 0 runs in the caller's process. With `workers > 1` a second worker runs in a
process of a `concurrent.futures.ProcessPoolExecutor` (spawn, never fork: forking a
process that holds OR-Tools' or VROOM's threads can crash the child); the LNS loop is
Python, and two processes need no assumption about when the native libraries release the
GIL. The second process is started before VROOM's construction so that its imports
overlap with it, is given the same deadline, and is killed if it overruns it by more than
`HELPER_GRACE_S`: the main search then stands alone. The better worker's plan wins.

With spawn, the child imports the caller's `__main__` module again: a script that calls
`solve` with more than one worker at import time needs the usual
`if __name__ == "__main__":` guard (as `dispatch.split` already does).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import pairwise

from dispatch import progress
from dispatch.model import Problem, Result, Unassigned, objective_of
from dispatch.solver.lns import vroom_lns
from dispatch.solver.ortools_model import improve
from dispatch.solver.params import SolveParams, WorkerPlan
from dispatch.solver.precheck import precheck
from dispatch.solver.timing import asap, pinned_in_order, to_result, trim_to_model
from dispatch.solver.vroom_adapter import VroomDay, vroom_start

log = logging.getLogger(__name__)

# How long past the deadline the second worker may take to send its plan back (reading
# a large day's solution and pickling it) before it is killed.
HELPER_GRACE_S = 5.0


def solve(problem: Problem, params: SolveParams | None = None) -> Result:
    """Plan the day: routes with times and breaks, unassigned jobs with a reason."""
    params = params or SolveParams()
    t0 = time.monotonic()
    deadline = time.time() + params.time_limit_s
    reasons = precheck(problem)
    if not problem.crews:
        # No vehicles: nothing to search (and OR-Tools' routing model needs at least one).
        unassigned = tuple(Unassigned(j.id, reasons.get(j.id, "no_skill")) for j in problem.jobs)
        return Result(
            problem,
            (),
            unassigned,
            objective_of(problem, (), unassigned),
            {"seconds": 0.0, "status": "no_crews"},
        )
    locked = {j for c in problem.crews for j in c.locked_first if j not in reasons}
    # A lock on an impossible job is void: the job is reported, the crew plans without it.
    keep = [j.id for j in problem.jobs if j.id not in reasons]

    helper = _Helper.start() if params.workers > 1 and keep else None
    try:
        stats: dict[str, object] = {}
        start: VroomDay | None = None
        if params.use_vroom and keep:
            tv = time.monotonic()
            start = vroom_start(problem, keep, locked, params)
            stats["vroom_seconds"] = round(time.monotonic() - tv, 3)
            if start is not None:
                stats["vroom_distance"] = _distance(problem, start.routes)
                progress.report(problem, start.routes)
        if helper is not None:
            helper.search(problem, keep, start, deadline, params)
        plans = [search(problem, keep, start, deadline, params, 0)]
        if helper is not None:
            plans += helper.plans(deadline)
    finally:
        if helper is not None:
            helper.close()
    # The better worker's plan wins (both scored by `honest_score` in `search`).
    best = min(plans, key=lambda p: p.objective if p.objective is not None else 1 << 62)
    result = to_result(problem, best, reasons)
    stats.update(
        status=best.status,
        start_from=best.start_from,
        solver_objective=best.objective,
        workers=[
            {
                "lambda": p.lam,
                "objective": p.objective,
                "ortools_objective": p.ortools_objective,
                "start_from": p.start_from,
                "status": p.status,
                "lns_iterations": p.lns_iterations,
                "lns_improvements": p.lns_improvements,
                "lns_objective": p.lns_objective,
            }
            for p in plans
        ],
        seconds=round(time.monotonic() - t0, 3),
    )
    return Result(problem, result.routes, result.unassigned, result.objective, stats)


def _distance(problem: Problem, routes: dict[str, list[str]]) -> int:
    m, loc = problem.matrix, {j.id: j.location for j in problem.jobs}
    total = 0
    for c in problem.crews:
        seq = routes.get(c.id, [])
        if seq:
            path = [c.start] + [loc[j] for j in seq] + [c.end]
            total += sum(int(m.distances[a, b]) for a, b in pairwise(path))
    return total


def search(
    problem: Problem,
    keep: list[str],
    start: VroomDay | None,
    deadline: float,
    params: SolveParams,
    worker: int,
) -> WorkerPlan:
    """One worker's search: the VROOM-driven LNS from `start` (if given) until the OR-Tools
    share of the time is left, then OR-Tools from the LNS's best day until `deadline`."""
    t0 = time.monotonic()
    initial: dict[str, list[str]] | None = None
    lns_iterations = lns_improvements = 0
    lns_objective: int | None = None
    if start is not None:
        if params.lns:
            kept = set(keep)
            locked = {j for c in problem.crews for j in c.locked_first if j in kept}
            lns_deadline = deadline - params.ortools_share * max(0.0, deadline - time.time())
            start = vroom_lns(
                problem,
                keep,
                locked,
                start,
                lns_deadline,
                params.seed * 7919 + worker,
                params.lns_threshold,
                params.lns_ops,
                params.lns_ruin,
            )
            lns_iterations, lns_improvements = start.iterations, start.improvements
        lns_objective = start.score
        initial = start.routes
    lam = params.gls_lambdas[worker % len(params.gls_lambdas)]
    plan = improve(problem, keep, initial, deadline, params, lam, floor=lns_objective)
    # Workers are compared on the routes as they will be timed, not on OR-Tools' number.
    plan.ortools_objective, plan.objective = plan.objective, honest_score(problem, keep, plan)
    if start is not None:
        # OR-Tools may end worse than the day it was given, or with none: on a large part
        # its share can run out while it builds its model and reads the routes in (the
        # 714-job part of bench/large_day.py at 17.5 s: every job dropped). The LNS's day
        # then stands.
        lns_day = day_plan(problem, keep, start.routes, plan)
        if lns_day.objective is not None and lns_day.objective < plan.objective:
            plan = lns_day
    plan.lns_iterations, plan.lns_improvements = lns_iterations, lns_improvements
    plan.lns_objective = lns_objective
    plan.seconds = time.monotonic() - t0
    return plan


def day_plan(
    problem: Problem, keep: list[str], routes: dict[str, list[str]], failed: WorkerPlan
) -> WorkerPlan:
    """A day in job orders (the LNS's) as a worker's plan: each route trimmed to what the
    full model accepts (VROOM has no route-duration limit), timed as early as it goes, and
    scored on the solver's scale (crew costs plus the drop penalties of `keep`'s jobs left
    out), so that it competes with the other worker's plan as OR-Tools' would."""
    trimmed = trim_to_model(problem, pinned_in_order(problem, routes))
    plan = WorkerPlan(
        status=failed.status,
        start_from="lns",
        lam=failed.lam,
        ortools_objective=failed.ortools_objective,
    )
    for c in problem.crews:
        seq = trimmed.get(c.id, [])
        timed = asap(problem, c, seq) if seq else None
        if timed is None:
            continue  # an idle crew: its jobs are left out, and scored so
        depart, starts, placed, arrive = timed
        plan.routes[c.id] = list(zip(seq, starts, strict=True))
        plan.depart[c.id], plan.arrive[c.id] = depart, arrive
        plan.breaks[c.id] = [(bid, b0) for b0, _, bid in placed]
    plan.objective = honest_score(problem, keep, plan)
    return plan


def honest_score(problem: Problem, keep: list[str], plan: WorkerPlan) -> int:
    """The plan's objective on the solver's scale as `to_result` will time it, from the
    routes alone (not OR-Tools' own number): crew costs plus the drop penalties of `keep`'s
    jobs it leaves out (the others no worker can serve). A plan without routes scores all
    of `keep`'s penalties."""
    result = to_result(problem, plan, {})
    kept = set(keep)
    return objective_of(
        problem, result.routes, [u for u in result.unassigned if u.job_id in kept]
    ).total_scaled


def _ready() -> None:
    """Nothing to do: unpickling this function in the new process imports the solver
    (numpy, VROOM, OR-Tools), which is what starting the helper early is for."""


class _Helper:
    """The second worker: one process of its own pool, for one solve."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self._pool = pool
        self._future: Future[WorkerPlan] | None = None

    @classmethod
    def start(cls) -> _Helper | None:
        """The process, started now; None if it cannot be (the main search then runs alone)."""
        try:
            pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
            pool.submit(_ready)
        except Exception:
            log.warning("solver: no second search process; searching in one", exc_info=True)
            return None
        return cls(pool)

    def search(
        self,
        problem: Problem,
        keep: list[str],
        start: VroomDay | None,
        deadline: float,
        params: SolveParams,
    ) -> None:
        """Hand worker 1's search to the process (the problem is pickled on the way)."""
        try:
            self._future = self._pool.submit(search, problem, keep, start, deadline, params, 1)
        except Exception:
            log.warning("solver: the second search could not be started", exc_info=True)

    def plans(self, deadline: float) -> list[WorkerPlan]:
        """Worker 1's plan, or nothing if it failed or overran (then it is killed)."""
        if self._future is None:
            return []
        try:
            return [self._future.result(timeout=max(1.0, deadline - time.time() + HELPER_GRACE_S))]
        except TimeoutError:
            log.warning("solver: the second search overran its deadline; it is stopped")
        except Exception:
            log.warning("solver: the second search failed", exc_info=True)
        self._kill()
        return []

    def close(self) -> None:
        """Stop the process: at once if it is still searching (an error or an interrupt
        in this process), else as soon as it has left its idle loop. Its exit is not
        waited for (a process holding OR-Tools and VROOM takes a few tenths of a second
        to exit): the pool's own thread reaps it."""
        if self._future is not None and not self._future.done():
            self._kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _kill(self) -> None:
        # Python 3.14 has ProcessPoolExecutor.kill_workers(); before it, the processes
        # are reachable only through the pool's (stable, if private) table of them.
        processes = self._pool._processes or {}
        for process in list(processes.values()):
            process.kill()
