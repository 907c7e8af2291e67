"""Large days: solve the independent parts of a problem apart, in parallel, and merge.

Two parts are independent when no job of one can be done by a crew of the other
(skills): pothole crews never take bulk trash. Each part gets its own smaller
matrix and its own process; the merged answer is checked as one whole."""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from dispatch.model import Matrix, Problem, Result, Unassigned, objective_of
from dispatch.solver import SolveParams, precheck, solve


def components(problem: Problem) -> list[tuple[list[int], list[int]]]:
    """(crew indices, job indices) of each independent part; jobs no crew can do stand alone."""
    parent = list(range(len(problem.crews)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    capable: list[list[int]] = []
    for job in problem.jobs:
        crews = [
            i for i, c in enumerate(problem.crews) if problem.may_do(c, job) or job.id in c.held
        ]
        capable.append(crews)
        for other in crews[1:]:
            parent[find(other)] = find(crews[0])
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for i in range(len(problem.crews)):
        groups.setdefault(find(i), ([], []))[0].append(i)
    orphans: list[int] = []
    for j, crews in enumerate(capable):
        if crews:
            groups[find(crews[0])][1].append(j)
        else:
            orphans.append(j)
    parts = [g for g in groups.values() if g[1]]
    if orphans:
        parts.append(([], orphans))
    return parts


def subproblem(
    problem: Problem, crew_idx: list[int], job_idx: list[int]
) -> tuple[Problem, list[int]]:
    """The part as a problem of its own, on the sub-matrix of the places it visits
    (returned too: sub-matrix index -> index in the whole problem's matrix)."""
    crews = [problem.crews[i] for i in crew_idx]
    jobs = [problem.jobs[j] for j in job_idx]
    places = sorted({c.start for c in crews} | {c.end for c in crews} | {j.location for j in jobs})
    index = {p: k for k, p in enumerate(places)}
    sel = np.array(places, dtype=np.int64)
    m = problem.matrix
    matrix = Matrix(m.durations[np.ix_(sel, sel)], m.distances[np.ix_(sel, sel)])
    return Problem(
        matrix=matrix,
        crews=tuple(replace(c, start=index[c.start], end=index[c.end]) for c in crews),
        jobs=tuple(replace(j, location=index[j.location]) for j in jobs),
        dimensions=problem.dimensions,
        now=problem.now,
        penalties={j.id: problem.penalties[j.id] for j in jobs},
    ), places


def _solve_part(args: tuple[Problem, SolveParams]) -> Result:
    part, params = args
    return solve(part, params)


def solve_split(
    problem: Problem, params: SolveParams | None = None, *, min_split_jobs: int = 150
) -> Result:
    """`solve`, but part by part when the problem separates and is big enough to gain from it."""
    params = params or SolveParams()
    parts = components(problem)
    if len(parts) <= 1 or len(problem.jobs) < min_split_jobs:
        return solve(problem, params)
    t0 = time.monotonic()
    # Work no crew can do needs no search: the pre-check says why.
    reasons = precheck(problem)
    orphans = [
        Unassigned(problem.jobs[j].id, reasons.get(problem.jobs[j].id, "no_skill"))
        for c, js in parts
        if not c
        for j in js
    ]
    built = [subproblem(problem, c, j) for c, j in parts if c]
    # Largest first, so the long pole starts at once; each process gets one core.
    order = sorted(range(len(built)), key=lambda k: -len(built[k][0].jobs))
    pool_size = max(1, params.workers)
    waves = math.ceil(len(built) / pool_size)
    per_part = replace(params, workers=1, time_limit_s=max(1.0, params.time_limit_s / waves - 0.5))
    results: dict[int, Result] = {}
    # spawn, not fork: forking a process that holds OR-Tools' threads can crash the child.
    with ProcessPoolExecutor(
        max_workers=pool_size, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = {k: pool.submit(_solve_part, (built[k][0], per_part)) for k in order}
        for k, fut in futures.items():
            results[k] = fut.result()
    routes = []
    unassigned = list(orphans)
    stats_parts = []
    for k, (part, places) in enumerate(built):
        res = results[k]
        for r in res.routes:
            routes.append(
                replace(r, stops=tuple(replace(s, location=places[s.location]) for s in r.stops))
            )
        unassigned.extend(res.unassigned)
        stats_parts.append(
            {
                "crews": len(part.crews),
                "jobs": len(part.jobs),
                **{
                    key: v
                    for key, v in res.stats.items()
                    if key in {"seconds", "start_from", "status", "vroom_seconds"}
                },
            }
        )
    crew_order = {c.id: i for i, c in enumerate(problem.crews)}
    routes.sort(key=lambda r: crew_order[r.crew_id])
    objective = objective_of(problem, routes, unassigned)
    stats = {"split": len(parts), "parts": stats_parts, "seconds": round(time.monotonic() - t0, 3)}
    return Result(problem, tuple(routes), tuple(unassigned), objective, stats)
