"""Worker recovery times: a job of a killed worker, and a job deferred after a database restart.

    python bench/worker_recovery.py [--timeouts 2,10,60] [--repeats 3] [--restarts 3]

Makes its own PostgreSQL cluster on a free port of 127.0.0.1 (scripts/pg.sh, in a temp
dir removed at the end), so restarting it disturbs nobody; numbers are printed, never
asserted.

1. Killed worker: for each heartbeat timeout (STREETLOOP_WORKER_STALLED_AFTER_S), two
   `streetloop worker --queues media` processes; the first starts a process_photo job
   (held mid-run by a row lock), is killed with SIGKILL, and the time from the kill to
   the job's `succeeded` on the second worker is measured. Before this change the job
   stayed `doing` for ever (a plan was failed after its time limit + 10 minutes).
2. Database restart: one worker; `pg_ctl restart -m fast`; then a job is deferred and
   the time from the restart's end to the job's `succeeded` is measured. Before, the
   worker had exited (status 0) and the job never ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.workers.own_cluster import (  # noqa: E402
    Cluster,
    defer,
    job_status,
    own_cluster,
    start_worker,
    wait_for,
    workers_registered,
)
from tests.workers.test_stalled_jobs import _photo, _running_on  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def killed_worker(cluster: Cluster, timeout_s: int, run: int, work: Path) -> float:
    url = cluster.createdb(f"killed_{timeout_s}_{run}", migrated=True, template="migrated")
    media = work / f"killed_{timeout_s}_{run}"
    media.mkdir()
    photo_id = _photo(url, media / "media")
    env = {"STREETLOOP_WORKER_STALLED_AFTER_S": str(timeout_s)}
    first = start_worker(url, media / "first.log", extra_env=env, args=("--queues", "media"))
    second = None
    try:
        with psycopg.connect(url) as holder:
            holder.execute("SELECT id FROM photos WHERE id = %s FOR UPDATE", (photo_id,))
            job = defer(url, "process_photo", photo_id=photo_id)
            wait_for(lambda: _running_on(url, job), 60, "the first worker to start the job")
            second = start_worker(
                url, media / "second.log", extra_env=env, args=("--queues", "media")
            )
            wait_for(lambda: workers_registered(url) >= 2, 60, "the second worker to register")
            first.kill()
            killed = time.monotonic()
            holder.rollback()
        wait_for(lambda: job_status(url, job) == "succeeded", timeout_s * 3 + 60, "the retried job")
        return time.monotonic() - killed
    finally:
        first.kill()
        if second is not None:
            second.stop()


def database_restart(cluster: Cluster, run: int, work: Path) -> tuple[float, float]:
    url = cluster.createdb(f"restart_{run}", migrated=True, template="migrated")
    worker = start_worker(
        url,
        work / f"restart_{run}.log",
        extra_env={"STREETLOOP_WORKER_RECONNECT_MAX_S": "1"},
        args=("--queues", "plans"),
    )
    try:
        wait_for(lambda: workers_registered(url) >= 1, 60, "the worker to register")
        t0 = time.monotonic()
        cluster.restart()
        back = time.monotonic()
        job = defer(url, "fail_stale_plans", timestamp=run)
        wait_for(
            lambda: job_status(url, job) == "succeeded", 120, "the job deferred after the restart"
        )
        return back - t0, time.monotonic() - back
    finally:
        worker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--timeouts",
        default="2,10,60",
        help="heartbeat timeouts to compare, seconds (default 2,10,60)",
    )
    p.add_argument("--repeats", type=int, default=3, help="kills per timeout (default 3)")
    p.add_argument("--restarts", type=int, default=3, help="database restarts (default 3)")
    args = p.parse_args(argv)
    timeouts = [int(t) for t in args.timeouts.split(",") if t.strip()]
    work = Path(tempfile.mkdtemp(prefix="streetloop-bench-"))
    with own_cluster() as cluster:
        log(f"cluster on 127.0.0.1:{cluster.port}; migrating")
        cluster.createdb("migrated", migrated=True)
        killed: dict[int, list[float]] = {}
        for timeout_s in timeouts:
            for run in range(args.repeats):
                killed.setdefault(timeout_s, []).append(
                    killed_worker(cluster, timeout_s, run, work)
                )
                log(f"timeout {timeout_s} s, kill {run + 1}: {killed[timeout_s][-1]:.2f} s")
        restarts = []
        for run in range(args.restarts):
            restarts.append(database_restart(cluster, run, work))
            log(
                f"restart {run + 1}: {restarts[-1][0]:.2f} s down, job done {restarts[-1][1]:.2f} s after"
            )
    print()
    print("Job of a worker killed with SIGKILL, taken up by a second worker (kill -> succeeded)")
    print(f"{'heartbeat timeout':>18} {'runs':>5} {'median s':>9} {'min s':>7} {'max s':>7}")
    for timeout_s, values in killed.items():
        print(
            f"{timeout_s:>16} s {len(values):>5} {statistics.median(values):>9.2f} "
            f"{min(values):>7.2f} {max(values):>7.2f}"
        )
    print("  (before: never; a plan was failed by fail_stale_plans after its time limit + 10 min)")
    print()
    print("Database restart (pg_ctl restart -m fast), then a job deferred")
    print(f"{'restart s':>10} {'job done after s':>17}")
    for down, done in restarts:
        print(f"{down:>10.2f} {done:>17.2f}")
    print("  (before: the worker exited with status 0 and the job never ran)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
