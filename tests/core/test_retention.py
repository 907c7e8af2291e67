"""Retention: old GPS fixes and old reporters' contact details are deleted, audited, and
CitiStat's figures do not move."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import (
    CrewPosition,
    CrewTrackDay,
    Notification,
    PositionPing,
    Redaction,
    RequestContact,
    ServiceRequest,
    StatusEvent,
)
from core.retention import purge_contact_batch, purge_tracks
from core.settings import Settings
from core.spatial import point
from reports import citistat
from tests import factories as f
from tests.factories.citistat_history import (
    END,
    NOW,
    START,
    TZ,
    History,
    build_citistat_history,
    utc,
)


@pytest.fixture
def history(db: Session) -> History:
    return build_citistat_history(db)


PERIODS = [
    (START, END),
    (date(2026, 3, 6), date(2026, 3, 10)),
    (date(2026, 3, 3), date(2026, 3, 3)),
    (date(2026, 2, 1), date(2026, 3, 31)),
]


def _all_figures(db: Session) -> dict[tuple[str, date, date], dict]:
    return {
        (g, a, b): asdict(citistat.compute(db, start=a, end=b, group_by=g, tz=TZ, now=NOW))
        for g in citistat.GROUP_BYS
        for a, b in PERIODS
    }


def _when_cutoff_is(day: date, days: int = 90) -> datetime:
    """The `now` for which a purge keeping `days` days deletes the fixes before `day`."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC) + timedelta(days=days)


def _closed_with_contact(db: Session, closed_at: datetime, email: str) -> ServiceRequest:
    sr = f.report(
        db,
        at=closed_at - timedelta(days=1),
        contact=Contact(email=email, first_name="Ada", phone="+376 1"),
    ).request
    event = ServiceRequestLifecycle.transition(
        db, sr, "cancelled", actor=f.SYSTEM, at=closed_at, public=True, note="closed"
    )
    db.flush()
    # The closing queued the resident's e-mail; it went out after a retry.
    told = db.scalars(select(Notification).where(Notification.status_event_id == event.id)).one()
    assert told.recipient == email
    told.state, told.last_error = "sent", f"421 try later <{email}>"
    db.flush()
    return sr


def test_citistat_figures_are_the_same_after_every_purge(db: Session, history: History) -> None:
    c1, c2 = history.crews["c1"], history.crews["c2"]
    east = f.offset(f.LON, f.LAT, 1000)
    far = f.offset(f.LON, f.LAT, 2500)
    # More track: a leg from before the periods, legs across local midnight (UTC+1:
    # 22:50Z is 23:50 the same day, 23:10Z is 00:10 the next), days without fixes between.
    for crew, at, (lon, lat) in [
        (c2, utc(2, 27, 9), far),
        (c2, utc(3, 5, 22, 50), (f.LON, f.LAT)),
        (c2, utc(3, 5, 23, 10), east),
        (c2, utc(3, 6, 8), far),
        (c2, utc(3, 9, 22, 55), east),
        (c2, utc(3, 10, 7), (f.LON, f.LAT)),
        (c1, utc(3, 11, 23, 30), far),
        (c1, utc(3, 12, 6), east),
    ]:
        db.add(PositionPing(crew_id=crew.id, at=at, location=point(lon, lat)))
    old = _closed_with_contact(db, utc(3, 4), "old.resident@example.org")
    db.flush()
    before = _all_figures(db)
    assert before[("crew", START, END)]["total"]["gps_km"] > 5  # the track is there to lose

    # Fixes before 6 March go, then before 12 March, then all (each run leaves one per crew).
    for cutoff in (date(2026, 3, 6), date(2026, 3, 12), date(2026, 12, 31)):
        result = purge_tracks(db, days=90, tz=TZ, now=_when_cutoff_is(cutoff))
        assert result.tracks_before == cutoff and result.fixes_deleted > 0
        assert _all_figures(db) == before, f"figures moved after purging the fixes before {cutoff}"
    assert db.scalar(select(func.count()).select_from(PositionPing)) == 2  # one per crew
    assert db.scalar(select(func.count()).select_from(CrewTrackDay)) > 0

    assert purge_contact_batch(db, days=365, now=NOW + timedelta(days=400)) == [old.id]
    db.expire_all()
    assert db.get(RequestContact, old.id) is None
    assert _all_figures(db) == before


