"""Liveness and readiness for whatever supervises the web processes (systemd, Kubernetes,
a load balancer): `/healthz` and `/readyz`, unauthenticated and tiny.

Readiness opens a connection of its own rather than taking one from the app's pool: a
probe must say whether the database answers *now*, within a few seconds, and must not
queue behind busy requests for the pool's 30 s checkout timeout. Its connect and
statement timeouts bound the answer to a few seconds even when the database hangs."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.db import settings
from api.errors import error_response
from core.settings import libpq_url

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Health and readiness probes (no authentication).")

# Seconds: to connect, and for each query. A probe's answer must come well within the
# interval supervisors call it at (Kubernetes: 10 s, with a 1 s timeout by default).
READY_TIMEOUT_S = 2


class HealthSchema(Schema):
    status = fields.String(metadata={"description": "`ok`: the process is up and answers"})


class ReadySchema(Schema):
    status = fields.String(metadata={"description": "`ready`"})
    database = fields.String(metadata={"description": "`ok`: a connection runs `SELECT 1`"})
    queue = fields.String(metadata={"description": "`ok`: the job queue's tables (procrastinate) answer"})
    workers = fields.Integer(metadata={
        "description": "workers with a recent heartbeat; 0 does not make the API unready (jobs wait in the queue)"})


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz() -> dict[str, Any]:
    """The process is up. No database access: a database outage must not get every web
    process restarted (that is what readiness is for)."""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadySchema)
@blp.alt_response(503, response="SERVICE_UNAVAILABLE",
                  description="Not ready: `message` says which check failed (database or queue), "
                              f"after at most about {2 * READY_TIMEOUT_S} s")
def readyz() -> dict[str, Any] | Response:
    """The database and the job queue are reachable: take this process out of rotation
    (not restart it) while this answers 503."""
    cfg = settings()
    try:
        conn = psycopg.connect(libpq_url(cfg.database_url), connect_timeout=READY_TIMEOUT_S, autocommit=True)
    except psycopg.Error as exc:
        return _unready("database", exc)
    with conn:
        try:
            conn.execute(f"SET statement_timeout = {READY_TIMEOUT_S * 1000}")
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return _unready("database", exc)
        try:
            conn.execute("SELECT 1 FROM procrastinate_jobs LIMIT 1")
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => %s)",
                (cfg.worker_stalled_after_s,),
            ).fetchone()
        except psycopg.Error as exc:
            return _unready("queue", exc)
    return {"status": "ready", "database": "ok", "queue": "ok", "workers": row[0] if row else 0}


def _unready(check: str, exc: psycopg.Error) -> Response:
    # The driver's first line: enough to act on, no query text, no connection string.
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    log.warning("not ready: %s: %s", check, reason)
    return error_response(503, f"not ready: {check} check failed", {check: [reason]})
