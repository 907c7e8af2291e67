"""The rosters desk of the console: a dispatcher sets crews' weekly patterns and sees their
shifts appear in the grid of the coming days (a night shift drawn on both of its days),
adds a one-off shift with a break, is told in words why an overlapping one is refused,
and ends today's shift early; a supervisor reads the same grid without the means to
change it. Each step is checked in the database, not only on the screen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from core.models import Crew, Shift, ShiftPattern, StatusEvent
from tests import factories as f
from tests.browser.pages import (
    DESKTOP,
    TIME_ZONE,
    LiveServer,
    accessible,
    shot,
    sign_in,
    wait_for,
)

TZ = ZoneInfo(TIME_ZONE)
DISPATCHER = "rosters-dispatcher@example.org"
SUPERVISOR = "rosters-supervisor@example.org"
DAY_CREW, NIGHT_CREW, ONE_OFF_CREW = "roster-day", "roster-night", "roster-oneoff"


@pytest.fixture(scope="module")
def roster_city(live: LiveServer) -> Iterator[None]:
    """Crews and users of this module's own; the live database is shared by the stage."""
    with live.sessions() as s:
        for code in (DAY_CREW, NIGHT_CREW, ONE_OFF_CREW):
            f.crew(s, code)
        f.user(s, DISPATCHER, "dispatcher")
        f.user(s, SUPERVISOR, "supervisor")
        s.commit()
    yield


def _shifts(live: LiveServer, crew: str) -> list[Shift]:
    with live.sessions() as s:
        q = (
            select(Shift)
            .join(Crew, Shift.crew_id == Crew.id)
            .where(Crew.code == crew)
            .options(selectinload(Shift.breaks))
            .order_by(Shift.starts_at)
        )
        shifts = list(s.scalars(q))
        s.expunge_all()
        return shifts


def _patterns(live: LiveServer, crew: str) -> list[ShiftPattern]:
    with live.sessions() as s:
        q = (
            select(ShiftPattern)
            .join(Crew, ShiftPattern.crew_id == Crew.id)
            .where(Crew.code == crew)
        )
        patterns = list(s.scalars(q))
        s.expunge_all()
        return patterns


def _local(value: datetime) -> datetime:
    return value.astimezone(TZ)


def _cell(page: Any, crew: str, day: date) -> Any:
    return page.locator(
        f'#rosters-grid button.cell[data-crew="{crew}"][data-day="{day.isoformat()}"]'
    )


def _set_pattern(
    page: Any, crew: str, day: date, starts: str, ends: str, brk: tuple[str, str, str]
) -> Any:
    _cell(page, crew, day).click()
    page.locator("#rosters-pattern-new").click()
    form = page.locator("#rosters-pattern-form")
    for weekday in (
        "Saturday",
        "Sunday",
    ):  # every day, so the test does not depend on today's weekday
        form.get_by_label(weekday).check()
    form.get_by_label("Starts", exact=True).fill(starts)
    form.get_by_label("Ends", exact=True).fill(ends)
    form.get_by_label("Break 1: Earliest start").fill(brk[0])
    form.get_by_label("Break 1: Latest end").fill(brk[1])
    form.get_by_label("Break 1: Minutes").fill(brk[2])
    return form


