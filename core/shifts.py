"""Crews' shifts: set one by one, or made from a weekly pattern; edited, ended early (a
crew goes home sick) or cancelled (a day off). Plans are built from these rows only.

A pattern makes the coming shifts (`materialize`) for a horizon of days: when it is
created or changed, every night from the worker, and for the day of a plan when one is
requested. It never makes a shift for a day on which the crew already has one, cancelled
ones included, so a day off or a hand-edited shift is never made again. A hand-edited
shift leaves its pattern; changing or ending a pattern remakes only the coming shifts
it still owns.

Every change writes its audit event (entity `shift` or `shift_pattern`) in the caller's
transaction; the caller commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from core.errors import Conflict, ValidationFailed
from core.lifecycle.base import SYSTEM, Actor, audit
from core.locks import AdvisoryLock
from core.models import Crew, Depot, Shift, ShiftBreak, ShiftPattern

MAX_SHIFT = timedelta(hours=24)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOCK = AdvisoryLock.SHIFTS


@dataclass(frozen=True)
class BreakWindow:
    """A break of `minutes` that starts and ends inside [earliest, latest]."""

    earliest: datetime
    latest: datetime
    minutes: int


@dataclass(frozen=True)
class BreakRule:
    """A pattern's break, in local clock times of the shift's day (or the next, for a
    night shift's break after midnight)."""

    earliest: time
    latest: time
    minutes: int

    def as_json(self) -> dict[str, object]:
        return {
            "earliest": self.earliest.strftime("%H:%M"),
            "latest": self.latest.strftime("%H:%M"),
            "minutes": self.minutes,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BreakRule:
        return cls(
            time.fromisoformat(str(raw["earliest"])),
            time.fromisoformat(str(raw["latest"])),
            int(raw["minutes"]),
        )


def state_of(shift: Shift) -> str:
    if shift.cancelled_at is not None:
        return "cancelled"
    if shift.ended_early_at is not None:
        return "ended_early"
    return "scheduled"


def _lock_crew(session: Session, crew_id: int) -> None:
    """Shifts of one crew change one transaction at a time: an overlap check or a
    materialisation must not race another. Taken before any shift or pattern row, by
    every writer, so two of them never wait on each other in opposite orders."""
    session.execute(select(func.pg_advisory_xact_lock(_LOCK, crew_id)))


def _locked(session: Session, row: Shift | ShiftPattern) -> None:
    """The crew's lock, then the row as it is now, locked."""
    _lock_crew(session, row.crew_id)
    session.refresh(row, with_for_update=True)


def _hhmm(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%a %d %b %H:%M")


def _check_window(starts_at: datetime, ends_at: datetime, breaks: Sequence[BreakWindow]) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValidationFailed("shift times need a UTC offset", field="starts_at")
    if ends_at <= starts_at:
        raise ValidationFailed("a shift ends after it starts", field="ends_at")
    if ends_at - starts_at > MAX_SHIFT:
        raise ValidationFailed("a shift lasts at most 24 hours", field="ends_at")
    for k, b in enumerate(breaks):
        field = f"breaks.{k}"
        if b.minutes <= 0:
            raise ValidationFailed("a break lasts at least a minute", field=field)
        if not starts_at <= b.earliest < b.latest <= ends_at:
            raise ValidationFailed("a break's window lies inside its shift", field=field)
        if (b.latest - b.earliest) < timedelta(minutes=b.minutes):
            raise ValidationFailed(
                f"a {b.minutes}-minute break does not fit in its window", field=field
            )


def _overlapping(
    session: Session,
    crew_id: int,
    starts_at: datetime,
    ends_at: datetime,
    *,
    not_id: int | None = None,
) -> Shift | None:
    q = select(Shift).where(
        Shift.crew_id == crew_id,
        Shift.cancelled_at.is_(None),
        Shift.starts_at < ends_at,
        Shift.ends_at > starts_at,
    )
    if not_id is not None:
        q = q.where(Shift.id != not_id)
    return session.scalars(q.order_by(Shift.starts_at).limit(1)).first()


def _depot_id(session: Session, code: str | None, field: str) -> int | None:
    if code is None:
        return None
    depot_id = session.scalar(select(Depot.id).where(Depot.code == code))
    if depot_id is None:
        raise ValidationFailed(f"no depot {code!r}", field=field)
    return depot_id


def _describe(shift: Shift, tz: ZoneInfo) -> str:
    lunch = ", ".join(
        f"{b.minutes} min break within {b.earliest_start.astimezone(tz):%H:%M}-{b.latest_end.astimezone(tz):%H:%M}"
        for b in shift.breaks
    )
    return f"{_hhmm(shift.starts_at, tz)} to {shift.ends_at.astimezone(tz):%H:%M}" + (
        f", {lunch}" if lunch else ""
    )


def create_shift(
    session: Session,
    *,
    crew: Crew,
    starts_at: datetime,
    ends_at: datetime,
    breaks: Sequence[BreakWindow] = (),
    start_depot: str | None = None,
    end_depot: str | None = None,
    actor: Actor,
    tz: ZoneInfo,
) -> Shift:
    """One shift by hand. Refused (409) when it overlaps another of the crew's shifts."""
    _check_window(starts_at, ends_at, breaks)
    _lock_crew(session, crew.id)
    clash = _overlapping(session, crew.id, starts_at, ends_at)
    if clash is not None:
        raise Conflict(f"{crew.code} already has a shift {_describe(clash, tz)}", shift_id=clash.id)
    shift = Shift(
        crew_id=crew.id,
        starts_at=starts_at,
        ends_at=ends_at,
        start_depot_id=_depot_id(session, start_depot, "start_depot"),
        end_depot_id=_depot_id(session, end_depot, "end_depot"),
        breaks=[
            ShiftBreak(earliest_start=b.earliest, latest_end=b.latest, minutes=b.minutes)
            for b in breaks
        ],
    )
    session.add(shift)
    session.flush()
    audit(
        session,
        "shift",
        shift.id,
        from_status=None,
        to_status="scheduled",
        actor=actor,
        note=f"{crew.code}: {_describe(shift, tz)}",
    )
    return shift


def update_shift(
    session: Session,
    shift: Shift,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    breaks: Sequence[BreakWindow] | None = None,
    actor: Actor,
    tz: ZoneInfo,
) -> Shift:
    """Change a shift's times or breaks. A shift changed by hand leaves its pattern, which
    then neither remakes nor removes it. Asking for what it already is changes nothing."""
    _locked(session, shift)
    if shift.cancelled_at is not None:
        raise Conflict(f"shift {shift.id} was cancelled; create a new one", current="cancelled")
    new_start, new_end = starts_at or shift.starts_at, ends_at or shift.ends_at
    new_breaks = (
        list(breaks)
        if breaks is not None
        else [BreakWindow(b.earliest_start, b.latest_end, b.minutes) for b in shift.breaks]
    )
    _check_window(new_start, new_end, new_breaks)
    same_breaks = [(b.earliest, b.latest, b.minutes) for b in new_breaks] == [
        (b.earliest_start, b.latest_end, b.minutes) for b in shift.breaks
    ]
    if (new_start, new_end) == (shift.starts_at, shift.ends_at) and same_breaks:
        return shift
    clash = _overlapping(session, shift.crew_id, new_start, new_end, not_id=shift.id)
    if clash is not None:
        raise Conflict(
            f"{shift.crew.code} already has a shift {_describe(clash, tz)}", shift_id=clash.id
        )
    before = _describe(shift, tz)
    shift.starts_at, shift.ends_at = new_start, new_end
    if breaks is not None:
        shift.breaks = [
            ShiftBreak(earliest_start=b.earliest, latest_end=b.latest, minutes=b.minutes)
            for b in new_breaks
        ]
    shift.pattern_id = None
    session.flush()
    session.refresh(shift, ["breaks"])
    audit(
        session,
        "shift",
        shift.id,
        from_status=state_of(shift),
        to_status=state_of(shift),
        actor=actor,
        note=f"changed from {before} to {_describe(shift, tz)}",
    )
    return shift


def end_shift(
    session: Session,
    shift: Shift,
    *,
    reason: str,
    actor: Actor,
    tz: ZoneInfo,
    at: datetime | None = None,
    now: datetime | None = None,
) -> Shift:
    """End a shift under way early (a crew goes home sick). Breaks after the new end go;
    a break window the end cuts into is shortened, or goes if the break no longer fits."""
    now = now or datetime.now(UTC)
    at = at or now
    _locked(session, shift)
    if shift.cancelled_at is not None:
        raise Conflict(f"shift {shift.id} was cancelled", current="cancelled")
    if not reason.strip():
        raise ValidationFailed("say why the shift ends early", field="reason")
    if at <= shift.starts_at:
        raise ValidationFailed("the shift has not started by then; cancel it instead", field="at")
    if at >= shift.ends_at:
        raise ValidationFailed(
            f"the shift ends at {shift.ends_at.astimezone(tz):%H:%M} anyway", field="at"
        )
    planned_end = shift.ends_at
    shift.ends_at = at
    shift.ended_early_at = now
    shift.end_reason = reason.strip()
    for b in list(shift.breaks):
        if b.latest_end > at:
            b.latest_end = at
        if b.latest_end - b.earliest_start < timedelta(minutes=b.minutes):
            shift.breaks.remove(b)
    session.flush()
    audit(
        session,
        "shift",
        shift.id,
        from_status="scheduled",
        to_status="ended_early",
        actor=actor,
        note=f"{shift.crew.code} ends at {at.astimezone(tz):%H:%M} instead of "
        f"{planned_end.astimezone(tz):%H:%M}: {shift.end_reason}",
    )
    return shift


def cancel_shift(
    session: Session,
    shift: Shift,
    *,
    reason: str,
    actor: Actor,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> Shift:
    """A day off for a shift not yet started. The row stays (its pattern will not make it
    again); plans and reports ignore it."""
    now = now or datetime.now(UTC)
    _locked(session, shift)
    if shift.cancelled_at is not None:
        return shift
    if shift.starts_at <= now:
        raise Conflict(
            f"shift {shift.id} has started; end it early instead", current=state_of(shift)
        )
    if not reason.strip():
        raise ValidationFailed("say why the shift is cancelled", field="reason")
    shift.cancelled_at = now
    shift.end_reason = reason.strip()
    session.flush()
    audit(
        session,
        "shift",
        shift.id,
        from_status="scheduled",
        to_status="cancelled",
        actor=actor,
        note=f"{shift.crew.code}: {_describe(shift, tz)} cancelled: {shift.end_reason}",
    )
    return shift


# -- weekly patterns ---------------------------------------------------------------------


@dataclass(frozen=True)
class PatternSpec:
    weekdays: tuple[int, ...]  # ISO: 1 is Monday
    starts: time
    ends: time  # at or before `starts`: the next day (a night shift)
    breaks: tuple[BreakRule, ...] = ()
    valid_from: date | None = None
    valid_until: date | None = None
    start_depot: str | None = None
    end_depot: str | None = None


def _shift_times(
    pattern: ShiftPattern, day: date, tz: ZoneInfo
) -> tuple[datetime, datetime, list[BreakWindow]]:
    """The pattern's shift on `day`, as instants (a DST change moves no clock time)."""
    start = datetime.combine(day, pattern.starts_local, tz)
    overnight = pattern.ends_local <= pattern.starts_local
    end = datetime.combine(day + timedelta(days=1 if overnight else 0), pattern.ends_local, tz)

    def on_shift(t: time) -> datetime:
        # A clock time before the start belongs to the night shift's second day.
        return datetime.combine(
            day + timedelta(days=1 if overnight and t < pattern.starts_local else 0), t, tz
        )

    breaks = [
        BreakWindow(on_shift(r.earliest), on_shift(r.latest), r.minutes)
        for r in map(BreakRule.from_json, pattern.breaks)
    ]
    return start.astimezone(UTC), end.astimezone(UTC), breaks


def _check_pattern(spec: PatternSpec) -> None:
    if not spec.weekdays or any(d not in range(1, 8) for d in spec.weekdays):
        raise ValidationFailed("weekdays are days of the week, at least one", field="weekdays")
    if spec.starts == spec.ends:
        raise ValidationFailed("a shift ends after it starts", field="ends")
    if spec.valid_from and spec.valid_until and spec.valid_until < spec.valid_from:
        raise ValidationFailed("valid_until is before valid_from", field="valid_until")
    # The rules are checked on a real day, the way the shifts will be made.
    probe = ShiftPattern(
        starts_local=spec.starts, ends_local=spec.ends, breaks=[b.as_json() for b in spec.breaks]
    )
    start, end, breaks = _shift_times(probe, date(2026, 1, 5), ZoneInfo("UTC"))
    _check_window(start, end, breaks)


def _pattern_text(p: ShiftPattern) -> str:
    days = ",".join(WEEKDAYS[d - 1] for d in sorted(p.weekdays))
    rules = "; ".join(
        f"{b['minutes']} min break within {b['earliest']}-{b['latest']}" for b in p.breaks
    )
    until = f" until {p.valid_until}" if p.valid_until else ""
    return (
        f"{days} {p.starts_local:%H:%M}-{p.ends_local:%H:%M}"
        + (f", {rules}" if rules else "")
        + f", from {p.valid_from}{until}"
    )


def create_pattern(
    session: Session,
    *,
    crew: Crew,
    spec: PatternSpec,
    actor: Actor,
    tz: ZoneInfo,
    horizon_days: int,
    now: datetime | None = None,
) -> tuple[ShiftPattern, int]:
    """A weekly pattern, and the shifts it makes over the horizon; returns both (count)."""
    _check_pattern(spec)
    now = now or datetime.now(UTC)
    today = now.astimezone(tz).date()
    pattern = ShiftPattern(
        crew_id=crew.id,
        weekdays=sorted(set(spec.weekdays)),
        starts_local=spec.starts,
        ends_local=spec.ends,
        breaks=[b.as_json() for b in spec.breaks],
        valid_from=spec.valid_from or today,
        valid_until=spec.valid_until,
        start_depot_id=_depot_id(session, spec.start_depot, "start_depot"),
        end_depot_id=_depot_id(session, spec.end_depot, "end_depot"),
    )
    session.add(pattern)
    session.flush()
    audit(
        session,
        "shift_pattern",
        pattern.id,
        from_status=None,
        to_status="active",
        actor=actor,
        note=f"{crew.code}: {_pattern_text(pattern)}",
    )
    made = materialize(
        session,
        tz=tz,
        start=today,
        days=horizon_days,
        pattern_ids=[pattern.id],
        actor=actor,
        now=now,
    )
    return pattern, made


def _drop_coming(session: Session, pattern: ShiftPattern, after: datetime) -> int:
    """Remove the shifts the pattern still owns that start after `after`: not started,
    not cancelled, not ended early (those are the record of what happened). Their
    breaks go with them (ON DELETE CASCADE)."""
    gone = session.scalars(
        delete(Shift)
        .where(
            Shift.pattern_id == pattern.id,
            Shift.starts_at > after,
            Shift.cancelled_at.is_(None),
            Shift.ended_early_at.is_(None),
        )
        .returning(Shift.id)
    ).all()
    return len(gone)


def update_pattern(
    session: Session,
    pattern: ShiftPattern,
    *,
    spec: PatternSpec,
    actor: Actor,
    tz: ZoneInfo,
    horizon_days: int,
    now: datetime | None = None,
) -> tuple[ShiftPattern, int]:
    """Change a pattern: its coming shifts are made again from the new rules."""
    now = now or datetime.now(UTC)
    _check_pattern(spec)
    _locked(session, pattern)
    before = _pattern_text(pattern)
    dropped = _drop_coming(session, pattern, now)
    pattern.weekdays = sorted(set(spec.weekdays))
    pattern.starts_local, pattern.ends_local = spec.starts, spec.ends
    pattern.breaks = [b.as_json() for b in spec.breaks]
    pattern.valid_from = spec.valid_from or pattern.valid_from
    pattern.valid_until = spec.valid_until
    pattern.start_depot_id = _depot_id(session, spec.start_depot, "start_depot")
    pattern.end_depot_id = _depot_id(session, spec.end_depot, "end_depot")
    session.flush()
    audit(
        session,
        "shift_pattern",
        pattern.id,
        from_status="active",
        to_status="active",
        actor=actor,
        note=f"changed from {before} to {_pattern_text(pattern)}; {dropped} coming shifts made again",
    )
    made = materialize(
        session,
        tz=tz,
        start=now.astimezone(tz).date(),
        days=horizon_days,
        pattern_ids=[pattern.id],
        actor=actor,
        now=now,
    )
    return pattern, made


def end_pattern(
    session: Session,
    pattern: ShiftPattern,
    *,
    last_day: date,
    actor: Actor,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> int:
    """The pattern makes no shifts after `last_day`; those it made for later days go."""
    now = now or datetime.now(UTC)
    _locked(session, pattern)
    if last_day < pattern.valid_from:
        raise ValidationFailed(f"the pattern starts on {pattern.valid_from}", field="last_day")
    pattern.valid_until = last_day
    after = max(now, datetime.combine(last_day + timedelta(days=1), time(0), tz).astimezone(UTC))
    dropped = _drop_coming(session, pattern, after - timedelta(microseconds=1))
    audit(
        session,
        "shift_pattern",
        pattern.id,
        from_status="active",
        to_status="ended",
        actor=actor,
        note=f"no shifts after {last_day}; {dropped} coming shifts removed",
    )
    return dropped


def materialize(
    session: Session,
    *,
    tz: ZoneInfo,
    start: date,
    days: int,
    pattern_ids: Iterable[int] | None = None,
    crew_ids: Iterable[int] | None = None,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
) -> int:
    """Make the patterns' shifts for the days [start, start + days). A day on which the
    crew already has a shift (by hand, from another pattern, or cancelled) is left alone;
    so is a shift that would already be over. Returns how many were made."""
    now = now or datetime.now(UTC)
    q = (
        select(ShiftPattern)
        .options(selectinload(ShiftPattern.crew))
        .order_by(ShiftPattern.crew_id, ShiftPattern.id)
    )
    if pattern_ids is not None:
        q = q.where(ShiftPattern.id.in_(list(pattern_ids)))
    if crew_ids is not None:
        q = q.where(ShiftPattern.crew_id.in_(list(crew_ids)))
    last = start + timedelta(days=days - 1)
    q = q.where(
        ShiftPattern.valid_from <= last,
        (ShiftPattern.valid_until.is_(None)) | (ShiftPattern.valid_until >= start),
    )
    patterns = session.scalars(q).all()
    made = 0
    locked: set[int] = set()
    for pattern in patterns:
        if pattern.crew_id not in locked:
            _lock_crew(session, pattern.crew_id)
            locked.add(pattern.crew_id)
        first = max(start, pattern.valid_from)
        final = min(last, pattern.valid_until or last)
        taken = _days_with_shifts(
            session, pattern.crew_id, first - timedelta(days=1), final + timedelta(days=1), tz
        )
        day = first
        while day <= final:
            if day.isoweekday() in pattern.weekdays and day not in taken:
                starts_at, ends_at, breaks = _shift_times(pattern, day, tz)
                if ends_at > now:
                    shift = Shift(
                        crew_id=pattern.crew_id,
                        starts_at=starts_at,
                        ends_at=ends_at,
                        pattern_id=pattern.id,
                        start_depot_id=pattern.start_depot_id,
                        end_depot_id=pattern.end_depot_id,
                        breaks=[
                            ShiftBreak(
                                earliest_start=b.earliest, latest_end=b.latest, minutes=b.minutes
                            )
                            for b in breaks
                        ],
                    )
                    session.add(shift)
                    session.flush()
                    audit(
                        session,
                        "shift",
                        shift.id,
                        from_status=None,
                        to_status="scheduled",
                        actor=actor,
                        note=f"{pattern.crew.code}: {_describe(shift, tz)} (pattern {pattern.id})",
                    )
                    taken.add(day)
                    made += 1
            day += timedelta(days=1)
    return made


def _days_with_shifts(
    session: Session, crew_id: int, first: date, last: date, tz: ZoneInfo
) -> set[date]:
    lo = datetime.combine(first, time(0), tz)
    hi = datetime.combine(last + timedelta(days=1), time(0), tz)
    return {
        s.astimezone(tz).date()
        for s in session.scalars(
            select(Shift.starts_at).where(
                Shift.crew_id == crew_id, Shift.starts_at >= lo, Shift.starts_at < hi
            )
        )
    }


def shift_on(session: Session, crew_id: int, day: date, tz: ZoneInfo) -> Shift | None:
    """The crew's shift that starts on local `day`, cancelled ones aside (ended early ones
    count: the crew was at work)."""
    lo = datetime.combine(day, time(0), tz)
    return session.scalars(
        select(Shift)
        .where(
            Shift.crew_id == crew_id,
            Shift.cancelled_at.is_(None),
            Shift.starts_at >= lo,
            Shift.starts_at < lo + timedelta(days=1),
        )
        .options(selectinload(Shift.breaks))
        .order_by(Shift.starts_at)
        .limit(1)
    ).first()
