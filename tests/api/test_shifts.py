"""Shifts and weekly patterns over HTTP: who may set them, what a bad one answers, and
that a crew's shifts reach its plans."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Shift, ShiftPattern, StatusEvent
from tests import factories as f
from tests.api.errors import error_body

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=2)


def _at(h: int, m: int = 0, day: date = DAY) -> str:
    return datetime.combine(day, time(h, m), TZ).isoformat()


@pytest.fixture
def roles(db: Session) -> dict[str, dict[str, str]]:
    crew = f.crew(db, "pothole-1")
    f.depot(db)
    return {
        "dispatcher": f.token_for(db, f.user(db, "d@test", "dispatcher")),
        "supervisor": f.token_for(db, f.user(db, "s@test", "supervisor")),
        "admin": f.token_for(db, f.user(db, "a@test", "admin")),
        "crew": f.token_for(db, f.user(db, "c@test", "crew", crew=crew)),
    }


def _count(db: Session, model: Any) -> int:
    return db.scalar(select(func.count()).select_from(model))


def test_dispatchers_and_admins_set_shifts_supervisors_read_them(
    client: Any, db: Session, roles: dict
) -> None:
    body = {
        "crew": "pothole-1",
        "starts_at": _at(7),
        "ends_at": _at(15, 30),
        "breaks": [{"earliest_start": _at(11, 30), "latest_end": _at(13, 30), "minutes": 30}],
        "start_depot": "yard-1",
    }
    assert client.post("/api/v1/shifts", json=body).status_code == 401
    for role in ("crew", "supervisor"):
        error_body(client.post("/api/v1/shifts", json=body, headers=roles[role]), 403)
    r = client.post("/api/v1/shifts", json=body, headers=roles["dispatcher"])
    assert r.status_code == 201, r.data
    shift = r.get_json()
    assert (shift["crew"], shift["state"], shift["start_depot"], len(shift["breaks"])) == (
        "pothole-1",
        "scheduled",
        "yard-1",
        1,
    )
    assert datetime.fromisoformat(shift["starts_at"]) == datetime.fromisoformat(_at(7))
    assert (
        shift["timeline"][0]["to_status"] == "scheduled"
        and shift["timeline"][0]["actor"] == "user:d@test"
    )
    listed = client.get(
        "/api/v1/shifts",
        query_string={"crew": "pothole-1", "from": DAY.isoformat(), "to": DAY.isoformat()},
        headers=roles["supervisor"],
    ).get_json()
    assert [s["id"] for s in listed] == [shift["id"]]
    # The same hours again overlap: 409, nothing stored.
    clash = error_body(client.post("/api/v1/shifts", json=body, headers=roles["admin"]), 409)
    assert "pothole-1 already has a shift" in clash["message"]
    assert _count(db, Shift) == 1


@pytest.mark.parametrize(
    "change, field",
    [
        ({"ends_at": "2026-13-01T00:00:00+01:00"}, "ends_at"),
        ({"ends_at": "2026-12-01T15:00:00"}, "ends_at"),
        ({"crew": "nobody"}, "crew"),
        ({"start_depot": "nowhere"}, "start_depot"),
        (
            {"breaks": [{"earliest_start": _at(16), "latest_end": _at(17), "minutes": 30}]},
            "breaks.0",
        ),
        ({"breaks": [{"earliest_start": _at(11), "latest_end": _at(12), "minutes": 0}]}, "breaks"),
    ],
)
def test_a_bad_shift_is_422_naming_the_field_and_stores_nothing(
    client: Any, db: Session, roles: dict, change: dict, field: str
) -> None:
    body = {"crew": "pothole-1", "starts_at": _at(7), "ends_at": _at(15, 30), **change}
    err = error_body(client.post("/api/v1/shifts", json=body, headers=roles["dispatcher"]), 422)
    assert any(k == field or k.startswith(field) for k in err["errors"]), err
    assert _count(db, Shift) == 0 and _count(db, StatusEvent) == 0


def test_a_pattern_makes_the_coming_shifts_and_a_shift_ends_early(
    client: Any, db: Session, roles: dict
) -> None:
    pattern = {
        "crew": "pothole-1",
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
        "starts": "07:00",
        "ends": "15:30",
        "breaks": [{"earliest": "11:30", "latest": "13:30", "minutes": 30}],
    }
    error_body(
        client.post(
            "/api/v1/shift-patterns",
            json={**pattern, "weekdays": ["funday"]},
            headers=roles["dispatcher"],
        ),
        422,
    )
    error_body(
        client.post(
            "/api/v1/shift-patterns", json={**pattern, "ends": "07:00"}, headers=roles["dispatcher"]
        ),
        422,
    )
    assert _count(db, ShiftPattern) == 0
    r = client.post("/api/v1/shift-patterns", json=pattern, headers=roles["dispatcher"])
    assert r.status_code == 201, r.data
    made = r.get_json()
    assert (
        made["shifts_made"] == _count(db, Shift) >= 19
    )  # four weeks of weekdays, today's if not over
    assert made["weekdays"] == pattern["weekdays"] and made["breaks"] == pattern["breaks"]
    monday = next(
        d for d in (date.today() + timedelta(days=k) for k in range(1, 8)) if d.isoweekday() == 1
    )
    (shift,) = client.get(
        "/api/v1/shifts",
        query_string={"from": monday.isoformat(), "to": monday.isoformat()},
        headers=roles["supervisor"],
    ).get_json()
    assert shift["pattern_id"] == made["id"] and datetime.fromisoformat(
        shift["ends_at"]
    ) == datetime.fromisoformat(_at(15, 30, monday))
    ended = client.post(
        f"/api/v1/shifts/{shift['id']}/end",
        json={"at": _at(12, 0, monday), "reason": "went home sick"},
        headers=roles["dispatcher"],
    )
    assert ended.status_code == 200, ended.data
    assert (
        ended.get_json()["state"] == "ended_early"
        and ended.get_json()["end_reason"] == "went home sick"
    )
    error_body(
        client.post(
            f"/api/v1/shifts/{shift['id']}/end", json={"reason": ""}, headers=roles["dispatcher"]
        ),
        422,
    )
    cancelled = client.post(
        f"/api/v1/shifts/{shift['id'] + 1}/cancel",
        json={"reason": "day off"},
        headers=roles["dispatcher"],
    )
    assert cancelled.status_code == 200 and cancelled.get_json()["state"] == "cancelled"
    # The pattern's last day: the shifts it made after it go.
    last = monday + timedelta(days=1)
    out = client.post(
        f"/api/v1/shift-patterns/{made['id']}/end",
        json={"last_day": last.isoformat()},
        headers=roles["dispatcher"],
    )
    assert out.status_code == 200 and out.get_json()["valid_until"] == last.isoformat()
    later = datetime.combine(last + timedelta(days=1), time(0), TZ)
    assert (
        db.scalar(
            select(func.count())
            .select_from(Shift)
            .where(Shift.starts_at >= later, Shift.cancelled_at.is_(None))
        )
        == 0
    )
    assert [e["to_status"] for e in out.get_json()["timeline"]] == ["active", "ended"]
