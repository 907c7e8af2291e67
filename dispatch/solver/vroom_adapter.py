"""VROOM (pyvroom) as the solver uses it: what VROOM is shown of a problem (`VroomSpec`, of
typed vehicles and jobs), one run of it (`vroom_run`), and the day it returns (`VroomDay`).

VROOM numbers vehicles by their crew's index in `problem.crews` and jobs by their index in
`VroomSpec.free`; a day is kept in those numbers so that it can seed the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from dispatch.model import COST_SCALE, Problem
from dispatch.solver.params import SolveParams

log = logging.getLogger(__name__)

Step = tuple[str, int]
"""A step of a VROOM route as `vroom.VehicleStep` takes it: ("single", job) or ("break", k)."""


@dataclass(frozen=True, slots=True)
class VroomBreak:
    """A crew's break `id` (its index in `Crew.breaks`) as VROOM sees it: it may start in
    [earliest, latest], never before the vehicle is free."""

    id: int
    earliest: int
    latest: int
    duration: int


@dataclass(frozen=True, slots=True)
class VroomVehicle:
    """A crew as VROOM sees it: its locked chain is taken out, so it starts where the chain
    ends, when the chain can end at the earliest, with the capacity the chain leaves."""

    id: int  # the crew's index in problem.crews
    start: int
    end: int
    capacity: tuple[int, ...]
    skills: frozenset[int]
    time_window: tuple[int, int]
    breaks: tuple[VroomBreak, ...]
    cost_per_hour: int
    cost_per_km: int

    def kind(self) -> tuple[object, ...]:
        """Everything but the id: two vehicles of one kind are interchangeable."""
        return (
            self.start,
            self.end,
            self.capacity,
            self.skills,
            self.time_window,
            self.breaks,
            self.cost_per_hour,
            self.cost_per_km,
        )


@dataclass(frozen=True, slots=True)
class VroomJob:
    """A free (unlocked) job as VROOM sees it; `id` is its index in `VroomSpec.free`."""

    id: int
    location: int
    service: int
    delivery: tuple[int, ...]
    skills: frozenset[int]
    priority: int
    time_windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class VroomSpec:
    """What VROOM sees of the problem: the free jobs' ids (a VROOM job id is an index into
    `free`), the vehicles that can still work after their locked chains, the jobs, and
    each crew's locked chain (which opens its route, outside VROOM)."""

    free: list[str]
    vehicles: list[VroomVehicle]
    jobs: list[VroomJob]
    chains: dict[str, list[str]]

    def part(self, vehicles: set[int], jobs: set[int]) -> VroomSpec:
        """The same day restricted to some vehicles and jobs (ids keep their meaning)."""
        return VroomSpec(
            self.free,
            [v for v in self.vehicles if v.id in vehicles],
            [j for j in self.jobs if j.id in jobs],
            self.chains,
        )


@dataclass(slots=True)
class VroomDay:
    """A day in VROOM's numbers: routes as job ids per crew (locked chains included) and,
    per vehicle index, the step list VROOM returned (to seed the next VROOM run)."""

    routes: dict[str, list[str]]
    steps: dict[int, list[Step]]
    score: int
    iterations: int = 0
    improvements: int = 0
    costs: dict[int, int] = field(default_factory=dict)  # vehicle index -> VROOM route cost
    unassigned: list[int] = field(default_factory=list)  # VROOM job ids left out


