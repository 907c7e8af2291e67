"""Shifts one by one and from weekly patterns, on real PostGIS: local times across DST,
days off that stay off, hand edits that stay, ending early, and the audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import shifts as rota
from core.errors import Conflict, ValidationFailed
from core.models import Shift, ShiftPattern, StatusEvent
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
WEEKDAYS = rota.PatternSpec(
    weekdays=(1, 2, 3, 4, 5),
    starts=time(7),
    ends=time(15, 30),
    breaks=(rota.BreakRule(time(11, 30), time(13, 30), 30),),
)
# Monday 23 March 2026; Andorra's clocks go forward on Sunday the 29th.
MONDAY = date(2026, 3, 23)
BEFORE = datetime(2026, 3, 22, 12, tzinfo=UTC)


def _shifts(db: Session, crew_id: int) -> list[Shift]:
    return list(db.scalars(select(Shift).where(Shift.crew_id == crew_id).order_by(Shift.starts_at)))


def _local(dt: datetime) -> str:
    return dt.astimezone(TZ).strftime("%a %d %H:%M")


def test_a_weekly_pattern_makes_weekday_shifts_in_local_time_across_dst(db: Session) -> None:
    crew = f.crew(db, "rota-1")
    pattern, made = rota.create_pattern(
        db, crew=crew, spec=WEEKDAYS, actor=f.SYSTEM, tz=TZ, horizon_days=14, now=BEFORE
    )
    shifts = _shifts(db, crew.id)
    assert made == len(shifts) == 10
    assert [s.starts_at.astimezone(TZ).date().isoweekday() for s in shifts] == [1, 2, 3, 4, 5] * 2
    # 07:00 local on both sides of the clock change: 06:00 UTC, then 05:00 UTC.
    assert {_local(s.starts_at)[-5:] for s in shifts} == {"07:00"} and {
        _local(s.ends_at)[-5:] for s in shifts
    } == {"15:30"}
    assert (
        shifts[0].starts_at.astimezone(UTC).hour == 6
        and shifts[-1].starts_at.astimezone(UTC).hour == 5
    )
    (lunch,) = shifts[-1].breaks
    assert (_local(lunch.earliest_start)[-5:], _local(lunch.latest_end)[-5:], lunch.minutes) == (
        "11:30",
        "13:30",
        30,
    )
    assert all(s.pattern_id == pattern.id for s in shifts)
    events = db.scalars(select(StatusEvent.to_status).where(StatusEvent.entity == "shift")).all()
    assert events.count("scheduled") == 10
    assert db.scalar(
        select(StatusEvent.note).where(StatusEvent.entity == "shift_pattern")
    ).startswith("rota-1: mon,tue,wed,thu,fri 07:00-15:30")
    # Running it again makes nothing twice.
    assert rota.materialize(db, tz=TZ, start=MONDAY, days=14, now=BEFORE) == 0


def test_a_day_off_and_a_hand_edit_survive_the_pattern(db: Session) -> None:
    crew = f.crew(db, "rota-2")
    pattern, _ = rota.create_pattern(
        db, crew=crew, spec=WEEKDAYS, actor=f.SYSTEM, tz=TZ, horizon_days=7, now=BEFORE
    )
    monday, tuesday = _shifts(db, crew.id)[:2]
    rota.cancel_shift(db, monday, reason="public holiday", actor=f.SYSTEM, tz=TZ, now=BEFORE)
    later = tuesday.starts_at + timedelta(hours=2)
    rota.update_shift(db, tuesday, starts_at=later, actor=f.SYSTEM, tz=TZ)
    assert tuesday.pattern_id is None
    assert rota.materialize(db, tz=TZ, start=MONDAY, days=7, now=BEFORE) == 0
    # Changing the pattern remakes the coming shifts it still owns, not the others.
    spec = rota.PatternSpec(
        weekdays=(1, 2, 3, 4, 5, 6), starts=time(6), ends=time(14), valid_from=MONDAY
    )
    _, made = rota.update_pattern(
        db, pattern, spec=spec, actor=f.SYSTEM, tz=TZ, horizon_days=7, now=BEFORE
    )
    shifts = _shifts(db, crew.id)
    assert made == 4  # Wednesday to Saturday
    assert [(_local(s.starts_at), rota.state_of(s)) for s in shifts] == [
        ("Mon 23 07:00", "cancelled"),
        ("Tue 24 09:00", "scheduled"),
        ("Wed 25 06:00", "scheduled"),
        ("Thu 26 06:00", "scheduled"),
        ("Fri 27 06:00", "scheduled"),
        ("Sat 28 06:00", "scheduled"),
    ]
    assert rota.shift_on(db, crew.id, MONDAY, TZ) is None
    # Ending the pattern on Thursday removes what it made for later days.
    assert (
        rota.end_pattern(db, pattern, last_day=date(2026, 3, 26), actor=f.SYSTEM, tz=TZ, now=BEFORE)
        == 2
    )
    assert [_local(s.starts_at)[:6] for s in _shifts(db, crew.id)] == [
        "Mon 23",
        "Tue 24",
        "Wed 25",
        "Thu 26",
    ]


def test_a_night_shift_ends_the_next_morning(db: Session) -> None:
    crew = f.crew(db, "night-1")
    spec = rota.PatternSpec(
        weekdays=(1,), starts=time(22), ends=time(6), breaks=(rota.BreakRule(time(1), time(3), 30),)
    )
    rota.create_pattern(db, crew=crew, spec=spec, actor=f.SYSTEM, tz=TZ, horizon_days=7, now=BEFORE)
    (night,) = _shifts(db, crew.id)
    assert (_local(night.starts_at), _local(night.ends_at)) == ("Mon 23 22:00", "Tue 24 06:00")
    assert _local(night.breaks[0].earliest_start) == "Tue 24 01:00"


def test_ending_a_shift_early_trims_its_breaks_and_is_audited(db: Session) -> None:
    crew = f.crew(db, "sick-1")
    day = datetime.combine(MONDAY, time(0), TZ)
    shift = rota.create_shift(
        db,
        crew=crew,
        starts_at=day + timedelta(hours=7),
        ends_at=day + timedelta(hours=15, minutes=30),
        breaks=[
            rota.BreakWindow(
                day + timedelta(hours=11, minutes=30), day + timedelta(hours=13, minutes=30), 30
            )
        ],
        actor=f.SYSTEM,
        tz=TZ,
    )
    at = day + timedelta(hours=11, minutes=45)
    rota.end_shift(db, shift, at=at, reason="went home sick", actor=f.SYSTEM, tz=TZ, now=at)
    assert (
        shift.ends_at == at
        and shift.end_reason == "went home sick"
        and rota.state_of(shift) == "ended_early"
    )
    assert shift.breaks == []  # 15 minutes of window left cannot hold a 30-minute break
    note = db.scalar(
        select(StatusEvent.note).where(
            StatusEvent.entity == "shift", StatusEvent.to_status == "ended_early"
        )
    )
    assert note == "sick-1 ends at 11:45 instead of 15:30: went home sick"
    with pytest.raises(Conflict, match="end it early"):
        rota.cancel_shift(db, shift, reason="x", actor=f.SYSTEM, tz=TZ, now=at)
    with pytest.raises(ValidationFailed, match="cancel it instead"):
        rota.end_shift(db, shift, at=day, reason="x", actor=f.SYSTEM, tz=TZ, now=at)


def test_overlapping_and_malformed_shifts_are_refused(db: Session) -> None:
    crew = f.crew(db, "clash-1")
    day = datetime.combine(MONDAY, time(0), TZ)
    rota.create_shift(
        db,
        crew=crew,
        starts_at=day + timedelta(hours=7),
        ends_at=day + timedelta(hours=15),
        actor=f.SYSTEM,
        tz=TZ,
    )
    with pytest.raises(Conflict, match="already has a shift Mon 23 Mar 07:00 to 15:00"):
        rota.create_shift(
            db,
            crew=crew,
            starts_at=day + timedelta(hours=14),
            ends_at=day + timedelta(hours=20),
            actor=f.SYSTEM,
            tz=TZ,
        )
    for starts, ends, breaks, field in [
        (day + timedelta(hours=9), day + timedelta(hours=8), [], "ends_at"),
        (day, day + timedelta(hours=25), [], "ends_at"),
        (
            day + timedelta(hours=16),
            day + timedelta(hours=20),
            [rota.BreakWindow(day + timedelta(hours=21), day + timedelta(hours=22), 30)],
            "breaks.0",
        ),
        (
            day + timedelta(hours=16),
            day + timedelta(hours=20),
            [
                rota.BreakWindow(
                    day + timedelta(hours=17), day + timedelta(hours=17, minutes=20), 30
                )
            ],
            "breaks.0",
        ),
    ]:
        with pytest.raises(ValidationFailed) as err:
            rota.create_shift(
                db, crew=crew, starts_at=starts, ends_at=ends, breaks=breaks, actor=f.SYSTEM, tz=TZ
            )
        assert err.value.field == field
    assert db.scalar(select(func.count()).select_from(Shift).where(Shift.crew_id == crew.id)) == 1


def test_a_day_off_given_while_the_pattern_changes_stays_off(committed) -> None:  # noqa: ANN001
    """Both take the crew's lock first: the pattern change waits for the day off to
    commit, then leaves the cancelled shift alone (and makes no new one that day)."""
    import threading
    import time as pause

    from sqlalchemy.orm import selectinload

    now = datetime.now(UTC)
    with committed() as s:
        crew = f.crew(s, "rota-race")
        pattern, _ = rota.create_pattern(
            s, crew=crew, spec=WEEKDAYS, actor=f.SYSTEM, tz=TZ, horizon_days=14, now=now
        )
        s.commit()
        pattern_id, crew_id = pattern.id, crew.id
        shift_id = s.scalars(
            select(Shift.id)
            .where(Shift.pattern_id == pattern_id, Shift.starts_at > now + timedelta(days=2))
            .order_by(Shift.starts_at)
        ).first()
        day = s.get(Shift, shift_id).starts_at.astimezone(TZ).date()
    holder = committed()
    shift = holder.scalar(
        select(Shift)
        .where(Shift.id == shift_id)
        .options(selectinload(Shift.breaks), selectinload(Shift.crew))
    )
    rota.cancel_shift(holder, shift, reason="annual leave", actor=f.SYSTEM, tz=TZ)
    errors: list[Exception] = []

    def change_pattern() -> None:
        with committed() as other:
            try:
                rota.update_pattern(
                    other,
                    other.get(ShiftPattern, pattern_id),
                    spec=WEEKDAYS,
                    actor=f.SYSTEM,
                    tz=TZ,
                    horizon_days=14,
                )
                other.commit()
            except Exception as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

    thread = threading.Thread(target=change_pattern)
    thread.start()
    pause.sleep(1.0)  # the pattern change is waiting for the crew's lock
    holder.commit()
    holder.close()
    thread.join(30)
    assert errors == []
    with committed() as s:
        that_day = [
            sh
            for sh in s.scalars(select(Shift).where(Shift.crew_id == crew_id))
            if sh.starts_at.astimezone(TZ).date() == day
        ]
        assert [rota.state_of(sh) for sh in that_day] == ["cancelled"]
