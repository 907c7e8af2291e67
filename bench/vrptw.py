"""Solomon VRPTW benchmark: StreetLoop (VROOM start + OR-Tools GLS, 2 workers) against
VROOM alone and OR-Tools alone (parallel cheapest insertion + plain GLS), side by side.

Conventions (data README): Euclidean distances, travel time = distance, service must
start in [ready, due], return to the depot by its due date, distance objective.
Scaling: coordinates x1000; distances rounded, travel times rounded *up*, so an integer
schedule that is feasible is feasible with exact distances too. Gaps and feasibility are
computed on the exact double-precision distances of the returned routes.

    python bench/vrptw.py [--set DIR] [--bks CSV] [--time-limit S] [--only SOLVER ...] [--seed N] [INSTANCE ...]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatch.model import Crew, Job, Matrix, Problem, TimeWindow  # noqa: E402
from dispatch.solver import SolveParams, precheck, solve, vroom_routes  # noqa: E402

SCALE = 1000
DEFAULT_SET = ROOT.parent / "shared" / "data" / "vrptw" / "solomon"


def read_solomon(path: Path) -> dict:
    lines = [ln.split() for ln in path.read_text().splitlines()]
    name = lines[0][0]
    k = next(i for i, ln in enumerate(lines) if ln[:1] == ["VEHICLE"])
    nveh, cap = int(lines[k + 2][0]), int(lines[k + 2][1])
    rows = [list(map(int, ln)) for ln in lines[k + 3 :] if len(ln) == 7 and ln[0].isdigit()]
    return {"name": name, "vehicles": nveh, "capacity": cap, "rows": rows}


def to_problem(inst: dict) -> tuple[Problem, list[tuple[int, int]]]:
    rows = inst["rows"]
    xy = [(r[1], r[2]) for r in rows]
    n = len(xy)
    real = [
        [math.hypot(xy[a][0] - xy[b][0], xy[a][1] - xy[b][1]) for b in range(n)] for a in range(n)
    ]
    dist = [[round(d * SCALE) for d in row] for row in real]
    dur = [[math.ceil(d * SCALE - 1e-6) for d in row] for row in real]
    depot = rows[0]
    shift = TimeWindow(depot[4] * SCALE, depot[5] * SCALE)
    crews = tuple(
        Crew(id=f"v{v}", start=0, end=0, shift=shift, capacity=(inst["capacity"],))
        for v in range(inst["vehicles"])
    )
    jobs = tuple(
        Job(
            id=str(r[0]),
            location=r[0],
            service=r[6] * SCALE,
            windows=(TimeWindow(r[4] * SCALE, r[5] * SCALE),),
            demand=(r[3],),
        )
        for r in rows[1:]
    )
    return Problem(matrix=Matrix(dur, dist), crews=crews, jobs=jobs, dimensions=("load",)), xy


def exact_check(inst: dict, routes: list[list[int]]) -> tuple[float, bool]:
    """Exact Euclidean length and feasibility of customer sequences (earliest timing)."""
    rows = inst["rows"]
    total, ok = 0.0, True
    seen: list[int] = []
    if len([r for r in routes if r]) > inst["vehicles"]:
        ok = False
    for seq in routes:
        if not seq:
            continue
        t, pos, load = float(rows[0][4]), 0, 0
        for c in seq + [0]:
            d = math.hypot(rows[pos][1] - rows[c][1], rows[pos][2] - rows[c][2])
            total += d
            t = max(t + d, rows[c][4])
            if t > rows[c][5] + 1e-9:
                ok = False
            t += rows[c][6]
            load += rows[c][3]
            pos = c
        ok = ok and load <= inst["capacity"]
        seen += seq
    ok = ok and sorted(seen) == list(range(1, len(rows)))
    return total, ok


def run_streetloop(
    problem: Problem, limit: float, workers: int, use_vroom: bool, seed: int = 0
) -> tuple[list[list[int]], bool, float]:
    t = time.monotonic()
    res = solve(
        problem, SolveParams(time_limit_s=limit, workers=workers, use_vroom=use_vroom, seed=seed)
    )
    routes = [[s.location for s in r.stops] for r in res.routes]
    return routes, res.is_feasible(), time.monotonic() - t


def run_vroom(problem: Problem, limit: float) -> tuple[list[list[int]], bool | None, float]:
    t = time.monotonic()
    keep = [j.id for j in problem.jobs if j.id not in precheck(problem)]
    got = (
        vroom_routes(
            problem, keep, set(), SolveParams(time_limit_s=limit, vroom_share=1.0, workers=2)
        )
        or {}
    )
    jobs = {j.id: j.location for j in problem.jobs}
    # Not a Result, so validate.py does not apply; the exact check below still does.
    return [[jobs[j] for j in seq] for seq in got.values()], None, time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=DEFAULT_SET)
    ap.add_argument("--bks", type=Path, default=None)
    ap.add_argument("--time-limit", type=float, default=10.0)
    # Intermediate experiments: one column only (--only streetloop), other seeds (--seed).
    ap.add_argument(
        "--only", action="append", choices=("streetloop", "vroom", "ortools"), default=None
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("instances", nargs="*")
    a = ap.parse_args(argv)
    bks_path = a.bks or a.set.parent / "solomon_bks_distance.csv"
    bks = {r["instance"]: r for r in csv.DictReader(bks_path.open())}
    names = [n.upper() for n in a.instances] or sorted(p.stem for p in a.set.glob("*.txt"))
    out = csv.writer(sys.stdout)
    out.writerow(
        [
            "instance",
            "solver",
            "vehicles",
            "distance",
            "bks_vehicles",
            "bks_distance",
            "gap_pct",
            "feasible",
            "validated",
            "seconds",
        ]
    )
    gaps: dict[str, list[float]] = {"streetloop": [], "vroom": [], "ortools": []}
    for name in names:
        inst = read_solomon(a.set / f"{name}.txt")
        problem, _ = to_problem(inst)
        b = bks.get(name)
        runs: tuple[tuple[str, Callable[[], tuple[list[list[int]], bool | None, float]]], ...] = (
            ("streetloop", partial(run_streetloop, problem, a.time_limit, 2, True, a.seed)),
            ("vroom", partial(run_vroom, problem, a.time_limit)),
            ("ortools", partial(run_streetloop, problem, a.time_limit, 1, False, a.seed)),
        )
        for solver, run in runs:
            if a.only and solver not in a.only:
                continue
            routes, validated, secs = run()
            length, feasible = exact_check(inst, routes)
            gap = 100 * (length / float(b["distance"]) - 1) if b else float("nan")
            if feasible:
                gaps[solver].append(gap)
            out.writerow(
                [
                    name,
                    solver,
                    sum(1 for r in routes if r),
                    f"{length:.2f}",
                    b["vehicles"] if b else "",
                    b["distance"] if b else "",
                    f"{gap:.2f}" if feasible else "infeasible",
                    feasible,
                    "n/a" if validated is None else validated,
                    f"{secs:.1f}",
                ]
            )
            sys.stdout.flush()

    def mean(xs: list[float]) -> str:
        return f"{sum(xs) / len(xs):.2f}" if xs else "nan"

    print(
        f"mean_gap_pct={mean(gaps['streetloop'])} vroom={mean(gaps['vroom'])} ortools={mean(gaps['ortools'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
