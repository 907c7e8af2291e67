"""The worker process against a PostgreSQL of its own that is restarted under it.

Slow stage (a cluster is made once per session, see conftest.py): its time is printed at
the end of the run. The shared dev cluster is never restarted; everything talks to 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.workers.own_cluster import (
    Cluster,
    defer,
    query,
    start_worker,
    wait_for,
    workers_registered,
)
from tests.workers.own_cluster import (
    job_status as _status,
)

pytestmark = pytest.mark.stage("worker: database restart")


def _registered(url: str) -> bool:
    return workers_registered(url) > 0


def _defer(url: str, task: str, **kwargs: object) -> int:
    return defer(url, task, **kwargs)


def test_worker_goes_on_after_the_database_restarts(cluster: Cluster, tmp_path: Path) -> None:
    started = time.monotonic()
    url = cluster.createdb("restart_me", migrated=True, template="migrated")
    worker = start_worker(
        url, tmp_path / "worker.log", extra_env={"STREETLOOP_WORKER_RECONNECT_MAX_S": "1"}
    )
    try:
        wait_for(lambda: _registered(url), 30, "the worker to register")
        assert _status(url, _defer(url, "fail_stale_plans", timestamp=1)) is not None
        restarted = time.monotonic()
        cluster.restart()
        back = time.monotonic()
        # Deferred after the restart: the worker must pick it up by itself.
        job = _defer(url, "fail_stale_plans", timestamp=2)
        wait_for(
            lambda: _status(url, job) == "succeeded",
            30,
            "the job deferred after the restart to run",
        )
        ran = time.monotonic()
        assert worker.proc.poll() is None, worker.output()
        assert "worker lost the database" in worker.output()
        assert worker.stop() == 0, worker.output()  # SIGTERM is a clean stop
    finally:
        worker.kill()
    print(
        f"\n[slow stage] restart took {back - restarted:.2f} s; the job deferred after it ran "
        f"{ran - back:.2f} s after the database was back; test {time.monotonic() - started:.1f} s"
    )


def test_a_crashed_worker_exits_non_zero(cluster: Cluster, tmp_path: Path) -> None:
    """A side task failing for another reason than a lost database (here the periodic
    deferrer, on a schema that lacks its function) is a crash, not a clean stop."""
    started = time.monotonic()
    url = cluster.createdb("broken_schema", migrated=True, template="migrated")
    query(url, "DROP FUNCTION procrastinate_defer_periodic_job_v2")
    worker = start_worker(url, tmp_path / "worker.log")
    try:
        status = worker.proc.wait(30)
    finally:
        worker.kill()
    assert status == 1, worker.output()
    assert "worker crashed" in worker.output()
    print(f"\n[slow stage] crashed worker exited {status} after {time.monotonic() - started:.1f} s")


def test_a_worker_waiting_for_a_database_that_is_down_stops_cleanly_on_sigterm(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.createdb("down_then_stop", migrated=True, template="migrated")
    cluster.stop()
    try:
        worker = start_worker(
            url, tmp_path / "worker.log", extra_env={"STREETLOOP_WORKER_RECONNECT_MAX_S": "1"}
        )
        try:
            wait_for(
                lambda: "worker lost the database" in worker.output(),
                30,
                "the worker to report the database down",
            )
            assert worker.proc.poll() is None, worker.output()
            assert worker.stop(timeout=10) == 0, worker.output()
        finally:
            worker.kill()
    finally:
        cluster.start()
