"""Admin CRUD: service types, crews, depots, districts, API keys."""

from __future__ import annotations

from typing import Any

import pytest
from geoalchemy2.shape import to_shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Crew, Depot, District, ServiceRequest, ServiceType
from tests import factories as f
from tests.api.errors import error_body


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


# -- service types -----------------------------------------------------------------------


def six_attributes() -> list[dict[str, Any]]:
    return [
        {
            "code": "size",
            "datatype": "singlevaluelist",
            "description": "Size",
            "required": True,
            "order": 1,
            "values": [{"key": "small", "name": "Small"}, {"key": "large", "name": "Large"}],
        },
        {"code": "depth_cm", "datatype": "number", "description": "Depth", "order": 2},
        {"code": "seen_at", "datatype": "datetime", "description": "Seen at", "order": 3},
        {"code": "landmark", "datatype": "string", "description": "Landmark", "order": 4},
        {
            "code": "details",
            "datatype": "text",
            "description": "Details",
            "order": 5,
            "datatype_description": "free text",
        },
        {
            "code": "hazards",
            "datatype": "multivaluelist",
            "description": "Hazards",
            "order": 6,
            "values": [{"key": "water", "name": "Water"}, {"key": "traffic", "name": "Traffic"}],
        },
    ]


def new_type(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "sinkhole",
        "name": "Sinkhole",
        "agency": "Roads",
        "group": "streets",
        "description": "A hole",
        "keywords": ["road", "hole"],
        "sla_hours": 24,
        "skill": "excavation",
        "minutes_on_site": 90,
        "attributes": six_attributes(),
    }
    body.update(overrides)
    return body


def test_create_service_type_with_every_datatype(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    r = client.post("/api/v1/service-types", json=new_type(), headers=admin)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["code"] == "sinkhole"
    # Defaults for what was not sent.
    assert (
        body["base_priority"],
        body["duplicate_radius_m"],
        body["photo_required"],
        body["proof_max_distance_m"],
        body["auto_verify"],
        body["active"],
    ) == (3, 50, True, 75, True, True)
    assert [a["datatype"] for a in body["attributes"]] == [
        "singlevaluelist",
        "number",
        "datetime",
        "string",
        "text",
        "multivaluelist",
    ]
    size = body["attributes"][0]
    assert size == {
        "code": "size",
        "datatype": "singlevaluelist",
        "description": "Size",
        "datatype_description": "",
        "required": True,
        "variable": True,
        "order": 1,
        "values": [{"key": "small", "name": "Small"}, {"key": "large", "name": "Large"}],
    }
    assert body["attributes"][1]["values"] == [] and body["attributes"][1]["required"] is False
    stored = db.scalar(select(ServiceType).where(ServiceType.code == "sinkhole"))
    assert stored is not None and stored.sla_hours == 24 and stored.skill == "excavation"
    assert [a.code for a in stored.attributes] == [
        "size",
        "depth_cm",
        "seen_at",
        "landmark",
        "details",
        "hazards",
    ]

    got = client.get("/api/v1/service-types/sinkhole", headers=admin)
    assert got.status_code == 200 and got.get_json() == body


def test_created_service_type_is_published_on_open311(client: Any, admin: dict[str, str]) -> None:
    assert client.post("/api/v1/service-types", json=new_type(), headers=admin).status_code == 201
    services = client.get("/open311/v2/services.json").get_json()
    assert {
        "service_code": "sinkhole",
        "service_name": "Sinkhole",
        "description": "A hole",
        "metadata": True,
        "type": "realtime",
        "keywords": "road, hole",
        "group": "streets",
    } in services
    definition = client.get("/open311/v2/services/sinkhole.json")
    assert definition.status_code == 200
    d = definition.get_json()
    assert d["service_code"] == "sinkhole"
    assert [(a["code"], a["datatype"], a["required"], a["order"]) for a in d["attributes"]] == [
        ("size", "singlevaluelist", True, 1),
        ("depth_cm", "number", False, 2),
        ("seen_at", "datetime", False, 3),
        ("landmark", "string", False, 4),
        ("details", "text", False, 5),
        ("hazards", "multivaluelist", False, 6),
    ]
    assert d["attributes"][0]["values"] == [
        {"key": "small", "name": "Small"},
        {"key": "large", "name": "Large"},
    ]
    assert d["attributes"][4]["datatype_description"] == "free text"
    assert "values" not in d["attributes"][1]


def test_duplicate_service_type_code_is_409(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(db, "sinkhole")
    body = error_body(client.post("/api/v1/service-types", json=new_type(), headers=admin), 409)
    assert body["message"] == "service type 'sinkhole' exists"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["attributes"][1].update(datatype="boolean"), "attributes"),
        (lambda b: b["attributes"][0].update(values=[]), "attributes"),
        (lambda b: b["attributes"][5].pop("values"), "attributes"),
        (lambda b: b["attributes"][3].update(values=[{"key": "a", "name": "A"}]), "attributes"),
        (
            lambda b: b["attributes"][0].update(
                values=[{"key": "a", "name": "A"}, {"key": "a", "name": "B"}]
            ),
            "attributes",
        ),
        (lambda b: b["attributes"].append(dict(b["attributes"][1])), "attributes"),
        (lambda b: b.update(sla_hours=0), "sla_hours"),
        (lambda b: b.update(code="has space"), "code"),
        (lambda b: b.pop("skill"), "skill"),
        (lambda b: b.update(base_priority=6), "base_priority"),
    ],
    ids=[
        "bad-datatype",
        "list-empty-values",
        "list-no-values",
        "values-on-string",
        "duplicate-value-keys",
        "duplicate-attribute-codes",
        "sla-zero",
        "bad-code",
        "missing-skill",
        "priority-6",
    ],
)
def test_invalid_service_type_is_422_with_field_errors(
    client: Any, db: Session, admin: dict[str, str], change: Any, field: str
) -> None:
    payload = new_type()
    change(payload)
    body = error_body(client.post("/api/v1/service-types", json=payload, headers=admin), 422)
    assert list(body["errors"]) == [field]
    assert db.scalar(select(ServiceType.id).where(ServiceType.code == payload["code"])) is None


