"""Large days: solve the independent parts of a problem apart, in parallel, and merge.

Two parts are independent when no job of one can be done by a crew of the other
(skills): pothole crews never take bulk trash. Each part gets its own smaller
matrix and its own process; the merged answer is checked as one whole."""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dispatch.model import Matrix, Problem, Result, Route, Unassigned, objective_of
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


@dataclass(frozen=True)
class Split:
    """A problem cut into its independent parts: each part as a problem of its own with
    its places in the whole (`subproblem`), largest first, and the work no crew can do
    (it needs no search: the pre-check says why)."""

    parts: list[tuple[Problem, list[int]]]
    orphans: list[Unassigned]
    # How many parts `components` found, the orphans' part included (the stats' "split").
    found: int

    def shapes(self) -> list[PartShape]:
        return [PartShape(len(p.crews), len(p.jobs), places) for p, places in self.parts]


@dataclass(frozen=True)
class PartShape:
    """What merging needs of a part: its size (for the stats) and its places in the
    whole, not its matrix (a plan assembled from stored parts does not read theirs)."""

    crews: int
    jobs: int
    places: Sequence[int]


def split(problem: Problem, *, min_split_jobs: int = 150) -> Split | None:
    """The problem's parts, or None when it does not separate or is too small to gain."""
    parts = components(problem)
    if len(parts) <= 1 or len(problem.jobs) < min_split_jobs:
        return None
    reasons = precheck(problem)
    orphans = [
        Unassigned(problem.jobs[j].id, reasons.get(problem.jobs[j].id, "no_skill"))
        for c, js in parts
        if not c
        for j in js
    ]
    built = [subproblem(problem, c, j) for c, j in parts if c]
    # Largest first, so the long pole starts at once.
    built.sort(key=lambda b: -len(b[0].jobs))
    return Split(built, orphans, len(parts))


def part_time_limits(split: Split, time_limit_s: float, at_once: int) -> list[float]:
    """Each part's share of the time limit when `at_once` parts are solved at the same
    time (one core each): the parts are solved in waves of `at_once`, each wave in its
    share of the limit, less half a second for starting and stopping."""
    waves = math.ceil(len(split.parts) / max(1, at_once))
    return [max(1.0, time_limit_s / waves - 0.5)] * len(split.parts)


PART_STATS = ("seconds", "start_from", "status", "vroom_seconds")


def merge(
    problem: Problem,
    shapes: Sequence[PartShape],
    orphans: Sequence[Unassigned],
    found: int,
    answers: list[tuple[tuple[Route, ...], tuple[Unassigned, ...], dict[str, object]]],
    *,
    seconds: float,
) -> Result:
    """The parts' answers (routes in each part's own places, in `shapes`' order, the
    cut's `Split.shapes()`) as one answer to the whole problem, its objective computed
    afresh from the routes; `orphans` and `found` as the cut's."""
    routes: list[Route] = []
    unassigned = list(orphans)
    stats_parts = []
    for shape, (part_routes, part_unassigned, part_stats) in zip(shapes, answers, strict=True):
        places = shape.places
        for r in part_routes:
            routes.append(
                replace(r, stops=tuple(replace(s, location=places[s.location]) for s in r.stops))
            )
        unassigned.extend(part_unassigned)
        stats_parts.append(
            {
                "crews": shape.crews,
                "jobs": shape.jobs,
                **{key: v for key, v in part_stats.items() if key in PART_STATS},
            }
        )
    crew_order = {c.id: i for i, c in enumerate(problem.crews)}
    routes.sort(key=lambda r: crew_order[r.crew_id])
    objective = objective_of(problem, routes, unassigned)
    stats = {"split": found, "parts": stats_parts, "seconds": round(seconds, 3)}
    return Result(problem, tuple(routes), tuple(unassigned), objective, stats)


def _solve_part(args: tuple[Problem, SolveParams]) -> Result:
    part, params = args
    return solve(part, params)


def solve_split(
    problem: Problem, params: SolveParams | None = None, *, min_split_jobs: int = 150
) -> Result:
    """`solve`, but part by part when the problem separates and is big enough to gain from
    it, in `params.workers` processes of this one (a plan's parts on any worker:
    `dispatch.parts`)."""
    params = params or SolveParams()
    cut = split(problem, min_split_jobs=min_split_jobs)
    if cut is None:
        return solve(problem, params)
    t0 = time.monotonic()
    pool_size = max(1, params.workers)
    limits = part_time_limits(cut, params.time_limit_s, pool_size)
    # spawn, not fork: forking a process that holds OR-Tools' threads can crash the child.
    with ProcessPoolExecutor(
        max_workers=pool_size, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = [
            pool.submit(_solve_part, (part, replace(params, workers=1, time_limit_s=limit)))
            for (part, _), limit in zip(cut.parts, limits, strict=True)
        ]
        results = [fut.result() for fut in futures]
    return merge(
        problem,
        cut.shapes(),
        cut.orphans,
        cut.found,
        [(res.routes, res.unassigned, dict(res.stats)) for res in results],
        seconds=time.monotonic() - t0,
    )


def _die_with_parent(parent: int) -> None:
    """In the solving process, on Linux: end when the process that started it dies (a
    worker killed mid-part), instead of solving on for nobody. A parent that died while
    this one was still starting is no longer its parent: then it ends now."""
    import contextlib
    import ctypes
    import os
    import signal

    # PR_SET_PDEATHSIG fires when the *thread* that started this process ends, not the
    # whole parent: here that is the part job's thread, which waits in the executor for
    # the answer as long as this process runs, so it ends only with the worker.
    # Not Linux (no prctl): the process ends with its time limit instead.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _peak_mb() -> int:
    """This process's own peak memory: VmHWM, not ru_maxrss, which Linux carries over
    from the parent at fork and across exec (a spawned solver would report its worker's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _solve_counting_memory(args: tuple[Problem, SolveParams]) -> tuple[Result, int]:
    part, params = args
    res = solve(part, params)
    return res, _peak_mb()


def solve_in_own_process(problem: Problem, params: SolveParams) -> tuple[Result, int]:
    """`solve` in a process of its own (one core, whatever else this process runs: OR-Tools
    holds the GIL while it searches), and that process's peak memory in MB."""
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        return pool.submit(_solve_counting_memory, (problem, params)).result()
