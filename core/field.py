"""Crews in the field: GPS tracks and progress events from their phones.

Phones work offline and resend: every write here is idempotent, and events are
applied by the time the device says they happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.errors import Conflict, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import CLIENT_TIME_FLOOR, StatusEvent, WorkOrder
from core.spatial import point
from core.status import CREW_STEPS, WorkOrderStatus
from core.workorders import change_status
from geo.proof import Ping

MAX_PINGS_PER_BATCH = 5000
# A device clock may run a little fast; beyond this a timestamp is not believable.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# No time a client sends is believed before this: a phone whose clock was reset says
# 1970 or 2000-01-01, a buggy one year 1 (which PostgreSQL stores as a BC date that no
# read can turn back into a Python datetime). The columns' CHECK constraints hold the
# same floor (see core.models), so no such row can exist whatever writes it.
SANE_FLOOR = CLIENT_TIME_FLOOR
# How long before its work order existed a crew's report may say it happened: a phone
# that synced late, or a crew told by radio before the office typed the order in.
BEFORE_ORDER_TOLERANCE = timedelta(hours=24)

# A batch goes in by COPY into a staging table, then one set-based INSERT from it, so that
# resends are still skipped by ON CONFLICT: in the database alone that stores a batch of
# 1,000 about 1.3-1.4 times as fast as sending its columns as arrays to unnest, and more
# at 5,000 (bench/crew_phone.py). The staging table is a TEMP table of the connection,
# created when missing (IF NOT EXISTS: a rolled-back transaction may have taken it with it,
# which no flag of ours would know) and ON COMMIT DELETE ROWS, which costs nothing in a
# transaction that did not touch it. ON COMMIT DROP, created per transaction, was not
# faster beyond the noise, and it writes and deletes catalog rows for every batch. The
# INSERT empties the table itself (DELETE ... RETURNING), so a second batch in the same
# transaction never sees the first one's rows. All three statements must share one
# transaction: in autocommit the COPY's own commit would empty the table before the INSERT
# (the whole batch then counted as resent), so ingest refuses to run outside one. Behind a
# transaction-pooling pgbouncer that holds too, as one transaction keeps its connection.
_STAGING = "pg_temp.streetloop_ping_batch"
_CREATE_STAGING = text(f"""
    CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
        at timestamptz NOT NULL, lon float8 NOT NULL, lat float8 NOT NULL,
        acc float8, speed float8, heading float8
    ) ON COMMIT DELETE ROWS
""")
_COPY_PINGS = f"COPY {_STAGING} (at, lon, lat, acc, speed, heading) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("timestamptz", "float8", "float8", "float8", "float8", "float8")
_STORE_PINGS = text(f"""
    WITH batch AS (
        DELETE FROM {_STAGING} RETURNING *
    ), stored AS (
        INSERT INTO position_pings (crew_id, at, location, accuracy_m, speed_mps, heading_deg)
        SELECT :crew, at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), acc, speed, heading FROM batch
        ON CONFLICT (crew_id, at) DO NOTHING
        RETURNING 1
    ), latest AS (
        SELECT * FROM batch ORDER BY at DESC LIMIT 1
    ), moved AS (
        INSERT INTO crew_positions (crew_id, at, location, accuracy_m, speed_mps, heading_deg)
        SELECT :crew, at, ST_SetSRID(ST_MakePoint(lon, lat), 4326), acc, speed, heading FROM latest
        ON CONFLICT (crew_id) DO UPDATE SET at = EXCLUDED.at, location = EXCLUDED.location,
            accuracy_m = EXCLUDED.accuracy_m, speed_mps = EXCLUDED.speed_mps, heading_deg = EXCLUDED.heading_deg
        WHERE crew_positions.at < EXCLUDED.at
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM moved)
""")


_NOTE_FIX = text("""
    INSERT INTO crew_positions (crew_id, at, location, accuracy_m)
    VALUES (:crew, :at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :acc)
    ON CONFLICT (crew_id) DO UPDATE SET at = EXCLUDED.at, location = EXCLUDED.location,
        accuracy_m = EXCLUDED.accuracy_m, speed_mps = NULL, heading_deg = NULL
    WHERE crew_positions.at < EXCLUDED.at
""")


def check_client_time(
    name: str, value: datetime, *, now: datetime, earliest: datetime | None = None
) -> None:
    """Refuse (422 on `name`) a client's time outside [earliest, now + skew], earliest
    never before SANE_FLOOR. Only comparisons here: converting such a value (astimezone)
    could itself overflow."""
    floor = max(SANE_FLOOR, earliest) if earliest is not None else SANE_FLOOR
    if value < floor:
        raise ValidationFailed(
            f"{name} {value.isoformat()} is before {floor.isoformat(timespec='seconds')}; check the device's clock",
            field=name,
        )
    if value > now + MAX_CLOCK_SKEW:
        raise ValidationFailed(f"{name} is in the future; check the device's clock", field=name)


def order_earliest(wo: WorkOrder) -> datetime:
    """The earliest believable time of a crew's report on `wo`."""
    return wo.created_at - BEFORE_ORDER_TOLERANCE


