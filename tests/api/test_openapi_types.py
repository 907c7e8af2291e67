"""The staff API's answers are typed in /openapi.json, and real answers match their types.

A generated client (openapi-python-client) makes an untyped dict of an object the spec
leaves free-form, and `Any` of a property with no type: the app then decodes it by hand.
The first test walks every answer of /api/v1 for such holes. The others take real answers
(a solved and an edited plan, a completion under review and its decision, districts, the
service area, requests with attributes, work orders, service types, accounts) and
validate them against the documented schema with openapi-schema-validator. The spec's
objects are closed (apispec writes `additionalProperties: false` for marshmallow's
unknown=RAISE), so a key added to an answer later without its schema fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Completion
from dispatch.plans import run_plan
from geo.travel import StraightLineProvider
from tests import factories as f
from tests.factories.completions import submit
from tests.factories.plans import DAY, TZ

_COMBINATORS = ("allOf", "anyOf", "oneOf")


def _spec(client: Any) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


def _answer_schemas(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, schema) of every JSON answer of /api/v1, errors included."""
    out = []
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, answer in op["responses"].items():
                if "$ref" in answer:
                    answer = spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
                for media, content in answer.get("content", {}).items():
                    if "json" in media and "schema" in content:
                        out.append((f"{method.upper()} {path} {status}", content["schema"]))
    return out


