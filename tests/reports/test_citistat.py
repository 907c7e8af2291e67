"""CitiStat figures on a small hand-built history, checked to the exact number.

The history (times UTC; the city is Europe/Andorra, UTC+1 in March 2026; the period is
Mon 2 March to Sun 15 March local = [2026-03-01T23:00Z, 2026-03-15T23:00Z); now is
2026-03-16T12:00Z):

| req | type (SLA) | district | requested | outcome | duration | notes |
|---|---|---|---|---|---|---|
| P1 | pothole 72 h | north | 03-02 08:00 | fixed, auto_verified (crew c1) | 10 h | on time |
| P2 | pothole | north | 03-03 08:00 | fixed, reopened once, fixed again, supervisor-verified (c2) | 20 h | lifecycle |
| P3 | pothole | north | 03-04 08:00 | no_action_needed, then reopened: open | censored 292 h | late open, lifecycle |
| P4 | pothole | north | 03-14 08:00 | open, duplicate of P3 | censored 52 h | not yet due |
| P5 | pothole | north | 03-10 08:00 | fixed but its completion awaits review (c1) | 5 h | not "fixed verified" |
| G0 | graffiti 24 h | none | 03-01 23:30 (= 03-02 00:30 local) | cancelled | 1 h | in the period only in city time |
| G1 | graffiti | south | 03-05 10:00 | not_found by a verified completion (c2) | 30 h | late |
| G2 | graffiti | south | 03-09 10:00 | duplicate of G1 | 2 h | on time |
| G3 | graffiti | south | 03-15 22:30 (= Sunday 23:30 local) | open | censored 13.5 h | not yet due |

Kaplan–Meier, pothole: events 5 h (n=5), 10 h (n=4), 20 h (n=3): S = .8, .6, .4 → median
20 h, p90 not reached; the naive median of the closed ones would be 10 h. Total: S(20 h)
= 8/9·7/8·6/7·5/6·3/4 = 15/36 → median 20 h (naive: 7.5 h), p90 not reached.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.errors import ValidationFailed
from core.models import (
    ServiceRequest,
)
from reports import citistat
from tests import factories as f
from tests.factories.citistat_history import (
    END,
    NOW,
    START,
    TZ,
    History,
    build_citistat_history,
)


def report(db: Session, group_by: str) -> citistat.Report:
    return citistat.compute(db, start=START, end=END, group_by=group_by, tz=TZ, now=NOW)


def by_group(rep: citistat.Report) -> dict[str | None, citistat.Figures]:
    return {r.group: r for r in rep.rows}


@pytest.fixture
def history(db: Session) -> History:
    return build_citistat_history(db)


# -- request figures ------------------------------------------------------------------


def test_total_request_figures(db: Session, history: History) -> None:
    t = report(db, "service_type").total
    assert (t.received, t.duplicates, t.open, t.closed) == (9, 2, 3, 6)
    assert t.closed_fixed_verified == 2  # P1, P2; P5's proof still awaits review
    assert t.closed_other == {
        "duplicate": 1,
        "not_found": 1,
        "no_action_needed": 0,
        "referred": 0,
        "cancelled": 1,
    }
    assert (t.on_time, t.late_open, t.open_not_yet_due, t.on_time_denominator) == (5, 1, 2, 7)
    assert t.on_time_rate == round(5 / 7, 4)
    assert t.backlog == {"lt_1d": 1, "1_3d": 1, "3_7d": 0, "7_30d": 1, "gt_30d": 0}
    assert (t.reopened, t.ever_closed, t.reopen_rate) == (2, 7, round(2 / 7, 4))


def test_kaplan_meier_differs_from_the_naive_median_of_closed_requests(
    db: Session, history: History
) -> None:
    rep = report(db, "service_type")
    rows = by_group(rep)
    # Naive median of closed potholes (5, 10, 20 h) is 10 h; open ones pull the estimate to 20 h.
    assert rows["pothole"].median_hours_to_close == 20.0
    assert rows["pothole"].p90_hours_to_close is None  # S never falls below 0.4
    # Graffiti: events 1 h (n=4), 2 h (n=3), 30 h (n=1, after G3 was censored at 13.5 h): S = .75, .5, 0.
    assert rows["graffiti"].median_hours_to_close == 2.0  # S(2 h) = 0.5 exactly counts as reached
    assert rows["graffiti"].p90_hours_to_close == 30.0
    assert rep.total.median_hours_to_close == 20.0  # naive median of the six closed: 7.5 h
    assert rep.total.p90_hours_to_close is None


def test_per_service_type(db: Session, history: History) -> None:
    rows = by_group(report(db, "service_type"))
    assert list(rows) == ["graffiti", "pothole"]
    p, g = rows["pothole"], rows["graffiti"]
    assert (p.label, g.label) == ("Pothole", "Graffiti")
    assert (p.received, p.duplicates, p.closed, p.closed_fixed_verified) == (5, 1, 3, 2)
    assert p.closed_other == dict.fromkeys(citistat.OTHER_OUTCOMES, 0)
    assert (p.on_time, p.late_open, p.open_not_yet_due, p.on_time_rate) == (3, 1, 1, 0.75)
    assert p.backlog == {"lt_1d": 0, "1_3d": 1, "3_7d": 0, "7_30d": 1, "gt_30d": 0}
    assert (p.reopened, p.ever_closed, p.reopen_rate) == (2, 4, 0.5)
    assert (g.received, g.duplicates, g.closed, g.closed_fixed_verified) == (4, 1, 3, 0)
    assert g.closed_other == {
        "duplicate": 1,
        "not_found": 1,
        "no_action_needed": 0,
        "referred": 0,
        "cancelled": 1,
    }
    assert (g.on_time, g.late_open, g.open_not_yet_due, g.on_time_rate) == (
        2,
        0,
        1,
        round(2 / 3, 4),
    )
    assert g.backlog == {"lt_1d": 1, "1_3d": 0, "3_7d": 0, "7_30d": 0, "gt_30d": 0}
    assert (g.reopened, g.ever_closed, g.reopen_rate) == (0, 3, 0.0)


def test_per_agency_district_and_week(db: Session, history: History) -> None:
    agency = by_group(report(db, "agency"))
    assert {k: v.received for k, v in agency.items()} == {"Roads": 5, "Sanitation": 4}
    district = report(db, "district")
    rows = by_group(district)
    assert [r.group for r in district.rows] == ["north", "south", None]  # "outside districts" last
    assert {k: (v.received, v.closed) for k, v in rows.items()} == {
        "north": (5, 3),
        "south": (3, 2),
        None: (1, 1),
    }
    assert rows[None].label == "(outside districts)" and rows["north"].label == "North"
    week = by_group(report(db, "week"))
    # G0 was received on Sunday 1 March in UTC but Monday 2 March in the city: week of 2 March.
    assert {k: v.received for k, v in week.items()} == {"2026-03-02": 5, "2026-03-09": 4}
    assert week["2026-03-02"].median_hours_to_close == 20.0  # events 1, 10, 20, 30 h; P3 censored
    assert week["2026-03-09"].completions == 1 and week["2026-03-02"].completions == 5


def test_per_crew(db: Session, history: History) -> None:
    rep = report(db, "crew")
    rows = by_group(rep)
    assert [r.group for r in rep.rows] == ["c1", "c2", None]
    # A request's crew is the one whose completion closed it, else its work order's crew.
    assert {k: (v.received, v.closed, v.closed_fixed_verified) for k, v in rows.items()} == {
        "c1": (2, 2, 1),
        "c2": (2, 2, 1),
        None: (5, 2, 0),
    }
    c1, c2 = rows["c1"], rows["c2"]
    assert (
        c1.completions,
        c1.completions_auto_verified,
        c1.completions_awaiting_review,
        c1.jobs_completed,
    ) == (2, 1, 1, 1)
    assert (
        c2.completions,
        c2.completions_auto_verified,
        c2.completions_verified_by_supervisor,
        c2.completions_rejected,
        c2.completions_audit_sampled,
        c2.jobs_completed,
    ) == (4, 1, 2, 1, 1, 3)
    assert (c1.shift_hours, c2.shift_hours, rep.total.shift_hours) == (16.0, 10.0, 26.0)
    assert (c1.jobs_per_shift_hour, c2.jobs_per_shift_hour, rep.total.jobs_per_shift_hour) == (
        0.0625,
        0.3,
        round(4 / 26, 4),
    )
    assert (c1.drive_hours, c2.drive_hours, rep.total.drive_hours) == (1.5, 0.5, 2.0)
    assert (c1.on_site_hours, c2.on_site_hours, rep.total.on_site_hours) == (2.25, 3.5, 5.75)
    assert (c1.planned_stops, c1.planned_done, c2.planned_stops, c2.planned_done) == (2, 1, 1, 1)
    assert rows[None].shift_hours == 0.0 and rows[None].jobs_per_shift_hour is None


def test_gps_distance_per_crew(db: Session, history: History) -> None:
    rows = by_group(report(db, "crew"))
    leg_m = db.scalar(
        text(
            "SELECT ST_Distance(geography(ST_SetSRID(ST_MakePoint(:a, :b), 4326)), "
            "geography(ST_SetSRID(ST_MakePoint(:c, :b), 4326)))"
        ),
        {"a": f.LON, "b": f.LAT, "c": f.offset(f.LON, f.LAT, 1000)[0]},
    )
    assert abs(leg_m - 1000) < 5  # the offset helper is a flat-earth approximation
    # c1: there and back inside the period (the ping after it is left out); c2: one leg.
    assert rows["c1"].gps_km == round(2 * leg_m / 1000, 3)
    assert rows["c2"].gps_km == round(leg_m / 1000, 3)
    assert by_group(report(db, "service_type"))["pothole"].gps_km is None


def test_completion_shares_and_audit(db: Session, history: History) -> None:
    rep = report(db, "service_type")
    t = rep.total
    assert (
        t.completions,
        t.completions_auto_verified,
        t.completions_verified_by_supervisor,
        t.completions_rejected,
        t.completions_awaiting_review,
        t.completions_audit_sampled,
    ) == (6, 2, 2, 1, 1, 1)
    assert (t.share_auto_verified, t.share_reviewed, t.share_rejected) == (0.3333, 0.3333, 0.1667)
    assert t.jobs_completed == 4
    rows = by_group(rep)
    assert (rows["pothole"].completions, rows["graffiti"].completions) == (5, 1)
    assert rows["graffiti"].share_reviewed == 1.0


def test_productivity_where_only_the_total_is_defined(db: Session, history: History) -> None:
    rep = report(db, "service_type")
    rows = by_group(rep)
    # Shifts and plan routes have no service type: per type they are null, the total is not.
    assert rows["pothole"].shift_hours is None and rows["pothole"].drive_hours is None
    assert rows["pothole"].jobs_per_shift_hour is None
    assert (rep.total.shift_hours, rep.total.drive_hours, rep.total.gps_km) == (26.0, 2.0, None)
    assert (rows["pothole"].on_site_hours, rows["graffiti"].on_site_hours) == (5.25, 0.5)
    # Planned vs done: 2 March plan v2 (wo1 done that day, wo3 not) and 3 March (wo2 done).
    assert (
        rows["pothole"].planned_stops,
        rows["pothole"].planned_done,
        rows["pothole"].planned_done_rate,
    ) == (3, 2, 0.6667)
    week = by_group(report(db, "week"))
    assert (week["2026-03-02"].shift_hours, week["2026-03-09"].shift_hours) == (18.0, 8.0)
    assert (week["2026-03-02"].drive_hours, week["2026-03-02"].planned_stops) == (2.0, 3)


def test_empty_period_gives_zeros_and_nulls(db: Session, history: History) -> None:
    rep = citistat.compute(
        db, start=date(2025, 1, 1), end=date(2025, 1, 7), group_by="district", tz=TZ, now=NOW
    )
    assert rep.rows == []
    t = rep.total
    assert (t.received, t.closed, t.completions, t.planned_stops) == (0, 0, 0, 0)
    assert (t.on_time_rate, t.median_hours_to_close, t.reopen_rate, t.share_auto_verified) == (
        None,
        None,
        None,
        None,
    )
    assert (t.shift_hours, t.drive_hours, t.on_site_hours) == (0.0, 0.0, 0.0)


def test_bad_input_is_refused(db: Session) -> None:
    with pytest.raises(ValidationFailed) as err:
        citistat.compute(db, start=END, end=START, group_by="week", tz=TZ)
    assert err.value.field == "from"
    with pytest.raises(ValidationFailed) as err:
        citistat.compute(db, start=START, end=END, group_by="colour", tz=TZ)
    assert err.value.field == "group_by"


def test_km_matches_an_independent_python_estimate(db: Session, history: History) -> None:
    """The SQL curve against a plain Kaplan–Meier over the same rows, per type."""
    rows = db.execute(
        select(
            ServiceRequest.requested_at,
            ServiceRequest.closed_at,
            ServiceRequest.detailed_status,
            ServiceRequest.service_type_id,
        ).where(
            ServiceRequest.requested_at >= datetime(2026, 3, 2, tzinfo=TZ),
            ServiceRequest.requested_at < datetime(2026, 3, 16, tzinfo=TZ),
        )
    ).all()
    assert len(rows) == 9
    samples = [
        (
            math.floor(((closed if closed is not None else NOW) - req).total_seconds()),
            closed is not None,
        )
        for req, closed, _status, _st in rows
    ]

    def quantile(q: float) -> float | None:
        s = 1.0
        for t in sorted({d for d, ev in samples if ev}):
            n = sum(1 for d, _ in samples if d >= t)
            d_t = sum(1 for d, ev in samples if ev and d == t)
            s *= 1 - d_t / n
            if s <= 1 - q + 1e-9:
                return t / 3600
        return None

    t = report(db, "district").total
    assert (t.median_hours_to_close, t.p90_hours_to_close) == (quantile(0.5), quantile(0.9))
