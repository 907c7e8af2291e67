"""Retention: crews' GPS tracks and reporters' contact details are not kept for ever.

Run by the worker's periodic `purge_personal_data` job; each part is idempotent, so a
missed run only means a later one does the work.

Tracks (`STREETLOOP_RETAIN_TRACKS_DAYS`, default 90). The fixes of whole city-local days
older than that are deleted. Before they go, what CitiStat's gps_km sums of them is
written per crew and day to `crew_track_days` (distances only, no positions), and
CitiStat reads those rows for the purged days: its figures are the same after a purge as
before. One fix per crew stays behind: its last one before the cutoff, so that the leg
from it to the crew's next fix can still be measured; it goes with the next run that
purges a later fix of the crew. A crew's latest position (`crew_positions`) as old as the
purged fixes goes too: dispatch has no use for it. The proof of a completion does not
need the track: the proof checks read the fixes around the visit when the completion is
submitted, and the completion keeps what the verification stands on (its own fix,
accuracy and time, and every check with its numbers, `completions.checks`). One audit
event per crew and run says how many fixes of which days went: an auditor reads a crew's
trail, and a run that deleted nothing writes nothing.

Contact details (`STREETLOOP_RETAIN_CONTACT_DAYS`, default 365 after the request closed).
A closed request's reporter details (`request_contacts`: e-mail, names, phone, device and
account ids), the details of the residents who commented on it (`request_comments`), the
e-mail address its outbox rows were sent to, and the originals of its redacted public
text are deleted. A request that is open again keeps them (its reporter
is told of the new fix). One audit event per request, on the request's own timeline
(staff only, not public): when a resident asks what became of their details, or an
auditor asks why request 1234 has no reporter, the answer is where they look first.
CitiStat reads none of these columns.

0 (for either setting) keeps the data for ever."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from core.db import rowcount
from core.lifecycle.base import SYSTEM, audit
from core.models import StatusEvent
from core.status import REQUEST_CLOSED_STATUSES, sql_list

# Requests purged per transaction: a first run over years of history neither holds one
# huge transaction nor locks every old request at once.
CONTACT_BATCH = 1000


@dataclass
class PurgeResult:
    tracks_before: date | None = None  # fixes of days before this one were deleted
    fixes_deleted: int = 0
    crews: list[int] = field(default_factory=list)
    positions_deleted: int = 0
    contacts_closed_before: datetime | None = None
    requests: list[int] = field(default_factory=list)


# Legs between consecutive fixes, as CitiStat's gps_km measures them, summed per crew and
# city-local day. A day already summed (its row exists) is not summed again: the fix left
# behind by the previous run is then only the start of the next day's first leg.
_ROLL_UP_SQL = """
    WITH legs AS (
        SELECT crew_id, (at AT TIME ZONE :tz)::date AS day,
               lag((at AT TIME ZONE :tz)::date) OVER w AS prev_day,
               ST_Distance(geography(location), geography(lag(location) OVER w)) AS leg_m
        FROM position_pings
        WHERE at < :cutoff
        WINDOW w AS (PARTITION BY crew_id ORDER BY at)
    )
    INSERT INTO crew_track_days (crew_id, day, metres, fixes, first_leg_m, first_leg_from)
    SELECT crew_id, day,
           coalesce(sum(leg_m) FILTER (WHERE prev_day = day), 0),
           count(*),
           -- Only a day's first fix has its previous fix on an earlier day.
           max(leg_m) FILTER (WHERE prev_day < day),
           max(prev_day) FILTER (WHERE prev_day < day)
    FROM legs
    GROUP BY crew_id, day
    ON CONFLICT (crew_id, day) DO NOTHING
"""

_DELETE_FIXES_SQL = """
    WITH anchor AS (
        SELECT crew_id, max(at) AS at FROM position_pings WHERE at < :cutoff GROUP BY crew_id
    ), gone AS (
        DELETE FROM position_pings pp USING anchor a
        WHERE pp.crew_id = a.crew_id AND pp.at < a.at
        RETURNING pp.crew_id, (pp.at AT TIME ZONE :tz)::date AS day
    )
    SELECT gone.crew_id, crews.active, count(*) AS fixes, min(day) AS first_day, max(day) AS last_day
    FROM gone JOIN crews ON crews.id = gone.crew_id
    GROUP BY gone.crew_id, crews.active
    ORDER BY gone.crew_id
"""

_CLOSED = sql_list(REQUEST_CLOSED_STATUSES)
# The comments whose commenter's details are still kept (the partial index
# ix_request_comments_with_contact is spelled the same).
_COMMENTER_KEPT = (
    "email IS NOT NULL OR first_name IS NOT NULL OR last_name IS NOT NULL OR phone IS NOT NULL"
)
# Candidates come from the rows that hold details (contacts; originals of redactions and
# residents' comments' authors, which an anonymous report may have too), not from every
# request closed long ago: those only grow, year after year, while the rows still to purge
# stay about a year's worth. The outbox's addresses were copied from the contact row, so
# they go with it.
# SKIP LOCKED: a request being reopened right now is left for the next run; the lock
# keeps it closed while its details go.
_CONTACT_CANDIDATES_SQL = f"""
    SELECT sr.id, sr.detailed_status
    FROM service_requests sr
    WHERE sr.id IN (SELECT request_id FROM request_contacts
                    UNION SELECT service_request_id FROM redactions WHERE original IS NOT NULL
                    UNION SELECT service_request_id FROM request_comments WHERE {_COMMENTER_KEPT})
      AND sr.closed_at < :cutoff AND sr.detailed_status IN ({_CLOSED})
    ORDER BY sr.id
    LIMIT :batch
    FOR UPDATE OF sr SKIP LOCKED
