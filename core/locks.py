"""Every PostgreSQL advisory lock class StreetLoop takes, in one place.

`pg_advisory_xact_lock(class, key)` locks are shared by every process on the database,
whatever code takes them: two features that pick the same class wait on each other (or
deadlock) whenever their keys happen to collide. A second use of a number fails at
import, before it can ever reach a database. (Plain ints, not an IntEnum: drivers and
SQLAlchemy would have to be trusted to bind an enum member as its number.)"""

from __future__ import annotations


class AdvisoryLock:
    # key: the service type (intake joins a report to open work of its type one at a time)
    INTAKE = 31100
    # key: hashtext(plan date); plans, publishing and re-planning of one day
    PLAN_DAY = 31101
    # key: hashtext("<user id>:<Idempotency-Key>"); one crew completion at a time per key
    COMPLETION = 31102
    # key: the crew; making a crew's shifts from its patterns
    SHIFTS = 31103
    # key: the service area's row id
    SERVICE_AREA = 31104
    # key: hashtext(account key); one account's sign-ins, check to recorded failure
    SIGN_IN = 31105
    # key: hashtext("<api key id>:<client's update id>"); one resident's comment at a time per id
    COMMENT = 31106
    # key: 1; one process at a time re-queues the jobs of dead workers (tried, never waited for)
    STALLED_JOBS = 31110
    # key: 1; photo writers (shared) against the orphan-file sweep (exclusive, tried)
    MEDIA_WRITE = 31111
    # key: 1; one migration run at a time (session-level, held for the whole run; see
    # migrations/guard.py)
    MIGRATIONS = 31112


def _check_unique() -> None:
    seen: dict[int, str] = {}
    for name, number in vars(AdvisoryLock).items():
        if name.isupper():
            if number in seen:
                raise RuntimeError(
                    f"advisory lock class {number} is both {seen[number]} and {name}"
                )
            seen[number] = name


_check_unique()
