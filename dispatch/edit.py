"""Timing a fixed order of stops, for dispatchers' edits and for explaining what forced work displaced;
the same validator as the solver's routes judges the result."""

from __future__ import annotations

from collections.abc import Sequence

from dispatch.model import BreakPlacement, Crew, Problem, Result, Route, Stop, urgency_weight


def time_route(problem: Problem, crew: Crew, job_ids: Sequence[str]) -> Route:
    """Earliest-start times for a fixed order of jobs, with the break where it fits best.

    With one break (the usual lunch) every place for it is tried, before each job or
    at the end, and the earliest feasible return wins; otherwise, or if none is
    feasible, breaks are taken as they fall due. The validator judges the result."""
    from dispatch.validate import check_route

    if len(crew.breaks) == 1 and job_ids:
        best: Route | None = None
        for k in range(len(job_ids) + 1):
            r = _time_route(problem, crew, job_ids, break_before=k)
            if not check_route(problem, crew, r) and (best is None or r.arrive < best.arrive):
                best = r
        if best is not None:
            return best
    return _time_route(problem, crew, job_ids)


def _time_route(
    problem: Problem, crew: Crew, job_ids: Sequence[str], break_before: int | None = None
) -> Route:
    """Earliest-start timing. `break_before` = k forces the single break on arrival at job
    k (k = len(job_ids): after the last job); None takes breaks as they fall due: on
    arrival at a job once the window is open, or when the job would overrun it."""
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    pending = sorted(crew.breaks, key=lambda b: b.window.start)
    t, pos = crew.shift.start, crew.start
    stops: list[Stop] = []
    placed: list[BreakPlacement] = []
    distance = duration = 0

    def due(next_start: int, next_service: int) -> bool:
        if break_before is not None:
            return len(stops) == break_before
        return (
            next_start >= pending[0].window.start
            or next_start + next_service > pending[0].latest_start
        )

    def take_breaks(ready: int, next_start: int, next_service: int) -> int:
        while pending and due(next_start, next_service):
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
    if (
        stops
        and pending
        and (break_before == len(stops) or (break_before is None and t >= pending[0].window.start))
    ):
        t = take_breaks(t, t, 0)
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


def refill_without(problem: Problem, result: Result, forced: set[str]) -> set[str]:
    """The jobs `forced` work pushed out: take the forced jobs off the routes that carry
    them, then put back, most urgent first and each where the crew is back soonest, the
    jobs the plan left out that now fit. Those are what the same day would have done
    without the forced work, and this plan does not."""
    from dispatch.validate import check_route

    left_out = {u.job_id for u in result.unassigned}
    jobs = {j.id: j for j in problem.jobs}
    urgency = {
        jid: urgency_weight(jobs[jid], problem.now, problem.horizon_end)
        for jid in left_out
        if jid not in forced
    }
    back: set[str] = set()
    for route in result.routes:
        if not forced & {s.job_id for s in route.stops}:
            continue
        crew = problem.crew(route.crew_id)
        seq = [s.job_id for s in route.stops if s.job_id not in forced]
        for jid in sorted(urgency, key=lambda j: (-urgency[j], j)):
            if jid in back or not problem.may_do(crew, jobs[jid]):
                continue
            best: tuple[int, list[str]] | None = None
            for k in range(len(seq) + 1):
                trial = seq[:k] + [jid] + seq[k:]
                timed = time_route(problem, crew, trial)
                if not check_route(problem, crew, timed) and (
                    best is None or timed.arrive < best[0]
                ):
                    best = (timed.arrive, trial)
            if best is not None:
                seq = best[1]
                back.add(jid)
    return back
