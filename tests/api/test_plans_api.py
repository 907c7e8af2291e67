"""POST /plans → 202 and a queued job; GET shows routes, unassigned and GeoJSON; publish; replan."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from dispatch.plans import run_plan
from geo.travel import StraightLineProvider
from tests import factories as f
from tests.factories.plans import DAY, TZ


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "dispatcher@test", "dispatcher"))


def _jobs(engine: Engine) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        return [
            (r.task_name, r.args)
            for r in conn.execute(
                text("SELECT task_name, args FROM procrastinate_jobs ORDER BY id")
            )
        ]


def test_plan_lifecycle_over_http(
    client, db: Session, sessions: sessionmaker, engine: Engine, day, dispatcher
) -> None:  # noqa: ANN001
    r = client.post(
        "/api/v1/plans", json={"date": DAY.isoformat(), "time_limit_s": 2}, headers=dispatcher
    )
    assert r.status_code == 202, r.data
    body = r.get_json()
    assert body["status"] == "queued" and body["url"] == f"/api/v1/plans/{body['id']}"
    assert r.headers["Location"].endswith(body["url"])
    assert _jobs(engine) == [("optimise_plan", {"plan_id": body["id"]})]

    queued = client.get(body["url"], headers=dispatcher).get_json()
    assert queued["status"] == "queued" and queued["routes"] == []

    run_plan(sessions, body["id"], travel=StraightLineProvider(), tz=TZ)
    plan = client.get(body["url"], headers=dispatcher).get_json()
    assert (
        plan["status"] == "ready" and plan["version"] == 1 and plan["provider"] == "straight_line"
    )
    assert plan["stats"]["feasible"] is True and plan["stats"]["scheduled"] == 6
    assert plan["unassigned"] == [
        {
            "work_order_id": day["unplaced"].id,
            "reason": "needs_pin",
            "message": "no place on the map yet: pin it first",
        }
    ]
    crews = {route["crew"] for route in plan["routes"]}
    assert crews == {"pothole-1", "graffiti-1"}
    for route in plan["routes"]:
        assert [s["sequence"] for s in route["stops"]] == list(range(1, len(route["stops"]) + 1))
        assert any(s["kind"] == "break" for s in route["stops"])
    features = plan["geojson"]["features"]
    assert {ft["properties"]["crew"] for ft in features} == crews
    assert all(ft["geometry"]["type"] == "LineString" for ft in features)

    published = client.post(f"{body['url']}/publish", headers=dispatcher)
    assert published.status_code == 200 and published.get_json()["status"] == "published"
    wo = day["orders"][0]
    detail = client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher).get_json()
    assert detail["status"] == "dispatched" and detail["crew"] == "pothole-1"
    again = client.post(f"{body['url']}/publish", headers=dispatcher)
    assert again.status_code == 409

    rp = client.post(f"{body['url']}/replan", json={"time_limit_s": 2}, headers=dispatcher)
    assert rp.status_code == 202
    child = rp.get_json()
    assert child["id"] != body["id"]
    child_plan = client.get(child["url"], headers=dispatcher).get_json()
    assert child_plan["version"] == 2 and child_plan["parent_id"] == body["id"]
    assert _jobs(engine)[-1] == ("optimise_plan", {"plan_id": child["id"]})
    listed = client.get(f"/api/v1/plans?date={DAY.isoformat()}", headers=dispatcher).get_json()
    assert [p["version"] for p in listed] == [2, 1]


def test_plan_request_errors_and_roles(client, db: Session, day, dispatcher) -> None:  # noqa: ANN001
    crew = f.crew(db, "c-x")
    crew_token = f.token_for(db, f.user(db, "crew@test", "crew", crew=crew))
    assert (
        client.post("/api/v1/plans", json={"date": DAY.isoformat()}, headers=crew_token).status_code
        == 403
    )
    assert client.post("/api/v1/plans", json={"date": DAY.isoformat()}).status_code == 401
    bad = client.post(
        "/api/v1/plans", json={"date": "tomorrow", "time_limit_s": 0}, headers=dispatcher
    )
    assert bad.status_code == 422 and set(bad.get_json()["errors"]) == {"date", "time_limit_s"}
    assert client.get("/api/v1/plans/999999", headers=dispatcher).status_code == 404
    queued = client.post(
        "/api/v1/plans", json={"date": (DAY + timedelta(days=1)).isoformat()}, headers=dispatcher
    ).get_json()
    # Not ready yet: neither publishable nor re-plannable.
    assert client.post(f"{queued['url']}/publish", headers=dispatcher).status_code == 409
    assert client.post(f"{queued['url']}/replan", json={}, headers=dispatcher).status_code == 409


def test_scope_is_kept_and_versions_count_per_scope(client, db: Session, day, dispatcher) -> None:  # noqa: ANN001
    one = client.post(
        "/api/v1/plans",
        json={"date": DAY.isoformat(), "scope": {"agency": "Sanitation"}},
        headers=dispatcher,
    ).get_json()
    two = client.post(
        "/api/v1/plans",
        json={"date": DAY.isoformat(), "scope": {"agency": "Sanitation"}},
        headers=dispatcher,
    ).get_json()
    other = client.post(
        "/api/v1/plans", json={"date": DAY.isoformat()}, headers=dispatcher
    ).get_json()
    got = [client.get(p["url"], headers=dispatcher).get_json() for p in (one, two, other)]
    assert [(g["scope"], g["version"]) for g in got] == [
        ({"agency": "Sanitation"}, 1),
        ({"agency": "Sanitation"}, 2),
        ({}, 1),
    ]
    assert isinstance(date.fromisoformat(got[0]["date"]), date)


def test_manual_move_is_validated_before_it_is_saved(
    client, db: Session, sessions: sessionmaker, day, dispatcher
) -> None:  # noqa: ANN001
    plan = client.post(
        "/api/v1/plans", json={"date": DAY.isoformat(), "time_limit_s": 2}, headers=dispatcher
    ).get_json()
    run_plan(sessions, plan["id"], travel=StraightLineProvider(), tz=TZ)
    before = client.get(plan["url"], headers=dispatcher).get_json()
    pothole_route = next(r for r in before["routes"] if r["crew"] == "pothole-1")
    jobs = [s["work_order_id"] for s in pothole_route["stops"] if s["kind"] == "job"]
    assert len(jobs) == 3

    # Reverse the first job to the end of its own route.
    r = client.post(
        f"{plan['url']}/moves",
        json={"work_order_id": jobs[0], "crew": "pothole-1", "position": 3},
        headers=dispatcher,
    )
    assert r.status_code == 200, r.data
    after = next(rt for rt in r.get_json()["routes"] if rt["crew"] == "pothole-1")
    assert [s["work_order_id"] for s in after["stops"] if s["kind"] == "job"] == jobs[1:] + jobs[:1]
    assert [s["sequence"] for s in after["stops"]] == list(range(1, len(after["stops"]) + 1))
    assert sum(1 for s in after["stops"] if s["kind"] == "break") == 1

    # A pothole job on the graffiti crew: it lacks the skill; nothing changes.
    bad = client.post(
        f"{plan['url']}/moves",
        json={"work_order_id": jobs[0], "crew": "graffiti-1", "position": 1},
        headers=dispatcher,
    )
    assert bad.status_code == 422
    assert (
        bad.get_json()["message"]
        == f"the edited route breaks a constraint: graffiti-1 lacks the skill asphalt for work order {jobs[0]}"
    )
    unchanged = next(
        rt
        for rt in client.get(plan["url"], headers=dispatcher).get_json()["routes"]
        if rt["crew"] == "pothole-1"
    )
    assert [s["work_order_id"] for s in unchanged["stops"] if s["kind"] == "job"] == jobs[
        1:
    ] + jobs[:1]
    assert (
        client.post(
            f"{plan['url']}/moves",
            json={"work_order_id": jobs[0], "crew": "pothole-1", "position": 9},
            headers=dispatcher,
        ).status_code
        == 422
    )
    assert client.post(f"{plan['url']}/publish", headers=dispatcher).status_code == 200
    assert (
        client.post(
            f"{plan['url']}/moves",
            json={"work_order_id": jobs[0], "crew": "pothole-1", "position": 1},
            headers=dispatcher,
        ).status_code
        == 409
    )
