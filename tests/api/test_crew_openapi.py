"""The crew phone API's part of /openapi.json: named operations, typed answers, request
bodies from schemas, and null said the way generated clients read it."""

from __future__ import annotations

from typing import Any

import pytest

CREW_OPERATIONS = {
    ("/api/v1/crew/route", "get"): ("getCrewRoute", "200", "CrewRoute"),
    ("/api/v1/crew/changes", "get"): ("getCrewChanges", "200", "CrewChanges"),
    ("/api/v1/work-orders/{wo_id}/events", "post"): ("postWorkOrderEvent", "200", "EventApplied"),
    ("/api/v1/crew/positions", "post"): ("postCrewPositions", "201", "PositionsStored"),
    ("/api/v1/work-orders/{wo_id}/completion", "post"): ("completeWorkOrder", "201", "Completion"),
}


@pytest.fixture
def spec(client: Any) -> dict[str, Any]:  # noqa: ANN401
    return client.get("/openapi.json").get_json()


def _schema_of(spec: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    return spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]


def test_crew_operations_are_named_and_answer_typed_schemas(spec: dict[str, Any]) -> None:
    for (path, method), (operation_id, status, schema) in CREW_OPERATIONS.items():
        op = spec["paths"][path][method]
        assert op["operationId"] == operation_id
        assert op["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{schema}"
        }
    listing = spec["paths"]["/api/v1/crews/positions"]["get"]
    assert listing["operationId"] == "listCrewPositions"
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/CrewPosition"},
    }
    assert spec["paths"]["/api/v1/auth/token"]["post"]["operationId"] == "signIn"


def test_every_object_in_the_route_is_a_named_schema(spec: dict[str, Any]) -> None:
    # No free-form object anywhere in the route: a generated client gets a model for each.
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for field, prop in spec["components"]["schemas"][name].get("properties", {}).items():
            for sub in [
                prop,
                prop.get("items", {}),
                *prop.get("anyOf", []),
                *prop.get("allOf", []),
            ]:
                if "$ref" in sub:
                    walk(sub["$ref"].rsplit("/", 1)[1])
                else:
                    assert sub.get("type") != "object" or "additionalProperties" in sub, (
                        f"{name}.{field}"
                    )

    walk("CrewRoute")
    assert {
        "RouteStop",
        "Place",
        "ShiftTimes",
        "RouteBreak",
        "TimeWindow",
        "StopNote",
        "StopPhoto",
        "StopComment",
        "StopPhotoLink",
        "LineString",
        "CrewRef",
    } <= seen
    stop = spec["components"]["schemas"]["RouteStop"]
    assert {"comments", "photo_links"} <= set(stop["required"])
    assert stop["properties"]["comments"]["items"] == {"$ref": "#/components/schemas/StopComment"}


def test_null_is_an_alternative_never_inside_an_enum_or_a_free_form_object(
    spec: dict[str, Any],
) -> None:
    def walk(node: Any, path: str) -> None:  # noqa: ANN401
        if isinstance(node, dict):
            assert None not in node.get("enum", []), path
            assert {"type": "object", "nullable": True} not in node.get("anyOf", []), path
            assert "nullable" not in node, path  # OpenAPI 3.0's word; 3.1 says {"type": "null"}
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for k, value in enumerate(node):
                walk(value, f"{path}/{k}")

    walk(spec, "")
    schemas = spec["components"]["schemas"]
    # A nullable enum and a nullable object: the value or null, one type each for a generator.
    status = schemas["CrewChange"]["properties"]["status"]["anyOf"]
    assert (
        status[0]["type"] == "string"
        and status[0]["enum"][0] == "new"
        and status[1] == {"type": "null"}
    )
    assert (
        schemas["FieldEvent"]["properties"]["reason"]["anyOf"][0]["enum"][0] == "blocked_by_vehicle"
    )
    assert schemas["CrewRoute"]["properties"]["depot_start"] == {
        "anyOf": [{"$ref": "#/components/schemas/Place"}, {"type": "null"}]
    }


def test_request_bodies_are_schemas(spec: dict[str, Any]) -> None:
    completion = spec["paths"]["/api/v1/work-orders/{wo_id}/completion"]["post"]
    body = _schema_of(spec, completion["requestBody"]["content"]["multipart/form-data"]["schema"])
    assert body["required"] == ["outcome"]
    assert body["properties"]["photos"] == {
        "type": "array",
        "description": "after the work (the proof)",
        "items": {"type": "string", "format": "binary"},
    }
    assert (
        body["properties"]["fix_time"]["format"] == "date-time"
        and body["properties"]["lat"]["type"] == "number"
    )
    assert {p["name"] for p in completion["parameters"]} == {"Idempotency-Key"}
    positions = spec["paths"]["/api/v1/crew/positions"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    batch = _schema_of(spec, positions)
    assert batch["properties"]["pings"]["items"] == {"$ref": "#/components/schemas/Ping"}
    assert set(spec["components"]["schemas"]["Ping"]["required"]) == {"time", "lat", "lon"}


def test_the_route_documents_its_etag_and_304(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/crew/route"]["get"]
    assert {"$ref": "#/components/parameters/IF_NONE_MATCH"} in op["parameters"]
    assert "ETag" in op["responses"]["200"]["headers"] and "304" in op["responses"]


def test_the_completion_documents_its_own_413_not_only_the_body_limit(spec: dict[str, Any]) -> None:
    # Every body gets the shared 413 (the server's body limit), but not over a view's own.
    answer = spec["paths"]["/api/v1/work-orders/{wo_id}/completion"]["post"]["responses"]["413"]
    assert "$ref" not in answer and "too many pixels" in answer["description"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
