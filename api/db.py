"""One SQLAlchemy session per HTTP request; the view commits, teardown rolls back the rest.

`session()` is the primary's: every write, and every read a client makes of what it (or
anyone) has just written. `report_session()` is for the reads that may trail the writes
by up to STREETLOOP_REPLICA_MAX_LAG_S (CitiStat, the open-data export, Open311's request lists): the read
replica's when one is configured and fit (core/replica.py), else the same primary session."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from core.db import after_commit
from core.notifications import JOB_QUEUE
from core.service_area import AreaConfig
from core.settings import Settings


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)


def session() -> Session:
    if "db_session" not in g:
        s = current_app.extensions["streetloop.sessions"]()
        # The domain queues follow-up jobs through it after commit (notification delivery).
        s.info[JOB_QUEUE] = current_app.extensions["streetloop.queue"]
        g.db_session = s
    return g.db_session


def report_session() -> Session:
    """The session of a read that may trail the writes by up to STREETLOOP_REPLICA_MAX_LAG_S:
    the replica's when DATABASE_REPLICA_URL is set and the replica is fit, else `session()`.
    Which one answered is in `g.read_from` ("replica" or "primary")."""
    if "report_session" not in g:
        replica = current_app.extensions.get("streetloop.replica")
        s = replica.session(session) if replica is not None else None
        if s is None:
            g.read_from = "primary"
            g.report_session = session()
        else:
            g.read_from = "replica"
            g.replica_session = g.report_session = s
    return g.report_session


def settings() -> Settings:
    return current_app.extensions["streetloop.settings"]


def service_area() -> AreaConfig:
    """The tolerance and the setting's polygon, read once when the app was built."""
    return current_app.extensions["streetloop.service_area"]


def day_rules():  # noqa: ANN201
    """How plans of a day under way start (lead time, fresh-fix age), from the settings."""
    from datetime import timedelta

    from dispatch.plans import DayRules

    cfg = settings()
    return DayRules(
        lead=timedelta(minutes=cfg.plan_lead_minutes),
        fix_max_age=timedelta(minutes=cfg.fix_max_age_minutes),
    )


def base_url() -> str:
    """Absolute base for links handed to clients (configured, else this request's host)."""
    from flask import request

    return settings().public_base_url or request.host_url.rstrip("/")


def media_storage():  # noqa: ANN201
    """Where photos are kept (local disk or S3), one client per app."""
    if "streetloop.storage" not in current_app.extensions:
        from core.storage import storage_from_settings

        current_app.extensions["streetloop.storage"] = storage_from_settings(settings())
    return current_app.extensions["streetloop.storage"]


def travel():  # noqa: ANN201
    """The app's travel-time provider (its matrix cache is shared by the app's requests)."""
    if "streetloop.travel" not in current_app.extensions:
        from geo.travel import provider_from_settings

        cfg = settings()
        current_app.extensions["streetloop.travel"] = provider_from_settings(
            cfg.road_data_dir, cfg.detour_factor, cfg.speed_kmh
        )
    return current_app.extensions["streetloop.travel"]


def defer_after_commit(
    s: Session, task_name: str, *, queueing_lock: str | None = None, **kwargs: Any
) -> None:
    """Queue a job once this transaction commits, so the worker finds the rows it needs
    (with `queueing_lock`: not when a job of that lock is still waiting)."""
    queue = current_app.extensions["streetloop.queue"]
    after_commit(s, lambda: queue.defer(task_name, queueing_lock=queueing_lock, **kwargs))


def _close(exc: BaseException | None) -> None:
    g.pop("report_session", None)
    for key in ("replica_session", "db_session"):
        s = g.pop(key, None)
        if s is not None:
            s.close()
