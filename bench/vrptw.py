"""VRPTW benchmark: StreetLoop (VROOM + LNS + OR-Tools, 2 workers) against PyVRP alone
(a reference column, from the `bench` extra: `pip install -e '.[bench]'`), VROOM alone
and OR-Tools alone, side by side, on the same instances, matrices and time limits.

Conventions (data README): Euclidean distances, travel time = distance, service must
start in [ready, due], return to the depot by its due date, distance objective.
Scaling: coordinates x1000; distances rounded, travel times rounded *up*, so an integer
schedule that is feasible is feasible with exact distances too. Every solver gets these
same integer matrices. Gaps and feasibility are computed on the exact double-precision
distances of the returned routes.

    python bench/vrptw.py [--set DIR] [--bks CSV] [--time-limit S|auto] [--only SOLVER ...]
                          [--seed N] [--out FILE.csv] [INSTANCE or GLOB ...]

`--time-limit auto` gives each instance the issue's limit for its size: 10 s up to 100
customers, 20 s up to 200, 60 s up to 600, 120 s beyond. Instances are names or globs
(`R1*`, `gen_*_400_*`) of files in --set.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import os
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
    name = lines[0][0].upper()
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


Run = tuple[list[list[int]], bool | None, float, str]
"""A solver's answer: customer sequences, validate.py's verdict (None: not a Result),
seconds, and the engine whose routes won (StreetLoop only)."""


def run_streetloop(
    problem: Problem, limit: float, workers: int, use_vroom: bool, seed: int = 0
) -> Run:
    t = time.monotonic()
    res = solve(
        problem, SolveParams(time_limit_s=limit, workers=workers, use_vroom=use_vroom, seed=seed)
    )
    routes = [[s.location for s in r.stops] for r in res.routes]
    return routes, res.is_feasible(), time.monotonic() - t, str(res.stats.get("engine", ""))


def run_vroom(problem: Problem, limit: float) -> Run:
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
    return [[jobs[j] for j in seq] for seq in got.values()], None, time.monotonic() - t, ""


def run_pyvrp(inst: dict, problem: Problem, limit: float, seed: int) -> Run:
    """PyVRP as its users run it on a VRPTW (the `bench` extra): every customer required,
    one vehicle type of `NUMBER` vehicles, distance cost 1, our integer matrices,
    `MaxRuntime(limit)` and a fixed seed, on one core."""
    try:
        import pyvrp
        from pyvrp.stop import MaxRuntime
    except ImportError:
        sys.exit("the pyvrp column needs the bench extra: pip install -e '.[bench]'")

    t = time.monotonic()
    rows = inst["rows"]
    depot = rows[0]
    m = problem.matrix
    data = pyvrp.ProblemData(
        locations=[pyvrp.Location(r[1], r[2]) for r in rows],
        clients=[
            pyvrp.Client(
                location=k,
                delivery=[r[3]],
                service_duration=r[6] * SCALE,
                tw_early=r[4] * SCALE,
                tw_late=r[5] * SCALE,
            )
            for k, r in enumerate(rows[1:], start=1)
        ],
        depots=[pyvrp.Depot(location=0)],
        vehicle_types=[
            pyvrp.VehicleType(
                num_available=inst["vehicles"],
                capacity=[inst["capacity"]],
                tw_early=depot[4] * SCALE,
                tw_late=depot[5] * SCALE,
            )
        ],
        distance_matrices=[m.distances.astype("int64")],
        duration_matrices=[m.durations.astype("int64")],
    )
    res = pyvrp.solve(data, MaxRuntime(limit), seed=seed, collect_stats=False)
    # PyVRP's client k is customer k + 1 (row 0 is the depot).
    routes = [[a.idx + 1 for a in r.schedule() if a.is_client()] for r in res.best.routes()]
    return routes, None, time.monotonic() - t, ""


SOLVERS = ("streetloop", "pyvrp", "vroom", "ortools")


def limit_for(customers: int) -> float:
    """The issue's time limit for an instance of this size."""
    return (
        10.0
        if customers <= 100
        else 20.0
        if customers <= 200
        else 60.0
        if customers <= 600
        else 120.0
    )


