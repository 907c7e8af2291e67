"""The call_taker role: 311 agents record callers' reports, see what a report at a place
would join, and answer "what happened to my report?" in the status page's words; they
neither plan, review, administer nor see the reporters' contact details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import RequestContact, ServiceRequest, WorkOrder
from core.status import STATUS_WORDS
from tests import factories as f
from tests.api.errors import error_body

URL = "/api/v1/requests"
HOME = {"lat": f.LAT, "lon": f.LON}


@pytest.fixture
def agent(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "agent@example.org", "call_taker"))


@pytest.fixture
def supervisor(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "sup@example.org", "supervisor"))


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db, attributes=f.full_attributes())
    f.service_type(db, "graffiti", skill="paint", duplicate_radius_m=30)
    f.district(db, "centre")


def _call(**extra: Any) -> dict[str, Any]:
    return {
        "service_code": "pothole",
        **HOME,
        "description": "Caller: deep hole by the bus stop",
        "attributes": {"size": "large"},
        **extra,
    }


# -- the role ------------------------------------------------------------------------------


def test_an_admin_makes_a_call_taker_who_signs_in(client: Any, db: Session) -> None:
    admin = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    r = client.post(
        "/api/v1/users",
        json={
            "email": "rosa@example.org",
            "name": "Rosa",
            "role": "call_taker",
            "password": "a long pass phrase",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["role"], r.get_json()["crew"]) == ("call_taker", None)
    assert [
        u["email"]
        for u in client.get("/api/v1/users?role=call_taker", headers=admin).get_json()["items"]
    ] == ["rosa@example.org"]
    token = client.post(
        "/api/v1/auth/token", json={"email": "rosa@example.org", "password": "a long pass phrase"}
    )
    me = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {token.get_json()['access_token']}"}
    )
    assert me.get_json()["role"] == "call_taker"


def test_a_call_taker_belongs_to_no_crew(client: Any, db: Session) -> None:
    admin = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    f.crew(db, "north-1")
    r = client.post(
        "/api/v1/users",
        json={
            "email": "rosa@example.org",
            "name": "Rosa",
            "role": "call_taker",
            "crew": "north-1",
            "password": "a long pass phrase",
        },
        headers=admin,
    )
    assert "only crew logins belong to a crew" in error_body(r, 422)["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/requests"),  # the whole list, with every reporter's text: staff only
        ("GET", "/api/v1/work-orders"),
        ("GET", "/api/v1/plans"),
        ("GET", "/api/v1/reviews"),
        ("GET", "/api/v1/crews"),
        ("GET", "/api/v1/shifts"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/api-keys"),
        ("GET", "/api/v1/api-keys/1/webhooks"),
        ("POST", "/api/v1/service-types"),
        ("POST", "/api/v1/requests/1/pin"),
        ("GET", "/api/v1/requests/1/redactions"),
        ("GET", "/api/v1/crew/route"),
    ],
)
def test_a_call_taker_may_not_plan_review_or_administer(
    client: Any, db: Session, agent: dict[str, str], method: str, path: str
) -> None:
    r = client.open(path, method=method, json={} if method == "POST" else None, headers=agent)
    assert error_body(r, 403)["message"].startswith("this needs one of the roles: ")


# -- recording a call ------------------------------------------------------------------------


def test_a_call_taker_records_a_call_and_is_not_shown_the_contact(
    client: Any, db: Session, agent: dict[str, str], supervisor: dict[str, str], city: None
) -> None:
    r = client.post(
        URL, json=_call(contact={"first_name": "Rosa", "phone": "+376 123 456"}), headers=agent
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert (body["channel"], body["detailed_status"], body["contact"]) == (
        "phone",
        "received",
        None,
    )
    assert body["status_words"] == STATUS_WORDS["received"] == "Received"
    assert [(e["to_status"], e["actor"], e["public"]) for e in body["timeline"]] == [
        ("received", "user:agent@example.org", True)
    ]
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == body["service_request_id"])
    )
    # The SLA started: the new work order is due sla_hours after the call.
    assert req.work_order.due_at - req.requested_at == timedelta(hours=72)
    assert (
        db.scalar(select(RequestContact.phone).where(RequestContact.request_id == req.id))
        == "+376 123 456"
    )
    again = client.get(r.headers["Location"], headers=agent).get_json()
    assert again["contact"] is None
    assert (
        client.get(r.headers["Location"], headers=supervisor).get_json()["contact"]["first_name"]
        == "Rosa"
    )


def test_a_call_taker_reads_the_types_attributes(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    types = client.get("/api/v1/service-types", headers=agent)
    assert types.status_code == 200
    pothole = client.get("/api/v1/service-types/pothole", headers=agent).get_json()
    assert [(a["code"], a["datatype"], a["required"]) for a in pothole["attributes"]][:2] == [
        ("size", "singlevaluelist", True),
        ("depth_cm", "number", False),
    ]


def test_a_call_takers_bad_call_stores_nothing(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    before = db.scalar(select(func.count()).select_from(ServiceRequest))
    r = client.post(URL, json=_call(attributes={}), headers=agent)
    assert error_body(r, 422)["errors"]["attribute[size]"] == [
        "attribute 'size' (Size) is required"
    ]
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == before


# -- what a report here would join -------------------------------------------------------------


def _nearby(
    client: Any, headers: dict[str, str], lon: float, lat: float, code: str = "pothole"
) -> Any:
    return client.get(
        f"{URL}/nearby",
        query_string={"service_code": code, "lat": lat, "lon": lon},
        headers=headers,
    )


def test_nearby_shows_what_a_report_here_joins_and_then_it_joins_it(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    first = client.post(URL, json=_call(), headers=agent).get_json()
    lon30, lat30 = f.offset(f.LON, f.LAT, 30)
    nearer = client.post(
        URL, json=_call(lat=lat30, lon=lon30, attributes={"size": "small"}), headers=agent
    ).get_json()
    assert (
        nearer["duplicate_of"] == first["service_request_id"]
    )  # within 50 m: one work order so far
    lon120, lat120 = f.offset(f.LON, f.LAT, 120)
    far = client.post(URL, json=_call(lat=lat120, lon=lon120), headers=agent).get_json()
    assert far["duplicate_of"] is None

    lon75, lat75 = f.offset(f.LON, f.LAT, 75)  # 75 m from the first, 45 m from the far one
    r = _nearby(client, agent, lon75, lat75)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["service_code"], body["radius_m"]) == ("pothole", 50)
    assert [(c["service_request_id"], c["outcome"]) for c in body["candidates"]] == [
        (far["service_request_id"], "joins")
    ]

    lon45, lat45 = f.offset(f.LON, f.LAT, 45)  # 45 m from the first, 75 m from the far one
    body = _nearby(client, agent, lon45, lat45).get_json()
    [joins] = body["candidates"]
    assert (joins["service_request_id"], joins["outcome"], joins["report_count"]) == (
        first["service_request_id"],
        "joins",
        2,
    )
    assert joins["distance_m"] == pytest.approx(45, abs=1)
    assert (joins["status_words"], joins["description"]) == (
        "Received",
        "Caller: deep hole by the bus stop",
    )
    assert joins["location"] == pytest.approx(HOME)

    # What the desk showed is what happens.
    made = client.post(URL, json=_call(lat=lat45, lon=lon45), headers=agent).get_json()
    assert made["duplicate_of"] == first["service_request_id"]
    assert first["service_request_id"] in made["service_notice"]
    # Another type at the same spot joins nothing.
    assert _nearby(client, agent, lon45, lat45, "graffiti").get_json()["candidates"] == []


def test_nearby_lists_every_joinable_work_nearest_first(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    west = client.post(URL, json=_call(), headers=agent).get_json()
    lon, lat = f.offset(f.LON, f.LAT, 80)
    east = client.post(URL, json=_call(lat=lat, lon=lon), headers=agent).get_json()
    mid_lon, mid_lat = f.offset(f.LON, f.LAT, 45)  # 45 m from west, 35 m from east
    body = _nearby(client, agent, mid_lon, mid_lat).get_json()
    assert [(c["service_request_id"], c["outcome"]) for c in body["candidates"]] == [
        (east["service_request_id"], "joins"),
        (west["service_request_id"], "nearby"),
    ]


def test_nearby_leaves_out_work_that_no_longer_takes_reports(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    made = client.post(URL, json=_call(), headers=agent).get_json()
    db.get(WorkOrder, made["work_order_id"]).status = "cancelled"
    db.commit()
    assert _nearby(client, agent, f.LON, f.LAT).get_json()["candidates"] == []


def test_nearby_shows_the_fixed_request_a_report_would_reopen(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    made = client.post(URL, json=_call(), headers=agent).get_json()
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == made["service_request_id"])
    )
    crew = f.crew(db)
    done = f.completion(
        db, req.work_order, crew, f.user(db, "c@example.org", "crew", crew=crew), verdict="verified"
    )
    req.work_order.status = "verified"
    req.detailed_status, req.completion_id, req.closed_at = (
        "fixed",
        done.id,
        datetime.now(UTC) - timedelta(days=2),
    )
    db.commit()
    [reopens] = _nearby(client, agent, f.LON, f.LAT).get_json()["candidates"]
    assert (reopens["service_request_id"], reopens["outcome"], reopens["status_words"]) == (
        made["service_request_id"],
        "reopens",
        "Fixed",
    )
    again = client.post(URL, json=_call(), headers=agent).get_json()
    assert "has reopened it" in again["service_notice"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"service_code": "nope", "lat": f.LAT, "lon": f.LON}, "service_code"),
        ({"service_code": "pothole", "lat": 91, "lon": f.LON}, "lat"),
        ({"service_code": "pothole", "lat": f.LAT}, "lon"),
        ({"lat": f.LAT, "lon": f.LON}, "service_code"),
    ],
)
def test_nearby_refuses_bad_questions(
    client: Any, db: Session, agent: dict[str, str], city: None, query: dict[str, Any], field: str
) -> None:
    r = client.get(f"{URL}/nearby", query_string=query, headers=agent)
    assert field in error_body(r, 422)["errors"]


def test_nearby_needs_a_role_that_takes_reports(client: Any, db: Session, city: None) -> None:
    crew = f.token_for(db, f.user(db, "crew@example.org", "crew", crew=f.crew(db)))
    assert _nearby(client, crew, f.LON, f.LAT).status_code == 403
    assert client.get(f"{URL}/nearby").status_code == 401


# -- "what happened to my report?" ------------------------------------------------------------


def test_a_lookup_answers_in_the_status_pages_words(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    made = client.post(URL, json=_call(), headers=agent).get_json()
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == made["service_request_id"])
    )
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    req.detailed_status, req.expected_at = "scheduled", soon
    db.commit()
    body = client.get(f"{URL}/{req.public_id}", headers=agent).get_json()
    assert body["status_words"] == STATUS_WORDS["scheduled"]
    page = client.get(f"/status/{req.public_id}").get_data(as_text=True)
    assert f'id="status">{body["status_words"]}<' in page
    assert datetime.fromisoformat(body["public_expected_at"]) == soon

    assert body["late_since"] is None

    # Closed: the page's words for the outcome, and nothing more to expect.
    ServiceRequestLifecycle.transition(
        db, req, "not_found", actor=f.SYSTEM, note="Nothing there on Tuesday.", public=True
    )
    ServiceRequestLifecycle.annotate(
        db, req, actor=f.SYSTEM, note="crew radio: checked both sides"
    )  # internal
    req.closed_at = datetime.now(UTC)
    db.commit()
    body = client.get(f"{URL}/{req.public_id}", headers=agent).get_json()
    assert body["status_words"] == "Closed: the crew could not find the problem"
    assert body["public_expected_at"] is None
    assert [(e["status_words"], e["note"]) for e in body["public_timeline"]] == [
        ("Received", "Report received."),
        ("Closed: the crew could not find the problem", "Nothing there on Tuesday."),
    ]
    page = client.get(f"/status/{req.public_id}").get_data(as_text=True)
    for event in body["public_timeline"]:
        assert f"<strong>{event['status_words']}</strong>" in page and event["note"] in page


def test_a_lookup_says_late_as_the_status_page_does(
    client: Any, db: Session, agent: dict[str, str], city: None
) -> None:
    made = client.post(URL, json=_call(), headers=agent).get_json()
    wo = db.get(WorkOrder, made["work_order_id"])
    wo.due_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    db.commit()
    body = client.get(f"{URL}/{made['service_request_id']}", headers=agent).get_json()
    assert (body["public_expected_at"], datetime.fromisoformat(body["late_since"])) == (
        None,
        wo.due_at,
    )
    assert 'id="late"' in client.get(f"/status/{made['service_request_id']}").get_data(as_text=True)


def test_a_call_taker_sees_only_the_public_timeline(
    client: Any, db: Session, agent: dict[str, str], supervisor: dict[str, str], city: None
) -> None:
    made = client.post(
        URL, json=_call(lat=40.4168, lon=-3.7038, outside_service_area=True), headers=supervisor
    ).get_json()
    staff = client.get(f"{URL}/{made['service_request_id']}", headers=supervisor).get_json()
    assert [e["public"] for e in staff["timeline"]] == [
        True,
        False,
    ]  # the override's audit note is internal
    seen = client.get(f"{URL}/{made['service_request_id']}", headers=agent).get_json()
    assert [e["note"] for e in seen["timeline"]] == ["Report received."]


def test_an_unknown_confirmation_number_is_404(
    client: Any, db: Session, agent: dict[str, str]
) -> None:
    r = client.get(f"{URL}/99999999", headers=agent)
    assert error_body(r, 404)["message"] == "service request '99999999' not found"
