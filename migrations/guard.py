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
from collections.abc import Mapping
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


def take_migration_lock(
    connection: Connection, limits: Limits, *, for_transaction: bool = False
) -> None:
    """Wait for the migration lock, then set the migrations' timeouts on this session.

    The lock and the settings belong to the session, not to a transaction: they hold
    through the one transaction per migration that alembic then runs on this connection,
    until `release_migration_lock` or the connection's end. `for_transaction` takes a lock
    that the current transaction's end releases instead (a caller's connection whose
    transaction all the migrations run in)."""
    _set(connection, "statement_timeout", 0)
    _set(connection, "lock_timeout", limits.wait_s * 1000)
    lock = "pg_advisory_xact_lock" if for_transaction else "pg_advisory_lock"
    try:
        connection.execute(
            text(f"SELECT {lock}(:c, :k)"), {"c": AdvisoryLock.MIGRATIONS, "k": _LOCK_KEY}
        )
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        connection.rollback()
        raise MigrationLockTimeout(
            f"another migration run ({_holder(connection)}) held the migration lock for "
            f"more than STREETLOOP_MIGRATION_WAIT_S={limits.wait_s} s; nothing was migrated"
        ) from None
    _set(connection, "lock_timeout", limits.lock_timeout_ms)
    _set(connection, "statement_timeout", limits.statement_timeout_ms)


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
