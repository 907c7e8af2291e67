"""A realistic day on Andorra's roads, solved three ways side by side; and a large day.

    python bench/city_day.py [--time-limit S] [--seed N] [--job-value K] [--large]
        [--large-time-limit S]

Day: 300 jobs of 4 types (potholes, bulk trash, graffiti, street lights) on real streets,
12 crews with skills and capacities from two yards, 07:00-15:30 shifts with a 30 min
lunch inside 11:30-13:30, time windows on a third of the jobs, priorities 1-5, some
jobs already overdue. Travel times from Valhalla tiles built from data/osm/andorra.osm.pbf.
Solvers: StreetLoop (VROOM start + OR-Tools, 2 workers), VROOM alone, OR-Tools alone
(parallel cheapest insertion + GLS). Every answer is re-timed and checked by
dispatch.validate and judged by our objective; numbers are printed, never asserted.
--job-value K adds StreetLoop solving with a flat value K per job added to each urgency
weight in the drop penalties (a policy experiment, not the default objective).
--large adds the 2,000 jobs / 80 crews day: time to plan and peak memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatch.edit import time_route  # noqa: E402
from dispatch.model import (  # noqa: E402
    Break,
    Crew,
    Job,
    Problem,
    Result,
    TimeWindow,
    Unassigned,
    objective_of,
    urgency_weight,
)
from dispatch.solver import SolveParams, precheck, solve, vroom_routes  # noqa: E402
from dispatch.split import solve_split  # noqa: E402
from geo.osm import street_points  # noqa: E402
from geo.roads import build_tiles  # noqa: E402
from geo.travel import ValhallaProvider  # noqa: E402

PBF = ROOT / "data" / "osm" / "andorra.osm.pbf"
H = 3600
DEPOTS = [(1.5205, 42.5045), (1.5805, 42.5335)]
# type: (skill, minutes on site, share, demand dimension, demand range)
TYPES = {
    "pothole": ("asphalt", 30, 0.35, "asphalt_kg", (20, 120)),
    "bulk_trash": ("bulk_pickup", 15, 0.30, "bulk_items", (1, 6)),
    "graffiti": ("graffiti", 45, 0.20, None, (0, 0)),
    "streetlight": ("electrical", 40, 0.15, None, (0, 0)),
}
DIMENSIONS = ("asphalt_kg", "bulk_items")
# crews per 12: skill -> (count, capacity)
CREW_MIX = [
    ("asphalt", 4, (1500, 0)),
    ("bulk_pickup", 4, (0, 40)),
    ("graffiti", 2, (0, 0)),
    ("electrical", 2, (0, 0)),
]


def make_day(n_jobs: int, n_crews: int, seed: int, tiles: Path) -> Problem:
    rng = random.Random(seed)
    pts = street_points(PBF, n_jobs, seed=seed)
    points = list(DEPOTS) + [(lon, lat) for lon, lat, _ in pts]
    t = time.monotonic()
    m = ValhallaProvider(tiles).matrix(points)
    print(
        f"# matrix {len(points)} points: {time.monotonic() - t:.1f} s ({m.provider}, {m.fallback_pairs} fallback pairs)"
    )
    scale = n_crews / 12
    crews = []
    k = 0
    for skill, count, cap in CREW_MIX:
        for _ in range(max(1, round(count * scale))):
            depot = k % 2
            crews.append(
                Crew(
                    id=f"{skill}-{k}",
                    start=depot,
                    end=depot,
                    shift=TimeWindow(7 * H, 15 * H + 1800),
                    breaks=(Break("lunch", 1800, TimeWindow(11 * H + 1800, 13 * H + 1800)),),
                    skills=frozenset({skill}),
                    capacity=cap,
                    cost_per_km=1000,
                    cost_per_hour=0,
                )
            )
            k += 1
    names, weights = list(TYPES), [v[2] for v in TYPES.values()]
    jobs = []
    for i in range(n_jobs):
        skill, minutes, _, dim, (lo, hi) = TYPES[rng.choices(names, weights)[0]]
        demand = tuple(rng.randint(lo, hi) if d == dim else 0 for d in DIMENSIONS)
        windows: tuple[TimeWindow, ...] = ()
        if rng.random() < 1 / 3:
            windows = (
                rng.choice(
                    [
                        TimeWindow(8 * H, 12 * H),
                        TimeWindow(12 * H, 15 * H),
                        TimeWindow(9 * H, 11 * H),
                    ]
                ),
            )
        due = rng.randint(-48, 72) * H  # some already overdue at the start of the day
        jobs.append(
            Job(
                id=f"j{i}",
                location=i + 2,
                service=minutes * 60,
                windows=windows,
                skills=frozenset({skill}),
                demand=demand,
                priority=rng.randint(1, 5),
                due=due,
            )
        )
    return Problem(
        matrix=m,
        crews=tuple(crews),
        jobs=tuple(jobs),
        dimensions=DIMENSIONS,
        now=7 * H,
    )


def evaluate(problem: Problem, routes: dict[str, list[str]]) -> Result:
    """Job orders (VROOM's) as a `Result`: re-timed independently, the lunch break placed
    where it fits best, every job off the routes unassigned, and our objective computed
    from them, so that each solver's day is judged by the same numbers."""
    timed = [time_route(problem, c, routes.get(c.id, [])) for c in problem.crews]
    served = {s.job_id for r in timed for s in r.stops}
    unassigned = [Unassigned(j.id, "dropped_for_cost") for j in problem.jobs if j.id not in served]
    return Result(
        problem, tuple(timed), tuple(unassigned), objective_of(problem, timed, unassigned), {}
    )


def with_job_value(problem: Problem, value: int) -> Problem:
    """The same day with a flat value per job on top of its urgency: each drop penalty is
    (urgency weight + `value`) times the base unit, instead of the urgency weight alone.
    A policy that weighs how many jobs are done against which; what `--job-value` measures."""
    unit = {
        j.id: problem.penalties[j.id] // urgency_weight(j, problem.now, problem.horizon_end)
        for j in problem.jobs
        if not j.required
    }
    base = min(unit.values(), default=1)
    penalties = {
        j.id: base * (urgency_weight(j, problem.now, problem.horizon_end) + value)
        if not j.required
        else problem.penalties[j.id]
        for j in problem.jobs
    }
    return replace(problem, penalties=penalties)


COLUMNS = (
    "solver,seconds,jobs_scheduled,jobs_total,distance_km,drive_hours,feasible,"
    "overdue_dropped,urgency_dropped,objective"
)


def row(name: str, secs: float, res: Result, overdue: set[str]) -> tuple[int, int]:
    """Print one solver's line; return (jobs scheduled, urgency left undone)."""
    problem = res.problem
    served = {s.job_id for r in res.routes for s in r.stops}
    urgency = sum(
        urgency_weight(j, problem.now, problem.horizon_end)
        for j in problem.jobs
        if j.id not in served
    )
    print(
        f"{name},{secs:.1f},{len(served)},{len(problem.jobs)},"
        f"{res.objective.distance / 1000:.1f},{res.objective.drive_time / H:.2f},"
        f"{res.is_feasible()},{len(overdue - served)},{urgency},{res.objective.total_scaled}"
    )
    return len(served), urgency


def run(problem: Problem, limit: float, job_value: int | None = None) -> None:
    overdue = {j.id for j in problem.jobs if j.due is not None and j.due < problem.now}
    print(f"# {len(overdue)} of {len(problem.jobs)} jobs are overdue at the start of the day")
    # urgency_dropped: the solver's drop weights (3^priority, x1000 and more once due
    # today) of the jobs left out; objective: our objective (travel + drop penalties, in
    # solver units) of each day, VROOM's included. Lower is better for both.
    print(COLUMNS)

    t = time.monotonic()
    res = solve_split(problem, SolveParams(time_limit_s=limit, workers=2))
    ours = row("streetloop", time.monotonic() - t, res, overdue)

    t = time.monotonic()
    keep = [j.id for j in problem.jobs if j.id not in precheck(problem)]
    got = (
        vroom_routes(
            problem, keep, set(), SolveParams(time_limit_s=limit, vroom_share=1.0, workers=2)
        )
        or {}
    )
    theirs = row("vroom", time.monotonic() - t, evaluate(problem, got), overdue)

    t = time.monotonic()
    res = solve(problem, SolveParams(time_limit_s=limit, workers=1, use_vroom=False))
    row("ortools", time.monotonic() - t, res, overdue)

    if job_value is not None:
        t = time.monotonic()
        res = solve_split(
            with_job_value(problem, job_value), SolveParams(time_limit_s=limit, workers=2)
        )
        # Judged by the day's own penalties, like the other rows.
        res = Result(
            problem,
            res.routes,
            res.unassigned,
            objective_of(problem, res.routes, res.unassigned),
            res.stats,
        )
        row(f"streetloop_job_value_{job_value}", time.monotonic() - t, res, overdue)

    print(
        f"# streetloop against vroom: {ours[0] - theirs[0]:+d} jobs, "
        f"urgency left undone {100 * (ours[1] - theirs[1]) / max(1, theirs[1]):+.1f} %"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=311)
    ap.add_argument("--large", action="store_true", help="also the 2,000 jobs / 80 crews day")
    ap.add_argument("--large-time-limit", type=float, default=120.0)
    ap.add_argument(
        "--job-value",
        type=int,
        default=None,
        help="also StreetLoop with this flat value per job on top of its urgency (e.g. 9000)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tiles = Path(tmp) / "roads"
        build_tiles(PBF, tiles)
        print(f"## city day: 300 jobs, 12 crews, {args.time_limit:g} s")
        run(make_day(300, 12, args.seed, tiles), args.time_limit, args.job_value)
        if args.large:
            print(f"## large day: 2000 jobs, 80 crews, {args.large_time_limit:g} s")
            problem = make_day(2000, 80, args.seed, tiles)
            t = time.monotonic()
            res = solve_split(problem, SolveParams(time_limit_s=args.large_time_limit, workers=2))
            secs = time.monotonic() - t
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            served = sum(len(r.stops) for r in res.routes)
            print(
                "solver,seconds,jobs_scheduled,jobs_total,drive_hours,feasible,peak_rss_mb_self,peak_rss_mb_child"
            )
            print(
                f"streetloop,{secs:.1f},{served},{len(problem.jobs)},"
                f"{res.objective.drive_time / H:.2f},{res.is_feasible()},{own:.0f},{children:.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
