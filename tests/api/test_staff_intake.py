"""POST /api/v1/requests: staff record a report (a phone call), inside the service area
or, on purpose and audited, outside it; pins outside the area likewise."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AddressPoint, RequestContact, ServiceRequest, StatusEvent, WorkOrder
from core.spatial import point
from geo.address import normalize_street
from tests import factories as f
from tests.api.errors import error_body

URL = "/api/v1/requests"
MADRID = {"lat": 40.4168, "lon": -3.7038}
HOME = {"lat": f.LAT, "lon": f.LON}
OVERRIDE_NOTE = "recorded outside the service area on purpose by user:disp@example.org"


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db, attributes=f.full_attributes())
    f.district(db, "centre")


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "service_code": "pothole",
        **HOME,
        "description": "Caller says: deep hole by the bus stop",
        "attributes": {"size": "large"},
        **extra,
    }


def _counts(db: Session) -> tuple[int, int, int]:
    return tuple(
        db.scalar(select(func.count()).select_from(t))
        for t in (ServiceRequest, WorkOrder, StatusEvent)
    )  # type: ignore[return-value]


def test_a_phone_call_is_recorded(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    r = client.post(
        URL,
        json=_body(
            attributes={"size": "large", "hazards": ["water", "dark"], "landmark": "bus stop"},
            contact={"email": "caller@example.org", "first_name": "Rosa", "phone": "+376 123 456"},
        ),
        headers=dispatcher,
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert r.headers["Location"] == f"/api/v1/requests/{body['service_request_id']}"
    assert (body["service_code"], body["channel"], body["detailed_status"], body["status"]) == (
        "pothole",
        "phone",
        "received",
        "open",
    )
    assert body["attributes"] == {
        "size": "large",
        "hazards": ["water", "dark"],
        "landmark": "bus stop",
    }
    assert (body["location"], body["location_source"], body["district"]) == (
        HOME,
        "device",
        "centre",
    )
    assert body["contact"] is None  # dispatchers do not see reporters, even the ones they typed in
    assert [(e["to_status"], e["actor"], e["note"], e["public"]) for e in body["timeline"]] == [
        ("received", "user:disp@example.org", "Report received.", True),
    ]
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == body["service_request_id"])
    )
    assert req.work_order is not None and req.work_order.status == "new"
    contact = db.scalar(select(RequestContact).where(RequestContact.request_id == req.id))
    assert (contact.email, contact.first_name, contact.phone) == (
        "caller@example.org",
        "Rosa",
        "+376 123 456",
    )
    assert (
        client.get(r.headers["Location"], headers=dispatcher).get_json()["service_request_id"]
        == req.public_id
    )


def test_a_second_call_about_the_same_hole_joins_it(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    first = client.post(URL, json=_body(), headers=dispatcher).get_json()
    lon, lat = f.offset(f.LON, f.LAT, 20)
    second = client.post(
        URL, json=_body(lat=lat, lon=lon, channel="walk_in"), headers=dispatcher
    ).get_json()
    assert second["duplicate_of"] == first["service_request_id"]
    assert second["work_order_id"] == first["work_order_id"] and second["channel"] == "walk_in"
    assert first["service_request_id"] in second["service_notice"]


def test_an_address_is_geocoded(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    db.add(
        AddressPoint(
            street="Carrer Major",
            street_key=normalize_street("Carrer Major"),
            housenumber="3",
            location=point(f.LON, f.LAT),
            osm_type="node",
            osm_id=1,
        )
    )
    db.commit()
    body = {
        k: v for k, v in _body(address_string="Carrer Major, 3").items() if k not in {"lat", "lon"}
    }
    placed = client.post(URL, json=body, headers=dispatcher).get_json()
    assert (placed["location"], placed["location_source"], placed["needs_pin"]) == (
        HOME,
        "geocoded",
        False,
    )
    unknown = client.post(
        URL, json=body | {"address_string": "Behind the old church"}, headers=dispatcher
    ).get_json()
    assert (unknown["location"], unknown["needs_pin"]) == (None, True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lat": None}, "lat"),
        ({"lon": 200}, "lon"),
        ({"service_code": "unicorn"}, "service_code"),
        ({"channel": "open311"}, "channel"),
        ({"attributes": {"size": "huge"}}, "attribute[size]"),
        ({"attributes": {"size": 3}}, "attributes"),
        ({"contact": {"email": "not-an-address"}}, "contact"),
        ({"outside_service_area": "maybe"}, "outside_service_area"),
    ],
)
def test_bad_bodies_are_422_and_store_nothing(
    client: Any,
    db: Session,
    dispatcher: dict[str, str],
    city: None,
    change: dict[str, Any],
    field: str,
) -> None:
    before = _counts(db)
    r = client.post(URL, json=_body(**change), headers=dispatcher)
    body = error_body(r, 422)
    assert field in body["errors"], body
    assert _counts(db) == before


def test_a_location_is_required(client: Any, dispatcher: dict[str, str], city: None) -> None:
    r = client.post(
        URL, json={"service_code": "pothole", "attributes": {"size": "small"}}, headers=dispatcher
    )
    assert error_body(r, 422)["errors"] == {
        "lat": ["a location is required: lat and lon, or address_string"]
    }
    r = client.post(
        URL,
        json={"service_code": "pothole", "lat": f.LAT, "attributes": {"size": "small"}},
        headers=dispatcher,
    )
    assert error_body(r, 422)["errors"] == {"lon": ["lat and lon must be given together"]}


@pytest.mark.parametrize(
    ("role", "status"), [("dispatcher", 201), ("supervisor", 201), ("admin", 201), ("crew", 403)]
)
def test_who_may_record_a_report(
    client: Any, db: Session, city: None, role: str, status: int
) -> None:
    who = f.user(db, f"{role}@example.org", role, crew=f.crew(db) if role == "crew" else None)
    assert client.post(URL, json=_body(), headers=f.token_for(db, who)).status_code == status
    assert client.post(URL, json=_body()).status_code == 401


# -- outside the service area ------------------------------------------------------------


def test_outside_the_area_needs_the_flag(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    before = _counts(db)
    r = client.post(URL, json=_body(**MADRID), headers=dispatcher)
    body = error_body(r, 422)
    message = (
        "the location 40.416800, -3.703800 is outside the city's service area; "
        'to record it anyway, send "outside_service_area": true'
    )
    assert body["message"] == message
    assert body["errors"]["lat"] == [message]
    assert body["errors"]["error_code"] == "outside_service_area"
    assert _counts(db) == before


def test_outside_the_area_on_purpose_is_recorded_and_audited(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    r = client.post(URL, json=_body(**MADRID, outside_service_area=True), headers=dispatcher)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert (body["location"], body["district"]) == (MADRID, None)
    assert [
        (e["from_status"], e["to_status"], e["actor"], e["note"], e["public"])
        for e in body["timeline"]
    ] == [
        (None, "received", "user:disp@example.org", "Report received.", True),
        ("received", "received", "user:disp@example.org", OVERRIDE_NOTE, False),
    ]
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == body["service_request_id"])
    )
    audit = db.scalar(
        select(StatusEvent).where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == req.id,
            StatusEvent.note == OVERRIDE_NOTE,
        )
    )
    assert audit is not None and audit.actor_user_id is not None and not audit.public
    # The public timeline is that of any report.
    public = client.get(f"/open311/v2/requests/{req.public_id}.json?extensions=true").get_json()[0]
    assert [n["description"] for n in public["notes"]] == ["Report received."]


def test_the_flag_inside_the_area_overrides_nothing(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    body = client.post(URL, json=_body(outside_service_area=True), headers=dispatcher).get_json()
    assert [e["note"] for e in body["timeline"]] == ["Report received."]


def test_with_no_area_anything_is_recorded(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    r = client.post(URL, json={"service_code": "pothole", **MADRID}, headers=dispatcher)
    assert r.status_code == 201, r.get_json()
    assert [e["note"] for e in r.get_json()["timeline"]] == ["Report received."]


def test_pin_outside_the_area(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    req = f.report(
        db, lon=None, lat=None, address_string="Carrer Major 1", attributes={"size": "small"}
    ).request
    url = f"/api/v1/requests/{req.public_id}/pin"
    body = error_body(client.post(url, json=MADRID, headers=dispatcher), 422)
    assert body["message"].endswith(
        'outside the city\'s service area; to record it anyway, send "outside_service_area": true'
    )
    assert (
        client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher).get_json()["needs_pin"]
        is True
    )

    r = client.post(url, json=MADRID | {"outside_service_area": True}, headers=dispatcher)
    assert r.status_code == 200, r.get_json()
    detail = r.get_json()
    assert detail["location"] == MADRID and detail["location_source"] == "pinned"
    assert [(e["note"], e["public"]) for e in detail["timeline"][-2:]] == [
        ("Placed on the map by staff.", True),
        ("placed outside the service area on purpose by user:disp@example.org", False),
    ]


def test_pin_inside_the_area_is_not_an_override(
    client: Any, db: Session, dispatcher: dict[str, str], city: None
) -> None:
    req = f.report(
        db, lon=None, lat=None, address_string="Carrer Major 1", attributes={"size": "small"}
    ).request
    r = client.post(
        f"/api/v1/requests/{req.public_id}/pin",
        json=HOME | {"outside_service_area": True},
        headers=dispatcher,
    )
    assert r.status_code == 200
    assert r.get_json()["timeline"][-1]["note"] == "Placed on the map by staff."


def test_openapi_documents_the_staff_intake(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    post = spec["paths"]["/api/v1/requests"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewRequest"
    }
    assert set(post["responses"]) >= {"201", "422"}
    fields = spec["components"]["schemas"]["NewRequest"]["properties"]
    assert fields["outside_service_area"]["default"] is False
    assert fields["channel"]["enum"] == ["phone", "email", "walk_in", "staff"]
    assert "outside_service_area" in spec["components"]["schemas"]["Pin"]["properties"]
