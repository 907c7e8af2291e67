"""Large neighbourhood search driven by VROOM: ruin part of the day, let VROOM repair it.

VROOM alone stops at its first local optimum; this walks on from there. Each step picks a
ruin (one function per kind below), takes its jobs off their routes and sends VROOM only
the routes the ruin touched, one idle vehicle of each kind (plus the one "split" seeds)
and the unassigned jobs (exploration level 1, one thread). The other routes cannot change,
and a repair of two routes out of twelve costs a tenth of a whole-day one, so the walk
takes many more steps in the same time. The repaired routes are spliced into the day,
which is accepted by record-to-record travel.

Ruins, picked adaptively by how often each has paid off: "pair", a string from each of
two neighbouring routes (the cheapest repair, which matters on days of few long routes);
"split", a string of one route moved, in its order, to an idle vehicle, so that the walk
also tries more routes (with no fixed cost per vehicle, a shorter day often has more of
them; VROOM's own repair rarely opens one); "cluster", nearby jobs; "string", strings cut
from several neighbouring routes (SISR), so that routes are rebuilt rather than only
patched; "random", jobs anywhere; "route", one whole route, which frees a vehicle when
its jobs fit elsewhere. The last two are off by default: on the Solomon set they touch
most routes per step and paid off less than the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dispatch import progress
from dispatch.model import Problem
from dispatch.solver.vroom_adapter import (
    Step,
    VroomDay,
    VroomSpec,
    routes_of,
    score,
    vroom_run,
    vroom_spec,
)

# Small days are OR-Tools' to finish (GLS all but solves them); the walk pays off from a
# few dozen jobs on.
LNS_MIN_JOBS = 15
# No repair is started with less time left than this.
LNS_MIN_CALL_S = 0.2
# Re-insertion at level 1 on a day this size takes tens of milliseconds: no timer then.
# (A solve asked to stop within a few milliseconds once hung in VROOM for good.)
LNS_UNTIMED_JOBS = 400
DEFAULT_OPS = ("pair", "split", "cluster", "string")


@dataclass(slots=True)
class Ruin:
    """The jobs a ruin takes off their routes; for "split", also the idle vehicle that
    gets some of them as its new route, in their order."""

    jobs: set[int]
    opened: tuple[int, list[int]] | None = None


@dataclass(slots=True)
class DayView:
    """What a ruin looks at: the current day's non-empty routes as VROOM job ids in order,
    which vehicle serves each job, and the jobs nearest each job by travel time."""

    spec: VroomSpec
    routes: dict[int, list[int]]
    where: dict[int, int]
    near: Callable[[int], np.ndarray]
    dimensions: int

    @property
    def n(self) -> int:
        return len(self.spec.free)


def _cut(rng: random.Random, r: list[int], x: int, length: int) -> list[int]:
    """A string of `length` consecutive jobs of route `r` that contains job `x`."""
    pos = r.index(x)
    lo = rng.randint(max(0, pos - length + 1), min(pos, len(r) - length))
    return r[lo : lo + length]


def ruin_cluster(day: DayView, k: int, rng: random.Random) -> Ruin:
    """The `k` jobs nearest a random job."""
    return Ruin({int(x) for x in day.near(rng.randrange(day.n))[:k]})


def ruin_random(day: DayView, k: int, rng: random.Random) -> Ruin:
    """`k` jobs anywhere."""
    return Ruin(set(rng.sample(range(day.n), min(k, day.n))))


def ruin_route(day: DayView, k: int, rng: random.Random) -> Ruin:
    """One whole route."""
    if not day.routes:
        return Ruin(set())
    return Ruin(set(day.routes[rng.choice(list(day.routes))]))


def ruin_split(day: DayView, k: int, rng: random.Random) -> Ruin:
    """A string of one route, moved in its order to an idle vehicle able to carry it."""
    if not day.routes:
        return Ruin(set())
    r = day.routes[rng.choice(list(day.routes))]
    if len(r) < 4:
        return Ruin(set())
    length = rng.randint(2, len(r) // 2)
    lo = rng.randint(0, len(r) - length)
    moved = r[lo : lo + length]
    jobs = day.spec.jobs
    needs = frozenset[int]().union(*(jobs[i].skills for i in moved))
    load = [sum(jobs[i].delivery[d] for i in moved) for d in range(day.dimensions)]
    able = [
        u.id
        for u in day.spec.vehicles
        if u.id not in day.routes
        and needs <= u.skills
        and all(a <= c for a, c in zip(load, u.capacity, strict=True))
    ]
    if not able:
        return Ruin(set())
    return Ruin(set(moved), (rng.choice(able), moved))


def ruin_pair(day: DayView, k: int, rng: random.Random) -> Ruin:
    """Two neighbouring routes, each cut by a string around the seed's nearest job on it;
    only these two are repaired, so the call is cheap on long routes."""
    ruined: set[int] = set()
    if len(day.routes) <= 1:
        return Ruin(ruined)
    picked: list[int] = []
    for x in day.near(rng.randrange(day.n)):
        v = day.where.get(int(x))
        if v is not None and v not in picked:
            picked.append(v)
            r = day.routes[v]
            length = max(1, min(len(r), rng.randint(max(1, k // 4), max(1, k // 2))))
            ruined.update(_cut(rng, r, int(x), length))
            if len(picked) == 2:
                break
    return Ruin(ruined)


def ruin_string(day: DayView, k: int, rng: random.Random) -> Ruin:
    """SISR (Christiaens & Vanden Berghe 2020): strings of average length up to 10 from
    about k / length routes, taken around the jobs nearest a seed."""
    ruined: set[int] = set()
    if not day.routes:
        return Ruin(ruined)
    avg = day.n / len(day.routes)
    lmax = min(10.0, avg)
    kmax = 4.0 * k / (1.0 + lmax) - 1.0
    nstrings = max(1, int(rng.uniform(1.0, kmax + 1.0)))
    done: set[int] = set()
    for x in day.near(rng.randrange(day.n)):
        v = day.where.get(int(x))
        if v is None or v in done:
            continue
        r = day.routes[v]
        ruined.update(_cut(rng, r, int(x), int(rng.uniform(1.0, min(len(r), lmax) + 1.0))))
        done.add(v)
        if len(done) >= nstrings:
            break
    return Ruin(ruined)


RUINS: dict[str, Callable[[DayView, int, random.Random], Ruin]] = {
    "pair": ruin_pair,
    "split": ruin_split,
    "cluster": ruin_cluster,
    "string": ruin_string,
    "random": ruin_random,
    "route": ruin_route,
}


def vroom_lns(
    problem: Problem,
    keep: list[str],
    locked: set[str],
    start: VroomDay,
    deadline: float,
    seed: int,
    threshold: float = 0.0,
    ops: tuple[str, ...] = DEFAULT_OPS,
    ruin: float = 0.3,
) -> VroomDay:
    """The best day the walk from `start` finds by `deadline` (`start` itself on small
    days). `ops` are the ruins to pick from (see the module's docstring), `ruin` the
    largest ruin as a share of the free jobs, `threshold` the acceptance slack."""
    unknown = sorted(set(ops) - RUINS.keys())
    if unknown:
        raise ValueError(f"unknown LNS ruins {unknown}; known: {sorted(RUINS)}")
    spec = vroom_spec(problem, keep, locked)
    n = len(spec.free)
    if n < LNS_MIN_JOBS or not start.steps or not ops:
        return start
    rng = random.Random(seed)
    dur = problem.matrix.durations
    locs = np.array([j.location for j in spec.jobs])

    def near(centre: int) -> np.ndarray:
        return np.argsort(dur[locs[centre], locs] + dur[locs, locs[centre]], kind="stable")

    # Ruins of up to a third of the day: VROOM's repair of a small one mostly rebuilds the
    # routes it was given (same score), while larger ones reach other local optima.
    size = max(2, min(40, round(n * ruin)))
    weights = {op: 1.0 for op in ops}
    best = current = start
    t_start, span = time.time(), max(1e-3, deadline - time.time())
    while time.time() < deadline:
        best.iterations += 1
        routes = {v: [i for t, i in seq if t == "single"] for v, seq in current.steps.items()}
        routes = {v: r for v, r in routes.items() if r}
        day = DayView(
            spec,
            routes,
            {i: v for v, r in routes.items() for i in r},
            near,
            len(problem.dimensions),
        )
        op = rng.choices(list(weights), weights=list(weights.values()))[0]
        k = rng.randint(max(2, size // 2), size)
        ruined = RUINS[op](day, k, rng)
        if not ruined.jobs:
            continue
        left = deadline - time.time()
        if left < LNS_MIN_CALL_S:
            break
        cand = _repair(problem, spec, current, routes, ruined, left)
        if cand is None:
            continue
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


def _repair(
    problem: Problem,
    spec: VroomSpec,
    current: VroomDay,
    routes: dict[int, list[int]],
    ruined: Ruin,
    left: float,
) -> VroomDay | None:
    """The day with `ruined` taken out and VROOM's repair of the touched routes spliced
    in, or None if VROOM failed. VROOM is given the touched routes (seeded with what the
    ruin left of them), one idle vehicle of each kind (to open a route with) and the jobs
    now unassigned. The rest of the day stays as it is."""
    steps = {
        v: [(t, i) for t, i in seq if not (t == "single" and i in ruined.jobs)]
        for v, seq in current.steps.items()
    }
    touched = {v for v, r in routes.items() if not ruined.jobs.isdisjoint(r)}
    if ruined.opened is not None:
        # If VROOM rejects this route (say, its windows cannot be kept in that order from
        # the vehicle's start), it drops the seed and inserts the jobs itself.
        u, moved = ruined.opened
        steps[u] = [("single", i) for i in moved]
        touched.add(u)
    part = touched | idle_kinds(spec, routes)
    if not part:
        # The ruin took only unassigned jobs and no vehicle is idle: nothing can change.
        return None
    jobs_in = (
        {i for v in touched for i in routes.get(v, ())} | ruined.jobs | set(current.unassigned)
    )
    sub = spec.part(part, jobs_in)
    seeds: dict[int, list[Step]] = {v: steps[v] for v in part if v in steps}
    got = vroom_run(problem, sub, 1, 1, None if len(sub.jobs) <= LNS_UNTIMED_JOBS else left, seeds)
    return None if got is None else splice(problem, spec, current, part, got)


def splice(
    problem: Problem, spec: VroomSpec, current: VroomDay, part: set[int], got: VroomDay
) -> VroomDay:
    """The day with the vehicles in `part` replaced by VROOM's repair of them. `got` holds
    every job that was on those vehicles or unassigned, so its unassigned list is the day's."""
    steps = {v: seq for v, seq in current.steps.items() if v not in part} | got.steps
    costs = {v: c for v, c in current.costs.items() if v not in part} | got.costs
    return VroomDay(
        routes_of(problem, spec, steps),
        steps,
        score(problem, spec, costs, got.unassigned),
        costs=costs,
        unassigned=list(got.unassigned),
    )


def idle_kinds(spec: VroomSpec, routes: dict[int, list[int]]) -> set[int]:
    """One vehicle without jobs per kind (start, end, capacity, skills, shift, breaks,
    costs): enough for a repair to open a route, however large the idle fleet."""
    first: dict[tuple[object, ...], int] = {}
    for v in spec.vehicles:
        if v.id not in routes:
            first.setdefault(v.kind(), v.id)
    return set(first.values())
