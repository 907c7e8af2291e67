"""Open311 GeoReport v2: every endpoint in JSON and XML, filters, errors, duplicates, privacy."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import RequestContact, ServiceRequest, StatusEvent, WorkOrder
from tests import factories as f

BASE = "/open311/v2"
PII = {
    "email": "jane.resident@example.org",
    "first_name": "Janet",
    "last_name": "Residentova",
    "phone": "+376 555 0101",
    "device_id": "device-7f3a",
    "account_id": "acct-991",
}


def _xml(resp) -> ET.Element:  # noqa: ANN001
    assert resp.content_type.startswith("text/xml"), resp.content_type
    return ET.fromstring(resp.data)


def _post(client, **form: Any):  # noqa: ANN001, ANN202
    data = {
        "api_key": f.API_KEY,
        "service_code": "pothole",
        "lat": str(f.LAT),
        "long": str(f.LON),
        "attribute[size]": "small",
    }
    data.update({k: v for k, v in form.items() if v is not None})
    for k in [k for k, v in form.items() if v is None]:
        data.pop(k, None)
    return client.post(f"{BASE}/requests.json", data=data)


@pytest.fixture
def city(db: Session) -> dict[str, Any]:
    pothole = f.service_type(db, attributes=f.full_attributes())
    graffiti = f.service_type(
        db, "graffiti", name="Graffiti", agency="Sanitation", group="sanitation", skill="graffiti"
    )
    f.api_key(db)
    db.commit()
    return {"pothole": pothole, "graffiti": graffiti}


# -- discovery and services ------------------------------------------------------------


def test_discovery_json_and_xml(client, city) -> None:  # noqa: ANN001
    body = client.get(f"{BASE}/discovery.json").get_json()
    endpoint = body["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["url"].endswith("/open311/v2") and set(endpoint["formats"]) == {
        "application/json",
        "text/xml",
    }
    assert datetime.fromisoformat(body["changeset"]).utcoffset() is not None
    root = _xml(client.get(f"{BASE}/discovery.xml"))
    assert root.tag == "discovery"
    assert [e.text for e in root.findall("endpoints/endpoint/formats/format")] == [
        "application/json",
        "text/xml",
    ]


def test_services_list_json_and_xml(client, city) -> None:  # noqa: ANN001
    services = client.get(f"{BASE}/services.json").get_json()
    by_code = {s["service_code"]: s for s in services}
    assert set(by_code) == {"pothole", "graffiti"}
    assert by_code["pothole"] == {
        "service_code": "pothole",
        "service_name": "Pothole",
        "description": "pothole description",
        "metadata": True,
        "type": "realtime",
        "keywords": "road",
        "group": "streets",
    }
    assert by_code["graffiti"]["metadata"] is False
    root = _xml(client.get(f"{BASE}/services.xml"))
    assert root.tag == "services"
    assert {s.findtext("service_code") for s in root.findall("service")} == {"pothole", "graffiti"}
    assert root.find("service[service_code='pothole']/metadata").text == "true"


def test_service_definition_json_and_xml(client, city) -> None:  # noqa: ANN001
    body = client.get(f"{BASE}/services/pothole.json").get_json()
    assert body["service_code"] == "pothole"
    attrs = body["attributes"]
    assert [a["code"] for a in attrs] == [
        "size",
        "depth_cm",
        "seen_at",
        "landmark",
        "details",
        "hazards",
        "note",
    ]
    assert {a["datatype"] for a in attrs} == {
        "string",
        "number",
        "datetime",
        "text",
        "singlevaluelist",
        "multivaluelist",
    }
    size = attrs[0]
    assert size["required"] is True and size["variable"] is True and size["order"] == 1
    assert size["values"] == [{"key": "small", "name": "Small"}, {"key": "large", "name": "Large"}]
    assert attrs[-1]["variable"] is False
    root = _xml(client.get(f"{BASE}/services/pothole.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "pothole"
    hazards = root.find("attributes/attribute[code='hazards']")
    assert hazards.findtext("datatype") == "multivaluelist"
    assert [v.findtext("key") for v in hazards.findall("values/value")] == [
        "water",
        "traffic",
        "dark",
    ]


def test_unknown_service_definition_is_404_in_both_formats(client, city) -> None:  # noqa: ANN001
    resp = client.get(f"{BASE}/services/nope.json")
    assert resp.status_code == 404
    assert resp.get_json() == [{"code": 404, "description": "service_code 'nope' not found"}]
    root = _xml(client.get(f"{BASE}/services/nope.xml"))
    assert root.tag == "errors" and root.findtext("error/code") == "404"


# -- POST requests --------------------------------------------------------------------------------


def test_post_request_creates_request_and_work_order(client, db: Session, city) -> None:  # noqa: ANN001
    resp = _post(
        client,
        description="Big hole",
        **{"attribute[depth_cm]": "12", "attribute[hazards][]": None},
    )
    assert resp.status_code == 201, resp.data
    (body,) = resp.get_json()
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == body["service_request_id"])
    )
    assert req is not None and req.token == body["token"] and body["service_notice"] is None
    assert req.attributes == {"size": "small", "depth_cm": 12}
    assert req.work_order.status == "new" and req.channel == "open311"
    events = db.scalars(
        select(StatusEvent).where(
            StatusEvent.entity == "service_request", StatusEvent.entity_id == req.id
        )
    ).all()
    assert [(e.to_status, e.actor) for e in events] == [("received", "open311:Test client")]


def test_post_request_xml_answer(client, city) -> None:  # noqa: ANN001
    resp = client.post(
        f"{BASE}/requests.xml",
        data={
            "api_key": f.API_KEY,
            "service_code": "graffiti",
            "lat": str(f.LAT),
            "long": str(f.LON),
        },
    )
    assert resp.status_code == 201
    root = _xml(resp)
    assert root.tag == "service_requests" and root.findtext("request/service_request_id")


def test_multivalue_attributes_with_brackets(client, db: Session, city) -> None:  # noqa: ANN001
    resp = client.post(
        f"{BASE}/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "attribute[size]": "large",
            "attribute[hazards][]": ["water", "traffic"],
            "attribute[seen_at]": "2026-11-20T10:00:00Z",
        },
    )
    assert resp.status_code == 201, resp.data
    req = db.scalar(
        select(ServiceRequest).where(
            ServiceRequest.public_id == resp.get_json()[0]["service_request_id"]
        )
    )
    assert req.attributes["hazards"] == ["water", "traffic"]
    assert req.attributes["seen_at"] == "2026-11-20T10:00:00+00:00"


@pytest.mark.parametrize(
    ("form", "status", "fragment"),
    [
        ({"api_key": None}, 403, "api_key is required to submit a service request"),
        ({"api_key": ""}, 403, "api_key is required to submit a service request"),
        ({"api_key": "wrong"}, 403, "api_key is not valid"),
        ({"service_code": "unicorn"}, 400, "unknown service_code"),
        ({"service_code": ""}, 400, "service_code is required"),
        ({"lat": "91"}, 400, "lat must be between"),
        ({"long": "east"}, 400, "long must be a decimal"),
        ({"long": None}, 400, "lat and long must be given together"),
        ({"lat": None, "long": None}, 400, "a location is required"),
        ({"attribute[size]": None}, 400, "attribute 'size'"),
        ({"attribute[size]": "medium"}, 400, "must be one of"),
        ({"attribute[depth_cm]": "deep"}, 400, "must be a number"),
        ({"attribute[seen_at]": "last tuesday"}, 400, "ISO 8601"),
        ({"attribute[hazards][]": "lava"}, 400, "values must be among"),
        ({"attribute[unknown]": "x" * 4001}, 400, "too long"),
        ({"description": "d" * 4001}, 400, "the limit is 4000"),
        ({"email": "not-an-email"}, 400, "is not an e-mail address"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url must be an http"),
    ],
)
def test_post_request_errors_store_nothing(
    client, db: Session, city, form, status, fragment
) -> None:  # noqa: ANN001
    resp = _post(client, **form)
    assert resp.status_code == status, resp.data
    (error,) = resp.get_json()
    assert error["code"] == status and fragment in error["description"]
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0
    assert db.scalar(select(func.count()).select_from(WorkOrder)) == 0


def test_description_of_exactly_4000_characters_is_accepted(client, city) -> None:  # noqa: ANN001
    assert _post(client, description="d" * 4000).status_code == 201


def test_post_errors_in_xml(client, city) -> None:  # noqa: ANN001
    resp = client.post(f"{BASE}/requests.xml", data={"service_code": "pothole"})
    assert resp.status_code == 403
    root = _xml(resp)
    assert root.tag == "errors" and root.findtext("error/code") == "403"


def test_empty_parameters_count_as_absent(client, db: Session, city) -> None:  # noqa: ANN001
    resp = _post(
        client, email="", phone="", address_string="", media_url="", **{"attribute[depth_cm]": ""}
    )
    assert resp.status_code == 201, resp.data
    req = db.scalar(
        select(ServiceRequest).where(
            ServiceRequest.public_id == resp.get_json()[0]["service_request_id"]
        )
    )
    assert req.contact is None and req.address is None and req.media_url is None
    assert "depth_cm" not in req.attributes
    listing = client.get(
        f"{BASE}/requests.json?service_code=&status=&start_date=&end_date=&service_request_id="
    )
    assert listing.status_code == 200 and len(listing.get_json()) == 1


def test_duplicate_report_joins_with_its_own_id_and_a_notice(client, db: Session, city) -> None:  # noqa: ANN001
    first = _post(client).get_json()[0]
    lon, lat = f.offset(f.LON, f.LAT, 30)
    resp = _post(client, lat=str(lat), long=str(lon))
    second = resp.get_json()[0]
    assert second["service_request_id"] != first["service_request_id"]
    assert first["service_request_id"] in second["service_notice"]
    wo = db.scalar(select(WorkOrder))
    assert db.scalar(select(func.count()).select_from(WorkOrder)) == 1
    assert wo.report_count == 2 and wo.priority == 4
    got = client.get(
        f"{BASE}/requests/{second['service_request_id']}.json?extensions=true"
    ).get_json()[0]
    assert got["duplicate_of"] == first["service_request_id"]
    assert first["service_request_id"] in got["service_notice"]


def test_address_only_report_is_geocoded_or_accepted_for_a_pin(client, db: Session, city) -> None:  # noqa: ANN001
    from geo.geocode import build_address_index
    from tests.factories import ANDORRA_PBF

    build_address_index(db, ANDORRA_PBF)
    db.commit()
    placed = _post(
        client, lat=None, long=None, address_string="Av. Meritxell, 11, AD500 Andorra la Vella"
    ).get_json()[0]
    got = client.get(f"{BASE}/requests/{placed['service_request_id']}.json").get_json()[0]
    assert got["lat"] == pytest.approx(42.5080426) and got["long"] == pytest.approx(1.5243707)
    assert got["address"] == "Av. Meritxell, 11, AD500 Andorra la Vella"
    unplaced = _post(
        client, lat=None, long=None, address_string="Behind the old church"
    ).get_json()[0]
    got = client.get(f"{BASE}/requests/{unplaced['service_request_id']}.json").get_json()[0]
    assert got["lat"] is None and got["long"] is None
    wo = db.scalar(
        select(WorkOrder)
        .join(ServiceRequest)
        .where(ServiceRequest.public_id == unplaced["service_request_id"])
    )
    assert wo.location is None


# -- GET requests ------------------------------------------------------------------------------------


@pytest.fixture
def history(db: Session, city) -> dict[str, ServiceRequest]:  # noqa: ANN001
    now = datetime.now(UTC)
    far = lambda m: f.offset(f.LON, f.LAT, m)  # noqa: E731
    rows = {
        "recent_pothole": f.report(
            db, at=now - timedelta(days=1), attributes={"size": "small"}
        ).request,
        "old_pothole": f.report(
            db, lon=far(500)[0], at=now - timedelta(days=30), attributes={"size": "large"}
        ).request,
        "graffiti": f.report(db, "graffiti", at=now - timedelta(days=5)).request,
        "ancient": f.report(
            db, lon=far(1500)[0], at=now - timedelta(days=120), attributes={"size": "small"}
        ).request,
    }
    ServiceRequestLifecycle.transition(
        db,
        rows["graffiti"],
        "no_action_needed",
        actor=f.SYSTEM,
        note="Painted over by owner",
        public=True,
    )
    rows["graffiti"].status_notes = "The owner painted over it."
    db.commit()
    return rows


def _ids(resp) -> list[str]:  # noqa: ANN001
    assert resp.status_code == 200, resp.data
    return [r["service_request_id"] for r in resp.get_json()]


def test_default_window_is_90_days_newest_first(client, history) -> None:  # noqa: ANN001
    h = history
    assert _ids(client.get(f"{BASE}/requests.json")) == [
        h["recent_pothole"].public_id,
        h["graffiti"].public_id,
        h["old_pothole"].public_id,
    ]


def test_filters_service_code_status_and_dates(client, history) -> None:  # noqa: ANN001
    h = history
    assert _ids(client.get(f"{BASE}/requests.json?service_code=graffiti")) == [
        h["graffiti"].public_id
    ]
    assert _ids(client.get(f"{BASE}/requests.json?service_code=graffiti,pothole&status=open")) == [
        h["recent_pothole"].public_id,
        h["old_pothole"].public_id,
    ]
    assert _ids(client.get(f"{BASE}/requests.json?status=closed")) == [h["graffiti"].public_id]
    start = (datetime.now(UTC) - timedelta(days=200)).isoformat()
    end = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    assert _ids(
        client.get(f"{BASE}/requests.json", query_string={"start_date": start, "end_date": end})
    ) == [h["old_pothole"].public_id, h["ancient"].public_id]
    # end_date alone: the 90 days before it.
    assert _ids(client.get(f"{BASE}/requests.json", query_string={"end_date": end})) == [
        h["old_pothole"].public_id
    ]
    # A '+' offset sent unencoded arrives as a space; still understood.
    assert _ids(
        client.get(
            f"{BASE}/requests.json?start_date="
            + (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
            + "+00:00"
        )
    ) == [h["recent_pothole"].public_id]


def test_service_request_id_list_overrides_other_filters(client, history) -> None:  # noqa: ANN001
    h = history
    ids = f"{h['ancient'].public_id},{h['graffiti'].public_id},does-not-exist"
    got = _ids(
        client.get(
            f"{BASE}/requests.json?service_request_id={ids}&service_code=pothole&status=open"
        )
    )
    assert sorted(got) == sorted([h["ancient"].public_id, h["graffiti"].public_id])


def test_paging_extension(client, history) -> None:  # noqa: ANN001
    h = history
    assert _ids(client.get(f"{BASE}/requests.json?page_size=2")) == [
        h["recent_pothole"].public_id,
        h["graffiti"].public_id,
    ]
    assert _ids(client.get(f"{BASE}/requests.json?page_size=2&page=2")) == [
        h["old_pothole"].public_id
    ]
    assert _ids(client.get(f"{BASE}/requests.json?page_size=2&page=3")) == []


@pytest.mark.parametrize(
    "query",
    [
        "status=pending",
        "start_date=yesterday",
        "end_date=2026-13-01",
        "page=0",
        "page_size=1001",
        "page_size=abc",
        "start_date=2026-02-01T00:00:00Z&end_date=2026-01-01T00:00:00Z",
    ],
)
def test_bad_query_parameters_are_400(client, history, query: str) -> None:  # noqa: ANN001
    resp = client.get(f"{BASE}/requests.json?{query}")
    assert resp.status_code == 400
    (error,) = resp.get_json()
    assert error["code"] == 400 and error["description"]


def test_request_fields_json(client, history, settings) -> None:  # noqa: ANN001
    r = history["graffiti"]
    (body,) = client.get(f"{BASE}/requests/{r.public_id}.json").get_json()
    assert body["status"] == "closed" and body["status_notes"] == "The owner painted over it."
    assert body["service_code"] == "graffiti" and body["service_name"] == "Graffiti"
    assert body["agency_responsible"] == "Sanitation"
    assert (body["lat"], body["long"]) == pytest.approx((f.LAT, f.LON))
    requested = datetime.fromisoformat(body["requested_datetime"])
    # ISO 8601 with the city's offset (Europe/Andorra in the test settings).
    assert requested.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert abs(requested - r.requested_at) < timedelta(seconds=1)
    assert "detailed_status" not in body and "notes" not in body


def test_extensions_add_detailed_status_notes_and_photos(client, history) -> None:  # noqa: ANN001
    r = history["graffiti"]
    (body,) = client.get(f"{BASE}/requests/{r.public_id}.json?extensions=true").get_json()
    assert body["detailed_status"] == "no_action_needed"
    assert [n["status"] for n in body["notes"]] == ["received", "no_action_needed"]
    assert body["notes"][1]["description"] == "Painted over by owner"
    assert body["photos"] == []
    root = _xml(client.get(f"{BASE}/requests/{r.public_id}.xml?extensions=true"))
    assert root.findtext("request/detailed_status") == "no_action_needed"
    assert [n.findtext("status") for n in root.findall("request/notes/note")] == [
        "received",
        "no_action_needed",
    ]


def test_get_requests_xml(client, history) -> None:  # noqa: ANN001
    root = _xml(client.get(f"{BASE}/requests.xml"))
    assert root.tag == "service_requests"
    requests = root.findall("request")
    assert len(requests) == 3
    first = requests[0]
    assert first.findtext("service_request_id") == history["recent_pothole"].public_id
    assert first.findtext("status") == "open" and float(first.findtext("lat")) == pytest.approx(
        f.LAT
    )
    # No plan yet: the work order's SLA due time (reported + 72 h for potholes).
    due = history["recent_pothole"].requested_at + timedelta(hours=72)
    assert datetime.fromisoformat(first.findtext("expected_datetime")) == due.replace(microsecond=0)
    # Empty values are empty elements, never missing ones.
    assert first.find("address") is not None and first.findtext("address") == ""


def test_unknown_request_and_token_are_404(client, city) -> None:  # noqa: ANN001
    for path in ("requests/999999.json", "tokens/nope.json"):
        resp = client.get(f"{BASE}/{path}")
        assert resp.status_code == 404 and resp.get_json()[0]["code"] == 404
    assert _xml(client.get(f"{BASE}/requests/999999.xml")).findtext("error/code") == "404"
    assert client.get(f"{BASE}/no-such-endpoint.json").get_json()[0]["code"] == 404


def test_token_lookup_json_and_xml(client, city) -> None:  # noqa: ANN001
    posted = _post(client).get_json()[0]
    (body,) = client.get(f"{BASE}/tokens/{posted['token']}.json").get_json()
    assert body == {"service_request_id": posted["service_request_id"], "token": posted["token"]}
    root = _xml(client.get(f"{BASE}/tokens/{posted['token']}.xml"))
    assert root.findtext("request/service_request_id") == posted["service_request_id"]


def test_jurisdiction_id_is_checked_when_configured(app, client, city) -> None:  # noqa: ANN001
    from dataclasses import replace

    assert client.get(f"{BASE}/services.json?jurisdiction_id=anything").status_code == 200
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], jurisdiction_id="andorra.ad"
    )
    assert client.get(f"{BASE}/services.json?jurisdiction_id=andorra.ad").status_code == 200
    assert client.get(f"{BASE}/services.json").status_code == 200
    resp = client.get(f"{BASE}/services.xml?jurisdiction_id=paris.fr")
    assert resp.status_code == 404 and "jurisdiction_id" in _xml(resp).findtext("error/description")
    assert _post(client, jurisdiction_id="paris.fr").status_code == 404


# -- privacy -----------------------------------------------------------------------------------------------


def test_reporter_contact_details_never_appear_in_public_output(client, db: Session, city) -> None:  # noqa: ANN001
    posted = _post(client, **PII).get_json()[0]
    f.report(
        db, contact=Contact(**PII), lon=f.offset(f.LON, f.LAT, 20)[0], attributes={"size": "large"}
    )
    db.commit()
    stored = db.scalar(
        select(RequestContact)
        .join(ServiceRequest)
        .where(ServiceRequest.public_id == posted["service_request_id"])
    )
    assert stored.email == PII["email"] and stored.phone == PII["phone"]
    outputs = []
    for fmt in ("json", "xml"):
        for path in (
            "requests",
            f"requests/{posted['service_request_id']}",
            f"tokens/{posted['token']}",
            "services",
            "discovery",
        ):
            for ext in ("", "?extensions=true"):
                resp = client.get(f"{BASE}/{path}.{fmt}{ext}")
                assert resp.status_code == 200
                outputs.append(resp.get_data(as_text=True))
    blob = "\n".join(outputs)
    for field, value in PII.items():
        assert value not in blob, f"{field} leaked"
    # The account_id is echoed to the client that sent it (the spec's POST answer), and only there.
    assert posted["account_id"] == PII["account_id"]


def test_content_types(client, city) -> None:  # noqa: ANN001
    assert client.get(f"{BASE}/services.json").content_type == "application/json; charset=utf-8"
    assert client.get(f"{BASE}/services.xml").content_type == "text/xml; charset=utf-8"
    assert json.loads(client.get(f"{BASE}/services").data)  # no extension: JSON


def test_xml_escapes_markup_and_survives_control_characters(client, city) -> None:  # noqa: ANN001
    text = 'Hole <b>"deep"</b> & wide \x0b next to Café ✓'
    posted = _post(client, description=text).get_json()[0]
    root = _xml(client.get(f"{BASE}/requests/{posted['service_request_id']}.xml"))
    assert root.findtext("request/description") == 'Hole <b>"deep"</b> & wide \ufffd next to Café ✓'
    (body,) = client.get(f"{BASE}/requests/{posted['service_request_id']}.json").get_json()
    assert body["description"] == text


def test_a_query_wrong_in_page_and_page_size_is_told_about_page_size(client, history) -> None:  # noqa: ANN001
    # The order the checks have always run in: a client fixing one fault at a time sees
    # the same sequence of errors as before.
    resp = client.get(f"{BASE}/requests.json?page=0&page_size=abc")
    (error,) = resp.get_json()
    assert resp.status_code == 400 and "page_size" in error["description"]
