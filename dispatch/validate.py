"""Independent feasibility check of a `Result`: re-times every route from the matrix.

Shares no code with the solver on purpose, so a modelling slip there shows up here.
"""

from __future__ import annotations

from dispatch.model import UNASSIGNED_REASONS, Crew, Problem, Result, Route, objective_of


def check(problem: Problem, result: Result) -> list[str]:
    """Return every violation found (empty list: feasible and honestly reported)."""
    out: list[str] = []
    jobs = {j.id: j for j in problem.jobs}
    crews = {c.id: c for c in problem.crews}
    seen: dict[str, str] = {}
    route_crews = [r.crew_id for r in result.routes]
    # A lock on a job nobody can do is void; dropping a locked job for cost is not allowed.
    void = {u.job_id for u in result.unassigned if u.reason != "dropped_for_cost"}
    if len(set(route_crews)) != len(route_crews):
        out.append("a crew has two routes")
    for r in result.routes:
        crew = crews.get(r.crew_id)
        if crew is None:
            out.append(f"route for unknown crew {r.crew_id!r}")
            continue
        for s in r.stops:
            if s.job_id in seen:
                out.append(f"job {s.job_id!r} visited twice ({seen[s.job_id]}, {r.crew_id})")
            seen[s.job_id] = r.crew_id
        out.extend(check_route(problem, crew, r, void))
    for u in result.unassigned:
        if u.job_id in seen:
            out.append(f"job {u.job_id!r} both routed and unassigned")
        if u.reason not in UNASSIGNED_REASONS:
            out.append(f"job {u.job_id!r}: unknown reason {u.reason!r}")
        seen[u.job_id] = "unassigned"
    for jid in jobs:
        if jid not in seen:
            out.append(f"job {jid!r} neither routed nor unassigned")
    for jid in seen:
        if jid not in jobs:
            out.append(f"unknown job {jid!r}")
    for c in problem.crews:
        if c.locked_first and c.id not in route_crews:
            out.append(f"crew {c.id!r}: locked jobs but no route")
    if not out:
        honest = objective_of(problem, result.routes, result.unassigned)
        if honest != result.objective:
            out.append(f"objective misreported: {result.objective} != {honest}")
    return out


def check_route(problem: Problem, crew: Crew, r: Route, void: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Violations of one route on its own (`void`: locked jobs known to be impossible)."""
    out: list[str] = []
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    tag = f"crew {crew.id!r}"
    locked = tuple(j for j in crew.locked_first if j not in void)
    if tuple(s.job_id for s in r.stops[: len(locked)]) != locked:
        out.append(f"{tag}: locked jobs {locked} not first")

    # Breaks: each once, inside its window, never overlapping another break or a service.
    placed = {b.break_id: b for b in r.breaks}
    if len(placed) != len(r.breaks) or set(placed) != {b.id for b in crew.breaks}:
        out.append(f"{tag}: breaks {sorted(placed)} != {sorted(b.id for b in crew.breaks)}")
    for b in crew.breaks:
        p = placed.get(b.id)
        if p is None:
            continue
        if p.end - p.start != b.duration:
            out.append(f"{tag}: break {b.id!r} lasts {p.end - p.start}, not {b.duration}")
        if not (b.window.start <= p.start and p.end <= b.window.end):
            out.append(f"{tag}: break {b.id!r} [{p.start}, {p.end}] outside {b.window}")
    busy = sorted([(p.start, p.end, f"break {p.break_id}") for p in r.breaks] + [(s.start, s.end, f"job {s.job_id}") for s in r.stops])
    for (a0, a1, an), (b0, b1, bn) in zip(busy, busy[1:]):
        if b0 < a1:
            out.append(f"{tag}: {an} overlaps {bn}")

    # Re-time: on each leg the crew needs the travel time plus any break taken on the way.
    if r.depart < crew.shift.start:
        out.append(f"{tag}: leaves at {r.depart} before shift start {crew.shift.start}")
    if not r.stops:
        return out
    for p in r.breaks:
        if p.start < r.depart < p.end or p.start < r.arrive < p.end:
            out.append(f"{tag}: break {p.break_id!r} straddles the route's start or end")
    pos, free_from = crew.start, r.depart
    load = [0] * len(problem.dimensions)
    legs = [(s.location, s.arrival, s.start) for s in r.stops] + [(crew.end, r.arrive, r.arrive)]
    for k, (loc, arrival, start) in enumerate(legs):
        breaks_on_leg = sum(p.end - p.start for p in r.breaks if free_from <= p.start and p.end <= start)
        drive = int(m.durations[pos, loc])
        if free_from + drive + breaks_on_leg > start:
            out.append(f"{tag}: leg {k} to {loc}: needs {drive} s driving + {breaks_on_leg} s breaks after {free_from}, starts {start}")
        if not free_from + drive <= arrival <= start:
            out.append(f"{tag}: leg {k} to {loc}: arrival {arrival} impossible")
        if k < len(r.stops):
            s = r.stops[k]
            job = jobs.get(s.job_id)
            if job is None:
                return out + [f"{tag}: unknown job {s.job_id!r}"]
            if s.location != job.location:
                out.append(f"{tag}: job {job.id!r} at wrong location")
            if s.end - s.start != job.service:
                out.append(f"{tag}: job {job.id!r} service {s.end - s.start} != {job.service}")
            if job.windows and not any(w.contains(s.start) for w in job.windows):
                out.append(f"{tag}: job {job.id!r} starts at {s.start}, outside {job.windows}")
            if s.start < crew.shift.start or s.end > crew.shift.end:
                out.append(f"{tag}: job {job.id!r} outside shift")
            if not job.skills <= crew.skills and job.id not in locked:
                out.append(f"{tag}: lacks skills {sorted(job.skills - crew.skills)} for {job.id!r}")
            load = [a + b for a, b in zip(load, job.demand)]
            pos, free_from = loc, s.end
    for name, used, cap in zip(problem.dimensions, load, crew.capacity):
        if used > cap:
            out.append(f"{tag}: {name} load {used} > capacity {cap}")
    if r.arrive > crew.shift.end:
        out.append(f"{tag}: returns at {r.arrive} after shift end {crew.shift.end}")
    if crew.max_duration is not None and r.arrive - r.depart > crew.max_duration:
        out.append(f"{tag}: route lasts {r.arrive - r.depart} > max {crew.max_duration}")
    locs = [crew.start] + [s.location for s in r.stops] + [crew.end]
    if r.distance != sum(int(m.distances[a, b]) for a, b in zip(locs, locs[1:])):
        out.append(f"{tag}: reported distance {r.distance} is wrong")
    if r.duration != sum(int(m.durations[a, b]) for a, b in zip(locs, locs[1:])):
        out.append(f"{tag}: reported drive time {r.duration} is wrong")
    return out