"""


def purge_tracks(session: Session, *, days: int, tz: ZoneInfo, now: datetime) -> PurgeResult:
    """Delete the GPS fixes of city-local days more than `days` ago (see the module)."""
    result = PurgeResult()
    if days <= 0:
        return result
    result.tracks_before = now.astimezone(tz).date() - timedelta(days=days)
    # The day's start as the database reckons it, exactly as CitiStat's periods and the
    # days below are (a zone whose clocks change at midnight must not split a day).
    cutoff = session.scalar(
        text("SELECT CAST(:day AS date)::timestamp AT TIME ZONE :tz"),
        {"day": result.tracks_before, "tz": tz.key},
    )
    params = {"cutoff": cutoff, "tz": tz.key}
    session.execute(text(_ROLL_UP_SQL), params)
    for row in session.execute(text(_DELETE_FIXES_SQL), params):
        result.fixes_deleted += row.fixes
        result.crews.append(row.crew_id)
        state = "active" if row.active else "inactive"
        audit(
            session,
            "crew",
            row.crew_id,
            from_status=state,
            to_status=state,
            actor=SYSTEM,
            at=now,
            note=f"retention: {row.fixes} GPS fixes of {row.first_day} to {row.last_day} deleted, older than "
            f"{days} days (STREETLOOP_RETAIN_TRACKS_DAYS); CitiStat keeps their distances",
        )
    # A crew's latest position older than the tracks is no position dispatch can use.
    result.positions_deleted = rowcount(
        session.execute(text("DELETE FROM crew_positions WHERE at < :cutoff"), params)
    )
    return result


def purge_contact_batch(
    session: Session, *, days: int, now: datetime, batch: int = CONTACT_BATCH
) -> list[int]:
    """Delete the contact details of up to `batch` requests closed more than `days` ago;
    their ids (empty when none is left). The caller commits."""
    cutoff = now - timedelta(days=days)
    rows = session.execute(text(_CONTACT_CANDIDATES_SQL), {"cutoff": cutoff, "batch": batch}).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    params = {"ids": ids}
    ids_param = bindparam("ids", type_=ARRAY(BigInteger))
    session.execute(
        text("DELETE FROM request_contacts WHERE request_id = ANY(:ids)").bindparams(ids_param),
        params,
    )
    # The outbox keeps that it told the resident and when, not whom. A message still
    # waiting after all this time will not be sent: it fails, saying why.
    session.execute(
        text("""
        UPDATE notifications
        SET recipient = '',
            last_error = CASE WHEN state IN ('pending', 'sending') THEN 'contact details deleted (retention)'
                              ELSE replace(last_error, recipient, '[deleted]') END,
            state = CASE WHEN state IN ('pending', 'sending') THEN 'failed' ELSE state END
        WHERE service_request_id = ANY(:ids) AND channel = 'email' AND recipient <> ''
    """).bindparams(ids_param),
        params,
    )
    session.execute(
        text(
            "UPDATE redactions SET original = NULL WHERE service_request_id = ANY(:ids)"
        ).bindparams(ids_param),
        params,
    )
    # The comments stay (their text is public, and a client's resend must still be
    # recognised by its update id); who wrote them goes. A comment's media_url stays too:
    # it names no one, it is a link to the client's own public photo (FixMyStreet's),
    # which that site moderates and keeps; a supervisor's redaction drops it if need be.
    session.execute(
        text(f"""
        UPDATE request_comments SET email = NULL, first_name = NULL, last_name = NULL, phone = NULL
        WHERE service_request_id = ANY(:ids) AND ({_COMMENTER_KEPT})
    """).bindparams(ids_param),
        params,
    )
    note = (
        f"retention: the reporter's and commenters' contact details (and the originals of redacted text) deleted, "
        f"{days} days after the request closed (STREETLOOP_RETAIN_CONTACT_DAYS)"
    )
    # One INSERT for the batch (a first run writes hundreds of thousands of these): the
    # rows `core.lifecycle.base.audit` would write, in the same transaction.
    session.execute(
        insert(StatusEvent),
        [
            {
                "entity": "service_request",
                "entity_id": r.id,
                "from_status": r.detailed_status,
                "to_status": r.detailed_status,
                "actor": SYSTEM.label,
                "actor_user_id": None,
                "at": now,
                "note": note,
                "public": False,
            }
            for r in rows
        ],
    )
    return ids


def purge(
    sessions: sessionmaker[Session],
    *,
    tracks_days: int,
    contact_days: int,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> PurgeResult:
    """Both purges, each batch in its own committed transaction with its audit events."""
    now = now or datetime.now(UTC)
    with sessions.begin() as s:
        result = purge_tracks(s, days=tracks_days, tz=tz, now=now)
    if contact_days > 0:
        result.contacts_closed_before = now - timedelta(days=contact_days)
        while True:
            with sessions.begin() as s:
                ids = purge_contact_batch(s, days=contact_days, now=now)
            result.requests += ids
            if len(ids) < CONTACT_BATCH:
                break
    return result
