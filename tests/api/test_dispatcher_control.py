"""The dispatcher is in control: urgent work forced into a day (saying what it displaced),
stops taken off a draft or locked to their crew, and refusals in words (real PostGIS)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import RoutePlan, Shift, ShiftBreak, StatusEvent, WorkOrder
from dispatch.plans import run_plan
from geo.travel import StraightLineProvider
from tests import factories as f
from tests.api.errors import error_body

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider()


def _at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


@pytest.fixture
def short_day(db: Session) -> dict:
    """One pothole crew with a 2-hour shift, six jobs next door and one 6 km out of town."""
    depot = f.depot(db)
    f.service_type(db)
    crew = f.crew(db, "pothole-1")
    crew.depot_id = depot.id
    spare = f.crew(db, "pothole-2")
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=_at(7),
            ends_at=_at(9),
            start_depot_id=depot.id,
            end_depot_id=depot.id,
        )
    )
    near = []
    for i in range(6):
        lon, lat = f.offset(f.LON, f.LAT, 150 * (i + 1))
        wo = f.report(db, lon=lon, lat=lat).work_order
        wo.priority = 5
        near.append(wo.id)
    far = f.report(db, lon=f.offset(f.LON, f.LAT, 6000)[0]).work_order
    far.priority = 1
    headers = f.token_for(db, f.user(db, "d@test", "dispatcher"))
    db.commit()
    return {"crew": crew, "spare": spare, "near": near, "far": far.id, "headers": headers}


def _plan(client: Any, sessions: sessionmaker, headers: dict, day: date = DAY) -> dict:
    r = client.post(
        "/api/v1/plans", json={"date": day.isoformat(), "time_limit_s": 2}, headers=headers
    )
    assert r.status_code == 202, r.data
    run_plan(sessions, r.get_json()["id"], travel=TRAVEL, tz=TZ)
    return client.get(r.get_json()["url"], headers=headers).get_json()


def _jobs(plan: dict, crew: str = "pothole-1") -> list[int]:
    route = next((r for r in plan["routes"] if r["crew"] == crew), {"stops": []})
    return [s["work_order_id"] for s in route["stops"] if s["kind"] == "job"]


def test_must_do_work_is_planned_and_the_plan_says_what_made_room(
    client: Any, sessions: sessionmaker, short_day: dict
) -> None:
    headers, far = short_day["headers"], short_day["far"]
    before = _plan(client, sessions, headers)
    assert far not in _jobs(before)
    assert (
        next(u for u in before["unassigned"] if u["work_order_id"] == far)["reason"]
        == "dropped_for_cost"
    )

    r = client.put(
        f"/api/v1/work-orders/{far}/must-do", json={"date": DAY.isoformat()}, headers=headers
    )
    assert r.status_code == 200, r.data
    assert (
        r.get_json()["must_do_on"] == DAY.isoformat()
        and r.get_json()["timeline"][-1]["note"] == f"must be done on {DAY}"
    )
    after = _plan(client, sessions, headers)
    assert far in _jobs(after) and after["stats"]["feasible"] is True
    must = after["stats"]["must_do"]
    assert must["work_orders"] == [far] and must["scheduled"] == [far] and must["displaced"]
    displaced = [u for u in after["unassigned"] if u["reason"] == "displaced_by_must_do"]
    assert sorted(u["work_order_id"] for u in displaced) == must["displaced"]
    assert {u["message"] for u in displaced} == {
        f"dropped to make room for must-do work order {far}"
    }
    # What made room: work the day held without the must-do job, and not with it.
    assert set(must["displaced"]) <= set(short_day["near"]) and not set(must["displaced"]) & set(
        _jobs(after)
    )
    assert len(must["displaced"]) <= len(_jobs(before)) - len(_jobs(after)) + 1


def test_must_do_for_a_crew_that_is_off_or_work_that_cannot_be_done_gives_a_ready_plan(
    client: Any, db: Session, sessions: sessionmaker, short_day: dict
) -> None:
    headers, far, late = short_day["headers"], short_day["far"], short_day["near"][0]
    assert (
        client.put(
            f"/api/v1/work-orders/{far}/must-do",
            json={"date": DAY.isoformat(), "crew": "pothole-2"},
            headers=headers,
        ).status_code
        == 200
    )
    db.get(WorkOrder, late).time_windows = [
        {"start": _at(5).isoformat(), "end": _at(6).isoformat()}
    ]
    db.commit()
    assert (
        client.put(
            f"/api/v1/work-orders/{late}/must-do", json={"date": DAY.isoformat()}, headers=headers
        ).status_code
        == 200
    )
    plan = _plan(client, sessions, headers)
    assert plan["status"] == "ready"
    reasons = {u["work_order_id"]: (u["reason"], u["message"]) for u in plan["unassigned"]}
    assert reasons[far] == (
        "must_do_crew_unavailable",
        f"it must be done by pothole-2: pothole-2 has no shift on {DAY:%a} {DAY.day} {DAY:%b}",
    )
    assert reasons[late][0] == "time_window" and reasons[late][1].startswith(
        "must-do, but no crew on shift can reach it"
    )


def test_must_do_work_no_crew_of_the_scope_can_do_is_reported(
    client: Any, db: Session, sessions: sessionmaker, short_day: dict
) -> None:
    headers = short_day["headers"]
    f.service_type(db, "streetlight", skill="electrical", agency="Roads")
    lamp = f.report(db, "streetlight", lon=f.offset(f.LON, f.LAT, 400)[0]).work_order
    db.commit()
    assert (
        client.put(
            f"/api/v1/work-orders/{lamp.id}/must-do",
            json={"date": DAY.isoformat()},
            headers=headers,
        ).status_code
        == 200
    )
    plan = _plan(client, sessions, headers)
    assert plan["status"] == "ready" and plan["stats"]["must_do"]["work_orders"] == [lamp.id]
    assert {
        "work_order_id": lamp.id,
        "reason": "no_skill",
        "message": "must-do, but no crew on shift in this plan has the skill electrical",
    } in plan["unassigned"]


def test_must_do_refuses_bad_input_and_stores_nothing(
    client: Any, db: Session, short_day: dict
) -> None:
    headers, far = short_day["headers"], short_day["far"]
    graffiti = f.crew(db, "graffiti-1", skills=["graffiti"])
    db.commit()
    for body, field in [
        ({"date": (date.today() - timedelta(days=1)).isoformat()}, "date"),
        ({"date": DAY.isoformat(), "crew": "nobody"}, "crew"),
        ({"date": DAY.isoformat(), "crew": graffiti.code}, "crew"),
        ({}, "date"),
    ]:
        err = error_body(
            client.put(f"/api/v1/work-orders/{far}/must-do", json=body, headers=headers), 422
        )
        assert field in err["errors"], err
    db.expire_all()
    assert db.get(WorkOrder, far).must_do_on is None
    assert not db.scalars(
        select(StatusEvent).where(StatusEvent.entity_id == far, StatusEvent.note.like("must be%"))
    ).all()
    crew_token = f.token_for(db, f.user(db, "c@test", "crew", crew=short_day["crew"]))
    db.commit()
    error_body(
        client.put(
            f"/api/v1/work-orders/{far}/must-do", json={"date": DAY.isoformat()}, headers=crew_token
        ),
        403,
    )


def test_an_urgent_job_forced_to_the_front_makes_room(
    client: Any, sessions: sessionmaker, short_day: dict
) -> None:
    headers, far = short_day["headers"], short_day["far"]
    plan = _plan(client, sessions, headers)
    full = _jobs(plan)
    refused = error_body(
        client.post(
            f"/api/v1/plans/{plan['id']}/moves",
            json={"work_order_id": far, "crew": "pothole-1", "position": 1},
            headers=headers,
        ),
        422,
    )
    assert (
        "pothole-1 would be back at" in refused["message"]
        and "after its shift ends at 09:00" in refused["message"]
    )
    r = client.post(
        f"/api/v1/plans/{plan['id']}/moves",
        json={"work_order_id": far, "crew": "pothole-1", "position": 1, "make_room": True},
        headers=headers,
    )
    assert r.status_code == 200, r.data
    after = r.get_json()
    jobs = _jobs(after)
    assert jobs[0] == far
    dropped = [u for u in after["unassigned"] if u["reason"] == "displaced_by_move"]
    assert dropped and {u["work_order_id"] for u in dropped} | set(jobs[1:]) == set(full)
    assert dropped[0]["message"] == f"taken off pothole-1 to make room for work order {far}"


def test_a_stop_comes_off_a_draft_and_a_locked_stop_stays_put(
    client: Any, db: Session, sessions: sessionmaker, short_day: dict
) -> None:
    headers = short_day["headers"]
    plan = _plan(client, sessions, headers)
    url = f"/api/v1/plans/{plan['id']}"
    first, second = _jobs(plan)[:2]
    r = client.delete(f"{url}/stops/{first}", headers=headers)
    assert r.status_code == 200, r.data
    assert first not in _jobs(r.get_json())
    assert {
        "work_order_id": first,
        "reason": "removed_by_dispatcher",
        "message": "taken off pothole-1 by hand",
    } in r.get_json()["unassigned"]
    db.expire_all()
    assert db.get(WorkOrder, first).status == "new"
    error_body(client.delete(f"{url}/stops/{first}", headers=headers), 422)

    locked = client.put(f"{url}/stops/{second}/lock", json={"locked": True}, headers=headers)
    assert locked.status_code == 200
    stop = next(
        s
        for r in locked.get_json()["routes"]
        for s in r["stops"]
        if s.get("work_order_id") == second
    )
    assert stop["locked"] is True
    assert (
        "locked"
        in error_body(client.delete(f"{url}/stops/{second}", headers=headers), 409)["message"]
    )
    moved = error_body(
        client.post(
            f"{url}/moves",
            json={"work_order_id": second, "crew": "pothole-1", "position": 3},
            headers=headers,
        ),
        409,
    )
    assert (
        moved["message"] == f"work order {second} is locked to its crew and place; unlock it first"
    )
    notes = db.scalars(
        select(StatusEvent.note).where(
            StatusEvent.entity == "route_plan",
            StatusEvent.entity_id == plan["id"],
            StatusEvent.from_status == StatusEvent.to_status,
        )
    ).all()
    assert notes == [
        f"took work order {first} off pothole-1",
        f"locked work order {second} on pothole-1 at stop 1",
    ]


def test_a_replan_keeps_locked_stops_on_their_crew_in_their_order(
    client: Any, db: Session, sessions: sessionmaker
) -> None:
    depot = f.depot(db)
    f.service_type(db)
    crews = []
    for code in ("pothole-1", "pothole-2"):
        crew = f.crew(db, code)
        crew.depot_id = depot.id
        db.add(
            Shift(
                crew_id=crew.id,
                starts_at=_at(7),
                ends_at=_at(15, 30),
                start_depot_id=depot.id,
                end_depot_id=depot.id,
                breaks=[ShiftBreak(earliest_start=_at(11, 30), latest_end=_at(13, 30), minutes=30)],
            )
        )
        crews.append(crew)
    for i in range(8):
        f.report(db, lon=f.offset(f.LON, f.LAT, 700 * (i + 1) * (-1) ** i)[0])
    headers = f.token_for(db, f.user(db, "d@test", "dispatcher"))
    db.commit()
    plan = _plan(client, sessions, headers)
    url = f"/api/v1/plans/{plan['id']}"
    on_one = _jobs(plan, "pothole-1")
    assert len(on_one) >= 3
    # Lock the last and the first stop of pothole-1, in that order of asking.
    for wo in (on_one[-1], on_one[0]):
        assert (
            client.put(f"{url}/stops/{wo}/lock", json={"locked": True}, headers=headers).status_code
            == 200
        )
    assert client.post(f"{url}/publish", headers=headers).status_code == 200
    child = client.post(f"{url}/replan", json={"time_limit_s": 2}, headers=headers).get_json()
    run_plan(sessions, child["id"], travel=TRAVEL, tz=TZ)
    again = client.get(child["url"], headers=headers).get_json()
    kept = _jobs(again, "pothole-1")
    assert kept.index(on_one[0]) < kept.index(on_one[-1])
    locked = [s["work_order_id"] for r in again["routes"] for s in r["stops"] if s.get("locked")]
    assert sorted(locked) == sorted([on_one[0], on_one[-1]])
    assert db.get(RoutePlan, child["id"]).stats["feasible"] is True
