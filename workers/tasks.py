from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import cache

from procrastinate import App, JobContext, RetryStrategy, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import JSONDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.media_links import copy_job_lock
from core.models import MediaLink, Photo, ServiceRequest
from core.photos import process_photo as process_photo_in
from core.settings import Settings
from core.storage import Storage, storage_from_settings
from workers.app import app

log = logging.getLogger(__name__)


@cache
def _resources() -> tuple[Settings, sessionmaker[Session], Storage]:
    """The worker process's settings, database sessions and file storage, made once."""
    settings = Settings.from_env()
    engine = make_engine(settings.database_url, connect_timeout_s=settings.db_connect_timeout_s)
    return settings, make_sessionmaker(engine), storage_from_settings(settings)


def close_resources() -> None:
    """Release the worker's database pool (tests, and a clean shutdown)."""
    if _resources.cache_info().currsize:
        _, sessions, _ = _resources()
        sessions.kw["bind"].dispose()
        _resources.cache_clear()
        _travel.cache_clear()


@cache
def _travel():  # noqa: ANN202
    """One travel-time provider per worker process: its matrix cache and Valhalla actors are reused."""
    from geo.travel import provider_from_settings

    settings = _resources()[0]
    return provider_from_settings(
        settings.road_data_dir, settings.detour_factor, settings.speed_kmh
    )


@app.task(name="optimise_plan", queue="plans")
def optimise_plan(plan_id: int) -> None:
    """Solve a queued plan. No retry: a failed plan says why, and the dispatcher asks again."""
    from dispatch.plans import DayRules, PartJobs, run_plan

    settings, sessions, _ = _resources()
    rules = DayRules(
        lead=timedelta(minutes=settings.plan_lead_minutes),
        fix_max_age=timedelta(minutes=settings.fix_max_age_minutes),
    )
    # Progress every second: what the console polls while the dispatcher watches.
    run_plan(
        sessions,
        plan_id,
        travel=_travel(),
        tz=settings.tz,
        workers=settings.solver_workers,
        rules=rules,
        progress_every_s=1.0,
        parts=PartJobs(defer=_defer_parts, min_split_jobs=settings.plan_split_min_jobs),
    )


# Defers jobs on a connection it is given, inside that connection's transaction: a
# task-less app whose connector is never opened (it needs no pool of its own).
_in_transaction = App(connector=SyncPsycopgConnector())


# A started plan's parts go before new plans (procrastinate runs higher first): a worker
# that frees up finishes a day under way before it builds another.
PART_PRIORITY = 10


def _defer_parts(session: Session, part_ids: list[int]) -> None:
    """One `solve_plan_part` job per part, in the session's transaction: the parts and
    their jobs are committed together, or neither is."""
    conn = session.connection().connection.driver_connection
    jobs: list[JSONDict] = [{"part_id": i} for i in part_ids]
    if jobs:
        _in_transaction.configure_task(
            name="solve_plan_part", queue="plans", priority=PART_PRIORITY, connection=conn
        ).batch_defer(*jobs)


# No RetryStrategy: a part's runs are counted in its row alone (dispatch.parts), which
# queues the next run itself, in the transaction that counts the failed one, so a run
# that fails before its claim is stored is counted too. A killed worker's job is queued
# again by the stalled-job check (workers/stalled.py).
@app.task(name="solve_plan_part", queue="plans", priority=PART_PRIORITY)
def solve_plan_part(part_id: int) -> None:
    """Solve one part of a split plan (dispatch.parts) in a process of its own, with its
    share of the plan's time limit; the job that finishes the last part stores the plan."""
    from dispatch.parts import run_part

    _, sessions, _ = _resources()
    run_part(sessions, part_id, travel=_travel(), requeue=_defer_parts)


@app.task(
    name="process_photo", queue="media", retry=RetryStrategy(max_attempts=5, exponential_wait=5)
)
def process_photo(photo_id: int) -> None:
    _, sessions, storage = _resources()
    with sessions.begin() as session:
        process_photo_in(session, storage, photo_id)


@app.task(name="copy_media_link", queue="media")
def copy_media_link(link_id: int) -> None:
    """Copy a report's photo link from a host STREETLOOP_MEDIA_COPY_HOSTS allows. No retry
    strategy: the link counts its own tries (see workers.media_copy), and the pending sweep
    queues one that failed on our side again. Deferred with `copy_job_lock(link_id)`."""
    from workers.media_copy import copy_link

    settings, sessions, storage = _resources()
    copy_link(sessions, storage, settings, link_id)


@app.periodic(cron="*/10 * * * *")
@app.task(
    name="sweep_pending_photos",
    queue="media",
    queueing_lock="sweep_pending_photos",
    pass_context=True,
)
async def sweep_pending_photos(context: JobContext, timestamp: int) -> None:
    """Re-queue photos, and photo links to copy, still pending after 10 minutes (a lost defer
    must not lose a photo)."""
    _, sessions, _ = _resources()
    cutoff = datetime.now(UTC) - timedelta(minutes=10)
    with sessions() as session:
        ids = session.scalars(
            select(Photo.id).where(Photo.state == "pending", Photo.created_at < cutoff)
        ).all()
        # Photo links whose copy job was lost (a defer that never happened), whose try
        # failed on our side, or whose worker was killed mid-fetch: the last claim's time,
        # else the request's, stands for the link's. The job counts the tries and gives up
        # after a few, so this never queues a link forever.
        links = session.scalars(
            select(MediaLink.id)
            .join(ServiceRequest, ServiceRequest.id == MediaLink.service_request_id)
            .where(
                MediaLink.copy_state == "pending",
                func.coalesce(MediaLink.copy_claimed_at, ServiceRequest.requested_at) < cutoff,
            )
        ).all()
    for photo_id in ids:
        await context.app.configure_task(name="process_photo").defer_async(photo_id=photo_id)
    waiting = 0
    for link_id in links:
        try:
            await context.app.configure_task(
                name="copy_media_link", queueing_lock=copy_job_lock(link_id)
            ).defer_async(link_id=link_id)
        except AlreadyEnqueued:
            waiting += 1  # its job is still in the queue: one is enough
    if ids or links:
        log.info(
            "re-queued %d pending photos and %d photo links to copy (%d more already waiting)",
            len(ids),
            len(links) - waiting,
            waiting,
        )