def test_a_dispatcher_sets_patterns_adds_a_shift_is_refused_an_overlap_and_ends_a_shift_early(
    browser_context: Any, live: LiveServer, roster_city: None
) -> None:
    context, watch = browser_context(DESKTOP)
    watch.expect(r"status of 409 .*/api/v1/shifts")
    watch.expect(r"status of 422 .*/api/v1/shift-patterns")
    page = context.new_page()
    page.goto("/console/#/rosters")
    sign_in(page, DISPATCHER)
    page.locator("#rosters-grid").wait_for()
    today = datetime.now(TZ).date()
    tomorrow, after = today + timedelta(days=1), today + timedelta(days=2)
    expect(_cell(page, DAY_CREW, tomorrow)).to_contain_text("Off")
    accessible(page, "rosters grid")

    # The keyboard moves through the grid as through a spreadsheet.
    _cell(page, DAY_CREW, today).focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.day") == tomorrow.isoformat()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.crew") != DAY_CREW

    # A weekly pattern: every day 07:00-15:30, lunch within 11:30-13:30. A break longer than
    # its window is refused first, with the API's reason, and nothing is stored.
    form = _set_pattern(page, DAY_CREW, tomorrow, "07:00", "15:30", ("11:30", "13:30", "300"))
    accessible(page, "rosters pattern editor")
    shot(page, "console-rosters-pattern-editor")
    form.get_by_role("button", name="Save the pattern").click()
    expect(form.locator(".message")).to_contain_text(
        "Not saved: a 300-minute break does not fit in its window"
    )
    assert _patterns(live, DAY_CREW) == []
    form.get_by_label("Break 1: Minutes").fill("30")
    form.get_by_role("button", name="Save the pattern").click()
    expect(page.locator("#toast")).to_contain_text("Pattern saved")
    (pattern,) = _patterns(live, DAY_CREW)
    assert sorted(pattern.weekdays) == [1, 2, 3, 4, 5, 6, 7] and pattern.valid_until is None
    assert pattern.breaks == [{"earliest": "11:30", "latest": "13:30", "minutes": 30}]
    shifts = {_local(s.starts_at).date(): s for s in _shifts(live, DAY_CREW)}
    for k in range(1, 7):
        day = today + timedelta(days=k)
        assert (_local(shifts[day].starts_at).time(), _local(shifts[day].ends_at).time()) == (
            time(7),
            time(15, 30),
        ), day
        assert [(b.minutes, _local(b.earliest_start).time()) for b in shifts[day].breaks] == [
            (30, time(11, 30))
        ]
        expect(_cell(page, DAY_CREW, day)).to_contain_text("07:00–15:30")
        expect(_cell(page, DAY_CREW, day)).to_contain_text("Break 30 min, 11:30–13:30")
    expect(page.locator("#rosters-grid tbody th", has_text=DAY_CREW)).to_contain_text(
        "Every day 07:00–15:30"
    )

    # A night pattern: 22:00 to 06:00 the next morning, its break after midnight.
    form = _set_pattern(page, NIGHT_CREW, tomorrow, "22:00", "06:00", ("02:00", "03:00", "30"))
    form.get_by_role("button", name="Save the pattern").click()
    # (The first pattern's toast may still show: wait for the grid instead.)
    expect(_cell(page, NIGHT_CREW, tomorrow)).to_contain_text("22:00–06:00 +1")
    expect(_cell(page, NIGHT_CREW, after)).to_contain_text("Night shift until 06:00")
    night = next(s for s in _shifts(live, NIGHT_CREW) if _local(s.starts_at).date() == tomorrow)
    assert _local(night.ends_at) == datetime.combine(after, time(6), TZ)
    assert _local(night.breaks[0].earliest_start) == datetime.combine(after, time(2), TZ)

    # Tomorrow's shift of the day crew gets a later, longer lunch: changed by hand, it
    # leaves its pattern.
    day_shift = shifts[tomorrow]
    _cell(page, DAY_CREW, tomorrow).click()
    change = page.locator(f"#rosters-change-{day_shift.id}")
    change.get_by_label("Break 1: Earliest start").fill("12:00")
    change.get_by_label("Break 1: Latest end").fill("14:00")
    change.get_by_label("Break 1: Minutes").fill("45")
    change.get_by_role("button", name="Save the changes").click()
    expect(page.locator("#toast")).to_contain_text("Shift of roster-day on")
    (changed,) = [s for s in _shifts(live, DAY_CREW) if s.id == day_shift.id]
    assert changed.pattern_id is None
    assert [
        (b.minutes, _local(b.earliest_start).time(), _local(b.latest_end).time())
        for b in changed.breaks
    ] == [(45, time(12), time(14))]
    expect(_cell(page, DAY_CREW, tomorrow)).to_contain_text("Break 45 min, 12:00–14:00")

    # A day off three days on: the row stays, cancelled, with its reason.
    off_day = today + timedelta(days=3)
    off = shifts[off_day]
    _cell(page, DAY_CREW, off_day).click()
    cancel = page.locator(f"#rosters-cancel-{off.id}")
    cancel.get_by_label("Why is it cancelled?").fill("annual leave")
    cancel.get_by_role("button", name="Cancel the shift").click()
    expect(page.locator("#toast")).to_contain_text("cancelled")
    expect(_cell(page, DAY_CREW, off_day)).to_contain_text("Day off")
    on_that_day = [s for s in _shifts(live, DAY_CREW) if _local(s.starts_at).date() == off_day]
    assert [(s.id, s.end_reason) for s in on_that_day] == [
        (off.id, "annual leave")
    ] and on_that_day[0].cancelled_at
    shot(page, "console-rosters-grid")

    # The night crew's pattern ends tomorrow: its later shifts go, tomorrow night's stays
    # (and still runs into the morning after).
    _cell(page, NIGHT_CREW, tomorrow).click()
    page.locator("#rosters-panel .pattern-card").get_by_role(
        "button", name="Change this pattern"
    ).click()
    page.get_by_label("Its last day").fill(tomorrow.isoformat())
    page.get_by_role("button", name="End the pattern").click()
    expect(page.locator("#toast")).to_contain_text("Pattern ended")
    (night_pattern,) = _patterns(live, NIGHT_CREW)
    assert night_pattern.valid_until == tomorrow
    assert max(_local(s.starts_at).date() for s in _shifts(live, NIGHT_CREW)) == tomorrow
    expect(_cell(page, NIGHT_CREW, after)).to_contain_text("Night shift until 06:00")
    expect(_cell(page, NIGHT_CREW, after)).not_to_contain_text("22:00")
    expect(page.locator("#rosters-grid tbody th", has_text=NIGHT_CREW)).to_contain_text(
        # The city's locale (STREETLOOP_LOCALE, en-GB by default): "Thu 3 Dec".
        f"Every day 22:00–06:00, until {tomorrow:%a} {tomorrow.day} {tomorrow:%b}"
    )

    # A one-off shift today, with a break, for a crew with no pattern.
    _cell(page, ONE_OFF_CREW, today).click()
    add = page.locator("#rosters-add")
    add.get_by_label("Starts", exact=True).fill("00:00")
    add.get_by_label("Ends", exact=True).fill("23:59")
    add.get_by_role("button", name="Add a break").click()
    add.get_by_label("Break 1: Earliest start").fill("12:00")
    add.get_by_label("Break 1: Latest end").fill("13:00")
    add.get_by_label("Break 1: Minutes").fill("30")
    add.get_by_role("button", name="Add the shift").click()
    expect(page.locator("#toast")).to_contain_text("Shift added for roster-oneoff")
    (one_off,) = _shifts(live, ONE_OFF_CREW)
    assert (_local(one_off.starts_at), _local(one_off.ends_at)) == (
        datetime.combine(today, time(0), TZ),
        datetime.combine(today, time(23, 59), TZ),
    )
    assert [
        (b.minutes, _local(b.earliest_start).time(), _local(b.latest_end).time())
        for b in one_off.breaks
    ] == [(30, time(12), time(13))]
    assert one_off.pattern_id is None
    expect(_cell(page, ONE_OFF_CREW, today)).to_contain_text("00:00–23:59")

    # Another shift inside it is refused: the API's reason, in words, beside the form.
    page.locator("#rosters-add-another").click()
    add = page.locator("#rosters-add")
    add.get_by_label("Starts", exact=True).fill("10:00")
    add.get_by_label("Ends", exact=True).fill("14:00")
    add.get_by_role("button", name="Add the shift").click()
    refusal = add.locator(".message")
    expect(refusal).to_contain_text(
        re.compile(r"Not saved: roster-oneoff already has a shift \w+ \d+ \w+ 00:00 to 23:59")
    )
    assert len(_shifts(live, ONE_OFF_CREW)) == 1
    expect(_cell(page, ONE_OFF_CREW, today)).to_have_class(re.compile(r"\bclash\b"))
    accessible(page, "rosters overlap refused")
    shot(page, "console-rosters-refusal")

    # Today's shift ends early, at 23:00, because the crew went home sick.
    end = page.locator(f"#rosters-end-{one_off.id}")
    end.get_by_label("Ends at").fill("23:00")
    end.get_by_label("Why does it end early?").fill("went home sick")
    end.get_by_role("button", name="End the shift early").click()
    expect(page.locator("#toast")).to_contain_text("now ends at 23:00")
    (ended,) = _shifts(live, ONE_OFF_CREW)
    assert _local(ended.ends_at) == datetime.combine(today, time(23), TZ)
    assert ended.ended_early_at is not None and ended.end_reason == "went home sick"
    with live.sessions() as s:
        events = s.scalars(
            select(StatusEvent.to_status)
            .where(StatusEvent.entity == "shift", StatusEvent.entity_id == one_off.id)
            .order_by(StatusEvent.id)
        ).all()
    assert events == ["scheduled", "ended_early"]
    expect(_cell(page, ONE_OFF_CREW, today)).to_contain_text("Ended early at 23:00")
    accessible(page, "rosters shift ended early")
    shot(page, "console-rosters-ended-early")


