"""`solve(problem, params) -> Result`: the only module that imports ortools.

Pipeline, within `time_limit_s`:
1. Pre-check: jobs no crew can ever do get their reason up front and stay out.
2. VROOM (pyvroom) builds first routes at exploration level 5 on all workers' threads.
3. Each worker (1 or 2 processes) walks on from there with a VROOM-driven large
   neighbourhood search (remove up to 30 % of the jobs, as strings from neighbouring
   routes or a cluster, or move a string of one route to an idle vehicle; VROOM
   re-inserts and polishes the touched routes only), because VROOM alone stops at its
   first local optimum and OR-Tools' GLS improves a strong start only slowly.
4. OR-Tools, the model of record, reads the best routes under the full constraint set
   (breaks, locks, route duration, skills, capacities, windows, drop penalties) after a
   repair pass for what VROOM cannot model, and improves them with guided local search
   for the last `ortools_share` of the time. If it rejects the routes it builds its own
   with parallel cheapest insertion, which copes with tight windows.
The better worker's plan wins. Workers are processes: the LNS loop is Python, and two
processes need no assumption about when the native libraries release the GIL.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from dispatch import progress
from dispatch.model import (
    COST_SCALE,
    BreakPlacement,
    Crew,
    Job,
    Problem,
    Result,
    Route,
    Stop,
    Unassigned,
    arc_cost,
    objective_of,
    span_cost,
)


@dataclass(frozen=True, slots=True)
class SolveParams:
    """Search settings. `seed` seeds the LNS (worker k uses seed * 7919 + k). Searches stop
    on time, not on iteration counts, so only instances small enough to converge within
    the limit (the tests') give the same plan on every run."""

    time_limit_s: float = 10.0
    workers: int = 1
    use_vroom: bool = True
    seed: int = 0
    log_search: bool = False
    vroom_share: float = 0.7  # cap on VROOM's first construction (it usually ends sooner)
    vroom_level: int | None = None  # its exploration level; None: 5 up to 300 jobs, then lower
    gls_lambdas: tuple[float, ...] = (0.1, 0.3)  # GLS lambda per worker
    first_solution: str = "PARALLEL_CHEAPEST_INSERTION"
    # VROOM-driven LNS before OR-Tools; OR-Tools keeps this share of what is left.
    lns: bool = True
    ortools_share: float = 0.2
    lns_threshold: float = 0.005
    lns_ops: tuple[str, ...] = (
        "pair",
        "split",
        "cluster",
        "string",
    )  # ruins to pick from ("random", "route" too)
    lns_ruin: float = 0.3  # largest ruin, as a share of the free jobs (at most 40)


@dataclass(slots=True)
class _Raw:
    """A solver-side plan, picklable across processes."""

    routes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # crew -> [(job, start)]
    depart: dict[str, int] = field(default_factory=dict)
    arrive: dict[str, int] = field(default_factory=dict)
    breaks: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    objective: int | None = None
    start_from: str = ""
    status: str = ""
    seconds: float = 0.0
    lam: float = 0.0
    lns_iterations: int = 0
    lns_improvements: int = 0
    lns_objective: int | None = None


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

    child = _start_child() if params.workers > 1 and keep else None
    stats: dict[str, object] = {}
    start: _VroomStart | None = None
    if params.use_vroom and keep:
        tv = time.monotonic()
        start = _vroom_start(problem, keep, locked, params)
        stats["vroom_seconds"] = round(time.monotonic() - tv, 3)
        if start is not None:
            stats["vroom_distance"] = _distance(problem, start.routes)
            progress.report(problem, start.routes)

    if child is not None:
        child = _send(child, (problem, keep, start, deadline, params, 1))
    raws = [_search(problem, keep, start, deadline, params, 0)]
    if child is not None:
        raws += _collect(child, deadline)
    found = [r for r in raws if r.objective is not None]
    best = min(found, key=lambda r: r.objective) if found else raws[0]
    result = _to_result(problem, best, reasons)
    stats.update(
        status=best.status,
        start_from=best.start_from,
        solver_objective=best.objective,
        workers=[
            {
                "lambda": r.lam,
                "objective": r.objective,
                "start_from": r.start_from,
                "status": r.status,
                "lns_iterations": r.lns_iterations,
                "lns_improvements": r.lns_improvements,
                "lns_objective": r.lns_objective,
            }
            for r in raws
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
            total += sum(int(m.distances[a, b]) for a, b in zip(path, path[1:]))
    return total


# --- pre-check ---------------------------------------------------------------------------


def precheck(problem: Problem) -> dict[str, str]:
    """Jobs no crew can do even alone, with the reason: "no_skill", "capacity" (demand
    over every skilled crew's capacity), "time_window" (no skilled crew with room can
    reach a window and get back within its shift and max duration). A locked job is
    checked only on its own crew, skills aside (the crew is already there or committed),
    by timing the locked chain; a chain that cannot be kept voids the rest of it."""
    out: dict[str, str] = {}
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    for c in problem.crews:
        t, pos, load = c.shift.start, c.start, [0] * len(problem.dimensions)
        broken = None
        for jid in c.locked_first:
            j = jobs[jid]
            if broken is None:
                load = [a + b for a, b in zip(load, j.demand)]
                arrival = t + int(m.durations[pos, j.location])
                start = (
                    next((max(arrival, w.start) for w in j.windows if w.end >= arrival), None)
                    if j.windows
                    else arrival
                )
                if any(x > cap for x, cap in zip(load, c.capacity)):
                    broken = "capacity"
                elif (
                    start is None
                    or start + j.service + int(m.durations[j.location, c.end]) > c.shift.end
                ):
                    broken = "time_window"
                else:
                    t, pos = start + j.service, j.location
            if broken is not None:
                out[jid] = broken
    locked = {jid for c in problem.crews for jid in c.locked_first}
    for j in problem.jobs:
        if j.id in locked:
            continue
        skilled = [c for c in problem.crews if problem.may_do(c, j)]
        if not skilled:
            out[j.id] = "no_skill"
            continue
        roomy = [c for c in skilled if all(d <= cap for d, cap in zip(j.demand, c.capacity))]
        if not roomy:
            out[j.id] = "capacity"
            continue
        if not any(_reachable_alone(problem, c, j, m.durations) for c in roomy):
            out[j.id] = "time_window"
    return out


def _reachable_alone(problem: Problem, c: Crew, j: Job, dur: np.ndarray) -> bool:
    there = int(dur[c.start, j.location])
    back = int(dur[j.location, c.end])
    for lo, hi in [(w.start, w.end) for w in j.windows] or [(c.shift.start, c.shift.end)]:
        start = max(c.shift.start + there, lo)
        if start > hi:
            continue
        finish = start + j.service + back
        if finish > c.shift.end:
            continue
        # Leave as late as possible: waiting at the depot does not count against max duration.
        span = there + j.service + back
        if c.max_duration is not None and span > c.max_duration:
            continue
        return True
    return False


# --- VROOM construction ------------------------------------------------------------------


@dataclass(slots=True)
class _VroomStart:
    """VROOM's plan: routes as job ids per crew (locked chains included) and, per
    vehicle index, the step list VROOM returned (to seed the next VROOM run)."""

    routes: dict[str, list[str]]
    steps: dict[int, list[tuple[str, int]]]
    score: int
    iterations: int = 0
    improvements: int = 0
    costs: dict[int, int] = field(default_factory=dict)  # vehicle index -> VROOM route cost
    unassigned: list[int] = field(default_factory=list)  # VROOM job ids left out


@dataclass(slots=True)
class _VroomSpec:
    """What VROOM sees of the problem: free (unlocked) jobs by VROOM id, and vehicles
    whose locked chains are taken out (the crew starts where its chain ends, when the
    chain can end at the earliest)."""

    free: list[str]
    vehicles: list[dict]
    jobs: list[dict]
    chains: dict[str, list[str]]


def _vroom_spec(problem: Problem, keep: list[str], locked: set[str]) -> _VroomSpec:
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    free = [jid for jid in keep if jid not in locked]
    # A job reserved for some crews needs a skill only they have: one per set of crews.
    reserved = {j.id: "crews:" + ",".join(sorted(j.crews)) for j in problem.jobs if j.crews}
    crew_skills = {
        c.id: set(c.skills) | {r for jid, r in reserved.items() if c.id in jobs[jid].crews}
        for c in problem.crews
    }
    job_skills = {
        j.id: set(j.skills) | ({reserved[j.id]} if j.id in reserved else set())
        for j in problem.jobs
    }
    skill_ids = {
        s: i for i, s in enumerate(sorted(set().union(*crew_skills.values(), *job_skills.values())))
    }
    nd = len(problem.dimensions)
    vehicles: list[dict] = []
    chains: dict[str, list[str]] = {}
    for v, c in enumerate(problem.crews):
        start, t = c.start, c.shift.start
        chain = [jid for jid in c.locked_first if jid in locked]
        chains[c.id] = chain
        for jid in chain:
            j = jobs[jid]
            t += int(m.durations[start, j.location])
            if j.windows:
                t = max(t, min((w.start for w in j.windows if w.end >= t), default=t))
            t += j.service
            start = j.location
        if t > c.shift.end:
            continue
        used = [sum(jobs[jid].demand[d] for jid in chain) for d in range(nd)]
        vehicles.append(
            dict(
                id=v,
                start=start,
                end=c.end,
                capacity=[cap - u for cap, u in zip(c.capacity, used)] if nd else (),
                skills={skill_ids[s] for s in crew_skills[c.id]},
                time_window=(t, c.shift.end),
                breaks=[
                    (k, max(b.window.start, t), b.latest_start, b.duration)
                    for k, b in enumerate(c.breaks)
                    if b.latest_start >= t
                ],
                costs=(c.cost_per_hour, c.cost_per_km),
            )
        )
    vjobs = []
    for k, jid in enumerate(free):
        j = jobs[jid]
        vjobs.append(
            dict(
                id=k,
                location=j.location,
                default_service=j.service,
                delivery=list(j.demand) if nd else (),
                skills={skill_ids[s] for s in job_skills[jid]},
                priority=100
                if j.required
                else min(
                    99,
                    10 * j.priority
                    + (50 if j.due is not None and j.due <= problem.horizon_end else 0),
                ),
                time_windows=[(w.start, w.end) for w in j.windows],
            )
        )
    return _VroomSpec(free, vehicles, vjobs, chains)


def _vroom_run(
    problem: Problem,
    spec: _VroomSpec,
    level: int,
    threads: int,
    timeout: float | None,
    steps: dict[int, list[tuple[str, int]]] | None = None,
) -> _VroomStart | None:
    import vroom

    inp = vroom.Input()
    inp.set_durations_matrix("car", np.ascontiguousarray(problem.matrix.durations, dtype=np.uint32))
    inp.set_distances_matrix("car", np.ascontiguousarray(problem.matrix.distances, dtype=np.uint32))
    for v in spec.vehicles:
        seeded = (steps or {}).get(v["id"])
        inp.add_vehicle(
            vroom.Vehicle(
                v["id"],
                start=v["start"],
                end=v["end"],
                capacity=v["capacity"],
                skills=v["skills"],
                time_window=vroom.TimeWindow(*v["time_window"]),
                breaks=[
                    vroom.Break(k, time_windows=[vroom.TimeWindow(lo, hi)], service=d)
                    for k, lo, hi, d in v["breaks"]
                ],
                costs=vroom.VehicleCosts(per_hour=v["costs"][0], per_km=v["costs"][1]),
                steps=[
                    vroom.VehicleStep("start"),
                    *(vroom.VehicleStep(t, i) for t, i in seeded),
                    vroom.VehicleStep("end"),
                ]
                if seeded
                else (),
            )
        )
    for j in spec.jobs:
        kw = dict(j)
        tws = kw.pop("time_windows")
        if tws:
            kw["time_windows"] = [vroom.TimeWindow(a, b) for a, b in tws]
        inp.add_job(vroom.Job(**kw))
    try:
        sol = inp.solve(
            exploration_level=level,
            nb_threads=threads,
            timeout=None if timeout is None else timedelta(seconds=max(0.01, timeout)),
        ).to_dict()
    except (
        Exception
    ) as exc:  # VROOM's failures must not cost us the plan: OR-Tools constructs instead.
        # A seeded route VROOM rejects (infeasible: rounded matrices need not obey the
        # triangle inequality; over capacity; a job out of reach) is dropped from the
        # seed and the run retried: VROOM then inserts those jobs itself.
        bad = re.search(r"for vehicle (\d+)", str(exc))
        if steps and bad and int(bad.group(1)) in steps:
            rest = {v: seq for v, seq in steps.items() if v != int(bad.group(1))}
            return _vroom_run(problem, spec, level, threads, timeout, rest)
        return None
    vsteps: dict[int, list[tuple[str, int]]] = {}
    costs: dict[int, int] = {}
    for r in sol.get("routes", []):
        vsteps[r["vehicle"]] = [
            ("single" if st["type"] == "job" else "break", st["id"])
            for st in r["steps"]
            if st["type"] in ("job", "break")
        ]
        costs[r["vehicle"]] = int(r["cost"])
    unassigned = [u["id"] for u in sol.get("unassigned", [])]
    return _VroomStart(
        _routes_of(problem, spec, vsteps),
        vsteps,
        _score(problem, spec, costs, unassigned),
        costs=costs,
        unassigned=unassigned,
    )


def _routes_of(
    problem: Problem, spec: _VroomSpec, steps: dict[int, list[tuple[str, int]]]
) -> dict[str, list[str]]:
    """Job ids per crew: its locked chain, then the jobs of its VROOM steps."""
    routes = {c.id: list(spec.chains[c.id]) for c in problem.crews}
    for v, seq in steps.items():
        routes[problem.crews[v].id] += [spec.free[i] for t, i in seq if t == "single"]
    return routes


def _score(problem: Problem, spec: _VroomSpec, costs: dict[int, int], unassigned: list[int]) -> int:
    """Same scale as OR-Tools' objective: crew cost units x COST_SCALE, plus drop penalties."""
    return sum(costs.values()) * COST_SCALE + sum(
        problem.penalties[spec.free[i]] for i in unassigned
    )


def vroom_routes(
    problem: Problem, keep: list[str], locked: set[str], params: SolveParams
) -> dict[str, list[str]] | None:
    """VROOM's routes (job ids per crew, locked chains first) or None if it fails."""
    start = _vroom_start(problem, keep, locked, params)
    return None if start is None else start.routes


def _vroom_start(
    problem: Problem, keep: list[str], locked: set[str], params: SolveParams
) -> _VroomStart | None:
    try:
        import vroom  # noqa: F401
    except ImportError:  # pragma: no cover - optional accelerator
        return None
    spec = _vroom_spec(problem, keep, locked)
    if not spec.free:
        return _VroomStart({c.id: list(spec.chains[c.id]) for c in problem.crews}, {}, 0)
    n = len(spec.free)
    level = params.vroom_level or (5 if n <= 300 else 4 if n <= 1000 else 3)
    return _vroom_run(
        problem, spec, level, max(1, params.workers), params.time_limit_s * params.vroom_share
    )


LNS_MIN_JOBS = 15
LNS_MIN_CALL_S = 0.2
LNS_UNTIMED_JOBS = 400


def _vroom_lns(
    problem: Problem,
    keep: list[str],
    locked: set[str],
    start: _VroomStart,
    deadline: float,
    seed: int,
    threshold: float = 0.0,
    ops: tuple[str, ...] = ("pair", "split", "cluster", "string"),
    ruin: float = 0.3,
) -> _VroomStart:
    """Large neighbourhood search driven by VROOM's local search: ruin part of the current
    routes, let VROOM re-insert and polish from the rest (exploration level 1, one
    thread), accept the result by record-to-record travel. VROOM alone stops at its first
    local optimum; this walks on from there.

    Only the routes a ruin touched, one idle vehicle of each kind (plus the one "split"
    seeds) and the unassigned jobs go back to VROOM: the other routes cannot change, and
    a repair of two routes out of twelve costs a tenth of a whole-day one, so the walk
    takes many more steps in the same time.

    Ruins (`ops`), picked adaptively by how often each has paid off: "pair", a string
    from each of two neighbouring routes (the cheapest repair, which matters on days of
    few long routes); "split", a string of one route moved, in its order, to an idle
    vehicle, so that the walk also tries more routes (with no fixed cost per vehicle, a
    shorter day often has more of them; VROOM's own repair rarely opens one);
    "cluster", nearby jobs; "string", strings cut from several neighbouring routes
    (SISR), so that routes are rebuilt rather than only patched; "random", jobs
    anywhere; "route", one whole route, which frees a vehicle when its jobs fit
    elsewhere. The last two are off by default: on the Solomon set they touch most routes
    per step and paid off less than the others."""
    spec = _vroom_spec(problem, keep, locked)
    n = len(spec.free)
    # Small days are OR-Tools' to finish (GLS all but solves them); the walk pays off
    # from a few dozen jobs on.
    if n < LNS_MIN_JOBS or not start.steps or not ops:
        return start
    rng = random.Random(seed)
    dur = problem.matrix.durations
    locs = np.array([j["location"] for j in spec.jobs])
    # Ruins of up to a third of the day: VROOM's repair of a small one mostly rebuilds the
    # routes it was given (same score), while larger ones reach other local optima.
    size = max(2, min(40, round(n * ruin)))
    weights = {op: 1.0 for op in ops}
    best = current = start
    t_start, span = time.time(), max(1e-3, deadline - time.time())

    def near(centre: int) -> np.ndarray:
        return np.argsort(dur[locs[centre], locs] + dur[locs, locs[centre]], kind="stable")

    def cut(r: list[int], x: int, length: int) -> list[int]:
        """A string of `length` consecutive jobs of route `r` that contains job `x`."""
        pos = r.index(x)
        lo = rng.randint(max(0, pos - length + 1), min(pos, len(r) - length))
        return r[lo : lo + length]

    while time.time() < deadline:
        best.iterations += 1
        routes = {v: [i for t, i in seq if t == "single"] for v, seq in current.steps.items()}
        routes = {v: r for v, r in routes.items() if r}
        where = {i: v for v, r in routes.items() for i in r}
        op = rng.choices(list(weights), weights=list(weights.values()))[0]
        k = rng.randint(max(2, size // 2), size)
        ruined: set[int] = set()
        opened: tuple[int, list[int]] | None = None  # "split": (idle vehicle, its new route)
        if op == "cluster":
            ruined = {int(x) for x in near(rng.randrange(n))[:k]}
        elif op == "random":
            ruined = set(rng.sample(range(n), min(k, n)))
        elif op == "route" and routes:
            v = rng.choice(list(routes))
            ruined = set(routes[v])
        elif op == "split" and routes:
            v = rng.choice(list(routes))
            r = routes[v]
            if len(r) >= 4:
                length = rng.randint(2, len(r) // 2)
                lo = rng.randint(0, len(r) - length)
                moved = r[lo : lo + length]
                needs = set().union(*(spec.jobs[i]["skills"] for i in moved))
                load = [
                    sum(spec.jobs[i]["delivery"][d] for i in moved)
                    for d in range(len(problem.dimensions))
                ]
                able = [
                    u["id"]
                    for u in spec.vehicles
                    if u["id"] not in routes
                    and needs <= u["skills"]
                    and all(a <= c for a, c in zip(load, u["capacity"]))
                ]
                if able:
                    ruined = set(moved)
                    opened = (rng.choice(able), moved)
        elif op == "pair" and len(routes) > 1:
            # Two neighbouring routes, each cut by a string around the seed's nearest job
            # on it; only these two are repaired, so the call is cheap on long routes.
            picked: list[int] = []
            for x in near(rng.randrange(n)):
                v = where.get(int(x))
                if v is not None and v not in picked:
                    picked.append(v)
                    r = routes[v]
                    ruined.update(
                        cut(
                            r,
                            int(x),
                            max(1, min(len(r), rng.randint(max(1, k // 4), max(1, k // 2)))),
                        )
                    )
                    if len(picked) == 2:
                        break
        elif op == "string" and routes:
            # SISR (Christiaens & Vanden Berghe 2020): strings of average length up to
            # 10 from about k / length routes, taken around the jobs nearest a seed.
            avg = n / len(routes)
            lmax = min(10.0, avg)
            kmax = 4.0 * k / (1.0 + lmax) - 1.0
            nstrings = max(1, int(rng.uniform(1.0, kmax + 1.0)))
            done: set[int] = set()
            for x in near(rng.randrange(n)):
                v = where.get(int(x))
                if v is None or v in done:
                    continue
                r = routes[v]
                ruined.update(cut(r, int(x), int(rng.uniform(1.0, min(len(r), lmax) + 1.0))))
                done.add(v)
                if len(done) >= nstrings:
                    break
        if not ruined:
            continue
        steps = {
            v: [(t, i) for t, i in seq if not (t == "single" and i in ruined)]
            for v, seq in current.steps.items()
        }
        if opened is not None:
            # If VROOM rejects this route (say, its windows cannot be kept in that order
            # from the vehicle's start), it drops the seed and inserts the jobs itself.
            u, moved = opened
            steps[u] = [("single", i) for i in moved]
        left = deadline - time.time()
        if left < LNS_MIN_CALL_S:
            break
        touched = {v for v, r in routes.items() if not ruined.isdisjoint(r)}
        if opened is not None:
            touched.add(opened[0])
        # The repair: the touched routes, one idle vehicle of each kind (to open a route
        # with) and the jobs now unassigned. The rest of the day stays as it is.
        part = touched | _idle_kinds(spec, routes)
        jobs_in = {i for v in touched for i in routes.get(v, ())} | ruined | set(current.unassigned)
        sub = _VroomSpec(
            spec.free,
            [v for v in spec.vehicles if v["id"] in part],
            [j for j in spec.jobs if j["id"] in jobs_in],
            spec.chains,
        )
        # Re-insertion at level 1 on a day this size takes tens of milliseconds: no timer then.
        # (A solve asked to stop within a few milliseconds once hung in VROOM for good.)
        got = _vroom_run(
            problem,
            sub,
            1,
            1,
            None if len(sub.jobs) <= LNS_UNTIMED_JOBS else left,
            {v: steps[v] for v in part if v in steps},
        )
        if got is None:
            continue
        cand = _splice(problem, spec, current, part, got)
        # Record-to-record travel: accept a little worse than the best, less so over time,
        # so the walk can leave a local optimum VROOM's own search cannot.
        slack = threshold * (1.0 - (time.time() - t_start) / span)
        reward = 0.0
        if cand.score < best.score:
            cand.iterations, cand.improvements = best.iterations, best.improvements + 1
            best = current = cand
            reward = 3.0
            progress.report(problem, best.routes)
        elif cand.score <= best.score * (1.0 + slack):
            reward = 1.0 if cand.score < current.score else 0.3
            current = cand
        # Adaptive choice: an operator's weight follows its recent rewards, never to zero.
        weights[op] = max(0.1, 0.9 * weights[op] + 0.1 * reward)
    return best


def _splice(
    problem: Problem, spec: _VroomSpec, current: _VroomStart, part: set[int], got: _VroomStart
) -> _VroomStart:
    """The day with the vehicles in `part` replaced by VROOM's repair of them. `got` holds
    every job that was on those vehicles or unassigned, so its unassigned list is the day's."""
    steps = {v: seq for v, seq in current.steps.items() if v not in part} | got.steps
    costs = {v: c for v, c in current.costs.items() if v not in part} | got.costs
    return _VroomStart(
        _routes_of(problem, spec, steps),
        steps,
        _score(problem, spec, costs, got.unassigned),
        costs=costs,
        unassigned=list(got.unassigned),
    )


def _idle_kinds(spec: _VroomSpec, routes: dict[int, list[int]]) -> set[int]:
    """One vehicle without jobs per kind (start, end, capacity, skills, shift, breaks,
    costs): enough for a repair to open a route, however large the idle fleet."""
    first: dict[tuple, int] = {}
    for v in spec.vehicles:
        if v["id"] not in routes:
            kind = (
                v["start"],
                v["end"],
                tuple(v["capacity"]),
                frozenset(v["skills"]),
                v["time_window"],
                tuple(v["breaks"]),
                v["costs"],
            )
            first.setdefault(kind, v["id"])
    return set(first.values())


# --- OR-Tools model ----------------------------------------------------------------------


def _start_child() -> subprocess.Popen[bytes] | None:
    """A second search process, started early so its imports overlap with VROOM. A plain
    subprocess rather than multiprocessing: callers need no `__main__` guard."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", "from dispatch.solver import _child_main; _child_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
        )
    except OSError:
        return None


def _send(child: subprocess.Popen[bytes], payload: tuple) -> subprocess.Popen[bytes] | None:
    try:
        assert child.stdin is not None
        child.stdin.write(pickle.dumps(payload))
        child.stdin.close()
        child.stdin = None  # so communicate() only reads
        return child
    except (OSError, pickle.PicklingError):
        child.kill()
        child.wait()
        return None


def _collect(child: subprocess.Popen[bytes], deadline: float) -> list[_Raw]:
    """The child's plan, or nothing if it failed or overran: the main search stands alone."""
    try:
        out, _ = child.communicate(timeout=max(1.0, deadline - time.time() + 5.0))
        raw = pickle.loads(out)
        return [raw] if isinstance(raw, _Raw) else []
    except Exception:
        child.kill()
        child.wait()
        return []


def _child_main() -> None:
    args = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(pickle.dumps(_search(*args)))
    sys.stdout.buffer.flush()


def _search(
    problem: Problem,
    keep: list[str],
    start: _VroomStart | None,
    deadline: float,
    params: SolveParams,
    worker: int,
) -> _Raw:
    """VROOM-driven LNS (if a VROOM start is given) until the OR-Tools share of the time
    is left, then build the OR-Tools model, read the routes and search until `deadline`."""
    t0 = time.monotonic()
    initial: dict[str, list[str]] | None = None
    lns_iterations = lns_improvements = 0
    lns_objective: int | None = None
    if start is not None:
        if params.lns:
            locked = {j for c in problem.crews for j in c.locked_first if j in set(keep)}
            lns_deadline = deadline - params.ortools_share * max(0.0, deadline - time.time())
            start = _vroom_lns(
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
    jobs = {j.id: j for j in problem.jobs}
    crews = problem.crews
    nj, nv = len(keep), len(crews)
    m = problem.matrix
    # Nodes: jobs, then one start and one end node per crew (positions may differ).
    loc = np.array(
        [jobs[j].location for j in keep] + [c.start for c in crews] + [c.end for c in crews],
        dtype=np.int64,
    )
    service = np.array([jobs[j].service for j in keep] + [0] * (2 * nv), dtype=np.int64)
    starts = [nj + v for v in range(nv)]
    ends = [nj + nv + v for v in range(nv)]
    manager = pywrapcp.RoutingIndexManager(len(loc), nv, starts, ends)
    routing = pywrapcp.RoutingModel(manager)
    solver = routing.solver()
    node_of = {jid: k for k, jid in enumerate(keep)}

    dist = m.distances[np.ix_(loc, loc)]
    dur = m.durations[np.ix_(loc, loc)]
    arc_cbs: dict[int, int] = {}
    for v, c in enumerate(crews):
        if c.cost_per_km not in arc_cbs:
            arc_cbs[c.cost_per_km] = routing.RegisterTransitMatrix(arc_cost(c, dist, dur).tolist())
        routing.SetArcCostEvaluatorOfVehicle(arc_cbs[c.cost_per_km], v)

    horizon = max(c.shift.end for c in crews) if crews else 0
    time_cb = routing.RegisterTransitMatrix((dur + service[:, None]).tolist())
    routing.AddDimension(time_cb, horizon, horizon, False, "time")
    tdim = routing.GetDimensionOrDie("time")
    for k, jid in enumerate(keep):
        j = jobs[jid]
        idx = manager.NodeToIndex(k)
        cv = tdim.CumulVar(idx)
        if j.windows:
            cv.SetRange(j.windows[0].start, min(j.windows[-1].end, horizon))
            for a, b in zip(j.windows, j.windows[1:]):
                cv.RemoveInterval(a.end + 1, b.start - 1)
    node_visit = [int(service[manager.IndexToNode(i)]) for i in range(routing.Size() + nv)]
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

    for d, name in enumerate(problem.dimensions):
        cb = routing.RegisterUnaryTransitVector([jobs[j].demand[d] for j in keep] + [0] * (2 * nv))
        routing.AddDimensionWithVehicleCapacity(
            cb, 0, [c.capacity[d] for c in crews], True, f"cap|{name}"
        )

    locked_ids = {jid for c in crews for jid in c.locked_first}
    for k, jid in enumerate(keep):
        j = jobs[jid]
        idx = manager.NodeToIndex(k)
        if (j.skills or j.crews) and jid not in locked_ids:
            barred = [v for v, c in enumerate(crews) if not problem.may_do(c, j)]
            if barred:
                # SetAllowedVehiclesForIndex's Python binding rejects every list (ortools
                # 9.15, absl::Span<int const>); removing values keeps -1 (dropped) allowed.
                routing.VehicleVar(idx).RemoveValues(barred)
    locked: set[str] = set()
    for v, c in enumerate(crews):
        prev = routing.Start(v)
        for jid in c.locked_first:
            if jid not in node_of:
                continue
            idx = manager.NodeToIndex(node_of[jid])
            solver.Add(routing.NextVar(prev) == idx)
            prev = idx
            locked.add(jid)
    for k, jid in enumerate(keep):
        if jid not in locked:
            routing.AddDisjunction([manager.NodeToIndex(k)], int(problem.penalties[jid]))
    # Stops a dispatcher locked to a crew keep their order: a count of stops along the
    # route (the rank) must grow from one to the next.
    chains = [[node_of[j] for j in c.pinned if j in node_of] for c in crews]
    if any(len(chain) > 1 for chain in chains):
        rank_cb = routing.RegisterUnaryTransitCallback(lambda i: 1)
        routing.AddDimension(rank_cb, 0, len(loc), True, "rank")
        rank = routing.GetDimensionOrDie("rank")
        for chain in chains:
            for a, b in zip(chain, chain[1:]):
                solver.Add(
                    rank.CumulVar(manager.NodeToIndex(a)) < rank.CumulVar(manager.NodeToIndex(b))
                )

    # Bind times so reported stops are concrete: finish as early as possible, then leave
    # as late as that finish allows (no idle wait on site), then serve each stop early.
    for v in range(nv):
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(routing.End(v)))
    for v in range(nv):
        routing.AddVariableMaximizedByFinalizer(tdim.CumulVar(routing.Start(v)))
    for k in range(nj):
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(manager.NodeToIndex(k)))

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
    remaining = max(0.05, deadline - time.time() - 0.05 * (1 + nj / 200))
    sp.time_limit.FromMilliseconds(int(remaining * 1000))

    raw = _Raw(
        lam=lam,
        lns_iterations=lns_iterations,
        lns_improvements=lns_improvements,
        lns_objective=lns_objective,
    )
    if progress.active():
        routing.AddAtSolutionCallback(
            _progress_callback(problem, routing, manager, keep, lns_objective)
        )
    sol = None
    if initial is not None:
        initial = _repair(problem, _pinned_in_order(problem, initial))
        routes = [
            [manager.NodeToIndex(node_of[j]) for j in initial.get(c.id, []) if j in node_of]
            for c in crews
        ]
        start = routing.ReadAssignmentFromRoutes(routes, True)
        if start is not None:
            raw.start_from = "vroom"
            sol = routing.SolveFromAssignmentWithParameters(start, sp)
    if sol is None:
        raw.start_from = (
            raw.start_from + ("+" if raw.start_from else "") + params.first_solution.lower()
        )
        sol = routing.SolveWithParameters(sp)
    raw.status = str(routing.status())
    raw.seconds = time.monotonic() - t0
    if sol is None:
        return raw
    raw.objective = int(sol.ObjectiveValue())
    for v, c in enumerate(crews):
        idx = routing.Start(v)
        raw.depart[c.id] = int(sol.Min(tdim.CumulVar(idx)))
        stops = []
        idx = sol.Value(routing.NextVar(idx))
        while not routing.IsEnd(idx):
            stops.append((keep[manager.IndexToNode(idx)], int(sol.Min(tdim.CumulVar(idx)))))
            idx = sol.Value(routing.NextVar(idx))
        raw.arrive[c.id] = int(sol.Min(tdim.CumulVar(idx)))
        raw.routes[c.id] = stops
    ivs = sol.IntervalVarContainer()
    for i in range(ivs.Size()):
        e = ivs.Element(i)
        _, cid, bid = e.Var().Name().split("|", 2)
        raw.breaks.setdefault(cid, []).append((bid, int(e.StartMin())))
    return raw


def _progress_callback(
    problem: Problem, routing: Any, manager: Any, keep: list[str], floor: int | None
) -> Callable[[], None]:
    """OR-Tools' solutions as progress reports: only those better than what was reported
    before (guided local search also passes through worse ones), and at most twice a
    second, since reading a whole assignment back costs a pass over every node."""
    last = {"cost": floor, "at": 0.0}

    def at_solution() -> None:
        cost = int(routing.CostVar().Value())
        now = time.monotonic()
        if (last["cost"] is not None and cost >= last["cost"]) or now - last["at"] < 0.5:
            return
        last.update(cost=cost, at=now)
        routes: dict[str, list[str]] = {}
        for v, c in enumerate(problem.crews):
            idx = routing.NextVar(routing.Start(v)).Value()
            seq = routes.setdefault(c.id, [])
            while not routing.IsEnd(idx):
                seq.append(keep[manager.IndexToNode(idx)])
                idx = routing.NextVar(idx).Value()
        progress.report(problem, routes)

    return at_solution


def _pinned_in_order(problem: Problem, routes: dict[str, list[str]]) -> dict[str, list[str]]:
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


def _repair(problem: Problem, routes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Trim routes the full model rejects (VROOM has no route-duration limit) by dropping
    their last free jobs until the route re-times cleanly; OR-Tools may re-insert them."""
    out = {}
    for c in problem.crews:
        seq = list(routes.get(c.id, []))
        fixed = len([j for j in c.locked_first if j in seq])
        while len(seq) > fixed:
            again = _asap(problem, c, seq)
            if again is not None:
                d, starts, placed, a = again
                if not _route_violations(
                    problem,
                    c,
                    _build_route(problem, c, list(zip(seq, starts)), d, a, sorted(placed)),
                ):
                    break
            seq.pop()
        out[c.id] = seq
    return out


def _asap(
    problem: Problem, c: Crew, seq: list[str]
) -> tuple[int, list[int], list[tuple[int, int, str]], int] | None:
    """Earliest schedule for a fixed sequence: (depart, service starts, breaks, arrive).

    OR-Tools binds times loosely when only distance costs (a crew may idle for hours
    before lunch), so the reported times are re-derived: serve each stop as early as
    possible, take a break during a wait when it fits there, otherwise on the leg before
    the first stop after which it could no longer start. None if this greedy fails (the
    caller then keeps OR-Tools' own times)."""
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    pending = sorted(c.breaks, key=lambda b: (b.latest_start, b.window.start))
    t, pos = c.shift.start, c.start
    starts: list[int] = []
    placed: list[tuple[int, int, str]] = []

    def open_at(j: Job, t: int) -> int | None:
        if not j.windows:
            return t
        return next((max(t, w.start) for w in j.windows if w.end >= t), None)

    for k in range(len(seq) + 1):
        j = jobs[seq[k]] if k < len(seq) else None
        loc = j.location if j is not None else c.end
        drive = int(m.durations[pos, loc])
        while pending:
            b = pending[0]
            arrival = t + drive
            s0 = open_at(j, arrival) if j is not None else arrival
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
        start = open_at(j, arrival)
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


def _to_result(problem: Problem, raw: _Raw, reasons: dict[str, str]) -> Result:
    routes: list[Route] = []
    routed: set[str] = set()
    for c in problem.crews:
        seq = raw.routes.get(c.id, [])
        brk = {b.id: b for b in c.breaks}
        placed = sorted((s, s + brk[bid].duration, bid) for bid, s in raw.breaks.get(c.id, []))
        if not raw.routes:  # no plan at all: idle crews take breaks as early as allowed
            placed = sorted((b.window.start, b.window.start + b.duration, b.id) for b in c.breaks)
        depart = raw.depart.get(c.id, c.shift.start)
        arrive = raw.arrive.get(c.id, depart)
        route = _build_route(problem, c, seq, depart, arrive, placed)
        if seq:
            again = _asap(problem, c, [jid for jid, _ in seq])
            if again is not None:
                d2, starts, placed2, a2 = again
                cand = _build_route(
                    problem, c, list(zip([jid for jid, _ in seq], starts)), d2, a2, sorted(placed2)
                )
                if not _route_violations(problem, c, cand):
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


def _route_violations(problem: Problem, c: Crew, route: Route) -> list[str]:
    from dispatch.validate import check_route

    return check_route(problem, c, route)


def _build_route(
    problem: Problem,
    c: Crew,
    seq: list[tuple[str, int]],
    depart: int,
    arrive: int,
    placed: list[tuple[int, int, str]],
) -> Route:
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
    locs = [c.start] + [s.location for s in stops] + [c.end]
    d = sum(int(m.distances[a, b]) for a, b in zip(locs, locs[1:])) if stops else 0
    t = sum(int(m.durations[a, b]) for a, b in zip(locs, locs[1:])) if stops else 0
    bps = tuple(
        BreakPlacement(bid, b0, b1, sum(1 for s in stops if s.end <= b0) - 1)
        for b0, b1, bid in placed
    )
    return Route(c.id, depart, tuple(stops), bps, arrive, d, t)


__all__ = ["SolveParams", "solve", "precheck"]
