"""Closing the processes' connection pools with the database host gone: no thread is left
hanging in a connection attempt, and nothing connects after close. The database "goes
away" behind a relay on 127.0.0.1 that drops its connections and then answers nothing
(tests/netcut.py); the shared cluster itself is untouched."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from core.db import make_engine
from core.settings import Settings
from tests.netcut import Relay


@pytest.fixture
def relay(database_url: str) -> Iterator[tuple[Relay, str]]:
    url = make_url(database_url)
    r = Relay(url.port or 5432)
    yield r, url.set(host="127.0.0.1", port=r.port).render_as_string(hide_password=False)
    r.close()


def _threads_of(pool_name: str) -> list[str]:
    return [
        t.name for t in threading.enumerate() if t.name.startswith(f"{pool_name}-") and t.is_alive()
    ]


def test_the_web_queue_closes_with_its_database_gone_and_connects_no_more(
    relay: tuple[Relay, str],
) -> None:
    from workers.app import Queue

    r, url = relay
    queue = Queue(Settings(database_url=url, db_connect_timeout_s=1))
    queue.defer("fail_stale_plans", timestamp=1)
    pool = queue._app.connector.get_sync_connector().pool  # noqa: SLF001 - the threads under test
    r.cut()
    # The pool finds its connection dead and sends its thread to make a new one, into the void.
    with pytest.raises(Exception):  # noqa: B017 - procrastinate's wrapper of psycopg_pool's PoolTimeout
        queue.defer("fail_stale_plans", timestamp=2)
    assert r.accepted >= 2  # the new attempt reached the (silent) host
    queue.close()
    assert _threads_of(pool.name) == []  # none left waiting on the dead host
    attempts = r.accepted
    with pytest.raises(RuntimeError, match="closed"):
        queue.defer("fail_stale_plans", timestamp=3)  # does not open a new pool
    time.sleep(0.5)
    assert r.accepted == attempts


def test_an_engine_connection_attempt_to_a_gone_host_gives_up(relay: tuple[Relay, str]) -> None:
    r, url = relay
    r.cut()
    engine = make_engine(url, connect_timeout_s=1)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            with engine.connect():
                pass
        except OperationalError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(30)  # a bound for the test only; the attempt itself is what is checked
    assert not thread.is_alive(), "the connection attempt still waits on the gone host"
    assert outcome and "timeout" in str(outcome[0]).lower()
    engine.dispose()