def instance_paths(directory: Path, patterns: list[str]) -> list[Path]:
    files = sorted(p for p in directory.glob("*") if p.suffix.lower() == ".txt")
    if not patterns:
        return files
    out: list[Path] = []
    for pat in patterns:
        hit = [p for p in files if fnmatch.fnmatch(p.stem.upper(), pat.upper())]
        if not hit:
            raise SystemExit(f"no instance matches {pat!r} in {directory}")
        out += [p for p in hit if p not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", type=Path, default=DEFAULT_SET)
    ap.add_argument("--bks", type=Path, default=None)
    ap.add_argument("--time-limit", default="10")
    # Runs in pieces: some columns only (--only streetloop), other seeds (--seed).
    ap.add_argument("--only", action="append", choices=SOLVERS, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows to this CSV")
    ap.add_argument("instances", nargs="*")
    a = ap.parse_args(argv)
    bks_path = a.bks or a.set.parent / "solomon_bks_distance.csv"
    bks = (
        {r["instance"].upper(): r for r in csv.DictReader(bks_path.open())}
        if bks_path.exists()
        else {}
    )
    header = [
        "instance",
        "customers",
        "solver",
        "engine",
        "vehicles",
        "distance",
        "bks_vehicles",
        "bks_distance",
        "gap_pct",
        "vs_pyvrp_pct",
        "feasible",
        "validated",
        "time_limit_s",
        "seconds",
    ]
    writers = [csv.writer(sys.stdout)]
    out_file = a.out.open("w", newline="") if a.out else None
    if out_file is not None:
        writers.append(csv.writer(out_file))
    for w in writers:
        w.writerow(header)
    print(f"# load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    gaps: dict[str, list[tuple[float, str]]] = {s: [] for s in SOLVERS}
    behind: dict[str, list[tuple[float, str]]] = {s: [] for s in SOLVERS}
    for path in instance_paths(a.set, a.instances):
        inst = read_solomon(path)
        name = inst["name"]
        problem, _ = to_problem(inst)
        n = len(problem.jobs)
        limit = limit_for(n) if a.time_limit == "auto" else float(a.time_limit)
        b = bks.get(name)
        runs: tuple[tuple[str, Callable[[], Run]], ...] = (
            ("pyvrp", partial(run_pyvrp, inst, problem, limit, a.seed)),
            ("streetloop", partial(run_streetloop, problem, limit, 2, True, a.seed)),
            ("vroom", partial(run_vroom, problem, limit)),
            ("ortools", partial(run_streetloop, problem, limit, 1, False, a.seed)),
        )
        pyvrp_length: float | None = None
        for solver, run in runs:
            if a.only and solver not in a.only:
                continue
            routes, validated, secs, engine = run()
            length, feasible = exact_check(inst, routes)
            gap = 100 * (length / float(b["distance"]) - 1) if b else float("nan")
            if solver == "pyvrp" and feasible:
                pyvrp_length = length
            vs = 100 * (length / pyvrp_length - 1) if pyvrp_length and feasible else float("nan")
            if feasible:
                gaps[solver].append((gap, name))
                behind[solver].append((vs, name))
            row = [
                name,
                n,
                solver,
                engine,
                sum(1 for r in routes if r),
                f"{length:.2f}",
                b["vehicles"] if b else "",
                b["distance"] if b else "",
                f"{gap:.2f}" if feasible else "infeasible",
                f"{vs:.2f}" if feasible else "",
                feasible,
                "n/a" if validated is None else validated,
                f"{limit:g}",
                f"{secs:.1f}",
            ]
            for w in writers:
                w.writerow(row)
            sys.stdout.flush()
            if out_file is not None:
                out_file.flush()
    if out_file is not None:
        out_file.close()

    def summary(xs: list[tuple[float, str]]) -> str:
        xs = [x for x in xs if not math.isnan(x[0])]
        if not xs:
            return "nan"
        worst = max(xs)
        return f"mean {sum(x for x, _ in xs) / len(xs):.2f} worst {worst[0]:.2f} ({worst[1]}) n={len(xs)}"

    for solver in SOLVERS:
        if gaps[solver]:
            print(
                f"# {solver}: gap to BKS % {summary(gaps[solver])}; vs PyVRP pts {summary(behind[solver])}"
            )
    print(f"# load average at end: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
