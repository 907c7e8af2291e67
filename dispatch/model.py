"""The dispatch problem: immutable, validated dataclasses in integer seconds and metres.

Time is seconds since a reference chosen by the caller (e.g. midnight of the plan day).
Locations are indices into the caller's `Matrix`; geometry never reaches the solver.
Nothing here imports ortools, Flask or the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np

from geo.matrix import Matrix

# Priorities are small integers so that the drop penalty can grow geometrically with them
# (a higher priority must outweigh several lower ones) without overflowing int64.
MIN_PRIORITY = 0
MAX_PRIORITY = 5


class ProblemError(ValueError):
    """The problem data is inconsistent (raised at construction, never by the solver)."""


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Closed interval [start, end] in seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        # Checked at run time too: bounds read from JSON or numpy may be floats or numpy ints.
        if not all(isinstance(bound, int) for bound in (self.start, self.end)):
            raise ProblemError(f"time window bounds must be int seconds: {self!r}")
        if self.start > self.end:
            raise ProblemError(f"time window starts after it ends: {self!r}")

    def contains(self, t: int) -> bool:
        return self.start <= t <= self.end


@dataclass(frozen=True, slots=True)
class Break:
    """A break of `duration` seconds lying entirely inside `window` (e.g. 30 min lunch
    between 11:30 and 13:30), so it starts in [window.start, window.end - duration]."""

    id: str
    duration: int
    window: TimeWindow

    def __post_init__(self) -> None:
        if self.duration < 0 or self.duration > self.window.end - self.window.start:
            raise ProblemError(f"break {self.id!r} does not fit in its window")

    @property
    def latest_start(self) -> int:
        return self.window.end - self.duration


@dataclass(frozen=True, slots=True)
class Crew:
    """A vehicle with its crew.

    `start`/`end` are location indices (the depot, or for re-planning the crew's last GPS
    position as `start` with `shift.start` = now). `capacity` has one entry per
    `Problem.dimensions`. `locked_first` lists jobs that must open the route in this order
    (the job in progress, the next committed stop). `pinned` lists jobs a dispatcher
    locked to this crew: they stay on its route, in this order, wherever other work
    goes around them. Costs are integer cost units (e.g. cents) per km driven and per
    hour of route duration (leave to return, waiting included)."""

    id: str
    start: int
    end: int
    shift: TimeWindow
    breaks: tuple[Break, ...] = ()
    skills: frozenset[str] = frozenset()
    capacity: tuple[int, ...] = ()
    max_duration: int | None = None
    cost_per_km: int = 1000
    cost_per_hour: int = 0
    locked_first: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "breaks", tuple(self.breaks))
        object.__setattr__(self, "skills", frozenset(self.skills))
        object.__setattr__(self, "capacity", tuple(int(c) for c in self.capacity))
        object.__setattr__(self, "locked_first", tuple(self.locked_first))
        object.__setattr__(self, "pinned", tuple(self.pinned))
        if any(c < 0 for c in self.capacity):
            raise ProblemError(f"crew {self.id!r}: negative capacity")
        if self.max_duration is not None and self.max_duration < 0:
            raise ProblemError(f"crew {self.id!r}: negative max_duration")
        if self.cost_per_km < 0 or self.cost_per_hour < 0:
            raise ProblemError(f"crew {self.id!r}: negative cost")
        ids = [b.id for b in self.breaks]
        if len(set(ids)) != len(ids):
            raise ProblemError(f"crew {self.id!r}: duplicate break ids")
        for b in self.breaks:
            if b.window.start < self.shift.start or b.window.end > self.shift.end:
                raise ProblemError(f"crew {self.id!r}: break {b.id!r} window outside the shift")
        if len(set(self.locked_first) | set(self.pinned)) != len(self.locked_first) + len(
            self.pinned
        ):
            raise ProblemError(f"crew {self.id!r}: a job is locked twice")

    @property
    def held(self) -> tuple[str, ...]:
        """Every job this crew must keep: the locked opening, then the pinned ones."""
        return self.locked_first + self.pinned


@dataclass(frozen=True, slots=True)
class Job:
    """A work order to visit once.

    Service must *start* inside one of `windows` (empty = any time in the crew's shift).
    `demand` has one entry per `Problem.dimensions`. `priority` is 0 (lowest) to 5;
    `due` is the SLA due time. Jobs are optional (see `default_penalties`), but a
    `required` one (a dispatcher's must-do) outweighs all other work together, so the
    solver drops anything else first. `crews`, when given, are the only crews that may
    do it."""

    id: str
    location: int
    service: int = 0
    windows: tuple[TimeWindow, ...] = ()
    skills: frozenset[str] = frozenset()
    demand: tuple[int, ...] = ()
    priority: int = 0
    due: int | None = None
    required: bool = False
    crews: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "windows", tuple(sorted(self.windows, key=lambda w: (w.start, w.end)))
        )
        object.__setattr__(self, "skills", frozenset(self.skills))
        object.__setattr__(self, "crews", frozenset(self.crews))
        object.__setattr__(self, "demand", tuple(int(d) for d in self.demand))
        if self.service < 0:
            raise ProblemError(f"job {self.id!r}: negative service time")
        if any(d < 0 for d in self.demand):
            raise ProblemError(f"job {self.id!r}: negative demand")
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise ProblemError(
                f"job {self.id!r}: priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}"
            )
        for a, b in pairwise(self.windows):
            if b.start <= a.end:
                raise ProblemError(f"job {self.id!r}: time windows overlap")


@dataclass(frozen=True, slots=True, eq=False)
class Problem:
    """Everything `solve()` needs. `now` is the plan time (overdue-ness is measured
    against it); `dimensions` names the capacity dimensions (e.g. "items", "asphalt_t")."""

    matrix: Matrix
    crews: tuple[Crew, ...]
    jobs: tuple[Job, ...]
    dimensions: tuple[str, ...] = ()
    now: int = 0
    penalties: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "crews", tuple(self.crews))
        object.__setattr__(self, "jobs", tuple(self.jobs))
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        n = self.matrix.size
        nd = len(self.dimensions)
        crew_ids = [c.id for c in self.crews]
        job_ids = [j.id for j in self.jobs]
        if len(set(crew_ids)) != len(crew_ids):
            raise ProblemError("duplicate crew ids")
        if len(set(job_ids)) != len(job_ids):
            raise ProblemError("duplicate job ids")
        jobs = set(job_ids)
        locked: set[str] = set()
        for c in self.crews:
            if not (0 <= c.start < n and 0 <= c.end < n):
                raise ProblemError(f"crew {c.id!r}: location index out of range")
            if len(c.capacity) != nd:
                raise ProblemError(f"crew {c.id!r}: capacity needs {nd} entries")
            for jid in c.held:
                if jid not in jobs:
                    raise ProblemError(f"crew {c.id!r}: locked job {jid!r} is not in the problem")
                if jid in locked:
                    raise ProblemError(f"job {jid!r} locked on two crews")
                locked.add(jid)
        known = set(crew_ids)
        for j in self.jobs:
            if not 0 <= j.location < n:
                raise ProblemError(f"job {j.id!r}: location index out of range")
            if not j.crews <= known:
                raise ProblemError(f"job {j.id!r}: reserved for crews not in the problem")
            if len(j.demand) != nd:
                raise ProblemError(f"job {j.id!r}: demand needs {nd} entries")
        # Penalties are part of the problem so that the solver and the report agree on them.
        object.__setattr__(self, "penalties", dict(self.penalties) or default_penalties(self))

    def may_do(self, crew: Crew, job: Job) -> bool:
        """Whether `crew` may take `job` on skills and the dispatcher's choice of crew."""
        return job.skills <= crew.skills and (not job.crews or crew.id in job.crews)

    def crew(self, crew_id: str) -> Crew:
        return next(c for c in self.crews if c.id == crew_id)

    def job(self, job_id: str) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    @property
    def horizon_end(self) -> int:
        return max((c.shift.end for c in self.crews), default=self.now)


# An overdue job outweighs any non-overdue job (3**5 = 243 < 1000) and several of them, so
# the day's overflow is taken from jobs that can still wait.
OVERDUE_FACTOR = 1000
# Each priority step triples the penalty: dropping one priority-p job costs more than
# dropping two priority-(p-1) jobs.
PRIORITY_BASE = 3


def urgency_weight(job: Job, now: int, horizon_end: int) -> int:
    """Relative drop weight: geometric in priority, x OVERDUE_FACTOR when the job is (or
    will be, if left for tomorrow) past its SLA due time, growing by hour overdue."""
    w = PRIORITY_BASE**job.priority
    if job.due is not None and job.due <= horizon_end:
        hours_overdue = max(0, now - job.due) // 3600
        w *= OVERDUE_FACTOR + min(hours_overdue, 7 * 24)
    return w


def default_penalties(problem: Problem) -> dict[str, int]:
    """Drop penalty per job, in the solver's cost units (1/18000 of a crew cost unit, see
    `COST_SCALE`). The base unit exceeds the dearest possible insertion of any job (two of
    the longest legs plus a full shift of paid time), so a job that fits is always served.
    A required job weighs more than every optional job together: dropping all of them
    costs less than dropping it."""
    m = problem.matrix
    max_dist = int(m.distances.max()) if m.size else 0
    max_dur = int(m.durations.max()) if m.size else 0
    base = 1
    for c in problem.crews:
        shift = c.shift.end - c.shift.start
        base = max(
            base, 2 * arc_cost(c, max_dist, max_dur) + c.cost_per_hour * 5 * (shift + 2 * max_dur)
        )
    weights = {
        j.id: urgency_weight(j, problem.now, problem.horizon_end)
        for j in problem.jobs
        if not j.required
    }
    must = sum(weights.values()) + 1
    weights |= {j.id: must for j in problem.jobs if j.required}
    # Keep the sum of all penalties well inside int64.
    total = sum(weights.values()) or 1
    base = max(1, min(base, 2**61 // total))
    return {jid: base * w for jid, w in weights.items()}


# Objective unit: 1/18000 of a cost unit, the least common multiple of 1000 m/km and
# 3600 s/h, so per-km and per-hour costs stay integers.
COST_SCALE = 18000


def arc_cost[T: (int, np.ndarray)](crew: Crew, distance: T, duration: T) -> T:
    """Scaled cost of driving `distance` m (the hourly cost is charged on route span); of
    one leg, or of every leg of a matrix at once (the solver's transit matrices)."""
    del duration  # time is paid on the route span, not per leg
    return 18 * crew.cost_per_km * distance


def span_cost(crew: Crew, seconds: int) -> int:
    """Scaled cost of `seconds` of route duration."""
    return 5 * crew.cost_per_hour * seconds


def replan(
    problem: Problem,
    *,
    now: int,
    done: Iterable[str] = (),
    positions: Mapping[str, int] | None = None,
    in_progress: Mapping[str, tuple[str, int]] | None = None,
    committed_next: Mapping[str, str] | None = None,
) -> Problem:
    """Re-planning at `now`: done jobs drop out; each crew starts at its last GPS position
    (`positions[crew_id]` = location index) at `now`; a job in progress
    (`in_progress[crew_id] = (job_id, seconds left)`) and then the next committed stop
    are locked first on that crew's route. Breaks whose window has passed are dropped."""
    done_set = set(done)
    positions = positions or {}
    in_progress = in_progress or {}
    committed_next = committed_next or {}
    jobs: list[Job] = []
    for j in problem.jobs:
        if j.id in done_set:
            continue
        for cid, (jid, left) in in_progress.items():
            if jid == j.id:
                # The crew is on site: it may finish now, whatever the original window said.
                j = replace(
                    j,
                    service=max(0, left),
                    windows=(TimeWindow(now, max(now, problem.crew(cid).shift.end)),),
                )
        jobs.append(j)
    crews: list[Crew] = []
    for c in problem.crews:
        lock: list[str] = []
        if c.id in in_progress:
            lock.append(in_progress[c.id][0])
        if c.id in committed_next:
            lock.append(committed_next[c.id])
        start = positions.get(c.id, c.start)
        if c.id in in_progress:
            start = problem.job(in_progress[c.id][0]).location
        shift_start = max(c.shift.start, min(now, c.shift.end))
        breaks = tuple(b for b in c.breaks if b.latest_start >= shift_start)
        max_duration = c.max_duration
        if max_duration is not None:
            max_duration = max(0, max_duration - max(0, shift_start - c.shift.start))
        crews.append(
            replace(
                c,
                start=start,
                shift=TimeWindow(shift_start, c.shift.end),
                breaks=tuple(
                    replace(b, window=TimeWindow(max(b.window.start, shift_start), b.window.end))
                    for b in breaks
                ),
                locked_first=tuple(lock)
                + tuple(x for x in c.locked_first if x not in lock and x not in done_set),
                max_duration=max_duration,
            )
        )
    return Problem(
        matrix=problem.matrix,
        crews=tuple(crews),
        jobs=tuple(jobs),
        dimensions=problem.dimensions,
        now=now,
    )


# --- the answer ------------------------------------------------------------------------

UNASSIGNED_REASONS = ("no_skill", "capacity", "time_window", "dropped_for_cost")
# Why the solver left a job out, as a dispatcher reads it.
REASON_WORDS = {
    "no_skill": "no crew on shift in this plan can do it (skill, or the crew it is reserved for)",
    "capacity": "it needs more room than any crew on shift has",
    "time_window": "no crew on shift can reach it within its time window and be back before its shift ends",
    "dropped_for_cost": "the day is full: more urgent or better-placed work took the time",
}


@dataclass(frozen=True, slots=True)
class Stop:
    """A job on a route: `arrival` at the site, service from `start` to `end`."""

    job_id: str
    location: int
    arrival: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class BreakPlacement:
    """Where a crew's break landed; `after_stop` is the index of the stop it follows on
    the route (-1: before the first stop; a break during a leg is counted after the leg's
    origin)."""

    break_id: str
    start: int
    end: int
    after_stop: int


@dataclass(frozen=True, slots=True)
class Route:
    crew_id: str
    depart: int
    stops: tuple[Stop, ...]
    breaks: tuple[BreakPlacement, ...]
    arrive: int
    distance: int
    duration: int


@dataclass(frozen=True, slots=True)
class Unassigned:
    job_id: str
    reason: str  # one of UNASSIGNED_REASONS


@dataclass(frozen=True, slots=True)
class Objective:
    """Honest parts, re-computed from the routes: metres and seconds driven, route span,
    crew cost (in crew cost units), drop penalties, and the solver's scaled total."""

    distance: int
    drive_time: int
    route_duration: int
    crew_cost: float
    penalty: int
    total_scaled: int


@dataclass(frozen=True, slots=True, eq=False)
class Result:
    problem: Problem
    routes: tuple[Route, ...]
    unassigned: tuple[Unassigned, ...]
    objective: Objective
    stats: Mapping[str, object]

    def violations(self) -> list[str]:
        """Every constraint the routes break, re-timed independently from the matrix."""
        from dispatch.validate import check

        return check(self.problem, self)

    def is_feasible(self) -> bool:
        return not self.violations()

    def route(self, crew_id: str) -> Route:
        return next(r for r in self.routes if r.crew_id == crew_id)

    def unassigned_reason(self, job_id: str) -> str | None:
        return next((u.reason for u in self.unassigned if u.job_id == job_id), None)


def objective_of(
    problem: Problem, routes: Sequence[Route], unassigned: Sequence[Unassigned]
) -> Objective:
    """Objective parts computed from the routes alone (the solver's own number is not trusted)."""
    dist = dur = span = 0
    scaled = 0
    crews = {c.id: c for c in problem.crews}
    m = problem.matrix
    for r in routes:
        c = crews[r.crew_id]
        if not r.stops:
            continue  # an idle crew does not drive
        locs = [c.start] + [s.location for s in r.stops] + [c.end]
        d = sum(int(m.distances[a, b]) for a, b in pairwise(locs))
        t = sum(int(m.durations[a, b]) for a, b in pairwise(locs))
        dist += d
        dur += t
        sp = r.arrive - r.depart
        span += sp
        scaled += arc_cost(c, d, t) + span_cost(c, sp)
    pen = sum(problem.penalties[u.job_id] for u in unassigned)
    return Objective(dist, dur, span, scaled / COST_SCALE, pen, scaled + pen)
