"""Jobs whose worker died are taken up again, after a short heartbeat timeout.

Every worker beats (procrastinate's `procrastinate_workers.last_heartbeat`); a job still
`doing` whose worker has not beaten for `stalled_after_s` (or whose worker row is gone)
was being run by a process that was killed, lost its machine or its database. Each
worker process checks for such jobs a few times per timeout and queues them again with
procrastinate's own `get_stalled_jobs` / `retry_job`. Without it they stayed `doing`
for ever, and a plan was failed only by `fail_stale_plans`, 10 minutes past its time
limit (about 20 minutes).
"""

from __future__ import annotations

import asyncio
import logging

from procrastinate import App
from procrastinate.jobs import Job

from core.locks import AdvisoryLock

log = logging.getLogger("streetloop.worker")

_LOCK = (AdvisoryLock.STALLED_JOBS, 1)


def _requeue_plan(job: Job, stalled_after_s: float) -> None:
    """A plan is `running` while its job runs: put it back to `queued` before the job is
    retried, or the retried job takes the plan for handled (see dispatch.plans.run_plan)."""
    from dispatch.plans import requeue_orphaned_plan
    from workers.tasks import _resources

    plan_id = job.task_kwargs["plan_id"]
    if not isinstance(plan_id, int):  # the API defers it with the plan's id, an integer
        raise TypeError(f"optimise_plan job {job.id} has plan_id {plan_id!r}, not a plan's id")
    _, sessions, _ = _resources()
    with sessions.begin() as s:
        requeue_orphaned_plan(
            s,
            plan_id,
            note=f"its worker stopped (no heartbeat for {stalled_after_s:g} s); solving it again",
        )


def _requeue_part(job: Job, stalled_after_s: float) -> None:
    """A plan's part is `running` while its job runs: back to `queued` before the job is
    retried (or the plan fails, when that was the part's last allowed run)."""
    from dispatch.parts import requeue_orphaned_part
    from workers.tasks import _resources

    part_id = job.task_kwargs["part_id"]
    if not isinstance(part_id, int):  # the plan's job defers it with the part's id, an integer
        raise TypeError(f"solve_plan_part job {job.id} has part_id {part_id!r}, not a part's id")
    _, sessions, _ = _resources()
    with sessions.begin() as s:
        requeue_orphaned_part(
            s, part_id, note=f"its worker stopped (no heartbeat for {stalled_after_s:g} s)"
        )


# What must happen, per task, before a job of a dead worker runs again (in a thread:
# the domain's code is synchronous). The other tasks are idempotent as they are.
BEFORE_RETRY = {"optimise_plan": _requeue_plan, "solve_plan_part": _requeue_part}


async def retry_stalled_jobs(app: App, stalled_after_s: float) -> list[int]:
    """Queue again the jobs of workers silent for `stalled_after_s`; their ids.

    One process at a time (a transaction-scoped advisory lock, tried, not waited for):
    two checkers that both read a job as stalled could otherwise queue it twice, the
    second time while a live worker already runs it."""
    retried: list[int] = []
    # App.connector is typed as any connector; ours is workers.app's PsycopgConnector, which
    # has a pool.
    async with app.connector.pool.connection() as conn, conn.transaction():  # type: ignore[attr-defined]
        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", _LOCK)
        row = await cur.fetchone()
        if not (row and row[0]):
            return retried
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s):
            assert job.id is not None
            before = BEFORE_RETRY.get(job.task_name)
            if before is not None:
                await asyncio.to_thread(before, job, stalled_after_s)
            await app.job_manager.retry_job(job)
            retried.append(job.id)
            log.warning(
                "job %s %s[%s] was running on worker %s, silent for %g s or more: queued again",
                job.id,
                job.task_name,
                job.task_kwargs,
                job.worker_id,
                stalled_after_s,
            )
    return retried


async def keep_retrying_stalled_jobs(app: App, stalled_after_s: float, every_s: float) -> None:
    """The worker's side loop; a failed check (the database away) is logged, and tried again."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await retry_stalled_jobs(app, stalled_after_s)
        except Exception as exc:  # noqa: BLE001 - the worker itself reports a lost database
            log.warning(
                "checking for jobs of dead workers failed: %s",
                " ".join(str(exc).split())[:200] or type(exc).__name__,
            )