@app.periodic(cron="23 * * * *")
@app.task(name="sweep_orphan_files", queue="media", queueing_lock="sweep_orphan_files")
def sweep_orphan_files(timestamp: int) -> None:
    """Every hour: photo files a process wrote but never committed a row for (it was
    killed in between) are deleted once older than STREETLOOP_ORPHAN_FILE_GRACE_MINUTES."""
    from core.photos import sweep_orphan_files as sweep

    settings, sessions, storage = _resources()
    done = sweep(sessions, storage, grace=timedelta(minutes=settings.orphan_file_grace_minutes))
    if done.removed or done.busy:
        log.warning(
            "orphan photo files: %d removed, %d named by a row, %d younger than %d min, %d unknown names "
            "left alone%s; removed: %s",
            len(done.removed),
            done.kept,
            done.young,
            settings.orphan_file_grace_minutes,
            done.unknown,
            "; stopped early, uploads held the lock" if done.busy else "",
            ", ".join(done.removed[:20]),
        )
    else:
        log.info(
            "orphan photo files: none (%d named by a row, %d young, %d unknown names)",
            done.kept,
            done.young,
            done.unknown,
        )


@app.task(name="deliver_notifications", queue="notify")
def deliver_notifications() -> None:
    """Send the due outbox rows. Queued after every commit that wrote some; no retry
    strategy: each row keeps its own attempts and backoff, and the sweep comes by anyway.
    Two of these at once are fine (each row is leased to one of them)."""
    from workers.delivery import deliver_due

    settings, sessions, _ = _resources()
    deliver_due(sessions, settings)


@app.periodic(cron="* * * * *")
@app.task(name="sweep_notifications", queue="notify", queueing_lock="sweep_notifications")
def sweep_notifications(timestamp: int) -> None:
    """Every minute: retries whose backoff has passed, leases of dead workers, and rows
    whose delivery job was never queued (a lost defer must not lose a message)."""
    from workers.delivery import deliver_due

    settings, sessions, _ = _resources()
    deliver_due(sessions, settings)


@app.periodic(cron="*/5 * * * *")
@app.task(name="fail_stale_plans", queue="plans", queueing_lock="fail_stale_plans")
def fail_stale_plans(timestamp: int) -> None:
    from dispatch.plans import fail_stale_plans as fail

    _, sessions, _ = _resources()
    with sessions.begin() as s:
        failed = fail(s)
    if failed:
        log.warning("plans %s were running without a worker; marked failed", failed)


@app.periodic(cron="7 * * * *")
@app.task(name="make_shifts", queue="plans", queueing_lock="make_shifts")
def make_shifts(timestamp: int) -> None:
    """Every hour (a missed night must not leave tomorrow without crews): the weekly
    patterns make the shifts of the coming days."""
    from core.shifts import materialize

    settings, sessions, _ = _resources()
    with sessions.begin() as s:
        made = materialize(
            s,
            tz=settings.tz,
            start=datetime.now(settings.tz).date(),
            days=settings.shift_horizon_days,
        )
    if made:
        log.info("made %d shifts from weekly patterns", made)


@app.periodic(cron="*/2 * * * *")
@app.task(name="refresh_promises", queue="plans", queueing_lock="refresh_promises")
def refresh_promises(timestamp: int) -> None:
    """Every two minutes: today's routes projected from the crews' progress and fixes;
    residents whose promised time slips too far are told (once)."""
    from dispatch.promises import refresh_promises as refresh

    settings, sessions, _ = _resources()
    with sessions.begin() as s:
        done = refresh(
            s,
            travel=_travel(),
            tz=settings.tz,
            slip=timedelta(minutes=settings.promise_slip_minutes),
            fix_max_age=timedelta(minutes=settings.fix_max_age_minutes),
        )
    if done.told:
        log.info(
            "%d of %d stops late; %d residents told their promise slipped",
            done.late,
            done.stops,
            done.told,
        )


@app.periodic(cron="41 * * * *")
# `lock`: a run that takes longer than the hour (a first run over years of history) is
# not joined by the next one.
@app.task(
    name="purge_personal_data",
    queue="plans",
    queueing_lock="purge_personal_data",
    lock="purge_personal_data",
)
def purge_personal_data(timestamp: int) -> None:
    """Every hour (each part is idempotent, and a worker down at the one nightly run must
    not keep the data a day longer): crews' GPS fixes older than
    STREETLOOP_RETAIN_TRACKS_DAYS, reporters' contact details of requests closed more
    than STREETLOOP_RETAIN_CONTACT_DAYS ago; audited (see `core.retention`)."""
    from core.retention import purge

    settings, sessions, _ = _resources()
    done = purge(
        sessions,
        tracks_days=settings.retain_tracks_days,
        contact_days=settings.retain_contact_days,
        tz=settings.tz,
    )
    if done.fixes_deleted or done.requests:
        log.info(
            "retention: %d GPS fixes of %d crews, the contact details of %d requests deleted",
            done.fixes_deleted,
            len(done.crews),
            len(done.requests),
        )
