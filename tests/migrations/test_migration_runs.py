"""A migration run takes the migration lock first and runs under its timeouts
(migrations/guard.py): two deploys never migrate at once, and a migration that waits on
a lock or runs long fails instead of stalling the database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from api.cli import alembic_config, main
from core.db import make_engine
from core.locks import AdvisoryLock
from core.settings import libpq_url
from migrations.guard import WAITING_NAME, Limits, MigrationSettingError
from tests.databases import scratch_database
from tests.migrations.later import config_with_later, write_migration

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
REVISIONS = list(SCRIPTS.walk_revisions())


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    with scratch_database(database_url) as scratch:
        yield scratch


def _dsn(url: str) -> str:
    return libpq_url(url.replace("+psycopg", ""))


def _version(url: str) -> str | None:
    with psycopg.connect(_dsn(url)) as conn:
        if conn.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


def _hold_lock(url: str) -> psycopg.Connection:
    conn = psycopg.connect(_dsn(url), autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s, 1)", (AdvisoryLock.MIGRATIONS,))
    return conn


def _waiting_on_the_lock(url: str) -> int:
    """How many other sessions of this database wait for the migration lock: a run polls
    for it and names itself so in pg_stat_activity meanwhile (migrations.guard)."""
    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            (WAITING_NAME,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _until(condition: Callable[[], bool], what: str) -> None:
    # Polls for a state other processes reach; the deadline only bounds a broken run.
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _migrate(url: str) -> subprocess.Popen[str]:
    """`streetloop db upgrade` in a process of its own, as a deploy runs it, with alembic's
    INFO lines ("Running upgrade 0019 -> 0020") on its output. (Two runs cannot share a
    process: alembic's `context` and `op` are module-wide.)"""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); from api.cli import main; main()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_runs_at_once_migrate_once_the_second_after_the_first(url: str) -> None:
    """Both runs start while a third party holds the lock: neither touches the schema;
    once it is released one migrates, and the other, which waited, finds nothing to do."""
    holder = _hold_lock(url)
    runs = [_migrate(url) for _ in range(2)]
    try:
        _until(lambda: _waiting_on_the_lock(url) == 2, "both runs to wait for the lock")
        assert _version(url) is None
    finally:
        holder.close()
        outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert _version(url) == HEAD
    steps = [[line for line in out.splitlines() if "Running upgrade" in line] for out in outputs]
    assert sorted(len(s) for s in steps) == [0, len(REVISIONS)]
    # Each run released the lock at its end: it can be taken again at once.
    with psycopg.connect(_dsn(url), autocommit=True) as conn:
        assert conn.execute(
            "SELECT pg_try_advisory_lock(%s, 1)", (AdvisoryLock.MIGRATIONS,)
        ).fetchone() == (True,)


def test_a_run_waiting_for_the_lock_does_not_stop_the_holder_building_an_index_concurrently(
    url: str,
) -> None:
    """CREATE INDEX CONCURRENTLY waits for every older snapshot to end. A run that blocked
    in pg_advisory_lock would hold one while it waits for the run building the index, and
    PostgreSQL would break that deadlock by failing the index build, leaving it INVALID."""
    holder = _hold_lock(url)
    holder.execute("CREATE TABLE big (x int)")
    holder.execute("INSERT INTO big SELECT generate_series(1, 1000)")
    run = _migrate(url)
    try:
        _until(lambda: _waiting_on_the_lock(url) == 1, "the run to wait for the lock")
        holder.execute("CREATE INDEX CONCURRENTLY ix_big_x ON big (x)")
        valid = holder.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_big_x'::regclass"
        ).fetchone()
        assert valid == (True,)
        assert _version(url) is None
    finally:
        holder.close()
        output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    assert _version(url) == HEAD
    assert _waiting_on_the_lock(url) == 0