def test_a_supervisor_reads_the_rosters_without_changing_them(
    browser_context: Any, live: LiveServer, roster_city: None
) -> None:
    with live.sessions() as s:
        crew = s.scalar(select(Crew).where(Crew.code == ONE_OFF_CREW))
        assert crew is not None
        day = datetime.now(TZ).date() + timedelta(days=3)
        s.add(
            Shift(
                crew_id=crew.id,
                starts_at=datetime.combine(day, time(8), TZ),
                ends_at=datetime.combine(day, time(16), TZ),
            )
        )
        s.commit()
    context, _ = browser_context(DESKTOP)
    page = context.new_page()
    page.goto("/console/#/rosters")
    sign_in(page, SUPERVISOR)
    expect(page.locator("#rosters-read-only")).to_be_visible()
    _cell(page, ONE_OFF_CREW, day).click()
    expect(page.locator("#rosters-panel")).to_contain_text("08:00–16:00")
    assert page.locator("#rosters-panel form").count() == 0
    assert page.locator("#rosters-pattern-new").count() == 0
    wait_for(lambda: live.received("GET", "/api/v1/shift-patterns"), what="the patterns read")
    accessible(page, "rosters read-only")
    # Two weeks at a time: one column per day, the grid scrolling sideways with the crews kept in view.
    page.get_by_label("Days shown").select_option("14")
    expect(page.locator("#rosters-grid thead th")).to_have_count(15)
    expect(_cell(page, ONE_OFF_CREW, day + timedelta(days=10))).to_contain_text("Off")