def note_fix(
    session: Session,
    crew_id: int,
    *,
    at: datetime,
    lon: float,
    lat: float,
    accuracy_m: float | None = None,
) -> None:
    """A GPS fix that came with a progress event or a completion is the crew's latest
    position too, if nothing newer is known: plans and arrival projections start there."""
    session.execute(
        _NOTE_FIX, {"crew": crew_id, "at": at, "lon": lon, "lat": lat, "acc": accuracy_m}
    )


def ingest_positions(
    session: Session, crew_id: int, pings: list[Ping], *, now: datetime | None = None
) -> tuple[int, int, int]:
    """Store a batch (COPY, then one INSERT); returns (stored, already known, rejected).

    Resent pings are skipped. Pings dated in the future or before SANE_FLOOR are dropped,
    not the batch: a phone with a wrong clock would otherwise resend the same refused
    batch forever. (A track belongs to no one order, so the floor is not an order's.)"""
    if len(pings) > MAX_PINGS_PER_BATCH:
        raise ValidationFailed(f"at most {MAX_PINGS_PER_BATCH} pings per request", field="pings")
    limit = (now or datetime.now(UTC)) + MAX_CLOCK_SKEW
    sent = len(pings)
    pings = [p for p in pings if SANE_FLOOR <= p.at <= limit]
    rejected = sent - len(pings)
    if not pings:
        return 0, 0, rejected
    session.execute(_CREATE_STAGING)
    # The session's own connection, inside the caller's transaction: COPY is psycopg's.
    raw = session.connection().connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"ping ingest needs a psycopg 3 connection, not {type(raw).__name__}")
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise RuntimeError("ping ingest must run inside a transaction (see _STAGING)")
    with raw.cursor() as cur, cur.copy(_COPY_PINGS) as copy:
        copy.set_types(_COPY_TYPES)
        write = copy.write_row
        for p in pings:
            write((p.at, p.lon, p.lat, p.accuracy_m, p.speed_mps, p.heading_deg))
    row = session.execute(_STORE_PINGS, {"crew": crew_id}).one()
    stored = int(row[0])
    return stored, len(pings) - stored, rejected


# -- progress events ---------------------------------------------------------------

EVENT_TYPES = CREW_STEPS


@dataclass(frozen=True)
class FieldEvent:
    type: str
    device_time: datetime
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    reason: str | None = None


def last_event_at(
    session: Session, wo: WorkOrder, statuses: tuple[str, ...] | None = None
) -> datetime | None:
    """When the order last changed (to one of `statuses`, if given)."""
    q = select(func.max(StatusEvent.at)).where(
        StatusEvent.entity == "work_order", StatusEvent.entity_id == wo.id
    )
    if statuses is not None:
        q = q.where(StatusEvent.to_status.in_(statuses))
    return session.scalar(q)


def apply_event(
    session: Session, wo: WorkOrder, event: FieldEvent, *, actor: Actor, now: datetime | None = None
) -> bool:
    """Apply a phone's event; False if it was already applied (a resend). Raises Conflict
    (with the current state) when the lifecycle no longer allows it, e.g. the order was
    reassigned, or a later event has already moved it on."""
    if event.type not in EVENT_TYPES:
        raise ValidationFailed(f"type must be one of {', '.join(EVENT_TYPES)}", field="type")
    check_client_time(
        "device_time", event.device_time, now=now or datetime.now(UTC), earliest=order_earliest(wo)
    )
    resent = session.scalar(
        select(StatusEvent.id).where(
            StatusEvent.entity == "work_order",
            StatusEvent.entity_id == wo.id,
            StatusEvent.to_status == event.type,
            StatusEvent.at == event.device_time,
        )
    )
    if resent is not None:
        return False
    # Only the crew's own reports count: a phone that was offline reports work done
    # before the office's latest click.
    last = last_event_at(session, wo, (*EVENT_TYPES, WorkOrderStatus.COMPLETED))
    if last is not None and event.device_time < last and wo.status != event.type:
        # The crew already reported something later than this (events from an offline phone).
        raise Conflict(
            f"work order {wo.id} changed after {event.device_time.isoformat()}; it is now {wo.status}",
            current=wo.status,
            crew_id=wo.crew_id,
        )
    if wo.status == event.type:
        return False
    if not WorkOrderLifecycle.can(wo.status, event.type):
        raise Conflict(
            f"work order {wo.id} is {wo.status}; '{event.type}' is not possible now",
            current=wo.status,
            crew_id=wo.crew_id,
        )
    fix = (event.lon, event.lat) if event.lat is not None and event.lon is not None else None
    location = point(*fix) if fix is not None else None
    context: dict[str, Any] = {"reason": event.reason} if event.type == "unable" else {}
    # The audit trail records when and where it happened on the street, not when the phone got signal.
    change_status(
        session,
        wo,
        event.type,
        actor=actor,
        note=event.reason,
        at=event.device_time,
        location=location,
        **context,
    )
    if fix is not None and wo.crew_id is not None:
        lon, lat = fix
        note_fix(
            session, wo.crew_id, at=event.device_time, lon=lon, lat=lat, accuracy_m=event.accuracy_m
        )
    return True
