"""One throwaway database per test session, migrated once; each test runs inside a
transaction that is rolled back (views' commits become savepoint releases)."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.settings import Settings, libpq_url, normalize_database_url
from tests import factories as f
from tests.factories.plans import crew_on_shift

# Tests talk to this machine only. Every connection a test's Python code opens is checked
# here, suite-wide, so that no test can reach another address by mistake (a webhook, an
# SMTP host, a geocoder, a tile server): it fails loudly instead. libpq's own connections
# (made in C) are not seen, and point at DATABASE_URL. Tests of code that would go out
# inject the resolver's answer instead (see tests/workers/test_notify.py).
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _loopback_only(address: object) -> None:
    host = address[0] if isinstance(address, tuple) else address
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        raise OSError(
            f"test guard: connect() to a name ({host!r}); tests connect to 127.0.0.1 only"
        ) from None
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if not any(ip in net for net in _LOOPBACK):
        raise OSError(f"test guard: no connection to {host} (tests talk to 127.0.0.0/8 only)")


@pytest.fixture(scope="session", autouse=True)
def _no_traffic_beyond_loopback() -> Iterator[None]:
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _loopback_only(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _loopback_only(address)
        return real_connect_ex(sock, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]


def _admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        pytest.exit(
            "DATABASE_URL is not set: run the tests with `make test`, or point DATABASE_URL at a PostGIS server",
            2,
        )
    return normalize_database_url(url)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    admin = make_url(_admin_url())
    name = f"streetloop_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        libpq_url(admin.render_as_string(hide_password=False)), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        from alembic import command

        from api.cli import alembic_config

        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        with psycopg.connect(
            libpq_url(admin.render_as_string(hide_password=False)), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()
    # Jobs are deferred through procrastinate's own connection, outside the test's
    # transaction: clear them so tests stay independent.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_jobs"))


@pytest.fixture
def sessions(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # No random audit draws unless a test asks for them (tests/api/test_reviews.py does).
    return Settings(
        database_url=database_url,
        secret_key="test",
        media_dir=tmp_path / "media",
        timezone="Europe/Andorra",
        audit_sample_rate=0.0,
    )


@pytest.fixture
def queue(settings: Settings) -> Iterator[object]:
    from workers.app import Queue

    q = Queue(settings)
    yield q
    q.close()


@pytest.fixture
def app(settings: Settings, sessions: sessionmaker[Session], queue: object):  # noqa: ANN201
    from api import create_app

    application = create_app(settings, sessions=sessions, queue=queue)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):  # noqa: ANN001, ANN201
    return app.test_client()


@pytest.fixture
def committed(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions whose commits are real, for tests of what concurrent transactions see.
    Every table is emptied afterwards: the other tests' rows live only in rolled-back
    transactions, so nothing of theirs is lost. Such a test must not use `db` too."""
    from core.db import Base

    yield sessionmaker(bind=engine, expire_on_commit=False)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        conn.execute(text("DELETE FROM procrastinate_jobs"))


@pytest.fixture
def day(db: Session) -> dict:
    """Tomorrow's work for the plan tests: two crews on shift from one depot, six located
    work orders of two types and one without a place."""
    depot = f.depot(db)
    f.service_type(db)
    f.service_type(db, "graffiti", skill="graffiti", agency="Sanitation")
    crew_on_shift(db, "pothole-1", ["asphalt"], depot)
    crew_on_shift(db, "graffiti-1", ["graffiti"], depot, agency="Sanitation")
    orders = []
    for i in range(6):
        lon, lat = f.offset(f.LON, f.LAT, 400 * (i + 1))
        orders.append(
            f.report(db, "pothole" if i % 2 == 0 else "graffiti", lon=lon, lat=lat).work_order
        )
    unplaced = f.report(db, lon=None, lat=None, address_string="somewhere").work_order
    db.commit()
    return {"orders": orders, "unplaced": unplaced}


# -- slow stages -------------------------------------------------------------
# A module marked `pytestmark = pytest.mark.stage("name")` is a slow stage (own clusters,
# killed workers, live servers): its time, set-up and tear-down included, is printed at
# the end of the run, so a stage that grows shows in every CI log.
_STAGE_SECONDS: dict[str, float] = {}
_STAGE_TESTS: dict[str, int] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    marker = item.get_closest_marker("stage")
    if marker is None:
        return (yield)
    import time

    started = time.monotonic()
    try:
        return (yield)
    finally:
        name = marker.args[0]
        _STAGE_SECONDS[name] = _STAGE_SECONDS.get(name, 0.0) + time.monotonic() - started
        _STAGE_TESTS[name] = _STAGE_TESTS.get(name, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _STAGE_SECONDS:
        return
    terminalreporter.section("slow stages")
    for name, seconds in sorted(_STAGE_SECONDS.items()):
        terminalreporter.write_line(f"{name:<28} {_STAGE_TESTS[name]:>3} tests {seconds:>7.1f} s")
