"""The 2,000-job / 80-crew day from `POST /plans` to `ready`, on real worker processes.

    python bench/large_day.py [--time-limit S] [--seed N] [--runs whole,one,two]

Makes its own PostgreSQL cluster on a free port of 127.0.0.1 (scripts/pg.sh, in a temp
dir removed at the end) and Valhalla tiles from data/osm/andorra.osm.pbf, and seeds
tomorrow with bench/city_day.py's large day as rows: 2 yards, 80 crews (asphalt, bulk
pickup, graffiti, electrical) on 07:00-15:30 shifts with a 30 min lunch inside
11:30-13:30, 2,000 work orders on real streets (windows on a third, priorities 1-5, due
times from 48 h ago to 72 h ahead, demands). Then, for each run, `streetloop worker`
processes are started and a plan is asked for as `POST /api/v1/plans` does
(`request_plan`, then the `optimise_plan` job); the wall time is measured from there to
the plan's `ready`:

- whole: one worker process, the day solved inside the plan's job (its parts in two
  processes of that job: the path before parts became jobs; STREETLOOP_PLAN_SPLIT_MIN_JOBS
  above the day's size);
- one: one worker process (concurrency 2), each part a job;
- two: two worker processes (concurrency 1 each), each part a job.

Each has 2 part slots (STREETLOOP_SOLVER_WORKERS=2), so the parts get the same share of
the time limit. The time limit is chosen so that POST -> ready stays within 60 s,
building the problem (the Valhalla matrix) and assembling the plan included. Printed:
jobs scheduled, urgency left undone (the solver's drop weights of the jobs left out;
lower is better), drive hours, feasibility, wall time, peak RSS of each worker process
and of its solving processes (sampled from /proc every 0.2 s), and per part: where and
when it ran. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoalchemy2.shape import from_shape  # noqa: E402
from shapely.geometry import Point  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from core.db import make_engine  # noqa: E402
from core.lifecycle.base import SYSTEM  # noqa: E402
from core.models import Crew, Depot, ServiceType, Shift, ShiftBreak, WorkOrder  # noqa: E402
from core.settings import normalize_database_url  # noqa: E402
from dispatch.build import Scope  # noqa: E402
from dispatch.model import Job, urgency_weight  # noqa: E402
from dispatch.plans import PlanRequest, request_plan  # noqa: E402
from geo.osm import street_points  # noqa: E402
from geo.roads import build_tiles  # noqa: E402
from tests.workers.own_cluster import defer, own_cluster, query, wait_for  # noqa: E402

PBF = ROOT / "data" / "osm" / "andorra.osm.pbf"
TZ = ZoneInfo("Europe/Andorra")
H = 3600
# bench/city_day.py's large day, as rows.
DEPOTS = [(1.5205, 42.5045), (1.5805, 42.5335)]
TYPES = {
    "pothole": ("asphalt", 30, 0.35, "asphalt_kg", (20, 120)),
    "bulk_trash": ("bulk_pickup", 15, 0.30, "bulk_items", (1, 6)),
    "graffiti": ("graffiti", 45, 0.20, None, (0, 0)),
    "streetlight": ("electrical", 40, 0.15, None, (0, 0)),
}
CREW_MIX = [
    ("asphalt", 4, {"asphalt_kg": 1500}),
    ("bulk_pickup", 4, {"bulk_items": 40}),
    ("graffiti", 2, {}),
    ("electrical", 2, {}),
]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def seed(url: str, n_jobs: int, n_crews: int, rng_seed: int, day: date) -> list[Job]:
    """The day's rows; the jobs as the solver weighs them (for the urgency left undone)."""
    rng = random.Random(rng_seed)
    midnight = datetime.combine(day, datetime.min.time(), TZ)
    engine = make_engine(normalize_database_url(url))
    jobs: list[Job] = []
    with Session(engine) as db:
        depots = []
        for k, (lon, lat) in enumerate(DEPOTS):
            d = Depot(code=f"yard-{k + 1}", name=f"Yard {k + 1}", agency="Public Works")
            d.location = from_shape(Point(lon, lat), srid=4326)
            depots.append(d)
        db.add_all(depots)
        types = {}
        for code, (skill, minutes, *_rest) in TYPES.items():
            types[code] = ServiceType(
                code=code, name=code, agency="Public Works", sla_hours=72, skill=skill,
                minutes_on_site=minutes,
            )  # fmt: skip
        db.add_all(types.values())
        db.flush()
        scale = n_crews / 12
        k = 0
        for skill, count, cap in CREW_MIX:
            for _ in range(max(1, round(count * scale))):
                depot = depots[k % 2]
                crew = Crew(
                    code=f"{skill}-{k}", name=f"{skill} {k}", agency="Public Works",
                    skills=[skill], capacity=cap, depot_id=depot.id,
                )  # fmt: skip
                db.add(crew)
                db.flush()
                db.add(
                    Shift(
                        crew_id=crew.id,
                        starts_at=midnight + timedelta(hours=7),
                        ends_at=midnight + timedelta(hours=15, minutes=30),
                        start_depot_id=depot.id,
                        end_depot_id=depot.id,
                        breaks=[
                            ShiftBreak(
                                earliest_start=midnight + timedelta(hours=11, minutes=30),
                                latest_end=midnight + timedelta(hours=13, minutes=30),
                                minutes=30,
                            )
                        ],
                    )
                )
                k += 1
        names, weights = list(TYPES), [v[2] for v in TYPES.values()]
        windows = [(8, 12), (12, 15), (9, 11)]
        for i, (lon, lat, street) in enumerate(street_points(PBF, n_jobs, seed=rng_seed)):
            code = rng.choices(names, weights)[0]
            skill, minutes, _, dim, (lo, hi) = TYPES[code]
            demand = {dim: rng.randint(lo, hi)} if dim else {}
            tw = []
            if rng.random() < 1 / 3:
                a, b = rng.choice(windows)
                tw = [
                    {
                        "start": (midnight + timedelta(hours=a)).isoformat(),
                        "end": (midnight + timedelta(hours=b)).isoformat(),
                    }
                ]
            due = rng.randint(-48, 72) * H
            priority = rng.randint(1, 5)
            db.add(
                WorkOrder(
                    service_type_id=types[code].id,
                    status="new",
                    priority=priority,
                    due_at=midnight + timedelta(seconds=due),
                    skill=skill,
                    minutes_on_site=minutes,
                    location=from_shape(Point(lon, lat), srid=4326),
                    address=street,
                    demand=demand,
                    time_windows=tw,
                )  # fmt: skip
            )
            jobs.append(Job(id=str(i), location=0, priority=priority, due=due))
        db.commit()
    engine.dispose()
    return jobs


