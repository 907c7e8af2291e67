"""Errors in the format that was asked for (issue 13, item 4): an Open311 client that
speaks XML gets XML for every error, routing errors included, and a 405 says which
methods the route takes; a JSON body is refused as what it is."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import ServiceRequest
from tests import factories as f


def _xml_error(r: Any, status: int) -> str:
    assert r.status_code == status, r.data
    assert r.headers["Content-Type"].startswith("text/xml"), r.headers["Content-Type"]
    root = ET.fromstring(r.data)
    assert root.tag == "errors"
    (error,) = root.findall("error")
    assert error.findtext("code") == str(status)
    return error.findtext("description") or ""


def _json_error(r: Any, status: int) -> str:
    assert r.status_code == status, r.data
    assert r.headers["Content-Type"].startswith("application/json")
    (error,) = r.get_json()
    assert error["code"] == status
    return error["description"]


@pytest.mark.parametrize(
    "path",
    [
        "/open311/v2/nothing.xml",
        "/open311/v2/requests/1/photos.xml",
        "/open311/v2/services/x/y.xml",
    ],
)
def test_an_unknown_route_ending_in_xml_is_a_georeport_404_in_xml(client: Any, path: str) -> None:
    assert _xml_error(client.get(path), 404)


def test_an_unknown_route_ending_in_json_stays_json(client: Any) -> None:
    assert _json_error(client.get("/open311/v2/nothing.json"), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/open311/v2/services.xml", {"GET", "HEAD", "OPTIONS"}),
        ("put", "/open311/v2/requests.xml", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("patch", "/open311/v2/requests/1.xml", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_a_wrong_method_is_a_405_in_xml_with_allow(
    client: Any, method: str, path: str, allowed: set[str]
) -> None:
    r = getattr(client, method)(path)
    assert _xml_error(r, 405)
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed


def test_a_wrong_method_on_a_json_url_is_a_405_in_json_with_allow(client: Any) -> None:
    r = client.delete("/open311/v2/services.json")
    assert _json_error(r, 405)
    assert "GET" in r.headers["Allow"]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_json_body_is_told_to_be_a_form_and_stores_nothing(
    client: Any, db: Session, fmt: str
) -> None:
    f.service_type(db)
    f.api_key(db)
    before = db.scalar(select(func.count()).select_from(ServiceRequest))
    r = client.post(
        f"/open311/v2/requests.{fmt}",
        json={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": f.LAT,
            "long": f.LON,
            "description": "hole",
        },
    )
    description = (_xml_error if fmt == "xml" else _json_error)(r, 400)
    assert "form" in description and "application/json" in description
    assert "api_key is required" not in description
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == before


def test_a_form_post_is_taken_as_before(client: Any, db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    r = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": f.LAT,
            "long": f.LON,
            "description": "hole",
        },
    )
    assert r.status_code == 201, r.data


def test_fixmystreet_s_no_address_marker_is_not_an_address_id(client: Any, db: Session) -> None:
    """FixMyStreet sends address_id=#NOTPINPOINTED# for "no address": it is not stored, so
    it is never published back as the request's address id, nor taken as a location."""
    f.service_type(db)
    f.api_key(db)
    form = {
        "api_key": f.API_KEY,
        "service_code": "pothole",
        "description": "hole",
        "address_id": "#NOTPINPOINTED#",
    }
    assert "location is required" in _json_error(
        client.post("/open311/v2/requests.json", data=form), 400
    )
    r = client.post("/open311/v2/requests.json", data={**form, "lat": f.LAT, "long": f.LON})
    assert r.status_code == 201, r.data
    (made,) = r.get_json()
    req = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == made["service_request_id"])
    )
    assert req.address_id is None
    (shown,) = client.get(f"/open311/v2/requests/{req.public_id}.json").get_json()
    assert shown.get("address_id") in (None, "")
    # A real address id is kept as it came.
    r = client.post(
        "/open311/v2/requests.json",
        data={**form, "address_id": "ad-123", "lat": f.LAT, "long": f.LON + 0.01},
    )
    (made,) = r.get_json()
    assert (
        db.scalar(
            select(ServiceRequest.address_id).where(
                ServiceRequest.public_id == made["service_request_id"]
            )
        )
        == "ad-123"
    )
