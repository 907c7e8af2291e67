"""/api/v1/service-area: staff read the area in force, admins set or drop the city's
polygon (audited), and the STREETLOOP_SERVICE_AREA setting, when set, governs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import ServiceArea, StatusEvent
from core.settings import Settings
from tests import factories as f
from tests.api.errors import error_body

URL = "/api/v1/service-area"
# Canillo, up the valley from Andorra la Vella (where f.LON, f.LAT and f.district are).
CANILLO = {
    "type": "Polygon",
    "coordinates": [[[1.58, 42.55], [1.62, 42.55], [1.62, 42.58], [1.58, 42.58], [1.58, 42.55]]],
}
MADRID = {
    "type": "Polygon",
    "coordinates": [[[-3.8, 40.3], [-3.6, 40.3], [-3.6, 40.5], [-3.8, 40.5], [-3.8, 40.3]]],
}


@pytest.fixture
def staff(db: Session, admin: dict[str, str]) -> dict[str, dict[str, str]]:
    users = {
        role: f.token_for(
            db, f.user(db, f"{role}@example.org", role, crew=f.crew(db) if role == "crew" else None)
        )
        for role in ("dispatcher", "supervisor", "crew")
    }
    return {**users, "admin": admin, "anonymous": {}}


def _events(db: Session) -> list[StatusEvent]:
    return list(
        db.scalars(
            select(StatusEvent).where(StatusEvent.entity == "service_area").order_by(StatusEvent.id)
        )
    )


@pytest.mark.parametrize(
    ("role", "get", "write"),
    [
        ("dispatcher", 200, 403),
        ("supervisor", 200, 403),
        ("admin", 200, None),
        ("crew", 403, 403),
        ("anonymous", 401, 401),
    ],
)
def test_who_may_read_and_change_the_area(
    client: Any,
    db: Session,
    staff: dict[str, dict[str, str]],
    role: str,
    get: int,
    write: int | None,
) -> None:
    headers = staff[role]
    assert client.get(URL, headers=headers).status_code == get
    put = client.put(URL, json={"geometry": CANILLO}, headers=headers)
    delete = client.delete(URL, headers=headers)
    if write is None:
        assert (put.status_code, delete.status_code) == (200, 204)
    else:
        error_body(put, write)
        error_body(delete, write)
        assert db.scalar(select(func.count()).select_from(ServiceArea)) == 0
        assert _events(db) == []


def test_no_districts_and_no_polygon(client: Any, staff: dict[str, dict[str, str]]) -> None:
    assert client.get(URL, headers=staff["dispatcher"]).get_json() == {
        "source": "none",
        "tolerance_m": 100.0,
        "geometry": None,
        "timeline": [],
    }


def test_the_districts_union(client: Any, db: Session, staff: dict[str, dict[str, str]]) -> None:
    f.district(db, "west", bbox=(1.50, 42.49, 1.52, 42.52))
    f.district(db, "east", bbox=(1.52, 42.49, 1.55, 42.52))
    body = client.get(URL, headers=staff["dispatcher"]).get_json()
    assert body["source"] == "districts"
    geometry = body["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 1
    xs = [x for x, _ in geometry["coordinates"][0][0]]
    assert (min(xs), max(xs)) == (1.50, 1.55)


def test_an_admin_sets_the_polygon_and_drops_it(
    client: Any, db: Session, staff: dict[str, dict[str, str]]
) -> None:
    f.service_type(db)
    f.api_key(db)
    f.district(db)
    db.commit()
    r = client.put(URL, json={"geometry": CANILLO}, headers=staff["admin"])
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["source"], body["tolerance_m"]) == ("admin", 100.0)
    assert body["geometry"] == {"type": "MultiPolygon", "coordinates": [CANILLO["coordinates"]]}
    assert [
        (e["from_status"], e["to_status"], e["actor"], e["public"]) for e in body["timeline"]
    ] == [
        ("districts", "admin", "user:admin@example.org", False),
    ]
    assert body["timeline"][0]["note"].startswith("service area set: 1 polygon, ")
    assert db.get(ServiceArea, 1).updated_by_id is not None
    assert client.get(URL, headers=staff["dispatcher"]).get_json() == body

    # Reports follow at once: Andorra la Vella is out, Canillo in.
    report = {"api_key": f.API_KEY, "service_code": "pothole"}
    assert (
        client.post(
            "/open311/v2/requests.json", data=report | {"lat": str(f.LAT), "long": str(f.LON)}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/open311/v2/requests.json", data=report | {"lat": "42.567", "long": "1.60"}
        ).status_code
        == 201
    )

    assert client.delete(URL, headers=staff["admin"]).status_code == 204
    body = client.get(URL, headers=staff["dispatcher"]).get_json()
    assert body["source"] == "districts"
    assert [(e["from_status"], e["to_status"]) for e in body["timeline"]] == [
        ("districts", "admin"),
        ("admin", "districts"),
    ]
    assert (
        body["timeline"][-1]["note"]
        == "service area removed; the union of the districts governs again"
    )
    assert (
        client.post(
            "/open311/v2/requests.json", data=report | {"lat": str(f.LAT), "long": str(f.LON)}
        ).status_code
        == 201
    )

    # Nothing left to drop: still 204, and nothing more in the audit trail.
    assert client.delete(URL, headers=staff["admin"]).status_code == 204
    assert len(_events(db)) == 2


def test_a_second_put_replaces_the_first(
    client: Any, db: Session, staff: dict[str, dict[str, str]]
) -> None:
    client.put(URL, json={"geometry": CANILLO}, headers=staff["admin"])
    two = {"type": "MultiPolygon", "coordinates": [CANILLO["coordinates"], MADRID["coordinates"]]}
    body = client.put(URL, json={"geometry": two}, headers=staff["admin"]).get_json()
    assert body["geometry"]["coordinates"] == two["coordinates"]
    assert [(e.from_status, e.to_status) for e in _events(db)] == [
        ("none", "admin"),
        ("admin", "admin"),
    ]
    assert "2 polygons" in _events(db)[-1].note
    assert db.scalar(select(func.count()).select_from(ServiceArea)) == 1


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (
            {"type": "Point", "coordinates": [1.5, 42.5]},
            "the service area is a Polygon or MultiPolygon",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[1.50, 42.49], [1.55, 42.52], [1.55, 42.49], [1.50, 42.52], [1.50, 42.49]]
                ],
            },
            "the polygon is empty or self-intersecting",
        ),
        # Seattle as (lat, lon): -122 is no latitude.
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[47.60, -122.35], [47.60, -122.30], [47.65, -122.30], [47.60, -122.35]]
                ],
            },
            "coordinates must be longitude, latitude in degrees (EPSG:4326)",
        ),
        ({"type": "Polygon", "coordinates": "nope"}, None),
        ("a square", None),
    ],
    ids=["point", "bow-tie", "lat-lon", "garbage", "string"],
)
def test_bad_polygons_are_422(
    client: Any, db: Session, staff: dict[str, dict[str, str]], geometry: Any, message: str | None
) -> None:
    body = error_body(client.put(URL, json={"geometry": geometry}, headers=staff["admin"]), 422)
    assert list(body["errors"]) == ["geometry"]
    if message:
        assert body["errors"]["geometry"] == [message]
    assert db.scalar(select(func.count()).select_from(ServiceArea)) == 0
    assert _events(db) == []


def test_put_needs_a_geometry(client: Any, staff: dict[str, dict[str, str]]) -> None:
    body = error_body(client.put(URL, json={}, headers=staff["admin"]), 422)
    assert list(body["errors"]) == ["geometry"]


def test_the_setting_governs(
    settings: Settings,
    sessions: sessionmaker[Session],
    queue: object,
    db: Session,
    tmp_path: Path,
    staff: dict[str, dict[str, str]],
) -> None:
    from api import create_app

    path = tmp_path / "area.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": MADRID}],
            }
        )
    )
    f.district(db)
    client = create_app(
        replace(settings, service_area_file=path, service_area_tolerance_m=25),
        sessions=sessions,
        queue=queue,
    ).test_client()

    body = client.get(URL, headers=staff["dispatcher"]).get_json()
    assert (body["source"], body["tolerance_m"]) == ("setting", 25.0)
    assert body["geometry"] == {"type": "MultiPolygon", "coordinates": [MADRID["coordinates"]]}

    for r in (
        client.put(URL, json={"geometry": CANILLO}, headers=staff["admin"]),
        client.delete(URL, headers=staff["admin"]),
    ):
        error = error_body(r, 409)
        assert "STREETLOOP_SERVICE_AREA" in error["message"]
        assert error["errors"]["error_code"] == "service_area_from_setting"
    assert db.scalar(select(func.count()).select_from(ServiceArea)) == 0
    assert _events(db) == []


def test_openapi_documents_the_service_area(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    ops = spec["paths"]["/api/v1/service-area"]
    assert set(ops) >= {"get", "put", "delete"}
    assert ops["put"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceAreaPolygon"
    }
    assert ops["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceArea"
    }
    assert "409" in ops["put"]["responses"] and "409" in ops["delete"]["responses"]
    assert spec["components"]["schemas"]["ServiceArea"]["properties"]["source"]["enum"] == [
        "setting",
        "admin",
        "districts",
        "none",
    ]
