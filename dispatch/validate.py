"""Independent feasibility check of a `Result`: re-times every route from the matrix.

Shares no code with the solver on purpose, so a modelling slip there shows up here.
Each violation is a sentence a dispatcher can read once `Words` names the crews, jobs
and times as they know them ("pothole-1 would be back at 16:02, after its shift ends
at 15:30"); by default it names ids and seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from dispatch.model import UNASSIGNED_REASONS, Crew, Problem, Result, Route, objective_of


def _minutes(seconds: int) -> str:
    m = round(seconds / 60)
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


@dataclass(frozen=True)
class Words:
    """How violations name things: `crew` and `job` take the problem's ids, `clock` takes
    seconds of the problem's time."""

    crew: Callable[[str], str] = field(default=lambda cid: f"crew {cid!r}")
    job: Callable[[str], str] = field(default=lambda jid: f"job {jid!r}")
    clock: Callable[[int], str] = field(default=str)

    def span(self, start: int, end: int) -> str:
        return f"{self.clock(start)}-{self.clock(end)}"


RAW = Words()


def check(problem: Problem, result: Result, words: Words = RAW) -> list[str]:
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
                out.append(
                    f"{words.job(s.job_id)} is visited twice ({seen[s.job_id]}, {r.crew_id})"
                )
            seen[s.job_id] = r.crew_id
        out.extend(check_route(problem, crew, r, void, words))
    for u in result.unassigned:
        if u.job_id in seen:
            out.append(f"{words.job(u.job_id)} is both routed and unassigned")
        if u.reason not in UNASSIGNED_REASONS:
            out.append(f"{words.job(u.job_id)}: unknown reason {u.reason!r}")
        seen[u.job_id] = "unassigned"
    for jid in jobs:
        if jid not in seen:
            out.append(f"{words.job(jid)} is neither routed nor unassigned")
    for jid in seen:
        if jid not in jobs:
            out.append(f"unknown job {jid!r}")
    for c in problem.crews:
        if c.held and c.id not in route_crews:
            out.append(f"{words.crew(c.id)} has locked stops but no route")
    if not out:
        honest = objective_of(problem, result.routes, result.unassigned)
        if honest != result.objective:
            out.append(f"objective misreported: {result.objective} != {honest}")
    return out


