"""Dispatchers' manual edits to a draft plan, checked by the same validator as the solver's routes."""

from __future__ import annotations

from collections.abc import Sequence

from dispatch.model import BreakPlacement, Crew, Problem, Route, Stop


def time_route(problem: Problem, crew: Crew, job_ids: Sequence[str]) -> Route:
    """Earliest-start times for a fixed order of jobs, breaks taken where they fall due.

    A break is taken on arrival at a job, before the work, once its window is open or
    when doing the job first would miss the window; the validator judges the result."""
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    pending = sorted(crew.breaks, key=lambda b: b.window.start)
    t, pos = crew.shift.start, crew.start
    stops: list[Stop] = []
    placed: list[BreakPlacement] = []
    distance = duration = 0

    def take_breaks(ready: int, next_start: int, next_service: int) -> int:
        nonlocal pending
        while pending and (next_start >= pending[0].window.start or next_start + next_service > pending[0].latest_start):
            b = pending.pop(0)
            start = max(ready, b.window.start)
            placed.append(BreakPlacement(b.id, start, start + b.duration, len(stops) - 1))
            ready = start + b.duration
            next_start = max(next_start, ready)
        return ready

    for jid in job_ids:
        job = jobs[jid]
        drive = int(m.durations[pos, job.location])
        arrival = t + drive
        window = next((w for w in job.windows if w.end >= arrival), None)
        start = max(arrival, window.start) if window else arrival
        ready = take_breaks(arrival, start, job.service)
        start = max(start, ready)
        if window and start > window.end:
            later = next((w for w in job.windows if w.end >= start), None)
            start = max(start, later.start) if later else start
        stops.append(Stop(jid, job.location, arrival, start, start + job.service))
        distance += int(m.distances[pos, job.location])
        duration += drive
        t, pos = start + job.service, job.location
    if stops:
        t = take_breaks(t, t, 0) if pending and t >= pending[0].window.start else t
    drive = int(m.durations[pos, crew.end]) if stops else 0
    if stops:
        distance += int(m.distances[pos, crew.end])
        duration += drive
    arrive = t + drive
    # Breaks not yet due when the crew is back at the yard are taken there, inside their window.
    for b in pending:
        start = max(arrive, b.window.start)
        placed.append(BreakPlacement(b.id, start, start + b.duration, len(stops) - 1))
    depart = crew.shift.start
    if not stops:
        arrive = depart
    return Route(crew.id, depart, tuple(stops), tuple(placed), arrive, distance, duration)
