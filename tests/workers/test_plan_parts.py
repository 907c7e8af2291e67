"""A split day's parts on two real worker processes against one database: (a) two parts
run at the same time in different worker processes, and (b) a part whose worker is
killed (SIGKILL) mid-solve is run again by the other worker, and the plan is still
`ready`. The intervals and processes are the ones the part jobs record themselves
(`plan_parts.started_at`, `finished_at`, `pid`). Slow stage: its time is printed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.settings import normalize_database_url
from dispatch.build import Scope
from dispatch.plans import PlanRequest, request_plan
from tests import factories as f
from tests.factories.plans import DAY, crew_on_shift
from tests.workers.own_cluster import (
    Cluster,
    WorkerProcess,
    defer,
    query,
    start_worker,
    wait_for,
    workers_registered,
)

pytestmark = pytest.mark.stage("worker: plan parts on two workers")

# Generous: a loaded 2-core CI is slow to start workers and solve, and a pass is quick.
WAIT_S = 180

ENV = {
    # Well above the 0.5 s heartbeat, so a loaded 2-core CI does not take a live worker
    # for dead (a false stall would run a part twice, and the count of runs below is exact).
    "STREETLOOP_WORKER_STALLED_AFTER_S": "5",
    "STREETLOOP_PLAN_SPLIT_MIN_JOBS": "1",
    "STREETLOOP_TIMEZONE": "Europe/Andorra",
    # Two parts at once: each part gets the plan's whole time limit.
    "STREETLOOP_SOLVER_WORKERS": "2",
}


def _seed(url: str) -> None:
    """Tomorrow: a pothole crew and a graffiti crew (two parts), three jobs each."""
    engine = make_engine(normalize_database_url(url))
    try:
        with Session(engine) as db:
            depot = f.depot(db)
            f.service_type(db)
            f.service_type(db, "graffiti", skill="graffiti", agency="Sanitation")
            crew_on_shift(db, "pothole-1", ["asphalt"], depot)
            crew_on_shift(db, "graffiti-1", ["graffiti"], depot, agency="Sanitation")
            for i in range(6):
                lon, lat = f.offset(f.LON, f.LAT, 400 * (i + 1))
                f.report(db, "pothole" if i % 2 == 0 else "graffiti", lon=lon, lat=lat)
            db.commit()
    finally:
        engine.dispose()


def _plan(url: str, time_limit_s: int) -> int:
    """POST /plans, as its view does it: the plan, then its job."""
    engine = make_engine(normalize_database_url(url))
    try:
        with Session(engine) as db:
            plan = request_plan(
                db, PlanRequest(DAY, Scope(), time_limit_s=time_limit_s), actor=f.SYSTEM
            )
            db.commit()
            plan_id = plan.id
    finally:
        engine.dispose()
    defer(url, "optimise_plan", plan_id=plan_id)
    return plan_id


def _status(url: str, plan_id: int) -> str:
    return query(url, "SELECT status FROM route_plans WHERE id = %s", plan_id)[0][0]


def _ready(url: str, plan_id: int) -> bool:
    status = _status(url, plan_id)
    assert status != "failed", query(url, "SELECT error FROM route_plans WHERE id = %s", plan_id)
    return status == "ready"


def _parts(url: str, plan_id: int) -> list[tuple]:
    return query(
        url,
        "SELECT position, status, pid, started_at, finished_at, attempts, id FROM plan_parts "
        "WHERE plan_id = %s ORDER BY position",
        plan_id,
    )


def _events(url: str, plan_id: int) -> list[tuple]:
    return query(
        url,
        "SELECT from_status, to_status FROM status_events "
        "WHERE entity = 'route_plan' AND entity_id = %s ORDER BY id",
        plan_id,
    )


def _children(pid: int) -> list[int]:
    """The process's children, from every one of its threads (Linux's /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Running still: a zombie (ended, not yet reaped by its new parent) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_parts_run_at_once_on_two_workers_and_a_killed_part_runs_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    url = cluster.createdb("plan_parts", migrated=True, template="migrated")
    _seed(url)
    args = ("--queues", "plans", "--concurrency", "1")
    workers: dict[int, WorkerProcess] = {}
    for name in ("first", "second"):
        w = start_worker(url, tmp_path / f"{name}.log", extra_env=ENV, args=args)
        workers[w.proc.pid] = w
    try:
        wait_for(lambda: workers_registered(url) == 2, WAIT_S, "both workers to register")

        # (a) Two parts at the same time, in different worker processes.
        first = _plan(url, time_limit_s=5)
        wait_for(lambda: _ready(url, first), WAIT_S, "the first plan to be ready")
        parts = _parts(url, first)
        assert len(parts) == 2 and all(p[1] == "done" for p in parts)
        pids = {p[2] for p in parts}
        assert pids == set(workers), (pids, set(workers))
        # The intervals overlap: each started before the other finished.
        assert max(p[3] for p in parts) < min(p[4] for p in parts), parts
        assert _events(url, first) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "ready"),
        ]

        # (b) A part whose worker is killed mid-solve is run again by the other one.
        second = _plan(url, time_limit_s=8)
        wait_for(
            lambda: (
                [p for p in _parts(url, second) if p[1] == "running"] == _parts(url, second)
                and len(_parts(url, second)) == 2
            ),
            WAIT_S,
            "both parts of the second plan to run",
        )
        victim_part, _, victim_pid, *_, victim_part_id = _parts(url, second)[0]
        victim = workers.pop(victim_pid)
        # Its solving process (and whatever else it started), read before the kill.
        children = _children(victim_pid)
        assert children, f"worker {victim_pid} solves its part in a process of its own"
        victim.kill()  # SIGKILL: no goodbye; its solving process dies with it
        killed = time.monotonic()
        wait_for(lambda: not any(_alive(c) for c in children), 30, "the victim's children to end")
        (survivor,) = workers.values()
        wait_for(lambda: _ready(url, second), WAIT_S, "the second plan to be ready")
        recovered = time.monotonic() - killed
        again = {p[0]: p for p in _parts(url, second)}
        assert again[victim_part][1] == "done" and again[victim_part][5] == 2
        assert again[victim_part][2] == survivor.proc.pid
        assert _events(url, second) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "ready"),
        ]
        stats = query(url, "SELECT stats FROM route_plans WHERE id = %s", second)[0][0]
        assert stats["scheduled"] == 6 and stats["feasible"] is True
        # The stalled-job check queued the victim's part's job again, not some other job.
        requeued = f"solve_plan_part[{{'part_id': {victim_part_id}}}] was running on worker"
        assert requeued in survivor.output(), survivor.output()
        assert survivor.stop() == 0, survivor.output()
    finally:
        for w in workers.values():
            w.kill()
    print(
        f"\n[slow stage] plan parts: killed part's plan ready {recovered:.1f} s after the kill "
        f"(8 s limit, 5 s heartbeat timeout); test {time.monotonic() - started:.1f} s"
    )