def start_worker(
    url: str, logfile: Path, env: dict[str, str], concurrency: int
) -> subprocess.Popen[bytes]:
    fh = logfile.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "worker",
         "--queues", "plans", "--concurrency", str(concurrency)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT), **env},
        stdout=fh,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    fh.close()
    return proc


class PeakMemory:
    """Peak RSS (VmHWM) of each worker process and of every process under it, from /proc."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak: dict[int, tuple[int, int]] = {}  # pid -> (its root worker, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> dict[int, int]:
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        owner: dict[int, int] = {}
        for pid in parents:
            p = pid
            while p > 1 and p not in self.roots:
                p = parents.get(p, 0)
            if p in self.roots:
                owner[pid] = p
        return owner

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for pid, root in self._tree().items():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) // 1024
                            if mb > self.peak.get(pid, (root, 0))[1]:
                                self.peak[pid] = (root, mb)
                except OSError:
                    continue

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(url: str, name: str, workers: int, concurrency: int, split_min: int, limit: int,
        tiles: Path, jobs: list[Job], day: date, work: Path) -> None:  # fmt: skip
    env = {
        "STREETLOOP_ROAD_DATA": str(tiles),
        "STREETLOOP_TIMEZONE": "Europe/Andorra",
        "STREETLOOP_SOLVER_WORKERS": "2",
        "STREETLOOP_PLAN_SPLIT_MIN_JOBS": str(split_min),
    }
    before = query(url, "SELECT coalesce(max(id), 0) FROM procrastinate_workers")[0][0]
    procs = [start_worker(url, work / f"{name}-{k}.log", env, concurrency) for k in range(workers)]
    try:
        wait_for(
            lambda: (
                query(url, "SELECT count(*) FROM procrastinate_workers WHERE id > %s", before)[0][0]
                >= workers
            ),
            60,
            "the workers to register",
        )
        with PeakMemory([p.pid for p in procs]) as mem:
            engine = make_engine(normalize_database_url(url))
            t0 = time.monotonic()
            with Session(engine) as db:
                plan = request_plan(db, PlanRequest(day, Scope(), time_limit_s=limit), actor=SYSTEM)
                db.commit()
                plan_id = plan.id
            engine.dispose()
            defer(url, "optimise_plan", plan_id=plan_id)
            built_at: list[float] = []

            def done() -> bool:
                status, phase = query(
                    url,
                    "SELECT status, progress->>'phase' FROM route_plans WHERE id = %s",
                    plan_id,
                )[0]
                if phase in ("solving", "done") and not built_at:
                    built_at.append(time.monotonic() - t0)
                return status in ("ready", "failed")

            wait_for(done, 600, "the plan", step=0.05)
            wall = time.monotonic() - t0
            time.sleep(0.3)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    status, stats, error, started, finished = query(
        url,
        "SELECT status, stats, error, started_at, finished_at FROM route_plans WHERE id = %s",
        plan_id,
    )[0]
    if status != "ready":
        print(f"{name},FAILED,{error}")
        return
    scheduled = {
        str(r[0])
        for r in query(
            url,
            "SELECT s.work_order_id FROM route_stops s JOIN plan_routes r ON r.id = s.route_id "
            "WHERE r.plan_id = %s AND s.kind = 'job'",
            plan_id,
        )
    }
    first = query(url, "SELECT min(id) FROM work_orders")[0][0]
    horizon = 15 * H + 1800
    undone = sum(
        urgency_weight(j, 0, horizon) for j in jobs if str(first + int(j.id)) not in scheduled
    )
    worker_mb = [mem.peak.get(p.pid, (p.pid, 0))[1] for p in procs]
    solver_mb = [mb for pid, (root, mb) in mem.peak.items() if pid not in {p.pid for p in procs}]
    print(
        f"{name},{workers},{limit},{wall:.1f},{stats['scheduled']},{stats['jobs']},{undone},"
        f"{stats['drive_s'] / H:.1f},{stats['feasible']},"
        f"{'/'.join(map(str, worker_mb))},{max(solver_mb, default=0)}"
    )
    parts = query(
        url,
        "SELECT position, label, crews, jobs, time_limit_s, pid, started_at, finished_at, "
        "attempts, result->'stats'->>'solver_rss_mb' FROM plan_parts WHERE plan_id = %s "
        "ORDER BY position",
        plan_id,
    )
    # The parts are stored in the transaction that stored the plan's input (deleted since).
    stored = query(url, "SELECT min(created_at) FROM plan_parts WHERE plan_id = %s", plan_id)
    if parts:
        built = (stored[0][0] - started).total_seconds()
        last = max(p[7] for p in parts)
        print(
            f"#   {name}: built and stored in {built:.1f} s after the job started; "
            f"assembled {(finished - last).total_seconds():.1f} s after the last part"
        )
        for pos, label, crews, n, tl, pid, s0, s1, runs, rss in parts:
            print(
                f"#   part {pos + 1} ({label}: {crews} crews, {n} jobs, limit {tl:.1f} s): "
                f"pid {pid}, {(s0 - started).total_seconds():.1f}-{(s1 - started).total_seconds():.1f} s "
                f"({(s1 - s0).total_seconds():.1f} s), runs {runs}, solver {rss} MB"
            )
    print(
        f"#   {name}: POST to solving (the problem built: travel matrix, rows, parts stored) "
        f"{built_at[0] if built_at else float('nan'):.1f} s"
    )
    if not parts:
        print(f"#   {name}: solved in the plan's job ({stats.get('solve_seconds')} s of solve)")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=int, default=36)
    ap.add_argument("--seed", type=int, default=311)
    ap.add_argument("--runs", default="whole,one,two")
    args = ap.parse_args(argv)
    day = datetime.now(TZ).date() + timedelta(days=1)
    print(f"# {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp, own_cluster() as cluster:
        work = Path(tmp)
        tiles = work / "roads"
        build_tiles(PBF, tiles)
        url = cluster.createdb("large_day", migrated=True)
        t = time.monotonic()
        jobs = seed(url, 2000, 80, args.seed, day)
        log(f"seeded 2000 work orders, 80 crews in {time.monotonic() - t:.1f} s")
        print(
            "run,worker_processes,time_limit_s,post_to_ready_s,jobs_scheduled,jobs_total,"
            "urgency_undone,drive_hours,feasible,peak_rss_mb_worker,peak_rss_mb_solver"
        )
        configs = {
            "whole": (1, 2, 1_000_000),
            "one": (1, 2, 150),
            "two": (2, 1, 150),
        }
        for name in args.runs.split(","):
            workers, concurrency, split_min = configs[name]
            run(url, name, workers, concurrency, split_min, args.time_limit, tiles, jobs, day, work)
        print(f"# load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