def test_a_run_that_waits_too_long_for_the_lock_says_who_holds_it(url: str) -> None:
    holder = _hold_lock(url)
    pid = holder.info.backend_pid
    runner = CliRunner(
        env={"DATABASE_URL": url, "STREETLOOP_MIGRATION_WAIT_S": "1", "FLASK_RUN_FROM_CLI": None}
    )
    try:
        result = runner.invoke(main, ["db", "upgrade"], prog_name="streetloop")
    finally:
        holder.close()
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: another migration run (backend pid {pid}, connected")
    assert result.stderr.endswith(
        "held the migration lock for more than STREETLOOP_MIGRATION_WAIT_S=1 s; "
        "nothing was migrated\n"
    )
    assert _version(url) is None


def test_each_migration_runs_under_the_lock_and_statement_timeouts(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_migration(
        tmp_path,
        'op.execute("CREATE TABLE IF NOT EXISTS probe (n serial, lock text, statement text); '
        "INSERT INTO probe (lock, statement) "
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')\")",
    )
    cfg = config_with_later(url, tmp_path)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, HEAD)
    monkeypatch.setenv("STREETLOOP_MIGRATION_LOCK_TIMEOUT_MS", "1500")
    monkeypatch.setenv("STREETLOOP_MIGRATION_STATEMENT_TIMEOUT_MS", "0")
    command.upgrade(cfg, "head")
    with psycopg.connect(_dsn(url)) as conn:
        rows = conn.execute("SELECT lock, statement FROM probe ORDER BY n").fetchall()
    assert rows == [("10s", "1min"), ("1500ms", "0")]


def test_a_statement_over_the_limit_fails_its_migration(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_migration(tmp_path, 'op.execute("SELECT pg_sleep(30)")')
    cfg = config_with_later(url, tmp_path)
    command.upgrade(cfg, HEAD)
    monkeypatch.setenv("STREETLOOP_MIGRATION_STATEMENT_TIMEOUT_MS", "200")
    with pytest.raises(OperationalError, match="canceling statement due to statement timeout"):
        command.upgrade(cfg, "head")
    assert _version(url) == HEAD


def test_a_migration_that_waits_for_a_table_lock_fails_after_lock_timeout(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_migration(tmp_path, 'op.add_column("crews", sa.Column("probe", sa.Text()))')
    cfg = config_with_later(url, tmp_path)
    command.upgrade(cfg, HEAD)
    monkeypatch.setenv("STREETLOOP_MIGRATION_LOCK_TIMEOUT_MS", "200")
    eng = make_engine(url)
    try:
        with eng.connect() as reader:
            # A long transaction that has read the table: ALTER TABLE must wait for it.
            reader.execute(text("SELECT count(*) FROM crews"))
            with pytest.raises(OperationalError, match="canceling statement due to lock timeout"):
                command.upgrade(cfg, "head")
            reader.rollback()
    finally:
        eng.dispose()
    assert _version(url) == HEAD


@pytest.mark.parametrize("value", ["soon", "-1", "1.5"])
def test_a_migration_setting_that_is_no_whole_number_is_refused(value: str) -> None:
    with pytest.raises(MigrationSettingError, match="STREETLOOP_MIGRATION_WAIT_S must be"):
        Limits.from_env({"STREETLOOP_MIGRATION_WAIT_S": value})


def test_the_limits_default_to_warehouse_like_values_and_take_each_variable() -> None:
    assert Limits.from_env({}) == Limits(
        lock_timeout_ms=10_000, statement_timeout_ms=60_000, wait_s=600
    )
    assert Limits.from_env(
        {
            "STREETLOOP_MIGRATION_LOCK_TIMEOUT_MS": "4000",
            "STREETLOOP_MIGRATION_STATEMENT_TIMEOUT_MS": "5000",
            "STREETLOOP_MIGRATION_WAIT_S": " 0 ",
        }
    ) == Limits(lock_timeout_ms=4000, statement_timeout_ms=5000, wait_s=0)


def test_config_with_later_sees_the_extra_revision(database_url: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "pass")
    cfg: Config = config_with_later(database_url, tmp_path)
    assert ScriptDirectory.from_config(cfg).get_current_head() == "9001"


def test_a_callers_connection_in_a_transaction_holds_the_lock_until_it_commits(url: str) -> None:
    """alembic's shared-connection recipe (`cfg.attributes["connection"]`): all the
    migrations run in the caller's transaction, under a lock that its commit releases."""
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))  # the caller's transaction is open
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            assert _version(url) is None  # not committed yet
            assert _waiting_on_the_lock(url) == 0
            with psycopg.connect(_dsn(url), autocommit=True) as other:
                taken = other.execute(
                    "SELECT pg_try_advisory_lock(%s, 1)", (AdvisoryLock.MIGRATIONS,)
                ).fetchone()
            assert taken == (False,)
            conn.commit()
    finally:
        eng.dispose()
    assert _version(url) == HEAD
    with psycopg.connect(_dsn(url), autocommit=True) as other:
        taken = other.execute(
            "SELECT pg_try_advisory_lock(%s, 1)", (AdvisoryLock.MIGRATIONS,)
        ).fetchone()
    assert taken == (True,)
