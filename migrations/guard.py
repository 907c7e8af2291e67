"""What every migration run does first: take the migration lock and set its timeouts.

Two deploys that start at once (two hosts, a retried job) would otherwise both read the
same alembic_version and both run the next migration. The first one to start holds a
session-level advisory lock for the whole run; the other waits for it, up to
STREETLOOP_MIGRATION_WAIT_S, and then reads the version again and finds nothing to do.

Each statement then runs under two limits, as pypi/warehouse's migrations do:
- `lock_timeout`: a migration that needs a lock a long transaction holds fails instead of
  queueing, because while it queues every other query on that table queues behind it;
- `statement_timeout`: a statement that runs long (a rewrite of a large table under an
  ACCESS EXCLUSIVE lock) fails instead of keeping the table locked for as long as it takes.

A migration that must run longer on a large database is run with the limit raised, by
setting the variable for that deploy; an index on a large table is built concurrently
instead (migrations/README.md), which lifts both limits for that statement only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from core.locks import AdvisoryLock

# The key within AdvisoryLock.MIGRATIONS: there is one migration lock per database.
_LOCK_KEY = 1


class MigrationLockTimeout(RuntimeError):
    """Another migration run held the lock for longer than this one would wait."""


class MigrationSettingError(ValueError):
    """A STREETLOOP_MIGRATION_* variable that is not a whole number."""


@dataclass(frozen=True)
class Limits:
    # Milliseconds, as PostgreSQL's settings take them; 0 means no limit.
    lock_timeout_ms: int = 10_000
    # A whole run from an empty database takes under a second, its longest statement a
    # small part of that: a minute leaves room for the data repairs on a city's years of rows.
    statement_timeout_ms: int = 60_000
    # Seconds to wait for another run's lock: a deploy's migrations take seconds, but one
    # run may be held up by its own lock_timeout a few times before it gives up.
    wait_s: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            lock_timeout_ms=_whole(
                env, "STREETLOOP_MIGRATION_LOCK_TIMEOUT_MS", default.lock_timeout_ms
            ),
            statement_timeout_ms=_whole(
                env, "STREETLOOP_MIGRATION_STATEMENT_TIMEOUT_MS", default.statement_timeout_ms
            ),
            wait_s=_whole(env, "STREETLOOP_MIGRATION_WAIT_S", default.wait_s),
        )


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise MigrationSettingError(f"{name} must be a whole number (0: no limit), got {raw!r}")
    return value


# How often a waiting run tries the lock again.
_POLL_S = 0.5
# The application_name of a run while it waits for another's lock.
WAITING_NAME = "streetloop migrate: waiting for the migration lock"


def take_migration_lock(
    connection: Connection,
    limits: Limits,
    *,
    for_transaction: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait for the migration lock, then set the migrations' timeouts on this session.

    The lock and the settings belong to the session, not to a transaction: they hold
    through the one transaction per migration that alembic then runs on this connection,
    until `release_migration_lock` or the connection's end. `for_transaction` takes a lock
    that the current transaction's end releases instead (a caller's connection whose
    transaction all the migrations run in).

    A waiting run tries the lock and ends its transaction between tries, rather than
    blocking in `pg_advisory_lock`: a backend blocked there keeps a snapshot open, and
    `CREATE INDEX CONCURRENTLY` in the run that holds the lock waits for every older
    snapshot to end, so the two would deadlock and the index build would fail."""
    if for_transaction:
        _take_for_transaction(connection, limits)
        return
    deadline = clock() + limits.wait_s
    named: str | None = None  # the session's own application_name, while it says it waits
    while True:
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(:c, :k)"),
            {"c": AdvisoryLock.MIGRATIONS, "k": _LOCK_KEY},
        ).scalar_one()
        if not got and named is None:
            # Shown in pg_stat_activity, so whoever looks at the database sees why it waits.
            named = connection.execute(
                text("SELECT current_setting('application_name')")
            ).scalar_one()
            _name(connection, WAITING_NAME)
        connection.commit()  # no transaction, so no snapshot, while this run waits
        if got:
            break
        if clock() >= deadline:
            _name(connection, named or "")
            connection.commit()
            raise MigrationLockTimeout(_waited_too_long(connection, limits))
        sleep(_POLL_S)
    if named is not None:
        _name(connection, named)
    _set(connection, "lock_timeout", limits.lock_timeout_ms)
    _set(connection, "statement_timeout", limits.statement_timeout_ms)


def _take_for_transaction(connection: Connection, limits: Limits) -> None:
    # The caller's transaction is open anyway (its snapshot with it), so this waits in
    # PostgreSQL, bounded by lock_timeout, and the lock ends with that transaction.
    _set(connection, "statement_timeout", 0)
    _set(connection, "lock_timeout", limits.wait_s * 1000)
    try:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:c, :k)"),
            {"c": AdvisoryLock.MIGRATIONS, "k": _LOCK_KEY},
        )
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        connection.rollback()
        raise MigrationLockTimeout(_waited_too_long(connection, limits)) from None
    _set(connection, "lock_timeout", limits.lock_timeout_ms)
    _set(connection, "statement_timeout", limits.statement_timeout_ms)


def _waited_too_long(connection: Connection, limits: Limits) -> str:
    return (
        f"another migration run ({_holder(connection)}) held the migration lock for "
        f"more than STREETLOOP_MIGRATION_WAIT_S={limits.wait_s} s; nothing was migrated"
    )


def release_migration_lock(connection: Connection) -> None:
    connection.execute(
        text("SELECT pg_advisory_unlock(:c, :k)"),
        {"c": AdvisoryLock.MIGRATIONS, "k": _LOCK_KEY},
    )


def _set(connection: Connection, name: str, milliseconds: int) -> None:
    # set_config(..., false) is SET for the session, with the value as a bound parameter.
    connection.execute(
        text("SELECT set_config(:n, :v, false)"), {"n": name, "v": f"{milliseconds}ms"}
    )


def _name(connection: Connection, name: str) -> None:
    connection.execute(text("SELECT set_config('application_name', :v, false)"), {"v": name})


def _holder(connection: Connection) -> str:
    row = connection.execute(
        text(
            "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = :c AND l.objid = :k AND l.objsubid = 2"
        ),
        {"c": AdvisoryLock.MIGRATIONS, "k": _LOCK_KEY},
    ).first()
    connection.rollback()
    if row is None:
        return "one that has ended since"
    name = f" {row.application_name!r}" if row.application_name else ""
    return f"backend pid {row.pid}{name}, connected at {row.backend_start:%Y-%m-%d %H:%M:%S %Z}"
