"""core.replica's looks, verdicts and warnings, on the test database's own server as the
"replica" (it is no standby: a look finds that), with a clock the test moves by hand.
The streaming replica itself is tests/api/test_read_replica.py's stage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from core.replica import Replica, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def primary(engine: Engine) -> Iterator[Any]:
    """The primary's session as a view has it (one per request; here one per test)."""
    s = make_sessionmaker(engine)()
    yield lambda: s
    s.close()


@pytest.fixture
def own_server(database_url: str) -> Iterator[Engine]:
    """An engine on the primary itself, where a replica's would be: one connection only."""
    eng = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    yield eng
    eng.dispose()


def _looks(engine: Engine) -> list[str]:
    """The looks' replica-side statements run on `engine`, from now on."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "pg_last_xact_replay_timestamp" in statement:  # the look's REPLICA_POSITION
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return seen


def _kind(replica: Replica) -> str | None:
    """What the last look found (None before the first)."""
    return replica.verdict.kind if replica.verdict is not None else None


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "core.replica" and r.levelno == level
    ]


def test_a_server_that_is_no_standby_is_left_out_with_a_warning(
    own_server: Engine, primary: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.replica")
    replica = Replica(own_server, max_lag_s=30, check_every_s=5, clock=Clock())
    assert replica.session(primary) is None
    assert _kind(replica) == "not_standby"
    [warned] = _messages(caplog, logging.WARNING)
    assert "is not a standby (pg_is_in_recovery() is false)" in warned
    assert "read from the primary" in warned


def test_one_look_per_check_interval_and_one_warning_per_minute(
    own_server: Engine, primary: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.replica")
    clock = Clock()
    replica = Replica(own_server, max_lag_s=30, check_every_s=5, warn_every_s=60, clock=clock)
    looks = _looks(own_server)
    for step in (0, 1, 3.9):  # within one check interval: the first look's verdict
        clock.now += step
        assert replica.session(primary) is None
    assert len(looks) == 1
    clock.now += 1.1  # 6 s after the first look: a new one
    assert replica.session(primary) is None
    assert len(looks) == 2
    assert len(_messages(caplog, logging.WARNING)) == 1  # the same reason: not again
    clock.now += 55  # a minute after the first warning
    assert replica.session(primary) is None
    assert len(looks) == 3
    assert len(_messages(caplog, logging.WARNING)) == 2


def test_one_look_at_a_time_the_others_take_the_last_verdict(
    own_server: Engine, primary: Any
) -> None:
    replica = Replica(own_server, max_lag_s=30, check_every_s=5, clock=Clock())
    looks = _looks(own_server)
    inside, release = threading.Event(), threading.Event()

    def hold(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "pg_last_xact_replay_timestamp" in statement and not inside.is_set():
            inside.set()
            assert release.wait(10)

    event.listen(own_server, "before_cursor_execute", hold)
    looking = threading.Thread(target=replica.session, args=(primary,))
    looking.start()
    try:
        assert inside.wait(10)
        # While one thread looks, the others read from the primary (no verdict yet)
        # at once, and look no more.
        answers: list[Session | None] = []
        others = [
            threading.Thread(target=lambda: answers.append(replica.session(primary)))
            for _ in range(4)
        ]
        for t in others:
            t.start()
        for t in others:
            t.join(10)
        assert answers == [None] * 4
        assert len(looks) == 1
    finally:
        release.set()
        looking.join(10)
    assert _kind(replica) == "not_standby"


def test_a_thread_that_waited_for_a_look_takes_its_verdict_instead_of_looking_again(
    own_server: Engine, primary: Any
) -> None:
    clock = Clock()
    replica = Replica(own_server, max_lag_s=30, check_every_s=5, clock=clock)
    replica._record(Verdict("not_standby", "is not a standby"))  # an old look
    clock.now += 10  # stale now
    looks = _looks(own_server)

    class Raced:
        """One look at a time, where another thread's look ends just as this one's turn
        comes: the verdict this thread found stale is fresh by then."""

        def __init__(self) -> None:
            self.lock = threading.Lock()

        def acquire(self, blocking: bool = True) -> bool:
            replica._record(Verdict("not_standby", "is not a standby"))
            return self.lock.acquire(blocking)

        def release(self) -> None:
            self.lock.release()

    replica._looking = Raced()  # type: ignore[assignment]  # a lock with the race built in
    assert replica.session(primary) is None
    assert looks == []


def test_a_full_pool_sends_the_read_to_the_primary_in_its_timeout(
    own_server: Engine, primary: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Not after the default 30 s, and not as an error: the primary answers instead."""
    caplog.set_level(logging.WARNING, logger="core.replica")
    clock = Clock()
    replica = Replica(own_server, max_lag_s=30, check_every_s=5, clock=clock)
    replica._record(Verdict("ok", lag_s=0.0))  # fit, as a look at a standby finds it
    held = own_server.connect()  # the pool's only connection, busy with another read
    try:
        assert replica.session(primary) is None
        assert replica.verdict == Verdict("ok", lag_s=0.0)  # busy is not down
        [warned] = _messages(caplog, logging.WARNING)
        assert "no free connection" in warned, warned
        clock.now += 6  # the next look cannot get a connection either
        assert replica.session(primary) is None
        assert _kind(replica) == "busy"
    finally:
        held.close()
    clock.now += 6  # a connection is free again: the look gets it (and finds no standby)
    assert replica.session(primary) is None
    assert _kind(replica) == "not_standby"


def test_a_flapping_replica_warns_and_returns_once_a_minute() -> None:
    clock = Clock()
    replica = Replica(
        make_engine("postgresql+psycopg://u@127.0.0.1:1/db"),
        max_lag_s=30,
        check_every_s=5,
        warn_every_s=60,
        clock=clock,
    )
    logged: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append((record.levelno, record.getMessage()))

    log = logging.getLogger("core.replica")
    handler = Keep(logging.INFO)
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        down = Verdict("down", "does not answer: connection refused")
        for _ in range(6):  # down and back every 5 s, for a minute
            replica._record(down)
            clock.now += 5
            replica._record(Verdict("ok", lag_s=0.0))
            clock.now += 5
        assert [level for level, _ in logged] == [logging.WARNING, logging.INFO]
        clock.now += 10  # over a minute after the first warning and the first return: the next of each is told,
        replica._record(down)  # with how many were not
        replica._record(Verdict("ok", lag_s=0.0))
        assert [level for level, _ in logged[2:]] == [logging.WARNING, logging.INFO]
        assert "5 more times since" in logged[2][1], logged
        assert "5 more times since" in logged[3][1], logged
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        replica.dispose()
