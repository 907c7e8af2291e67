"""/api/v1/requests: filters, pages, detail with timeline and contact, pinning."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import ServiceRequest
from tests import factories as f


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


@pytest.fixture
def supervisor(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "sup@example.org", "supervisor"))


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.get_json()
    return [item["service_request_id"] for item in r.get_json()["items"]]


def report_at(
    db: Session, code: str, metres_east: float, days: float, **kwargs: Any
) -> ServiceRequest:
    """A report `metres_east` of the centre, `days` ago; far enough apart not to join."""
    lon, lat = f.offset(f.LON, f.LAT, metres_east)
    return f.report(db, code, lon=lon, lat=lat, at=f.days_ago(days), **kwargs).request


def move(db: Session, req: ServiceRequest, *statuses: str) -> None:
    for status in statuses:
        ServiceRequestLifecycle.transition(db, req, status, actor=f.SYSTEM)
    db.flush()


# -- list and filters ----------------------------------------------------------------------


def test_list_is_newest_first_and_pages(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    reqs = [
        report_at(db, "pothole", 200 * i, days=10 - i) for i in range(5)
    ]  # reqs[4] is the newest
    newest_first = [r.public_id for r in reversed(reqs)]

    r = client.get("/api/v1/requests", headers=dispatcher)
    body = r.get_json()
    assert (body["page"], body["page_size"], body["total"]) == (1, 50, 5)
    assert ids(r) == newest_first

    pages = [
        client.get("/api/v1/requests", query_string={"page": p, "page_size": 2}, headers=dispatcher)
        for p in (1, 2, 3, 4)
    ]
    assert [ids(p) for p in pages] == [newest_first[0:2], newest_first[2:4], newest_first[4:], []]
    assert {p.get_json()["total"] for p in pages} == {5}
    assert pages[1].get_json()["page"] == 2 and pages[1].get_json()["page_size"] == 2


def test_same_timestamp_ties_break_by_id_desc(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    at = f.days_ago(1)
    a = f.report(db, at=at).request
    b = f.report(db, lon=f.offset(f.LON, f.LAT, 300)[0], at=at).request
    assert ids(client.get("/api/v1/requests", headers=dispatcher)) == [b.public_id, a.public_id]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 501}, "page_size"),
        ({"page": "x"}, "page"),
    ],
)
def test_bad_paging_is_422(
    client: Any, dispatcher: dict[str, str], params: dict[str, Any], field: str
) -> None:
    r = client.get("/api/v1/requests", query_string=params, headers=dispatcher)
    assert r.status_code == 422
    assert list(r.get_json()["errors"]) == [field]


def test_list_item_shape(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    f.district(db, "centre")
    result = f.report(db, description="Deep hole", contact=Contact(email="res@example.org"))
    item = client.get("/api/v1/requests", headers=dispatcher).get_json()["items"][0]
    assert item["service_request_id"] == result.request.public_id
    assert item["id"] == result.request.id
    assert (item["service_code"], item["detailed_status"], item["status"], item["description"]) == (
        "pothole",
        "received",
        "open",
        "Deep hole",
    )
    assert item["location"] == {"lat": f.LAT, "lon": f.LON}
    assert (
        item["location_source"],
        item["needs_pin"],
        item["district"],
        item["work_order_id"],
    ) == ("device", False, "centre", result.work_order.id)
    assert "contact" not in item and "res@example.org" not in str(item)


def test_filter_by_detailed_status_and_comma_list(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    received = report_at(db, "pothole", 0, days=3)
    acknowledged = report_at(db, "pothole", 500, days=2)
    referred = report_at(db, "pothole", 1000, days=1)
    move(db, acknowledged, "acknowledged")
    move(db, referred, "referred")

    def by(status: str) -> list[str]:
        return ids(
            client.get("/api/v1/requests", query_string={"status": status}, headers=dispatcher)
        )

    assert by("received") == [received.public_id]
    assert by("acknowledged") == [acknowledged.public_id]
    assert by("received, referred") == [referred.public_id, received.public_id]
    assert by("scheduled") == []


def test_unknown_status_is_422(client: Any, dispatcher: dict[str, str]) -> None:
    r = client.get("/api/v1/requests", query_string={"status": "received,open"}, headers=dispatcher)
    assert r.status_code == 422
    body = r.get_json()
    assert set(body) == {"code", "status", "message", "errors"}
    assert body["message"] == "unknown status 'open'"
    assert list(body["errors"]) == ["status"]
    assert body["errors"]["status"][0].startswith("one of received, acknowledged, scheduled")


def test_filter_by_service_codes(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    f.service_type(db, "graffiti", skill="paint")
    f.service_type(db, "streetlight", skill="electric")
    p = report_at(db, "pothole", 0, days=3)
    g = report_at(db, "graffiti", 0, days=2)
    s = report_at(db, "streetlight", 0, days=1)
    q = "/api/v1/requests"
    assert ids(client.get(q, query_string={"service_code": "graffiti"}, headers=dispatcher)) == [
        g.public_id
    ]
    assert ids(
        client.get(q, query_string={"service_code": "pothole,streetlight"}, headers=dispatcher)
    ) == [s.public_id, p.public_id]
    assert ids(client.get(q, query_string={"service_code": "nope"}, headers=dispatcher)) == []


def test_filter_by_district(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    f.district(db, "west", bbox=(1.50, 42.49, 1.52, 42.52))
    f.district(db, "east", bbox=(1.52, 42.49, 1.55, 42.52))
    east = f.report(db, at=f.days_ago(2)).request  # LON 1.5243 is east of 1.52
    west = f.report(db, lon=1.51, lat=42.50, at=f.days_ago(1)).request
    q = "/api/v1/requests"
    assert ids(client.get(q, query_string={"district": "east"}, headers=dispatcher)) == [
        east.public_id
    ]
    assert ids(client.get(q, query_string={"district": "west"}, headers=dispatcher)) == [
        west.public_id
    ]
    assert ids(client.get(q, query_string={"district": "nowhere"}, headers=dispatcher)) == []


def test_filter_by_bbox(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    inside = f.report(db, at=f.days_ago(2)).request
    f.report(db, lon=1.60, lat=42.55, at=f.days_ago(1))
    f.report(
        db, lon=None, lat=None, address_string="Carrer Major 1"
    )  # no location: never in a bbox
    r = client.get(
        "/api/v1/requests", query_string={"bbox": "1.52,42.50,1.53,42.51"}, headers=dispatcher
    )
    assert ids(r) == [inside.public_id]


@pytest.mark.parametrize(
    "bbox", ["1,2,3", "a,b,c,d", "1.53,42.50,1.52,42.51", "1.52,42.50,1.53,95", "1,2,3,4,5"]
)
def test_malformed_bbox_is_422(client: Any, dispatcher: dict[str, str], bbox: str) -> None:
    r = client.get("/api/v1/requests", query_string={"bbox": bbox}, headers=dispatcher)
    assert r.status_code == 422, r.get_json()
    assert list(r.get_json()["errors"]) == ["bbox"]


def test_filter_needs_pin(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    located = f.report(db, at=f.days_ago(2)).request
    unplaced = f.report(
        db, lon=None, lat=None, address_string="Carrer Major 1", at=f.days_ago(1)
    ).request
    q = "/api/v1/requests"
    assert ids(client.get(q, query_string={"needs_pin": "true"}, headers=dispatcher)) == [
        unplaced.public_id
    ]
    assert ids(client.get(q, query_string={"needs_pin": "false"}, headers=dispatcher)) == [
        located.public_id
    ]
    assert ids(client.get(q, headers=dispatcher)) == [unplaced.public_id, located.public_id]


def test_filter_from_to(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    old = report_at(db, "pothole", 0, days=10)
    mid = report_at(db, "pothole", 500, days=5)
    new = report_at(db, "pothole", 1000, days=1)
    q = "/api/v1/requests"

    def window(**params: Any) -> list[str]:
        return ids(
            client.get(
                q, query_string={k: v.isoformat() for k, v in params.items()}, headers=dispatcher
            )
        )

    assert window(**{"from": f.days_ago(6)}) == [new.public_id, mid.public_id]
    assert window(to=f.days_ago(4)) == [mid.public_id, old.public_id]
    assert window(**{"from": f.days_ago(6), "to": f.days_ago(4)}) == [mid.public_id]
    # `from` is inclusive, `to` exclusive.
    assert window(
        **{"from": mid.requested_at, "to": mid.requested_at + timedelta(microseconds=1)}
    ) == [mid.public_id]
    assert window(to=mid.requested_at) == [old.public_id]
    r = client.get(q, query_string={"from": "yesterday"}, headers=dispatcher)
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["from"]


def test_filters_combine(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    f.service_type(db, "graffiti", skill="paint")
    target = report_at(db, "pothole", 0, days=1)
    report_at(db, "graffiti", 0, days=1)
    move(db, report_at(db, "pothole", 500, days=1), "acknowledged")
    r = client.get(
        "/api/v1/requests",
        query_string={"service_code": "pothole", "status": "received"},
        headers=dispatcher,
    )
    assert ids(r) == [target.public_id]
    assert r.get_json()["total"] == 1


# -- detail --------------------------------------------------------------------------------


def test_detail_has_timeline_in_order(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    req = f.report(db, at=f.days_ago(1)).request
    move(db, req, "acknowledged", "scheduled")
    r = client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher)
    assert r.status_code == 200
    body = r.get_json()
    assert body["service_request_id"] == req.public_id
    assert body["detailed_status"] == "scheduled"
    assert [(e["from_status"], e["to_status"]) for e in body["timeline"]] == [
        (None, "received"),
        ("received", "acknowledged"),
        ("acknowledged", "scheduled"),
    ]
    first = body["timeline"][0]
    assert (first["actor"], first["note"], first["public"]) == ("test", "Report received.", True)
    assert body["timeline"][1]["actor"] == "test"


def test_unknown_request_is_404(client: Any, dispatcher: dict[str, str]) -> None:
    r = client.get("/api/v1/requests/999999", headers=dispatcher)
    assert r.status_code == 404
    assert r.get_json() == {
        "code": 404,
        "status": "Not Found",
        "message": "service request '999999' not found",
    }


CONTACT = Contact(
    email="res@example.org", first_name="Rosa", last_name="Puig", phone="+376 123 456"
)


def test_contact_visible_to_supervisor_and_admin(
    client: Any, db: Session, supervisor: dict[str, str]
) -> None:
    f.service_type(db)
    req = f.report(db, contact=CONTACT).request
    admin = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    expected = {
        "email": "res@example.org",
        "first_name": "Rosa",
        "last_name": "Puig",
        "phone": "+376 123 456",
    }
    for headers in (supervisor, admin):
        r = client.get(f"/api/v1/requests/{req.public_id}", headers=headers)
        assert r.status_code == 200
        assert r.get_json()["contact"] == expected


def test_contact_is_null_for_a_dispatcher(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    req = f.report(db, contact=CONTACT).request
    r = client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher)
    assert r.status_code == 200
    body = r.get_json()
    assert "contact" in body and body["contact"] is None
    text = r.get_data(as_text=True)
    for secret in ("res@example.org", "Rosa", "Puig", "123 456"):
        assert secret not in text


def test_contact_is_null_when_none_was_given(
    client: Any, db: Session, supervisor: dict[str, str]
) -> None:
    f.service_type(db)
    req = f.report(db).request
    assert (
        client.get(f"/api/v1/requests/{req.public_id}", headers=supervisor).get_json()["contact"]
        is None
    )


# -- pin -----------------------------------------------------------------------------------


def test_pin_an_address_only_request(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    f.district(db, "centre")
    result = f.report(db, lon=None, lat=None, address_string="Carrer Major 1")
    req, wo = result.request, result.work_order
    assert req.location is None and wo.location is None

    wo_before = client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher).get_json()
    assert wo_before["location"] is None and wo_before["district"] is None

    r = client.post(
        f"/api/v1/requests/{req.public_id}/pin",
        json={"lat": f.LAT, "lon": f.LON},
        headers=dispatcher,
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["location"] == {"lat": f.LAT, "lon": f.LON}
    assert (body["location_source"], body["needs_pin"], body["district"]) == (
        "pinned",
        False,
        "centre",
    )
    assert body["detailed_status"] == "received"
    last = body["timeline"][-1]
    assert (last["from_status"], last["to_status"], last["note"], last["actor"]) == (
        "received",
        "received",
        "Placed on the map by staff.",
        "user:disp@example.org",
    )
    assert last["location"] == {"lat": f.LAT, "lon": f.LON}

    wo_after = client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher).get_json()
    assert wo_after["location"] == {"lat": f.LAT, "lon": f.LON}
    assert wo_after["district"] == "centre"
    assert (
        wo_after["timeline"][-1]["note"]
        == f"request {req.public_id} pinned at {f.LAT:.6f},{f.LON:.6f}"
    )

    listed = client.get("/api/v1/requests", query_string={"needs_pin": "true"}, headers=dispatcher)
    assert ids(listed) == []


def test_pin_twice_is_422(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    req = f.report(db, lon=None, lat=None, address_string="Carrer Major 1").request
    url = f"/api/v1/requests/{req.public_id}/pin"
    assert (
        client.post(url, json={"lat": f.LAT, "lon": f.LON}, headers=dispatcher).status_code == 200
    )
    r = client.post(url, json={"lat": 42.51, "lon": 1.53}, headers=dispatcher)
    assert r.status_code == 422
    body = r.get_json()
    assert body["message"] == f"request {req.public_id} already has a location"
    assert body["errors"] == {"lat": [body["message"]], "error_code": "invalid"}
    detail = client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher).get_json()
    assert detail["location"] == {"lat": f.LAT, "lon": f.LON}


def test_pin_a_device_located_request_is_422(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    req = f.report(db).request
    r = client.post(
        f"/api/v1/requests/{req.public_id}/pin",
        json={"lat": 42.51, "lon": 1.53},
        headers=dispatcher,
    )
    assert r.status_code == 422
    assert r.get_json()["errors"]["error_code"] == "invalid"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"lat": 95, "lon": 1.5}, "lat"),
        ({"lat": 42.5}, "lon"),
        ({"lat": "x", "lon": 1.5}, "lat"),
        ({"lat": 42.5, "lon": -181}, "lon"),
    ],
)
def test_pin_payload_is_validated(
    client: Any, db: Session, dispatcher: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    f.service_type(db)
    req = f.report(db, lon=None, lat=None, address_string="Carrer Major 1").request
    r = client.post(f"/api/v1/requests/{req.public_id}/pin", json=payload, headers=dispatcher)
    assert r.status_code == 422
    assert list(r.get_json()["errors"]) == [field]
    assert (
        client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher).get_json()["needs_pin"]
        is True
    )


def test_pin_unknown_request_is_404(client: Any, dispatcher: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/requests/999999/pin", json={"lat": f.LAT, "lon": f.LON}, headers=dispatcher
    )
    assert r.status_code == 404


def test_crew_cannot_pin(client: Any, db: Session) -> None:
    f.service_type(db)
    req = f.report(db, lon=None, lat=None, address_string="Carrer Major 1").request
    crew = f.token_for(db, f.user(db, "c@example.org", "crew", crew=f.crew(db)))
    r = client.post(
        f"/api/v1/requests/{req.public_id}/pin", json={"lat": f.LAT, "lon": f.LON}, headers=crew
    )
    assert r.status_code == 403
