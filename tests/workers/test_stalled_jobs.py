"""A job whose worker was killed (kill -9) is taken up by another worker after the
heartbeat timeout (STREETLOOP_WORKER_STALLED_AFTER_S, 2 s here); a plan it was solving
goes back to `queued`, audited, so that the retried job solves it. Slow stage: the time
to recovery is printed (bench/worker_recovery.py measures it), not asserted."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import psycopg
import pytest

from tests.factories.photos import jpeg, original_key
from tests.workers.own_cluster import Cluster, defer, job_status, query, start_worker, wait_for

pytestmark = pytest.mark.stage("worker: killed mid-job")

STALLED = {"STREETLOOP_WORKER_STALLED_AFTER_S": "2"}


def _photo(url: str, media: Path) -> int:
    data = jpeg("red")
    sha = hashlib.sha256(data).hexdigest()
    key = original_key(data)
    (media / key).parent.mkdir(parents=True)
    (media / key).write_bytes(data)
    return query(
        url,
        "INSERT INTO photos (kind, sha256, content_type, byte_size, width, height, original_key) "
        "VALUES ('report', %s, 'image/jpeg', %s, 40, 30, %s) RETURNING id",
        sha,
        len(data),
        key,
    )[0][0]


def _running_on(url: str, job_id: int) -> int | None:
    rows = query(
        url, "SELECT worker_id FROM procrastinate_jobs WHERE id = %s AND status = 'doing'", job_id
    )
    return rows[0][0] if rows and rows[0][0] is not None else None


def test_the_job_of_a_killed_worker_is_taken_up_by_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    url = cluster.createdb("stalled_photo", migrated=True, template="migrated")
    photo_id = _photo(url, tmp_path / "media")
    first = start_worker(url, tmp_path / "first.log", extra_env=STALLED, args=("--queues", "media"))
    second = None
    try:
        # The row lock holds the job mid-run (process_photo locks its photo first).
        with psycopg.connect(url) as holder:
            holder.execute("SELECT id FROM photos WHERE id = %s FOR UPDATE", (photo_id,))
            job = defer(url, "process_photo", photo_id=photo_id)
            first_id = wait_for(
                lambda: _running_on(url, job), 30, "the first worker to start the job"
            )
            second = start_worker(
                url, tmp_path / "second.log", extra_env=STALLED, args=("--queues", "media")
            )
            wait_for(
                lambda: query(
                    url, "SELECT count(*) FROM procrastinate_workers WHERE id <> %s", first_id
                )[0][0],
                30,
                "the second worker to register",
            )
            first.kill()  # SIGKILL: no goodbye, no unregistering
            killed = time.monotonic()
            holder.rollback()
        wait_for(
            lambda: job_status(url, job) == "succeeded", 30, "the second worker to run the job"
        )
        recovered = time.monotonic() - killed
        assert query(url, "SELECT state FROM photos WHERE id = %s", photo_id)[0][0] == "ready"
        # Two runs counted: the killed one (by the retry) and the finished one.
        assert (
            query(url, "SELECT attempts FROM procrastinate_jobs WHERE id = %s", job)[0][0] == 2
        ), second.output()
        assert "queued again" in second.output()
        assert second.stop() == 0, second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()
    print(
        f"\n[slow stage] job of a killed worker done {recovered:.2f} s after the kill (timeout 2 s); "
        f"test {time.monotonic() - started:.1f} s"
    )


def test_a_plan_left_running_by_a_dead_worker_is_queued_again_with_its_event(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step before the retry, on its own: the retried job must find the plan queued."""
    from procrastinate import App, PsycopgConnector

    from workers import tasks
    from workers.stalled import retry_stalled_jobs

    url = cluster.createdb("stalled_plan", migrated=True, template="migrated")
    plan_id = query(
        url,
        "INSERT INTO route_plans (plan_date, status, time_limit_s, version) "
        "VALUES (current_date, 'running', 5, 1) RETURNING id",
    )[0][0]
    # A job `doing` on a worker whose last heartbeat is a minute old: a dead worker.
    worker = query(
        url,
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 minute') RETURNING id",
    )[0][0]
    job = defer(url, "optimise_plan", plan_id=plan_id)
    query(
        url,
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s",
        worker,
        job,
    )

    async def check() -> list[int]:
        async with App(connector=PsycopgConnector(conninfo=url)).open_async() as app:
            return await retry_stalled_jobs(app, stalled_after_s=30)

    monkeypatch.setenv("DATABASE_URL", url)  # the worker's own sessions (workers.tasks._resources)
    tasks.close_resources()
    try:
        assert asyncio.run(check()) == [job]
    finally:
        tasks.close_resources()
    assert job_status(url, job) == "todo"
    assert query(url, "SELECT status FROM route_plans WHERE id = %s", plan_id)[0][0] == "queued"
    events = query(
        url,
        "SELECT from_status, to_status, note FROM status_events WHERE entity = 'route_plan' AND entity_id = %s",
        plan_id,
    )
    assert events == [
        ("running", "queued", "its worker stopped (no heartbeat for 30 s); solving it again")
    ]
