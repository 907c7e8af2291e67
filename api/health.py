"""Liveness and readiness for whatever supervises the web processes (systemd, Kubernetes,
a load balancer): `/healthz` and `/readyz`, unauthenticated and tiny.

Readiness opens a connection of its own rather than taking one from the app's pool: a
probe must say whether the database answers *now*, within a few seconds, and must not
queue behind busy requests for the pool's 30 s checkout timeout. Its connect and
statement timeouts bound the answer to a few seconds even when the database hangs.

The probes are public, so readiness gives away nothing and costs little: the answer is a
short fixed reason (the driver's words, which name the database's address, go to the log,
once per change of state), and each process checks at most once per READY_CACHE_S, one
check at a time, so a flood of probes holds at most one database connection per process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.db import settings
from api.errors import ErrorSchema, error_response
from core.settings import libpq_url

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Health and readiness probes (no authentication).")

# Seconds: to connect, and for each query. A probe's answer must come well within the
# interval supervisors call it at (Kubernetes: 10 s, with a 1 s timeout by default).
READY_TIMEOUT_S = 2
# Seconds a readiness answer is reused by the probes of this process.
READY_CACHE_S = 2.0
_clock = time.monotonic


class HealthSchema(Schema):
    status = fields.String(metadata={"description": "`ok`: the process is up and answers"})


class ReadySchema(Schema):
    status = fields.String(metadata={"description": "`ready`"})
    database = fields.String(metadata={"description": "`ok`: a connection runs `SELECT 1`"})
    queue = fields.String(
        metadata={"description": "`ok`: the job queue's tables (procrastinate) answer"}
    )


@blp.route("/healthz")
@blp.response(200, HealthSchema)
@blp.doc(operationId="getHealth")
def healthz() -> dict[str, Any]:
    """The process is up. No database access: a database outage must not get every web
    process restarted (that is what readiness is for)."""
    return {"status": "ok"}


@dataclass(frozen=True)
class _Answer:
    failed: str | None = None  # "database" or "queue"
    reason: str = ""  # the fixed word the client gets
    detail: str = ""  # the driver's first line, for the log only


class _Readiness:
    """One per app (so one per process): the last answer, when it was found, and the lock
    that lets one check run at a time while other probes wait for its answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: _Answer | None = None
        self.at = 0.0
        self.logged: str | None = None  # the state last logged: None (ready) or the failed check

    def fresh(self) -> _Answer | None:
        if self.answer is not None and _clock() - self.at < READY_CACHE_S:
            return self.answer
        return None

    def get(self, database_url: str) -> _Answer:
        answer = self.fresh()
        if answer is not None:
            return answer
        # Wait for a check under way rather than start a second one; bounded, since a check is.
        if not self.lock.acquire(timeout=4 * READY_TIMEOUT_S + 1):
            # A check that hangs this long says the answer is no: never an old "ready".
            return self.fresh() or _Answer(
                "database", "unavailable", "another readiness check is still running"
            )
        try:
            answer = self.fresh()
            if answer is None:
                answer = _check(database_url)
                self.answer, self.at = answer, _clock()
                self._log(answer)
            return answer
        finally:
            self.lock.release()

    def _log(self, answer: _Answer) -> None:
        if answer.failed == self.logged:
            return
        if answer.failed:
            log.warning("not ready: %s check failed: %s", answer.failed, answer.detail)
        else:
            log.info("ready again: the database and the job queue answer")
        self.logged = answer.failed


def _readiness() -> _Readiness:
    return current_app.extensions.setdefault("streetloop.readiness", _Readiness())


@blp.route("/readyz")
@blp.response(200, ReadySchema)
@blp.alt_response(
    503,
    schema=ErrorSchema,
    description="Not ready: `message` says which check failed (database or queue), `errors` "
    "gives `unavailable` or `timed out`; answered within about "
    f"{2 * READY_TIMEOUT_S} s, and reused by this process for {READY_CACHE_S:g} s",
)
@blp.doc(operationId="getReadiness")
def readyz() -> dict[str, Any] | Response:
    """The database and the job queue are reachable: take this process out of rotation
    (not restart it) while this answers 503."""
    answer = _readiness().get(settings().database_url)
    if answer.failed:
        return error_response(
            503, f"not ready: {answer.failed} check failed", {answer.failed: [answer.reason]}
        )
    return {"status": "ready", "database": "ok", "queue": "ok"}


def _check(database_url: str) -> _Answer:
    try:
        conn = psycopg.connect(
            libpq_url(database_url), connect_timeout=READY_TIMEOUT_S, autocommit=True
        )
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
        except psycopg.Error as exc:
            return _unready("queue", exc)
    return _Answer()


def _unready(check: str, exc: psycopg.Error) -> _Answer:
    # The driver's first line, for the log: enough to act on, no query text, no connection string.
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    reason = "timed out" if isinstance(exc, psycopg.errors.QueryCanceled) else "unavailable"
    return _Answer(check, reason, detail)
