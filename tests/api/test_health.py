"""/healthz and /readyz: unauthenticated probes; readiness answers 503 (quickly) when the
database or the job queue does not."""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from core.settings import Settings


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _app_on(settings: Settings, database_url: str, sessions: Any, queue: Any):  # noqa: ANN202
    from api import create_app

    return create_app(dataclasses.replace(settings, database_url=database_url), sessions=sessions, queue=queue)


def test_healthz_says_the_process_is_up(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_queue(client: Any) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert {k: body[k] for k in ("status", "database", "queue")} == {"status": "ready", "database": "ok", "queue": "ok"}
    assert isinstance(body["workers"], int)


def test_readyz_is_503_when_the_database_is_down_and_healthz_still_200(settings: Settings, sessions: Any, queue: Any) -> None:
    down = make_url(settings.database_url).set(host="127.0.0.1", port=_closed_port()).render_as_string(hide_password=False)
    client = _app_on(settings, down, sessions, queue).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["code"] == 503 and body["message"] == "not ready: database check failed"
    assert "refused" in body["errors"]["database"][0] or "failed" in body["errors"]["database"][0]
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_the_queue_tables_are_missing(settings: Settings, sessions: Any, queue: Any) -> None:
    # The server's maintenance database answers SELECT 1 but has no procrastinate schema.
    bare = make_url(settings.database_url).set(database="postgres").render_as_string(hide_password=False)
    r = _app_on(settings, bare, sessions, queue).test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["message"] == "not ready: queue check failed"
    assert "procrastinate_jobs" in r.get_json()["errors"]["queue"][0]


def test_readyz_does_not_hang_on_a_locked_queue(client: Any, engine: Engine) -> None:
    """A query that would wait for ever (here behind a lock) is cut by the statement timeout."""
    from api.health import READY_TIMEOUT_S

    with engine.connect() as other:
        other.execute(text("LOCK TABLE procrastinate_jobs IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        r = client.get("/readyz")
        waited = time.monotonic() - started
        other.rollback()
    assert r.status_code == 503
    assert "statement timeout" in r.get_json()["errors"]["queue"][0]
    assert waited < READY_TIMEOUT_S * 10  # only that it returned, not how fast (no timing assertions)


def test_probes_are_in_the_openapi_document_without_security(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
    assert "200" in paths["/healthz"]["get"]["responses"]
    assert "security" not in paths["/readyz"]["get"] and "security" not in paths["/healthz"]["get"]
