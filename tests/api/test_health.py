"""/healthz and /readyz: unauthenticated probes; readiness answers 503 (quickly) when the
database or the job queue does not."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
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

    return create_app(
        dataclasses.replace(settings, database_url=database_url), sessions=sessions, queue=queue
    )


def test_healthz_says_the_process_is_up(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_readyz_checks_the_database_and_the_queue(client: Any) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert {k: body[k] for k in ("status", "database", "queue")} == {
        "status": "ready",
        "database": "ok",
        "queue": "ok",
    }
    # How many workers are alive is nobody's business but ours: not in the public answer.
    assert "workers" not in body


def test_readyz_is_503_when_the_database_is_down_and_healthz_still_200(
    settings: Settings, sessions: Any, queue: Any
) -> None:
    down = (
        make_url(settings.database_url)
        .set(host="127.0.0.1", port=_closed_port())
        .render_as_string(hide_password=False)
    )
    client = _app_on(settings, down, sessions, queue).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["code"] == 503 and body["message"] == "not ready: database check failed"
    # A short fixed reason: the driver's words name the database's address, and they go to the log only.
    assert body["errors"] == {"database": ["unavailable"]}
    assert "127.0.0.1" not in r.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_the_queue_tables_are_missing(
    settings: Settings, sessions: Any, queue: Any
) -> None:
    # The server's maintenance database answers SELECT 1 but has no procrastinate schema.
    bare = (
        make_url(settings.database_url)
        .set(database="postgres")
        .render_as_string(hide_password=False)
    )
    r = _app_on(settings, bare, sessions, queue).test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["message"] == "not ready: queue check failed"
    assert r.get_json()["errors"] == {"queue": ["unavailable"]}


def test_readyz_does_not_hang_on_a_locked_queue(client: Any, engine: Engine) -> None:
    """A query that would wait for ever (here behind a lock this test holds until the
    answer is in) is cut by the statement timeout: the answer says so."""
    with engine.connect() as other:
        other.execute(text("LOCK TABLE procrastinate_jobs IN ACCESS EXCLUSIVE MODE"))
        r = client.get("/readyz")
        other.rollback()
    assert r.status_code == 503
    assert r.get_json()["errors"] == {"queue": ["timed out"]}


def test_probes_are_in_the_openapi_document_without_security(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
    assert "200" in paths["/healthz"]["get"]["responses"]
    assert "security" not in paths["/readyz"]["get"] and "security" not in paths["/healthz"]["get"]


def _down_app(settings: Settings, sessions: Any, queue: Any):  # noqa: ANN202
    down = (
        make_url(settings.database_url)
        .set(host="127.0.0.1", port=_closed_port())
        .render_as_string(hide_password=False)
    )
    return _app_on(settings, down, sessions, queue)


def test_why_the_database_is_down_goes_to_the_log_once_per_change(
    settings: Settings, sessions: Any, queue: Any, caplog: Any, monkeypatch: Any
) -> None:
    import api.health

    monkeypatch.setattr(api.health, "READY_CACHE_S", 0)  # every probe checks again
    client = _down_app(settings, sessions, queue).test_client()
    with caplog.at_level(logging.WARNING, logger="api.health"):
        for _ in range(3):
            assert client.get("/readyz").status_code == 503
    warnings = [rec.getMessage() for rec in caplog.records if rec.name == "api.health"]
    assert len(warnings) == 1, warnings
    assert "database" in warnings[0] and ("refused" in warnings[0] or "failed" in warnings[0])


def test_readiness_is_checked_at_most_once_per_interval_and_one_at_a_time(
    app: Any, monkeypatch: Any
) -> None:
    """Probes are public: a flood of them shares one answer per process for READY_CACHE_S
    and never holds more than one database connection at a time."""
    import api.health

    real = api.health.psycopg.connect
    lock = threading.Lock()
    seen = {"calls": 0, "open": 0, "most_open": 0}

    def counting_connect(*args: Any, **kwargs: Any) -> Any:
        with lock:
            seen["calls"] += 1
            seen["open"] += 1
            seen["most_open"] = max(seen["most_open"], seen["open"])
        try:
            time.sleep(0.2)  # long enough for the other probes to arrive meanwhile
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["open"] -= 1

    monkeypatch.setattr(api.health.psycopg, "connect", counting_connect)
    monkeypatch.setattr(
        api.health, "READY_CACHE_S", 60
    )  # a slow machine must not see it expire mid-test
    codes: list[int] = []

    def probe() -> None:
        codes.append(app.test_client().get("/readyz").status_code)

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert codes == [200] * 8
    assert seen == {"calls": 1, "open": 0, "most_open": 1}

    # Once the answer is older than the interval, the next probe checks again.
    clock = time.monotonic() + 61
    monkeypatch.setattr(api.health, "_clock", lambda: clock)
    assert app.test_client().get("/readyz").status_code == 200
    assert seen["calls"] == 2


def test_a_probe_that_waits_out_a_hung_check_is_not_told_an_old_ready(
    app: Any, monkeypatch: Any
) -> None:
    """A check that hangs (a name lookup, an address that drops packets) holds the lock;
    the probes waiting behind it must hear "unavailable", not the "ready" from before."""
    import api.health

    client = app.test_client()
    assert client.get("/readyz").status_code == 200  # the answer from before the outage
    readiness = app.extensions["streetloop.readiness"]
    clock = [api.health._clock() + 60]  # the cached answer is long stale
    monkeypatch.setattr(api.health, "_clock", lambda: clock[0])
    monkeypatch.setattr(api.health, "READY_TIMEOUT_S", 0.01)  # probes give up waiting at once
    readiness.lock.acquire()  # the hung check
    try:
        r = client.get("/readyz")
    finally:
        readiness.lock.release()
    assert r.status_code == 503
    assert r.get_json()["errors"] == {"database": ["unavailable"]}