def _untyped(spec: dict[str, Any]) -> dict[str, str]:
    """Every untyped place reachable from an answer: where -> what is wrong."""
    schemas = spec["components"]["schemas"]
    found: dict[str, str] = {}
    seen: set[str] = set()

    def walk(node: dict[str, Any], where: str) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                walk(schemas[name], name)
            return
        combined = [s for key in _COMBINATORS for s in node.get(key, [])]
        if "type" not in node and not combined and "enum" not in node:
            found[where] = "no type"
        if node.get("type") == "object" and not node.get("properties") and not combined:
            extra = node.get("additionalProperties")
            if not isinstance(extra, dict) or not extra:
                found[where] = "an object of anything"
        for i, sub in enumerate(combined):
            walk(sub, f"{where}|{i}")
        for name, prop in node.get("properties", {}).items():
            walk(prop, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")
        if isinstance(node.get("additionalProperties"), dict) and node["additionalProperties"]:
            walk(node["additionalProperties"], f"{where}{{}}")

    for where, schema in _answer_schemas(spec):
        walk(schema, where)
    return found


def test_no_answer_of_the_staff_api_holds_an_untyped_value(client: Any) -> None:
    found = _untyped(_spec(client))
    assert found == {}


def test_a_nullable_object_is_that_object_or_null_not_a_second_untyped_one(client: Any) -> None:
    # apispec's OpenAPI 3.0 rendering, anyOf [{$ref}, {"type": "object", "nullable": true}],
    # made generators emit an empty model for the second branch; 3.1 says null as null.
    schemas = _spec(client)["components"]["schemas"]
    assert schemas["Plan"]["properties"]["progress"]["anyOf"] == [
        {"$ref": "#/components/schemas/Progress"},
        {"type": "null"},
    ]
    # A typed field that may be null, too.
    assert schemas["ServiceArea"]["properties"]["geometry"]["anyOf"] == [
        {"$ref": "#/components/schemas/GeoJSONMultiPolygon"},
        {"type": "null"},
    ]


def test_the_walk_finds_what_it_is_for() -> None:
    """The walk itself: it must see free-form objects, untyped values and untyped branches."""
    spec = {
        "paths": {
            "/api/v1/x": {
                "get": {
                    "responses": {
                        "200": {
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/X"}}
                            }
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "X": {
                    "type": "object",
                    "properties": {
                        "free": {"type": "object", "additionalProperties": {}},
                        "any": {"readOnly": True},
                        "maybe": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/Y"},
                                {"type": "object", "nullable": True},
                            ]
                        },
                        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "list": {"type": "array", "items": {"description": "what"}},
                    },
                },
                "Y": {"type": "object", "properties": {"n": {"type": "integer"}}},
            }
        },
    }
    assert _untyped(spec) == {
        "X.free": "an object of anything",
        "X.any": "no type",
        "X.maybe|1": "an object of anything",
        "X.list[]": "no type",
    }


# --- Real answers against their documented schemas ------------------------------------


def _strict(node: Any) -> Any:
    """An object with listed properties takes no others, as apispec already says for every
    schema of ours: kept here so the check stays strict should a schema ever be left open."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def assert_documented(spec: dict[str, Any], method: str, path: str, status: int, body: Any) -> None:
    op = spec["paths"][path][method.lower()]
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    root = {
        **_strict(copy.deepcopy(schema)),
        "components": {"schemas": _strict(spec["components"]["schemas"])},
    }
    errors = sorted(OAS31Validator(root).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{method} {path} {status} at {list(e.absolute_path)}: {e.message}" for e in errors[:10]
    )


@pytest.fixture
def staff(db: Session) -> dict[str, dict[str, str]]:
    return {
        role: f.token_for(db, f.user(db, f"{role}-types@test", role))
        for role in ("dispatcher", "supervisor", "admin")
    }


def test_a_planned_day_matches_its_schemas(
    client: Any, db: Session, sessions: sessionmaker, day: dict, staff: dict
) -> None:
    spec, headers = _spec(client), staff["dispatcher"]
    r = client.post(
        "/api/v1/plans",
        json={"date": DAY.isoformat(), "scope": {"agency": "Roads"}, "time_limit_s": 2},
        headers=headers,
    )
    assert r.status_code == 202
    assert_documented(spec, "POST", "/api/v1/plans", 202, r.get_json())
    url = r.get_json()["url"]
    queued = client.get(url, headers=headers).get_json()
    assert queued["progress"] is None and queued["stats"] == {}
    assert_documented(spec, "GET", "/api/v1/plans/{plan_id}", 200, queued)

    run_plan(sessions, r.get_json()["id"], travel=StraightLineProvider(), tz=TZ)
    plan = client.get(url, headers=headers).get_json()
    assert (
        plan["status"] == "ready"
        and plan["stats"]["feasible"] is True
        and plan["geojson"]["features"]
    )
    assert plan["progress"]["best"] is not None and plan["scope"]["agency"] == "Roads"
    assert_documented(spec, "GET", "/api/v1/plans/{plan_id}", 200, plan)
    listed = client.get("/api/v1/plans", headers=headers).get_json()
    assert_documented(spec, "GET", "/api/v1/plans", 200, listed)

    # An edit marks the stats and answers the plan again; the work taken off is listed.
    stop = next(s for route in plan["routes"] for s in route["stops"] if s["kind"] == "job")
    edited = client.delete(f"{url}/stops/{stop['work_order_id']}", headers=headers)
    assert edited.status_code == 200 and edited.get_json()["stats"]["edited"] is True
    assert edited.get_json()["unassigned"]
    assert_documented(
        spec, "DELETE", "/api/v1/plans/{plan_id}/stops/{work_order_id}", 200, edited.get_json()
    )

    published = client.post(f"{url}/publish", headers=headers)
    assert published.status_code == 200
    assert_documented(spec, "POST", "/api/v1/plans/{plan_id}/publish", 200, published.get_json())
    route = next(
        r for r in edited.get_json()["routes"] if any(s["kind"] == "job" for s in r["stops"])
    )
    on_it = next(s["work_order_id"] for s in route["stops"] if s["kind"] == "job")
    wo = client.get(f"/api/v1/work-orders/{on_it}", headers=headers).get_json()
    assert wo["crew"] == route["crew"] and wo["location"] is not None
    assert_documented(spec, "GET", "/api/v1/work-orders/{wo_id}", 200, wo)
    page = client.get("/api/v1/work-orders", headers=headers).get_json()
    assert any(
        w["location"] is None for w in page["items"]
    )  # the unplaced one: null, as documented
    assert_documented(spec, "GET", "/api/v1/work-orders", 200, page)


def test_a_key_the_schema_does_not_list_fails_the_check(
    client: Any,
    db: Session,
    sessions: sessionmaker,
    day: dict,
    staff: dict,
) -> None:
    spec, headers = _spec(client), staff["dispatcher"]
    r = client.post(
        "/api/v1/plans", json={"date": DAY.isoformat(), "time_limit_s": 2}, headers=headers
    )
    run_plan(sessions, r.get_json()["id"], travel=StraightLineProvider(), tz=TZ)
    plan = client.get(r.get_json()["url"], headers=headers).get_json()
    assert_documented(spec, "GET", "/api/v1/plans/{plan_id}", 200, plan)
    for change in (
        lambda p: p["stats"].update(surprise=1),
        lambda p: p["geojson"]["features"][0]["properties"].update(colour="red"),
        lambda p: p["geojson"]["features"][0]["geometry"].update(type="Point"),
        lambda p: p["progress"].update(best={"scheduled": "six"}),
    ):
        doctored = copy.deepcopy(plan)
        change(doctored)
        with pytest.raises(AssertionError):
            assert_documented(spec, "GET", "/api/v1/plans/{plan_id}", 200, doctored)


def test_a_completion_under_review_matches_its_schemas(
    client: Any, db: Session, job: dict, staff: dict
) -> None:
    spec, headers = _spec(client), staff["supervisor"]
    assert (
        submit(client, job, lon=str(f.LON + 0.003)).status_code == 201
    )  # ~250 m off: it waits for a supervisor
    c = db.scalar(select(Completion))
    queue = client.get("/api/v1/reviews", headers=headers).get_json()
    assert queue["total"] == 1
    assert_documented(spec, "GET", "/api/v1/reviews", 200, queue)
    item = client.get(f"/api/v1/completions/{c.id}", headers=headers).get_json()
    assert {ft["properties"]["role"] for ft in item["geojson"]["features"]} == {
        "site",
        "fix",
        "track",
    }
    assert item["work_order"]["location"] is not None and item["work_order"]["due_at"]
    assert_documented(spec, "GET", "/api/v1/completions/{completion_id}", 200, item)
    decided = client.post(
        f"/api/v1/completions/{c.id}/review", json={"decision": "verify"}, headers=headers
    )
    assert decided.status_code == 200 and decided.get_json()["requests"]
    assert_documented(
        spec, "POST", "/api/v1/completions/{completion_id}/review", 200, decided.get_json()
    )


def test_the_review_work_order_reads_as_it_did(
    client: Any, db: Session, job: dict, staff: dict
) -> None:
    # Dumped through its schema now, not built as a dict: the same JSON, due_at included.
    submit(client, job, lon=str(f.LON + 0.003))
    c = db.scalar(select(Completion))
    item = client.get(f"/api/v1/completions/{c.id}", headers=staff["supervisor"]).get_json()
    wo = job["wo"]
    db.refresh(wo)
    assert item["work_order"] == {
        "id": wo.id,
        "status": "completed",
        "service_code": "pothole",
        "service_name": "Pothole",
        "priority": wo.priority,
        "due_at": wo.due_at.isoformat(),
        "address": wo.address,
        "location": {"lat": f.LAT, "lon": f.LON},
        "district": None,
        "reopen_count": 0,
        "service_request_ids": [r.public_id for r in wo.requests],
    }


_SQUARE = [[[1.50, 42.49], [1.55, 42.49], [1.55, 42.52], [1.50, 42.52], [1.50, 42.49]]]


def test_districts_and_the_service_area_match_their_schemas(
    client: Any, db: Session, staff: dict
) -> None:
    spec, admin = _spec(client), staff["admin"]
    none = client.get("/api/v1/service-area", headers=admin).get_json()
    assert none["geometry"] is None
    assert_documented(spec, "GET", "/api/v1/service-area", 200, none)
    r = client.post(
        "/api/v1/districts",
        json={
            "code": "centre",
            "name": "Centre",
            "geometry": {"type": "Polygon", "coordinates": _SQUARE},
        },
        headers=admin,
    )
    assert r.status_code == 201 and r.get_json()["geometry"]["type"] == "MultiPolygon"
    assert_documented(spec, "POST", "/api/v1/districts", 201, r.get_json())
    listed = client.get("/api/v1/districts", headers=admin).get_json()
    assert_documented(spec, "GET", "/api/v1/districts", 200, listed)
    put = client.put(
        "/api/v1/service-area",
        json={"geometry": {"type": "MultiPolygon", "coordinates": [_SQUARE]}},
        headers=admin,
    )
    assert (
        put.status_code == 200
        and put.get_json()["geometry"]["type"] == "MultiPolygon"
        and put.get_json()["timeline"]
    )
    assert_documented(spec, "PUT", "/api/v1/service-area", 200, put.get_json())


def test_geojson_bodies_are_refused_as_before(client: Any, db: Session, staff: dict) -> None:
    # The typed geometry loads as it did: not an object is marshmallow's mapping error,
    # a wrong geometry the polygon check's.
    admin = staff["admin"]
    for body_geometry, message in (
        ([1, 2], "Not a valid mapping type."),
        ("x", "Not a valid mapping type."),
    ):
        r = client.post(
            "/api/v1/districts",
            json={"code": "c", "name": "C", "geometry": body_geometry},
            headers=admin,
        )
        assert r.status_code == 422 and r.get_json()["errors"]["geometry"] == [message]
        r = client.put("/api/v1/service-area", json={"geometry": body_geometry}, headers=admin)
        assert r.status_code == 422 and r.get_json()["errors"]["geometry"] == [message]
    point = {"type": "Point", "coordinates": [1.5, 42.5]}
    r = client.post(
        "/api/v1/districts", json={"code": "c", "name": "C", "geometry": point}, headers=admin
    )
    assert r.status_code == 422 and "Polygon" in r.get_json()["errors"]["geometry"][0]


def test_requests_service_types_and_accounts_match_their_schemas(
    client: Any, db: Session, staff: dict
) -> None:
    spec = _spec(client)
    f.service_type(
        db, attributes=f.full_attributes(), demands={"items": "attribute:depth_cm", "slots": 1.5}
    )
    db.commit()
    r = client.post(
        "/api/v1/requests",
        json={
            "service_code": "pothole",
            "lat": f.LAT,
            "lon": f.LON,
            "description": "Deep hole",
            "attributes": {
                "size": "large",
                "depth_cm": "12.5",
                "hazards": ["water", "dark"],
                "seen_at": "2026-01-05T10:00:00Z",
                "colour": "grey",
                "tags": ["a", "b"],
            },
            "contact": {"email": "caller@example.org", "first_name": "Rosa"},
        },
        headers=staff["dispatcher"],
    )
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["attributes"]["depth_cm"] == 12.5 and body["extra_attributes"] == {
        "colour": "grey",
        "tags": ["a", "b"],
    }
    assert_documented(spec, "POST", "/api/v1/requests", 201, body)
    detail = client.get(
        f"/api/v1/requests/{body['service_request_id']}", headers=staff["supervisor"]
    ).get_json()
    assert detail["contact"]["first_name"] == "Rosa"
    assert_documented(spec, "GET", "/api/v1/requests/{public_id}", 200, detail)
    unpinned = f.report(
        db, lon=None, lat=None, address_string="somewhere", attributes={"size": "small"}
    ).request
    db.commit()
    page = client.get("/api/v1/requests", headers=staff["dispatcher"]).get_json()
    assert {i["service_request_id"] for i in page["items"]} >= {
        body["service_request_id"],
        unpinned.public_id,
    }
    assert_documented(spec, "GET", "/api/v1/requests", 200, page)
    nearby = client.get(
        f"/api/v1/requests/nearby?service_code=pothole&lat={f.LAT}&lon={f.LON}",
        headers=staff["dispatcher"],
    ).get_json()
    assert nearby["candidates"]
    assert_documented(spec, "GET", "/api/v1/requests/nearby", 200, nearby)

    types = client.get("/api/v1/service-types", headers=staff["admin"]).get_json()
    assert types[0]["demands"] == {"items": "attribute:depth_cm", "slots": 1.5}
    assert_documented(spec, "GET", "/api/v1/service-types", 200, types)

    crew = f.crew(db, "pothole-9")
    crew_token = f.token_for(db, f.user(db, "crew-types@test", "crew", crew=crew))
    me = client.get("/api/v1/auth/me", headers=crew_token).get_json()
    assert me["crew_code"] == "pothole-9"
    assert_documented(spec, "GET", "/api/v1/auth/me", 200, me)
    users = client.get("/api/v1/users", headers=staff["admin"]).get_json()
    assert_documented(spec, "GET", "/api/v1/users", 200, users)