def vroom_spec(problem: Problem, keep: list[str], locked: set[str]) -> VroomSpec:
    """The VROOM view of the jobs in `keep`: those in `locked` open their crews' routes and
    stay out of VROOM's hands."""
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
    vehicles: list[VroomVehicle] = []
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
            VroomVehicle(
                id=v,
                start=start,
                end=c.end,
                capacity=tuple(cap - u for cap, u in zip(c.capacity, used, strict=True)),
                skills=frozenset(skill_ids[s] for s in crew_skills[c.id]),
                time_window=(t, c.shift.end),
                breaks=tuple(
                    VroomBreak(k, max(b.window.start, t), b.latest_start, b.duration)
                    for k, b in enumerate(c.breaks)
                    if b.latest_start >= t
                ),
                cost_per_hour=c.cost_per_hour,
                cost_per_km=c.cost_per_km,
            )
        )
    vjobs = []
    for k, jid in enumerate(free):
        j = jobs[jid]
        due_today = j.due is not None and j.due <= problem.horizon_end
        vjobs.append(
            VroomJob(
                id=k,
                location=j.location,
                service=j.service,
                delivery=tuple(j.demand),
                skills=frozenset(skill_ids[s] for s in job_skills[jid]),
                priority=100 if j.required else min(99, 10 * j.priority + (50 if due_today else 0)),
                time_windows=tuple((w.start, w.end) for w in j.windows),
            )
        )
    return VroomSpec(free, vehicles, vjobs, chains)


def vroom_run(
    problem: Problem,
    spec: VroomSpec,
    level: int,
    threads: int,
    timeout: float | None,
    steps: dict[int, list[Step]] | None = None,
) -> VroomDay | None:
    """VROOM's day for `spec`, its routes seeded with `steps` (vehicle -> steps), or None
    if VROOM fails: a failure must not cost us the plan (without a first day from VROOM,
    OR-Tools constructs one; without a repair, the LNS goes on to its next step).

    VROOM refuses a whole input when one seeded route is infeasible (rounded matrices need
    not obey the triangle inequality, so a route with a job taken out may arrive later;
    an opened route may not keep its windows from that vehicle's start). Those seeds are
    found with VROOM's own plan mode (`Input.check`, which times the seeded routes and
    reports each one's violations instead of refusing), dropped, and the run retried:
    VROOM then inserts their jobs itself."""
    seeds = steps or {}
    try:
        sol = _input(problem, spec, seeds).solve(
            exploration_level=level,
            nb_threads=threads,
            timeout=None if timeout is None else timedelta(seconds=max(0.01, timeout)),
        )
    except Exception as exc:  # VROOM's input, routing and internal errors alike
        if not seeds:
            log.warning(
                "VROOM failed on %d jobs and %d vehicles (level %d): %s",
                len(spec.jobs),
                len(spec.vehicles),
                level,
                exc,
                exc_info=True,
            )
            return None
        bad = _infeasible_seeds(problem, spec, seeds)
        if not bad:
            # No seeded route is at fault, yet VROOM refused: mostly its solving mode
            # rebuilding a seeded route's breaks with its own heuristic and refusing a
            # route that keeps every constraint (VROOM issue #1251: a morning's route
            # waiting for its lunch window once a ruin took its afternoon). On the city day
            # about one LNS repair in seven ends so; a warning with a traceback each time
            # buried the log (2,154 in one 30 s plan), so it is a debug line. A run
            # without seeds would cost this step's time for little; the caller goes on
            # without this answer, as it always has.
            log.debug(
                "VROOM failed on %d jobs and %d vehicles with %d seeded routes, none of "
                "them infeasible (level %d): %s",
                len(spec.jobs),
                len(spec.vehicles),
                len(seeds),
                level,
                exc,
                exc_info=True,
            )
            return None
        rest = {v: seq for v, seq in seeds.items() if v not in bad}
        log.debug(
            "VROOM refused seeded routes (%s): retrying without those of vehicles %s",
            exc,
            sorted(bad),
        )
        return vroom_run(problem, spec, level, threads, timeout, rest)
    return _day(problem, spec, sol.to_dict())