def test_invalid_attribute_errors_point_at_the_attribute(
    client: Any, admin: dict[str, str]
) -> None:
    payload = new_type()
    payload["attributes"][1]["datatype"] = "boolean"
    payload["attributes"][0]["values"] = []
    errors = error_body(client.post("/api/v1/service-types", json=payload, headers=admin), 422)[
        "errors"
    ]
    assert errors == {
        "attributes": {
            "0": {"values": ["list datatypes need at least one value"]},
            "1": {
                "datatype": [
                    "Must be one of: string, number, datetime, text, singlevaluelist, multivaluelist."
                ]
            },
        }
    }


def test_duplicate_attribute_codes_message(client: Any, admin: dict[str, str]) -> None:
    payload = new_type()
    payload["attributes"].append(dict(payload["attributes"][1]))
    errors = error_body(client.post("/api/v1/service-types", json=payload, headers=admin), 422)[
        "errors"
    ]
    assert errors == {"attributes": ["attribute codes must be unique"]}


def test_patch_changes_only_the_given_fields(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(
        db,
        "pothole",
        attributes=f.full_attributes(),
        base_priority=4,
        duplicate_radius_m=120,
        photo_required=False,
        proof_max_distance_m=30,
        auto_verify=False,
        group="roads",
        keywords=["asphalt"],
        description="Holes in the road",
    )
    before = client.get("/api/v1/service-types/pothole", headers=admin).get_json()
    r = client.patch(
        "/api/v1/service-types/pothole", json={"sla_hours": 12, "name": "Road hole"}, headers=admin
    )
    assert r.status_code == 200, r.get_json()
    after = r.get_json()
    assert (after["sla_hours"], after["name"]) == (12, "Road hole")
    assert {k: v for k, v in after.items() if k not in {"sla_hours", "name"}} == {
        k: v for k, v in before.items() if k not in {"sla_hours", "name"}
    }
    # The stored row too (not just the response), including the non-default values.
    db.expire_all()
    st = db.scalar(select(ServiceType).where(ServiceType.code == "pothole"))
    assert (
        st.sla_hours,
        st.name,
        st.base_priority,
        st.duplicate_radius_m,
        st.photo_required,
        st.proof_max_distance_m,
        st.auto_verify,
        st.group,
        st.keywords,
        st.description,
        st.active,
    ) == (
        12,
        "Road hole",
        4,
        120,
        False,
        30,
        False,
        "roads",
        ["asphalt"],
        "Holes in the road",
        True,
    )
    assert len(st.attributes) == 7


def test_patch_replaces_attributes_with_full_defaults(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(db, "pothole", attributes=f.full_attributes())
    new_attrs = [{"code": "lane", "datatype": "string", "description": "Which lane"}]
    r = client.patch("/api/v1/service-types/pothole", json={"attributes": new_attrs}, headers=admin)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["attributes"] == [
        {
            "code": "lane",
            "datatype": "string",
            "description": "Which lane",
            "datatype_description": "",
            "required": False,
            "variable": True,
            "order": 0,
            "values": [],
        },
    ]
    assert r.get_json()["sla_hours"] == 72


def test_patch_attributes_are_validated_in_full(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(db, "pothole")
    r = client.patch(
        "/api/v1/service-types/pothole", json={"attributes": [{"code": "lane"}]}, headers=admin
    )
    errors = error_body(r, 422)["errors"]
    assert errors == {
        "attributes": {
            "0": {
                "datatype": ["Missing data for required field."],
                "description": ["Missing data for required field."],
            }
        }
    }


def test_patch_validates_given_fields(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    body = error_body(
        client.patch("/api/v1/service-types/pothole", json={"sla_hours": 0}, headers=admin), 422
    )
    assert list(body["errors"]) == ["sla_hours"]


def test_patch_cannot_change_the_code(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    body = error_body(
        client.patch("/api/v1/service-types/pothole", json={"code": "hole"}, headers=admin), 422
    )
    assert body["message"] == "a service type's code cannot change; Open311 clients key on it"
    assert db.scalar(select(ServiceType.code).where(ServiceType.code == "pothole")) == "pothole"
    # Sending the same code is fine.
    assert (
        client.patch(
            "/api/v1/service-types/pothole", json={"code": "pothole"}, headers=admin
        ).status_code
        == 200
    )


def test_patch_unknown_type_is_404(client: Any, admin: dict[str, str]) -> None:
    error_body(
        client.patch("/api/v1/service-types/nope", json={"sla_hours": 3}, headers=admin), 404
    )


def test_deactivated_type_leaves_open311(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    assert (
        client.patch(
            "/api/v1/service-types/pothole", json={"active": False}, headers=admin
        ).status_code
        == 200
    )
    assert [s["service_code"] for s in client.get("/open311/v2/services.json").get_json()] == []
    assert client.get("/open311/v2/services/pothole.json").status_code == 404


def test_dispatcher_lists_types_in_code_order(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, "streetlight", skill="electric")
    f.service_type(db, "graffiti", skill="paint")
    r = client.get("/api/v1/service-types", headers=dispatcher)
    assert [t["code"] for t in r.get_json()] == ["graffiti", "streetlight"]
    assert (
        client.patch(
            "/api/v1/service-types/graffiti", json={"sla_hours": 1}, headers=dispatcher
        ).status_code
        == 403
    )


# -- crews -------------------------------------------------------------------------------


def test_create_crew_with_depot_and_list(
    client: Any, db: Session, admin: dict[str, str], dispatcher: dict[str, str]
) -> None:
    f.depot(db, "yard-1")
    f.crew(db, "a-team", skills=["paint"])
    r = client.post(
        "/api/v1/crews",
        json={
            "code": "roads-2",
            "name": "Roads 2",
            "agency": "Roads",
            "skills": ["asphalt", "signs"],
            "capacity": {"asphalt_kg": 1500},
            "depot": "yard-1",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert {k: v for k, v in created.items() if k != "id"} == {
        "code": "roads-2",
        "name": "Roads 2",
        "agency": "Roads",
        "skills": ["asphalt", "signs"],
        "capacity": {"asphalt_kg": 1500},
        "depot": "yard-1",
        "active": True,
    }
    crew = db.scalar(select(Crew).where(Crew.code == "roads-2"))
    assert crew is not None and crew.depot is not None and crew.depot.code == "yard-1"

    listed = client.get("/api/v1/crews", headers=dispatcher).get_json()
    assert [(c["code"], c["depot"], c["skills"]) for c in listed] == [
        ("a-team", None, ["paint"]),
        ("roads-2", "yard-1", ["asphalt", "signs"]),
    ]


def test_create_crew_unknown_depot_is_422(client: Any, db: Session, admin: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/crews",
        json={"code": "roads-2", "name": "Roads 2", "agency": "Roads", "depot": "nowhere"},
        headers=admin,
    )
    body = error_body(r, 422)
    assert body["message"] == "depot 'nowhere' not found"
    assert body["errors"] == {"depot": ["no depot 'nowhere'"]}
    assert db.scalar(select(Crew.id).where(Crew.code == "roads-2")) is None


def test_create_crew_duplicate_code_is_409(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.crew(db, "roads-2")
    r = client.post(
        "/api/v1/crews",
        json={"code": "roads-2", "name": "Roads 2", "agency": "Roads"},
        headers=admin,
    )
    assert error_body(r, 409)["message"] == "crew 'roads-2' exists"


def test_crew_payload_is_validated(client: Any, admin: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/crews",
        json={"code": "x y", "name": "", "agency": "Roads", "capacity": {"kg": -1}},
        headers=admin,
    )
    assert set(error_body(r, 422)["errors"]) == {"code", "name", "capacity"}


def test_patch_crew_keeps_other_fields(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.depot(db, "yard-1")
    c = f.crew(db, "roads-2", skills=["asphalt", "signs"])
    c.depot_id = db.scalar(select(Depot.id).where(Depot.code == "yard-1"))
    db.flush()
    r = client.patch("/api/v1/crews/roads-2", json={"name": "Roads Two"}, headers=admin)
    assert r.status_code == 200, r.get_json()
    assert {k: v for k, v in r.get_json().items() if k != "id"} == {
        "code": "roads-2",
        "name": "Roads Two",
        "agency": "Roads",
        "skills": ["asphalt", "signs"],
        "capacity": {"asphalt_kg": 1000},
        "depot": "yard-1",
        "active": True,
    }
    assert error_body(
        client.patch("/api/v1/crews/roads-2", json={"code": "r3"}, headers=admin), 422
    )
    assert error_body(
        client.patch("/api/v1/crews/roads-2", json={"depot": "nope"}, headers=admin), 422
    )
    assert error_body(client.patch("/api/v1/crews/nope", json={"name": "x"}, headers=admin), 404)


# -- depots ------------------------------------------------------------------------------


def test_create_and_list_depots(
    client: Any, db: Session, admin: dict[str, str], dispatcher: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/depots",
        json={
            "code": "yard-2",
            "name": "Yard 2",
            "agency": "Public Works",
            "address": "Carrer Prat de la Creu 1",
            "location": {"lat": 42.5, "lon": 1.52},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    assert {k: v for k, v in r.get_json().items() if k != "id"} == {
        "code": "yard-2",
        "name": "Yard 2",
        "agency": "Public Works",
        "address": "Carrer Prat de la Creu 1",
        "location": {"lat": 42.5, "lon": 1.52},
    }
    stored = db.scalar(select(Depot).where(Depot.code == "yard-2"))
    assert (to_shape(stored.location).x, to_shape(stored.location).y) == (1.52, 42.5)
    listed = client.get("/api/v1/depots", headers=dispatcher).get_json()
    assert [d["code"] for d in listed] == ["yard-2"]
    assert listed[0]["location"] == {"lat": 42.5, "lon": 1.52}


@pytest.mark.parametrize(
    "location", [{"lat": 42.5, "lon": 201.5}, {"lat": 142.5, "lon": 1.52}, {"lat": 42.5}]
)
def test_depot_location_is_validated(
    client: Any, admin: dict[str, str], location: dict[str, float]
) -> None:
    r = client.post(
        "/api/v1/depots",
        json={"code": "yard-2", "name": "Yard 2", "agency": "PW", "location": location},
        headers=admin,
    )
    assert list(error_body(r, 422)["errors"]) == ["location"]


def test_duplicate_depot_is_409(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.depot(db, "yard-2")
    r = client.post(
        "/api/v1/depots",
        json={
            "code": "yard-2",
            "name": "Yard 2",
            "agency": "PW",
            "location": {"lat": 42.5, "lon": 1.52},
        },
        headers=admin,
    )
    assert error_body(r, 409)["message"] == "depot 'yard-2' exists"


def test_patch_depot_moves_it(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.depot(db, "yard-2")
    r = client.patch(
        "/api/v1/depots/yard-2", json={"location": {"lat": 42.51, "lon": 1.53}}, headers=admin
    )
    assert r.status_code == 200
    assert r.get_json()["location"] == {"lat": 42.51, "lon": 1.53}
    assert r.get_json()["name"] == "yard-2" and r.get_json()["agency"] == "Public Works"


def test_patch_depot_location_needs_both_coordinates(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.depot(db, "yard-2")
    r = client.patch("/api/v1/depots/yard-2", json={"location": {"lat": 42.51}}, headers=admin)
    assert error_body(r, 422)["errors"] == {
        "location": {"lon": ["Missing data for required field."]}
    }


# -- districts ---------------------------------------------------------------------------

SQUARE = [[[1.50, 42.49], [1.55, 42.49], [1.55, 42.52], [1.50, 42.52], [1.50, 42.49]]]


def test_polygon_district_is_stored_as_multipolygon(
    client: Any, db: Session, admin: dict[str, str], dispatcher: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/districts",
        json={
            "code": "centre",
            "name": "Centre",
            "geometry": {"type": "Polygon", "coordinates": SQUARE},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["geometry"]["type"] == "MultiPolygon"
    stored = db.scalar(select(District).where(District.code == "centre"))
    shape = to_shape(stored.geom)
    assert shape.geom_type == "MultiPolygon"
    assert shape.bounds == (1.50, 42.49, 1.55, 42.52)

    listed = client.get("/api/v1/districts", headers=dispatcher).get_json()
    assert [(d["code"], d["name"], d["geometry"]["type"]) for d in listed] == [
        ("centre", "Centre", "MultiPolygon")
    ]
    assert listed[0]["geometry"]["coordinates"] == [[[list(p) for p in SQUARE[0]]]]


def test_new_district_is_used_for_new_reports(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(db)
    client.post(
        "/api/v1/districts",
        json={
            "code": "centre",
            "name": "Centre",
            "geometry": {"type": "Polygon", "coordinates": SQUARE},
        },
        headers=admin,
    )
    result = f.report(db)
    assert result.request.district is not None and result.request.district.code == "centre"


@pytest.mark.parametrize(
    "geometry",
    [
        # A bow tie: the ring crosses itself.
        {
            "type": "Polygon",
            "coordinates": [
                [[1.50, 42.49], [1.55, 42.52], [1.55, 42.49], [1.50, 42.52], [1.50, 42.49]]
            ],
        },
        # Seattle sent as (lat, lon): -122 is no latitude.
        {
            "type": "Polygon",
            "coordinates": [
                [
                    [47.60, -122.35],
                    [47.60, -122.30],
                    [47.65, -122.30],
                    [47.65, -122.35],
                    [47.60, -122.35],
                ]
            ],
        },
        {"type": "Point", "coordinates": [1.5, 42.5]},
        {"type": "Polygon", "coordinates": "nope"},
        {"type": "Polygon", "coordinates": []},
    ],
    ids=["self-intersecting", "lat-lon-swapped", "point", "garbage", "empty"],
)
def test_bad_district_geometry_is_422(
    client: Any, db: Session, admin: dict[str, str], geometry: dict[str, Any]
) -> None:
    r = client.post(
        "/api/v1/districts",
        json={"code": "centre", "name": "Centre", "geometry": geometry},
        headers=admin,
    )
    body = error_body(r, 422)
    assert list(body["errors"]) == ["geometry"]
    assert db.scalar(select(District.id).where(District.code == "centre")) is None


def test_district_error_messages(client: Any, admin: dict[str, str]) -> None:
    bow_tie = [[[1.50, 42.49], [1.55, 42.52], [1.55, 42.49], [1.50, 42.52], [1.50, 42.49]]]
    swapped = [
        [[47.60, -122.35], [47.60, -122.30], [47.65, -122.30], [47.65, -122.35], [47.60, -122.35]]
    ]
    messages = []
    for coordinates in (bow_tie, swapped):
        r = client.post(
            "/api/v1/districts",
            json={
                "code": "x",
                "name": "X",
                "geometry": {"type": "Polygon", "coordinates": coordinates},
            },
            headers=admin,
        )
        messages.append(error_body(r, 422)["errors"])
    assert messages == [
        {"geometry": ["the polygon is empty or self-intersecting"]},
        {"geometry": ["coordinates must be longitude, latitude in degrees (EPSG:4326)"]},
    ]


def test_duplicate_district_is_409(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.district(db, "centre")
    r = client.post(
        "/api/v1/districts",
        json={
            "code": "centre",
            "name": "Centre",
            "geometry": {"type": "Polygon", "coordinates": SQUARE},
        },
        headers=admin,
    )
    assert error_body(r, 409)["message"] == "district 'centre' exists"


# -- API keys ----------------------------------------------------------------------------


def _open311_post(client: Any, key: str) -> Any:
    return client.post(
        "/open311/v2/requests.json",
        data={"api_key": key, "service_code": "pothole", "lat": str(f.LAT), "long": str(f.LON)},
    )


def test_api_key_lifecycle(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.service_type(db, "pothole")
    r = client.post("/api/v1/api-keys", json={"name": "Kiosk"}, headers=admin)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert set(created) == {"id", "name", "active", "created_at", "api_key"}
    assert created["name"] == "Kiosk" and created["active"] is True
    key = created["api_key"]
    assert isinstance(key, str) and len(key) >= 24

    listed = client.get("/api/v1/api-keys", headers=admin)
    assert listed.status_code == 200
    assert [(k["id"], k["name"], k["active"]) for k in listed.get_json()] == [
        (created["id"], "Kiosk", True)
    ]
    assert all(set(k) == {"id", "name", "active", "created_at"} for k in listed.get_json())
    assert key not in listed.get_data(as_text=True)

    posted = _open311_post(client, key)
    assert posted.status_code == 201, posted.get_json()
    public_id = posted.get_json()[0]["service_request_id"]
    req = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    assert req is not None and req.api_key_id == created["id"]

    revoked = client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin)
    assert revoked.status_code == 204 and revoked.get_data() == b""
    assert client.get("/api/v1/api-keys", headers=admin).get_json()[0]["active"] is False
    refused = _open311_post(client, key)
    assert refused.status_code == 403
    assert refused.get_json() == [{"code": 403, "description": "api_key is not valid"}]


def test_revoke_unknown_key_is_404(client: Any, admin: dict[str, str]) -> None:
    assert (
        error_body(client.delete("/api/v1/api-keys/999999", headers=admin), 404)["message"]
        == "api key 999999 not found"
    )


def test_api_key_cannot_be_chosen_by_the_client(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/api/v1/api-keys", json={"name": "Kiosk", "api_key": "chosen"}, headers=admin)
    assert r.status_code == 422
    assert r.get_json()["errors"] == {"api_key": ["Unknown field."]}


def test_patch_can_resend_existing_attribute_codes(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.service_type(db, "pothole", attributes=f.full_attributes())
    edited = [
        {
            "code": "size",
            "datatype": "singlevaluelist",
            "description": "How big",
            "required": True,
            "values": [{"key": "small", "name": "Small"}, {"key": "huge", "name": "Huge"}],
        },
        {"code": "landmark", "datatype": "string", "description": "Nearby landmark", "order": 1},
    ]
    r = client.patch("/api/v1/service-types/pothole", json={"attributes": edited}, headers=admin)
    assert r.status_code == 200, r.get_json()
    definition = client.get("/open311/v2/services/pothole.json").get_json()
    assert [(a["code"], a["description"]) for a in definition["attributes"]] == [
        ("size", "How big"),
        ("landmark", "Nearby landmark"),
    ]
    assert definition["attributes"][0]["values"] == [
        {"key": "small", "name": "Small"},
        {"key": "huge", "name": "Huge"},
    ]


def test_service_type_demands_are_validated(client, db: Session) -> None:  # noqa: ANN001
    admin = f.token_for(db, f.user(db, "admin-demands@test", "admin"))
    base = {
        "code": "bulk",
        "name": "Bulk",
        "agency": "Sanitation",
        "sla_hours": 48,
        "skill": "bulk_pickup",
        "minutes_on_site": 15,
        "attributes": [
            {"code": "item_count", "datatype": "number", "description": "How many?"},
            {"code": "what", "datatype": "string", "description": "What?"},
        ],
    }
    for bad in (
        {"items": "attribute:what"},
        {"items": "attribute:nope"},
        {"items": -1},
        {"items": True},
        {"items": "lots"},
    ):
        r = client.post("/api/v1/service-types", json={**base, "demands": bad}, headers=admin)
        assert r.status_code == 422 and "demands" in r.get_json()["errors"], bad
    r = client.post(
        "/api/v1/service-types",
        json={**base, "demands": {"items": "attribute:item_count", "slots": 1}},
        headers=admin,
    )
    assert r.status_code == 201 and r.get_json()["demands"] == {
        "items": "attribute:item_count",
        "slots": 1,
    }