def test_old_fixes_go_recent_ones_stay_and_each_crew_has_its_audit_event(db: Session) -> None:
    crew, idle = f.crew(db, "track-1"), f.crew(db, "track-idle")
    idle.active = False
    now = datetime.now(UTC)
    old = [now - timedelta(days=d, hours=h) for d in (120, 100) for h in (1, 2)]
    recent = [now - timedelta(days=3), now - timedelta(hours=1)]
    for at in old + recent:
        db.add(PositionPing(crew_id=crew.id, at=at, location=point(f.LON, f.LAT)))
    for at in old[:2]:
        db.add(PositionPing(crew_id=idle.id, at=at, location=point(f.LON, f.LAT)))
    db.add(CrewPosition(crew_id=idle.id, at=old[0], location=point(f.LON, f.LAT)))
    db.add(CrewPosition(crew_id=crew.id, at=recent[-1], location=point(f.LON, f.LAT)))
    db.flush()

    result = purge_tracks(db, days=90, tz=TZ, now=now)
    kept = db.execute(
        select(PositionPing.crew_id, PositionPing.at).order_by(
            PositionPing.crew_id, PositionPing.at
        )
    ).all()
    # Per crew the last fix before the cutoff stays (it starts the next leg), and every recent one.
    assert kept == [
        (crew.id, max(old)),
        *[(crew.id, at) for at in sorted(recent)],
        (idle.id, max(old[:2])),
    ]
    assert result.fixes_deleted == 3 + 1 and sorted(result.crews) == sorted([crew.id, idle.id])
    # A latest position as old as the purged track is gone; a current one stays.
    assert [p.crew_id for p in db.scalars(select(CrewPosition))] == [crew.id]

    events = db.scalars(
        select(StatusEvent).where(StatusEvent.entity == "crew").order_by(StatusEvent.entity_id)
    ).all()
    assert [(e.entity_id, e.from_status, e.to_status, e.actor, e.public) for e in events] == [
        (crew.id, "active", "active", "system", False),
        (idle.id, "inactive", "inactive", "system", False),
    ]
    assert "3 GPS fixes" in events[0].note and "STREETLOOP_RETAIN_TRACKS_DAYS" in events[0].note

    # Nothing more to delete: the next run writes no event.
    assert purge_tracks(db, days=90, tz=TZ, now=now).fixes_deleted == 0
    assert (
        db.scalar(select(func.count()).select_from(StatusEvent).where(StatusEvent.entity == "crew"))
        == 2
    )
    # 0 keeps everything.
    assert purge_tracks(db, days=0, tz=TZ, now=now + timedelta(days=3650)).fixes_deleted == 0


def test_contact_details_go_a_year_after_closing_audited_on_the_request(db: Session) -> None:
    f.service_type(db)
    supervisor = f.user(db, "sup@example.org", "supervisor")
    old = _closed_with_contact(db, f.days_ago(400), "old@example.org")
    recent = _closed_with_contact(db, f.days_ago(30), "recent@example.org")
    # Reported long ago, open again now: its reporter will be told of the new fix.
    reopened = _closed_with_contact(db, f.days_ago(500), "reopened@example.org")
    ServiceRequestLifecycle.transition(db, reopened, "reopened", actor=f.SYSTEM)
    waiting = Notification(
        status_event_id=db.scalar(select(func.max(StatusEvent.id))),
        service_request_id=old.id,
        kind="fixed",
        channel="email",
        recipient="old@example.org",
        state="pending",
    )
    db.add(waiting)
    db.add(
        Redaction(
            service_request_id=old.id,
            field="description",
            original="Ada from number 4",
            redacted="[redacted]",
            reason="names a neighbour",
            redacted_by_id=supervisor.id,
        )
    )
    db.flush()

    assert purge_contact_batch(db, days=365, now=datetime.now(UTC)) == [old.id]
    db.expire_all()
    assert db.get(RequestContact, old.id) is None
    assert (
        db.get(RequestContact, recent.id) is not None
        and db.get(RequestContact, reopened.id) is not None
    )
    rows = db.scalars(
        select(Notification)
        .where(Notification.service_request_id == old.id)
        .order_by(Notification.id)
    ).all()
    assert [(n.recipient, n.state) for n in rows] == [("", "sent"), ("", "failed")]
    assert rows[0].last_error == "421 try later <[deleted]>"
    assert rows[1].last_error == "contact details deleted (retention)"
    assert (
        db.scalar(select(Redaction.original).where(Redaction.service_request_id == old.id)) is None
    )
    # The others keep theirs: the recent one's closing, the reopened one's closing and reopening.
    assert (
        db.scalar(
            select(func.count()).select_from(Notification).where(Notification.recipient.like("%@%"))
        )
        == 3
    )

    event = db.scalars(
        select(StatusEvent)
        .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == old.id)
        .order_by(StatusEvent.id.desc())
    ).first()
    assert (event.from_status, event.to_status, event.actor, event.public) == (
        "cancelled",
        "cancelled",
        "system",
        False,
    )
    assert "contact details" in event.note and "STREETLOOP_RETAIN_CONTACT_DAYS" in event.note
    # Done once: a second run finds nothing and writes nothing.
    count = db.scalar(select(func.count()).select_from(StatusEvent))
    assert purge_contact_batch(db, days=365, now=datetime.now(UTC)) == []
    assert db.scalar(select(func.count()).select_from(StatusEvent)) == count


def test_retention_settings() -> None:
    base = {"DATABASE_URL": "postgresql://x@127.0.0.1/db"}
    cfg = Settings.from_env(base)
    assert (cfg.retain_tracks_days, cfg.retain_contact_days) == (90, 365)
    cfg = Settings.from_env(
        base | {"STREETLOOP_RETAIN_TRACKS_DAYS": "0", "STREETLOOP_RETAIN_CONTACT_DAYS": " 30 "}
    )
    assert (cfg.retain_tracks_days, cfg.retain_contact_days) == (0, 30)
    for name, raw in [
        ("STREETLOOP_RETAIN_TRACKS_DAYS", "-1"),
        ("STREETLOOP_RETAIN_CONTACT_DAYS", "a year"),
    ]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env(base | {name: raw})