def check_route(
    problem: Problem,
    crew: Crew,
    r: Route,
    void: frozenset[str] | set[str] = frozenset(),
    words: Words = RAW,
) -> list[str]:
    """Violations of one route on its own (`void`: locked jobs known to be impossible)."""
    out: list[str] = []
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    who = words.crew(crew.id)
    locked = tuple(j for j in crew.locked_first if j not in void)
    if tuple(s.job_id for s in r.stops[: len(locked)]) != locked:
        out.append(
            f"{who} must start with {', '.join(map(words.job, locked))} (under way or committed)"
        )
    # A pinned stop the day cannot hold is reported unassigned; those it holds keep their order.
    on_route = {s.job_id for s in r.stops}
    pinned = [j for j in crew.pinned if j in on_route]
    if [s.job_id for s in r.stops if s.job_id in set(pinned)] != pinned:
        out.append(
            f"{who} must keep its locked stops in the order {', '.join(map(words.job, pinned))}"
        )

    # Breaks: each once, inside its window, never overlapping another break or a service.
    placed = {b.break_id: b for b in r.breaks}
    if len(placed) != len(r.breaks) or set(placed) != {b.id for b in crew.breaks}:
        out.append(f"{who} takes {len(r.breaks)} breaks, not the {len(crew.breaks)} of its shift")
    for b in crew.breaks:
        p = placed.get(b.id)
        if p is None:
            continue
        if p.end - p.start != b.duration:
            out.append(
                f"{who}'s break would last {_minutes(p.end - p.start)}, not {_minutes(b.duration)}"
            )
        if not (b.window.start <= p.start and p.end <= b.window.end):
            out.append(
                f"{who}'s break at {words.span(p.start, p.end)} would be outside its window "
                f"{words.span(b.window.start, b.window.end)}"
            )
    name = {
        **{p.break_id: "its break" for p in r.breaks},
        **{s.job_id: words.job(s.job_id) for s in r.stops},
    }
    busy = sorted(
        [(p.start, p.end, p.break_id) for p in r.breaks]
        + [(s.start, s.end, s.job_id) for s in r.stops]
    )
    for (a0, a1, an), (b0, b1, bn) in pairwise(busy):
        if b0 < a1:
            out.append(
                f"{who}: {name[an]} ({words.span(a0, a1)}) overlaps {name[bn]} ({words.span(b0, b1)})"
            )

    # Re-time: on each leg the crew needs the travel time plus any break taken on the way.
    if r.depart < crew.shift.start:
        out.append(
            f"{who} would leave at {words.clock(r.depart)}, before its shift starts at {words.clock(crew.shift.start)}"
        )
    if not r.stops:
        return out
    for p in r.breaks:
        if p.start < r.depart < p.end or p.start < r.arrive < p.end:
            out.append(
                f"{who}'s break at {words.span(p.start, p.end)} straddles the start or the end of its day"
            )
    pos, free_from = crew.start, r.depart
    load = [0] * len(problem.dimensions)
    legs = [(s.location, s.arrival, s.start, words.job(s.job_id)) for s in r.stops] + [
        (crew.end, r.arrive, r.arrive, "its yard")
    ]
    for k, (loc, arrival, start, where) in enumerate(legs):
        breaks_on_leg = sum(
            p.end - p.start for p in r.breaks if free_from <= p.start and p.end <= start
        )
        drive = int(m.durations[pos, loc])
        if free_from + drive + breaks_on_leg > start:
            rest = f" and {_minutes(breaks_on_leg)} of break" if breaks_on_leg else ""
            out.append(
                f"{who} cannot be at {where} by {words.clock(start)}: from {words.clock(free_from)} it needs "
                f"{_minutes(drive)} of driving{rest} (leg {k})"
            )
        if not free_from + drive <= arrival <= start:
            out.append(
                f"{who}'s arrival at {where} at {words.clock(arrival)} is impossible (leg {k})"
            )
        if k < len(r.stops):
            s = r.stops[k]
            job = jobs.get(s.job_id)
            if job is None:
                return out + [f"{who}: unknown job {s.job_id!r}"]
            if s.location != job.location:
                out.append(f"{where} is at the wrong place on {who}'s route")
            if s.end - s.start != job.service:
                out.append(
                    f"{where} would take {_minutes(s.end - s.start)} on site, not {_minutes(job.service)}"
                )
            if job.windows and not any(w.contains(s.start) for w in job.windows):
                spans = ", ".join(words.span(w.start, w.end) for w in job.windows)
                out.append(
                    f"{who} would start {where} at {words.clock(s.start)}, outside its time window {spans}"
                )
            if s.start < crew.shift.start or s.end > crew.shift.end:
                out.append(
                    f"{who} would work on {where} at {words.span(s.start, s.end)}, outside its shift "
                    f"{words.span(crew.shift.start, crew.shift.end)}"
                )
            if not job.skills <= crew.skills and job.id not in locked:
                out.append(
                    f"{who} lacks the skill {', '.join(sorted(job.skills - crew.skills))} for {where}"
                )
            if job.crews and crew.id not in job.crews and job.id not in locked:
                out.append(
                    f"{where} is reserved for {', '.join(map(words.crew, sorted(job.crews)))}, not {who}"
                )
            load = [a + b for a, b in zip(load, job.demand, strict=True)]
            pos, free_from = loc, s.end
    for dim, used, cap in zip(problem.dimensions, load, crew.capacity, strict=True):
        if used > cap:
            out.append(f"{who} would carry {used} {dim}, over its capacity of {cap}")
    if r.arrive > crew.shift.end:
        out.append(
            f"{who} would be back at {words.clock(r.arrive)}, after its shift ends at {words.clock(crew.shift.end)}"
        )
    if crew.max_duration is not None and r.arrive - r.depart > crew.max_duration:
        out.append(
            f"{who}'s day would last {_minutes(r.arrive - r.depart)}, over its maximum of {_minutes(crew.max_duration)}"
        )
    locs = [crew.start] + [s.location for s in r.stops] + [crew.end]
    path = list(pairwise(locs))
    if r.distance != sum(int(m.distances[a, b]) for a, b in path):
        out.append(f"{who}: reported distance {r.distance} is wrong")
    if r.duration != sum(int(m.durations[a, b]) for a, b in path):
        out.append(f"{who}: reported drive time {r.duration} is wrong")
    return out
