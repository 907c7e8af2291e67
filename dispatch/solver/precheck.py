"""Jobs no crew can ever do, found before any search, each with its reason."""

from __future__ import annotations

import numpy as np

from dispatch.model import Crew, Job, Problem


def precheck(problem: Problem) -> dict[str, str]:
    """Jobs no crew can do even alone, with the reason: "no_skill", "capacity" (demand
    over every skilled crew's capacity), "time_window" (no skilled crew with room can
    reach a window and get back within its shift and max duration). A locked job is
    checked only on its own crew, skills aside (the crew is already there or committed),
    by timing the locked chain; a chain that cannot be kept voids the rest of it."""
    out = _broken_chains(problem)
    locked = {jid for c in problem.crews for jid in c.locked_first}
    durations = problem.matrix.durations
    for j in problem.jobs:
        if j.id in locked:
            continue
        skilled = [c for c in problem.crews if problem.may_do(c, j)]
        if not skilled:
            out[j.id] = "no_skill"
            continue
        roomy = [
            c for c in skilled if all(d <= cap for d, cap in zip(j.demand, c.capacity, strict=True))
        ]
        if not roomy:
            out[j.id] = "capacity"
            continue
        if not any(_reachable_alone(c, j, durations) for c in roomy):
            out[j.id] = "time_window"
    return out


def _broken_chains(problem: Problem) -> dict[str, str]:
    """Each crew's locked chain timed from its start: from the first job that cannot be
    kept on, every job of the chain, with why the chain broke."""
    out: dict[str, str] = {}
    m = problem.matrix
    jobs = {j.id: j for j in problem.jobs}
    for c in problem.crews:
        t, pos, load = c.shift.start, c.start, [0] * len(problem.dimensions)
        broken = None
        for jid in c.locked_first:
            j = jobs[jid]
            if broken is None:
                load = [a + b for a, b in zip(load, j.demand, strict=True)]
                arrival = t + int(m.durations[pos, j.location])
                start = (
                    next((max(arrival, w.start) for w in j.windows if w.end >= arrival), None)
                    if j.windows
                    else arrival
                )
                if any(x > cap for x, cap in zip(load, c.capacity, strict=True)):
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
    return out


def _reachable_alone(c: Crew, j: Job, dur: np.ndarray) -> bool:
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