def test_clock_times_typed_on_a_day_the_clocks_change_are_the_city_s(
    browser_context: Any, live: LiveServer
) -> None:
    """The desk turns a local day and clock time into an instant with the city's zone, not
    the browser's (the context runs in UTC), on either side of a change of the clocks."""
    context, _ = browser_context(DESKTOP)
    page = context.new_page()
    page.goto("/console/")
    got = page.evaluate("""async () => {
        const m = await import('/console/desks/rosters.js');
        const { instantOf } = await import('/assets/shared/time.js');
        const at = (zone, day, clock) => instantOf(zone, day, clock).toISOString();
        return [
            at('Europe/Andorra', '2026-03-29', '01:30'), at('Europe/Andorra', '2026-03-29', '03:30'),
            at('Europe/Andorra', '2026-10-25', '04:00'), at('Europe/Andorra', '2026-12-02', '07:00'),
            at('America/New_York', '2026-03-08', '12:00'), m.addDays('2026-12-31', 1), m.addDays('2026-03-01', -1),
        ];
    }""")
    assert got == [
        "2026-03-29T00:30:00.000Z",
        "2026-03-29T01:30:00.000Z",
        "2026-10-25T03:00:00.000Z",
        "2026-12-02T06:00:00.000Z",
        "2026-03-08T16:00:00.000Z",
        "2027-01-01",
        "2026-02-28",
    ]