def _input(problem: Problem, spec: VroomSpec, seeds: dict[int, list[Step]]) -> Any:
    import vroom

    inp = vroom.Input()
    inp.set_durations_matrix("car", np.ascontiguousarray(problem.matrix.durations, dtype=np.uint32))
    inp.set_distances_matrix("car", np.ascontiguousarray(problem.matrix.distances, dtype=np.uint32))
    for v in spec.vehicles:
        seeded = seeds.get(v.id)
        inp.add_vehicle(
            vroom.Vehicle(
                v.id,
                start=v.start,
                end=v.end,
                capacity=list(v.capacity),
                skills=set(v.skills),
                time_window=vroom.TimeWindow(*v.time_window),
                breaks=[
                    vroom.Break(
                        b.id,
                        time_windows=[vroom.TimeWindow(b.earliest, b.latest)],
                        service=b.duration,
                    )
                    for b in v.breaks
                ],
                costs=vroom.VehicleCosts(per_hour=v.cost_per_hour, per_km=v.cost_per_km),
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
        windows = {"time_windows": [vroom.TimeWindow(a, b) for a, b in j.time_windows]}
        inp.add_job(
            vroom.Job(
                j.id,
                location=j.location,
                default_service=j.service,
                delivery=list(j.delivery),
                skills=set(j.skills),
                priority=j.priority,
                **(windows if j.time_windows else {}),
            )
        )
    return inp


def _infeasible_seeds(problem: Problem, spec: VroomSpec, seeds: dict[int, list[Step]]) -> set[int]:
    """The vehicles whose seeded routes break a constraint, by VROOM's plan mode."""
    # Plan mode wants a route for every vehicle and every job on one: only the seeded ones.
    seeded = spec.part(set(seeds), {i for seq in seeds.values() for t, i in seq if t == "single"})
    try:
        checked = _input(problem, seeded, seeds).check(1).to_dict()
    except Exception as exc:  # plan mode refused too: no route can be told apart
        log.debug("VROOM's plan mode refused the seeded routes too: %s", exc)
        return set()
    return {int(r["vehicle"]) for r in checked.get("routes", []) if r.get("violations")}


def _day(problem: Problem, spec: VroomSpec, sol: dict[str, Any]) -> VroomDay:
    steps: dict[int, list[Step]] = {}
    costs: dict[int, int] = {}
    for r in sol.get("routes", []):
        steps[r["vehicle"]] = [
            ("single" if st["type"] == "job" else "break", st["id"])
            for st in r["steps"]
            if st["type"] in ("job", "break")
        ]
        costs[r["vehicle"]] = int(r["cost"])
    unassigned = [u["id"] for u in sol.get("unassigned", [])]
    return VroomDay(
        routes_of(problem, spec, steps),
        steps,
        score(problem, spec, costs, unassigned),
        costs=costs,
        unassigned=unassigned,
    )


def routes_of(
    problem: Problem, spec: VroomSpec, steps: dict[int, list[Step]]
) -> dict[str, list[str]]:
    """Job ids per crew: its locked chain, then the jobs of its VROOM steps."""
    routes = {c.id: list(spec.chains[c.id]) for c in problem.crews}
    for v, seq in steps.items():
        routes[problem.crews[v].id] += [spec.free[i] for t, i in seq if t == "single"]
    return routes


def score(problem: Problem, spec: VroomSpec, costs: dict[int, int], unassigned: list[int]) -> int:
    """Same scale as OR-Tools' objective: crew cost units x COST_SCALE, plus drop penalties."""
    return sum(costs.values()) * COST_SCALE + sum(
        problem.penalties[spec.free[i]] for i in unassigned
    )


def vroom_start(
    problem: Problem, keep: list[str], locked: set[str], params: SolveParams
) -> VroomDay | None:
    """VROOM's first day from scratch, on all workers' threads, or None without VROOM."""
    try:
        import vroom  # noqa: F401
    except ImportError:  # pragma: no cover - optional accelerator
        return None
    spec = vroom_spec(problem, keep, locked)
    if not spec.free:
        return VroomDay({c.id: list(spec.chains[c.id]) for c in problem.crews}, {}, 0)
    n = len(spec.free)
    level = params.vroom_level or (5 if n <= 300 else 4 if n <= 1000 else 3)
    return vroom_run(
        problem, spec, level, max(1, params.workers), params.time_limit_s * params.vroom_share
    )


def vroom_routes(
    problem: Problem, keep: list[str], locked: set[str], params: SolveParams
) -> dict[str, list[str]] | None:
    """VROOM's routes (job ids per crew, locked chains first) or None if it fails."""
    start = vroom_start(problem, keep, locked, params)
    return None if start is None else start.routes
