"""DATABASE_REPLICA_URL against a real streaming replica of the test database's server.

Slow stage: `scripts/pg.sh replica start` makes a hot standby with `pg_basebackup -R`
from the primary on 127.0.0.1 (after the session's test database exists), on a port of
its own, once for this module; it is destroyed at the end. Which server answered is
proven by what it answers: with the replica's replay paused (`pg_wal_replay_pause()`,
real lag), a row committed on the primary since then is missing from the replica only."""

from __future__ import annotations

import csv as csv_module
import dataclasses
import io
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask
import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.replica import Replica, lsn
from core.settings import Settings, libpq_url
from dispatch.build import Scope
from dispatch.plans import PlanRequest, request_plan
from tests import factories as f
from tests.factories.plans import DAY
from tests.netcut import Relay
from tests.workers.own_cluster import free_port, wait_for

pytestmark = pytest.mark.stage("read replica")

PG = Path(__file__).resolve().parents[2] / "scripts" / "pg.sh"
LIST = "/open311/v2/requests.json"
# Each run's replica lives in a temporary directory named after its pytest's pid.
PREFIX = "streetloop-test-replica-"


@dataclass
class Standby:
    """The replica: its URL for the test database, and its server's controls."""

    url: str  # SQLAlchemy URL of the test database on the replica
    primary: str  # libpq URL of the test database on the primary
    env: dict[str, str]

    def pg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG), "replica", *args], env=self.env, capture_output=True, text=True
        )

    def sql(self, statement: str) -> Any:
        with psycopg.connect(libpq_url(self.url), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(statement).fetchone()

    def caught_up(self) -> None:
        """Until the replica has replayed all the primary had flushed when asked."""
        with psycopg.connect(self.primary, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        assert row is not None
        wait_for(
            lambda: self.sql(f"SELECT pg_last_wal_replay_lsn() >= '{row[0]}'::pg_lsn")[0],
            30,
            "the replica to replay the primary's WAL",
        )

    def pause(self) -> None:
        self.sql("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        self.sql("SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
def standby(database_url: str) -> Iterator[Standby]:
    started = time.monotonic()
    primary = make_url(database_url)
    if primary.host not in {"127.0.0.1", "localhost"} or not primary.port:
        pytest.skip(
            f"the replica is made on this machine, of a primary on 127.0.0.1 ({primary.host})"
        )
    _destroy_orphans(primary.port)
    base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    base.chmod(0o755)  # pg.sh hands it to the postgres OS user when run as root
    port = free_port()
    env = {
        **os.environ,
        "STREETLOOP_PGDATA": str(base),
        "STREETLOOP_PGPORT": str(primary.port),
        "STREETLOOP_REPLICA_PGPORT": str(port),
    }
    if primary.username:  # the role pg_basebackup copies the primary as
        env["PGUSER"] = primary.username
    if primary.password:  # for pg_basebackup's replication connection
        env["PGPASSWORD"] = primary.password
    url = primary.set(port=port).render_as_string(hide_password=False)
    replica = Standby(url, libpq_url(database_url), env)
    try:
        made = replica.pg("start")
        if made.returncode == 4:
            pytest.skip(made.stderr.strip().splitlines()[-1])
        assert made.returncode == 0, made.stderr
        assert replica.sql("SELECT pg_is_in_recovery()") == (True,)
        replica.caught_up()
        print(
            f"\n[slow stage] streaming replica on 127.0.0.1:{port} of :{primary.port} "
            f"in {time.monotonic() - started:.1f} s"
        )
        yield replica
    finally:
        replica.pg("destroy")
        shutil.rmtree(base, ignore_errors=True)


def _destroy_orphans(primary_port: int) -> None:
    """Replicas left by runs whose pytest was killed before its tear-down: each holds a WAL
    sender, a replication slot (WAL kept for it) of the primary's and a port."""
    for old in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = old.name.removeprefix(PREFIX).split("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        subprocess.run(
            [str(PG), "replica", "destroy"],
            env={
                **os.environ,
                "STREETLOOP_PGDATA": str(old),
                "STREETLOOP_PGPORT": str(primary_port),
            },
            capture_output=True,
        )
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@pytest.fixture
def replica_app(
    settings: Settings,
    committed: sessionmaker[Session],
    standby: Standby,
    queue: object,
) -> Iterator[Callable[..., flask.Flask]]:
    """Apps on committed sessions with the replica configured (a look at every read unless
    `check_s` says otherwise); their replica connections are closed after the test."""
    from api import create_app

    made: list[flask.Flask] = []

    def make(*, max_lag_s: float = 3600, check_s: float = 0, url: str = "") -> flask.Flask:
        cfg = dataclasses.replace(
            settings,
            database_replica_url=url or standby.url,
            replica_max_lag_s=max_lag_s,
            replica_check_s=check_s,
        )
        made.append(create_app(cfg, sessions=committed, queue=queue))
        return made[-1]

    yield make
    for app in made:
        app.extensions["streetloop.replica"].dispose()


def _listed(client: Any, path: str = LIST) -> tuple[set[str], str | None]:
    """The ids a list answered with, and which server answered a read that may trail the
    writes (None: the view asked for no such read, its reads are all the primary's)."""
    with client:
        r = client.get(path)
        assert r.status_code == 200, r.data
        return {x["service_request_id"] for x in r.get_json()}, flask.g.get("read_from")


def _until_replica(client: Any, ids: set[str]) -> None:
    """Until a list answers from the replica (the next look that finds it fit), with `ids`."""
    answer = wait_for(
        lambda: (found := _listed(client))[1] == "replica" and found, 20, "the replica's answer"
    )
    assert answer[0] == ids


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "core.replica" and r.levelno == logging.WARNING
    ]


def test_reports_and_open311_lists_read_from_the_replica(
    committed: sessionmaker[Session],
    standby: Standby,
    replica_app: Callable[..., flask.Flask],
) -> None:
    with committed() as s:
        f.service_type(s)
        first = f.report(s).request.public_id
        staff = f.token_for(s, f.user(s, "dispatcher@test", "dispatcher"))
        s.commit()
    standby.caught_up()
    app = replica_app()
    client = app.test_client()
    standby.pause()
    try:
        with committed() as s:
            second = f.report(s, lon=f.offset(f.LON, f.LAT, 500)[0]).request.public_id
            s.commit()
        # The replica answers, without the row it has not replayed; within the bound.
        assert _listed(client) == ({first}, "replica")
        with client:
            csv = client.get("/open-data/requests.csv")
            assert csv.status_code == 200 and flask.g.read_from == "replica"
        assert {row["id"] for row in csv_module.DictReader(io.StringIO(csv.text))} == {first}
        with client:
            figures = client.get("/api/v1/citistat", headers=staff)
            assert figures.status_code == 200 and flask.g.read_from == "replica"
        assert figures.get_json()["total"]["received"] == 1
        with client:
            assert client.get("/citistat").status_code == 200
            assert flask.g.read_from == "replica"
        # The report read back by its id comes from the primary: it is there at once.
        assert client.get(f"/open311/v2/requests/{second}.json").status_code == 200
        assert _listed(client, f"{LIST}?service_request_id={second}") == ({second}, None)
    finally:
        standby.resume()
    # The write reaches the replica by streaming, and the list shows it from there.
    standby.caught_up()
    assert _listed(client) == ({first, second}, "replica")
    with client:
        figures = client.get("/api/v1/citistat", headers=staff)
        assert flask.g.read_from == "replica"
    assert figures.get_json()["total"]["received"] == 2


def test_a_replica_behind_the_bound_leaves_the_reads_to_the_primary(
    committed: sessionmaker[Session],
    standby: Standby,
    replica_app: Callable[..., flask.Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="core.replica")
    with committed() as s:
        f.service_type(s)
        first = f.report(s).request.public_id
        s.commit()
    standby.caught_up()
    app = replica_app(max_lag_s=1)
    client = app.test_client()
    # Fit at first. (A bound this tight can be crossed for a moment by WAL that others
    # write on a shared primary: what the reads then do is the point of this test.)
    _until_replica(client, {first})
    caplog.clear()
    standby.pause()
    paused = time.monotonic()
    try:
        with committed() as s:
            second = f.report(s, lon=f.offset(f.LON, f.LAT, 500)[0]).request.public_id
            s.commit()
        # Real lag: the last transaction the paused replica replayed grows older, and so
        # does the last look whose WAL position it has.
        wait_for(
            lambda: (
                time.monotonic() - paused > 1.5
                and standby.sql(
                    "SELECT now() - pg_last_xact_replay_timestamp() > interval '1.5 s'"
                )[0]
            ),
            30,
            "the paused replica to fall 1.5 s behind",
        )
        assert _listed(client) == ({first, second}, "primary")
        assert _listed(client) == ({first, second}, "primary")
        warned = _warnings(caplog)
        assert len(warned) == 1, warned  # once, not once per read
        assert "s behind the primary (STREETLOOP_REPLICA_MAX_LAG_S=1)" in warned[0]
        assert "read from the primary" in warned[0]
    finally:
        standby.resume()
    standby.caught_up()
    _until_replica(client, {first, second})
    assert any("used again" in r.getMessage() for r in caplog.records if r.name == "core.replica")


def test_a_stopped_replica_leaves_the_reads_to_the_primary(
    committed: sessionmaker[Session],
    standby: Standby,
    replica_app: Callable[..., flask.Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with committed() as s:
        f.service_type(s)
        first = f.report(s).request.public_id
        s.commit()
    standby.caught_up()
    # One app trusts its last look for an hour (the replica dies between two looks: its
    # session's connection fails), the other looks at every read.
    trusting, looking = replica_app(check_s=3600), replica_app()
    assert _listed(trusting.test_client()) == ({first}, "replica")
    assert _listed(looking.test_client()) == ({first}, "replica")
    stopped = standby.pg("stop")
    assert stopped.returncode == 0, stopped.stderr
    try:
        caplog.set_level(logging.WARNING, logger="core.replica")
        for _ in range(2):
            assert _listed(trusting.test_client()) == ({first}, "primary")
        warned = _warnings(caplog)
        assert len(warned) == 1 and "refuses connections" in warned[0], warned
        assert "Connection refused" in warned[0], warned
        caplog.clear()
        for _ in range(2):
            assert _listed(looking.test_client()) == ({first}, "primary")
        warned = _warnings(caplog)
        assert len(warned) == 1 and "does not answer" in warned[0], warned
        assert "Connection refused" in warned[0], warned
    finally:
        started = standby.pg("start")
        assert started.returncode == 0, started.stderr
    standby.caught_up()
    assert _listed(looking.test_client()) == ({first}, "replica")


def test_reads_after_a_clients_own_write_never_use_the_replica(
    committed: sessionmaker[Session],
    standby: Standby,
    replica_app: Callable[..., flask.Flask],
) -> None:
    """A request by id, the crew's route and changes, and plans: every statement of theirs
    goes to the primary (none reaches the replica's engine), and what was written while
    the replica could not have it is there."""
    with committed() as s:
        f.service_type(s)
        f.api_key(s)
        s.commit()
    standby.caught_up()
    app = replica_app()
    on_replica: list[str] = []
    event.listen(
        app.extensions["streetloop.replica"].engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: on_replica.append(statement),
    )
    client = app.test_client()
    standby.pause()
    try:
        posted = client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": f.API_KEY,
                "service_code": "pothole",
                "lat": str(f.LAT),
                "long": str(f.LON),
                "description": "deep hole",
            },
        )
        assert posted.status_code == 201, posted.data
        public_id = posted.get_json()[0]["service_request_id"]
        with committed() as s:
            crew = f.crew(s)
            crew_headers = f.token_for(s, f.user(s, "pothole-1@test", "crew", crew=crew))
            staff = f.token_for(s, f.user(s, "dispatcher@test", "dispatcher"))
            plan = request_plan(s, PlanRequest(DAY, Scope(), 2), actor=f.SYSTEM).id
            s.commit()
        # The report just posted, read back by its id both ways: there at once.
        for path in (
            f"/open311/v2/requests/{public_id}.json",
            f"{LIST}?service_request_id={public_id}",
        ):
            r = client.get(path)
            assert r.status_code == 200, (path, r.data)
            assert [x["service_request_id"] for x in r.get_json()] == [public_id]
        # The crew (its login made a moment ago) reads its route and its changes.
        route = client.get("/api/v1/crew/route", headers=crew_headers).get_json()
        changes = client.get(
            "/api/v1/crew/changes",
            query_string={"since": route["changes_cursor"]},
            headers=crew_headers,
        )
        assert changes.status_code == 200, changes.data
        assert client.get(f"/api/v1/plans/{plan}", headers=staff).status_code == 200
        listed = client.get("/api/v1/plans", headers=staff).get_json()
        assert plan in [p["id"] for p in listed], listed
        assert on_replica == []
        # The counter does see the replica's reads.
        assert _listed(client)[1] == "replica" and on_replica
    finally:
        standby.resume()


def test_a_replica_that_stops_answering_leaves_the_reads_to_the_primary(
    committed: sessionmaker[Session],
    standby: Standby,
    replica_app: Callable[..., flask.Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its connections dropped and new ones left unanswered (a host gone from the network):
    the pooled connection fails, a new one gives up after the connect timeout, the read
    goes to the primary, with the reason logged."""
    with committed() as s:
        f.service_type(s)
        first = f.report(s).request.public_id
        s.commit()
    standby.caught_up()
    relay = Relay(make_url(standby.url).port or 0)
    try:
        app = replica_app(url=make_url(standby.url).set(port=relay.port).render_as_string(False))
        client = app.test_client()
        assert _listed(client) == ({first}, "replica")
        relay.cut()
        caplog.set_level(logging.WARNING, logger="core.replica")
        with committed() as s:
            second = f.report(s, lon=f.offset(f.LON, f.LAT, 500)[0]).request.public_id
            s.commit()
        assert _listed(client) == ({first, second}, "primary")
        warned = _warnings(caplog)
        assert len(warned) == 1 and "does not answer" in warned[0], warned
        assert "timeout" in warned[0], warned
        assert relay.accepted >= 2  # the first connection, and the one left unanswered
    finally:
        relay.close()


def test_a_standby_of_another_cluster_is_no_fit_replica(
    database_url: str, standby: Standby
) -> None:
    """Its WAL positions say nothing of the primary's: the system identifiers tell them apart."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None
    replica = Replica(make_engine(standby.url), max_lag_s=30, check_every_s=5)
    try:
        with replica.engine.connect() as conn:
            assert replica._judge(conn, "0/0", row[0]).kind == "ok"  # a copy of this primary
            other = replica._judge(conn, "0/0", "1")
        assert other.kind == "not_standby", other
        assert "a standby of another cluster (system identifier" in other.reason, other
    finally:
        replica.dispose()


def test_a_replica_that_has_an_earlier_looks_position_trails_by_no_more_than_its_age(
    database_url: str, standby: Standby
) -> None:
    """A long transaction on an otherwise quiet primary writes WAL and commits nothing for a
    while: the replica lacks the primary's latest position and its last replayed commit is
    old, yet it has all that was committed up to a look it has replayed the position of."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None
    replica = Replica(make_engine(standby.url), max_lag_s=1, check_every_s=5)
    standby.caught_up()
    standby.pause()
    try:
        wait_for(
            lambda: standby.sql(
                "SELECT now() - pg_last_xact_replay_timestamp() > interval '1.5 s'"
            )[0],
            30,
            "the paused replica's last commit to be 1.5 s old",
        )
        with replica.engine.connect() as conn:
            done = lsn(conn.execute(text("SELECT pg_last_wal_replay_lsn()::text")).scalar_one())
            ahead = f"{(done + 4096) >> 32:X}/{(done + 4096) & 0xFFFFFFFF:X}"  # WAL it lacks
            assert replica._judge(conn, ahead, row[0]).kind == "lag"
            conn.rollback()
            replica._seen.append((time.monotonic() - 0.5, done))  # a look half a second ago
            verdict = replica._judge(conn, ahead, row[0])
        assert verdict.kind == "ok" and verdict.lag_s is not None, verdict
        assert 0.5 <= verdict.lag_s < 1, verdict
    finally:
        standby.resume()
        replica.dispose()
