"""A streaming replica for the reads that may trail the writes by up to a bound (30 s).

CitiStat, the open-data export and Open311's request lists count and list what is
already there; none of them is a client reading back its own write. They may read from
a hot standby (`DATABASE_REPLICA_URL`) and leave the primary to the writes. Whether
they do, request by request, is `Replica.session()`: the replica's session when the
replica answers and is within `max_lag_s` of the primary, else None, and the caller
reads from the primary as it would with no replica at all.

The lag is measured, not assumed. A look (at most one per `check_every_s` per process,
one at a time) reads how far the primary has flushed its WAL, then asks the replica:

- it has replayed up to there: it trails by nothing that was committed before the look;
- it has not: its lag is the smaller of two upper bounds on how long a commit it lacks
  has been committed: the age of the last transaction it replayed
  (`now() - pg_last_xact_replay_timestamp()`), and the time since an earlier look at the
  primary whose WAL position it has replayed (all that was flushed by then, it has). The
  second keeps a long transaction on an otherwise quiet primary, which writes WAL but
  commits nothing for a while, from passing for lag. Either way the bound is never
  exceeded by more than one look's age.

A replica that refuses connections, lags beyond the bound, is not a standby at all
(promoted, or a wrong URL) or is one of another cluster (its system identifier is not
the primary's), or has no free connection in this process's pool for the look, is left
out until a later look finds it fit; a read that finds the pool full goes to the
primary too. Each fallback is logged as a WARNING naming the reason and each return as
an INFO, the first of each kind and then at most one per `warn_every_s` (counting the
ones left out), so neither a dead replica nor a flapping one floods the log."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from core.settings import Settings

log = logging.getLogger(__name__)

# How far the primary has flushed its WAL: what a replica can have received by now.
# And its cluster's system identifier, which a physical copy of it shares.
PRIMARY_POSITION = text(
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
    " ELSE pg_current_wal_flush_lsn() END::text,"
    " (SELECT system_identifier FROM pg_control_system())::text"
)
# Whether the replica is a standby, of which cluster, how far it has replayed, and how
# old its last replayed transaction is (seconds; NULL before it has replayed one).
REPLICA_POSITION = text(
    "SELECT pg_is_in_recovery(),"
    " (SELECT system_identifier FROM pg_control_system())::text,"
    " pg_last_wal_replay_lsn()::text,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
)
# A replica found behind is looked at once more after this pause before it is judged:
# a commit on an idle primary just before the look would otherwise count the whole quiet
# time since the previous one as lag.
SECOND_LOOK_S = 0.1
# The longest a look's query may take on a replica that accepts connections and hangs.
LOOK_TIMEOUT_MS = 2000
# The longest a read waits for one of the replica pool's connections before it goes to
# the primary instead.
POOL_TIMEOUT_S = 1.0
# An idle pooled connection to the replica is probed this long after its last traffic.
KEEPALIVE_IDLE_S = 10

Kind = Literal["ok", "down", "lag", "not_standby", "busy"]


@dataclass(frozen=True)
class Verdict:
    """What one look found: `kind` ok, or why the replica is left out (with `reason`)."""

    kind: Kind
    reason: str = ""
    lag_s: float | None = None

    @property
    def usable(self) -> bool:
        return self.kind == "ok"


class Replica:
    def __init__(
        self,
        engine: Engine,
        *,
        max_lag_s: float,
        check_every_s: float,
        warn_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_lag_s = max_lag_s
        self.check_every_s = check_every_s
        self.warn_every_s = warn_every_s
        self._clock = clock
        self._sessions = make_sessionmaker(engine)
        self._state = threading.Lock()  # guards the fields below
        self._looking = threading.Lock()  # one look at a time
        self._verdict: Verdict | None = None
        self._looked_at = 0.0
        self._told: dict[Kind, float] = {}  # when a message of each kind was last logged
        self._untold: dict[Kind, int] = {}  # and how many were not, since
        self._falling_back = False
        # (when, primary's flushed WAL position) of recent looks; only the looker uses it.
        self._seen: deque[tuple[float, int]] = deque(maxlen=256)

    @classmethod
    def from_settings(cls, settings: Settings) -> Replica | None:
        """The configured replica, or None when DATABASE_REPLICA_URL is not set."""
        if not settings.database_replica_url:
            return None
        timeout_s = settings.replica_connect_timeout_s
        engine = make_engine(
            settings.database_replica_url,
            connect_timeout_s=timeout_s,
            # A pooled connection to a replica host that stopped answering (packets
            # lost) fails its next statement, the pool's pre-ping first, once what it
            # sent has gone unacknowledged this long, not after TCP's ~15 minutes of
            # retransmissions; keepalives find it dead while it sits idle.
            connect_args={
                "tcp_user_timeout": timeout_s * 1000,
                "keepalives": 1,
                "keepalives_idle": KEEPALIVE_IDLE_S,
                "keepalives_interval": timeout_s,
                "keepalives_count": 3,
            },
            pool_size=5,
            max_overflow=10,
            # All busy: this read goes to the primary after a second, not after
            # SQLAlchemy's default 30 s, and not as an error.
            pool_timeout=POOL_TIMEOUT_S,
        )
        return cls(
            engine, max_lag_s=settings.replica_max_lag_s, check_every_s=settings.replica_check_s
        )

    @property
    def verdict(self) -> Verdict | None:
        """The last look's verdict (None before the first)."""
        return self._verdict

    def session(self, primary: Callable[[], Session]) -> Session | None:
        """A session on the replica, its connection already open, when the replica may
        answer now; None when the read must go to the primary (the reason is logged).
        `primary` gives the primary's session, for a look at its WAL position."""
        if not self._fit(primary):
            return None
        s = self._sessions()
        try:
            s.connection()  # fails here, not in the middle of the caller's read
        except PoolTimeout:
            # Busy, not down: this read goes to the primary, the next may find one free.
            s.close()
            self._tell(Verdict("busy", f"has no free connection ({self.engine.pool.status()})"))
            return None
        except DBAPIError as exc:
            s.close()
            self._record(Verdict("down", f"refuses connections: {_first_line(exc)}"))
            return None
        return s

    def dispose(self) -> None:
        self.engine.dispose()

    # -- the look --------------------------------------------------------------------

    def _fit(self, primary: Callable[[], Session]) -> bool:
        verdict, fresh = self._last()
        if verdict is not None and fresh:
            return verdict.usable
        if not self._looking.acquire(blocking=False):
            # Another thread is looking: the last verdict meanwhile (the primary before any).
            return verdict is not None and verdict.usable
        try:
            # A look that ended between this thread's check and its turn counts.
            verdict, fresh = self._last()
            if verdict is not None and fresh:
                return verdict.usable
            verdict = self._look(primary)
            self._record(verdict)
            return verdict.usable
        finally:
            self._looking.release()

    def _last(self) -> tuple[Verdict | None, bool]:
        """The last verdict, and whether it is fresh enough to trust."""
        with self._state:
            verdict, looked_at = self._verdict, self._looked_at
        return verdict, verdict is not None and self._clock() - looked_at < self.check_every_s

    def _look(self, primary: Callable[[], Session]) -> Verdict:
        at = self._clock()  # before the position: all flushed by then is at or before it
        position, system = primary().execute(PRIMARY_POSITION).one()
        try:
            return self._look_at_replica(position, system)
        finally:
            self._seen.append((at, lsn(position)))
            while self._seen and self._seen[0][0] < at - 2 * self.max_lag_s:
                self._seen.popleft()

    def _look_at_replica(self, position: str, system: str) -> Verdict:
        try:
            with self.engine.connect() as conn:
                verdict = self._judge(conn, position, system)
                if verdict.kind == "lag":
                    conn.rollback()
                    time.sleep(SECOND_LOOK_S)
                    verdict = self._judge(conn, position, system)
                conn.rollback()
                return verdict
        except PoolTimeout:
            # No connection to look with: left out, as if down, until the next look.
            return Verdict("busy", f"has no free connection ({self.engine.pool.status()})")
        except DBAPIError as exc:
            return Verdict("down", f"does not answer: {_first_line(exc)}")

    def _judge(self, conn: Connection, position: str, system: str) -> Verdict:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {LOOK_TIMEOUT_MS}")
        standby, its_system, replayed, age = conn.execute(REPLICA_POSITION).one()
        if not standby:
            return Verdict(
                "not_standby",
                "is not a standby (pg_is_in_recovery() is false): promoted, or not a replica",
            )
        if its_system != system:
            # Its WAL positions mean nothing next to the primary's.
            return Verdict(
                "not_standby",
                f"is a standby of another cluster (system identifier {its_system},"
                f" the primary's {system})",
            )
        done = lsn(replayed) if replayed else -1
        if done >= lsn(position):
            return Verdict("ok", lag_s=0.0)
        bounds = [] if age is None else [age]
        replayed_since = [at for at, flushed in self._seen if flushed <= done]
        if replayed_since:
            bounds.append(max(0.0, self._clock() - max(replayed_since)))
        if not bounds:
            return Verdict("lag", "is behind and has replayed no transaction since it started")
        lag = min(bounds)
        if lag > self.max_lag_s:
            return Verdict(
                "lag",
                f"is {lag:.1f} s behind the primary (STREETLOOP_REPLICA_MAX_LAG_S={self.max_lag_s:g})",
                lag,
            )
        return Verdict("ok", lag_s=lag)

    def _record(self, verdict: Verdict) -> None:
        """Keep the verdict until the next look, and tell a change of it."""
        with self._state:
            self._verdict = verdict
            self._looked_at = self._clock()
            back = verdict.usable and self._falling_back
            self._falling_back = not verdict.usable
        if back or not verdict.usable:
            self._tell(verdict)

    def _tell(self, verdict: Verdict) -> None:
        """Log a fallback as a WARNING, a return as an INFO: the first of each kind, then
        at most one per `warn_every_s` with how many were not logged, so neither a dead
        replica nor one that comes and goes floods the log."""
        now = self._clock()
        with self._state:
            last = self._told.get(verdict.kind)
            if last is not None and now - last < self.warn_every_s:
                self._untold[verdict.kind] = self._untold.get(verdict.kind, 0) + 1
                return
            self._told[verdict.kind] = now
            untold = self._untold.pop(verdict.kind, 0)
        since = f" ({untold} more times since the last such message)" if untold else ""
        if verdict.usable:
            log.info("the read replica is used again (lag %.1f s)%s", verdict.lag_s or 0.0, since)
        else:
            log.warning(
                "the read replica %s; reports and Open311 lists read from the primary%s",
                verdict.reason,
                since,
            )


def lsn(text: str) -> int:
    """A WAL position (`16/B374D848`) as a number, to compare."""
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def _first_line(exc: DBAPIError) -> str:
    """The driver's first line (it names the replica's address, never a password)."""
    words = str(exc.orig or exc).strip().splitlines()
    return (words[0] if words else type(exc).__name__)[:300]
