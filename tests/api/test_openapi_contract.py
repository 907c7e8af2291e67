"""The OpenAPI document is a contract a client can be generated from (issue 13): each rule
is checked per operation, so a failure names the operation that breaks it.

The document is built once, at collection, by the same `create_app` the server runs (it
needs no database: documentation is code); `test_the_checked_document_is_the_served_one`
shows it is the one /openapi.json serves."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from tests import factories as f

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# Answers that have no body by definition.
BODILESS = {"204", "304"}


def _document() -> dict[str, Any]:
    from api import create_app

    # Nothing is connected to: the sessions are bound to no database (the start-up check
    # of the service area reads none and says so), and the queue is never used.
    app = create_app(
        Settings(database_url="postgresql+psycopg://127.0.0.1:9/none", secret_key="spec"),
        sessions=sessionmaker(),
        queue=object(),
    )
    return app.test_client().get("/openapi.json").get_json()


SPEC = _document()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]
per_operation = pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)


def resolve(node: Any) -> Any:
    """A `$ref` (to this document) replaced by what it names."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schemas_in(node: Any, seen: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema reachable from `node`, following references (each once), with where it is."""
    seen = set() if seen is None else seen

    def walk(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref not in seen:
                    seen.add(ref)
                    yield from walk(resolve(node), ref.removeprefix("#/components/schemas/"))
                return
            yield where, node
            for key, value in node.items():
                if key in {"example", "examples", "default", "enum"}:
                    continue
                yield from walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{where}[{i}]")

    yield from walk(node, "")


def answers(operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for status, response in operation.get("responses", {}).items():
        yield str(status), resolve(response)


def is_free_form_object(schema: dict[str, Any]) -> bool:
    """An object a generator can only type as 'anything': neither properties nor typed
    additionalProperties, or additionalProperties that allow any value."""
    if schema.get("type") != "object" and not (
        {"properties", "additionalProperties"} & schema.keys()
    ):
        return False
    extra = schema.get("additionalProperties")
    if extra is True or extra == {}:
        return True
    typed_extra = isinstance(extra, dict) and bool(extra)
    return not schema.get("properties") and not typed_extra


@per_operation
def test_every_operation_has_a_stable_unique_operation_id(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    operation_id = operation.get("operationId")
    assert operation_id, "no operationId: generated clients would name it after its path"
    assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation_id), (
        f"{operation_id!r} is not lowerCamelCase"
    )
    count = Counter(op.get("operationId") for _, _, op in OPERATIONS)[operation_id]
    assert count == 1, f"{operation_id!r} names {count} operations"


@per_operation
def test_every_success_answer_with_a_body_has_a_schema(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    successes = [
        (status, response) for status, response in answers(operation) if status.startswith("2")
    ]
    assert successes, "no success answer documented"
    for status, response in successes:
        if status in BODILESS:
            assert "content" not in response, f"{status} has no body, yet a content is documented"
            continue
        content = response.get("content")
        assert content, f"{status}: no content documented"
        for media_type, media in content.items():
            assert media.get("schema"), f"{status} {media_type}: no schema"


@per_operation
def test_every_error_answer_is_the_error_shape(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    errors = [
        (status, response)
        for status, response in answers(operation)
        if status[0] in "45" or status == "default"
    ]
    assert errors, "no error answer documented"
    for status, response in errors:
        content = response.get("content") or {}
        assert set(content) == {"application/json"}, (
            f"{status}: documented as {sorted(content) or 'no body'}"
        )
        assert content["application/json"].get("schema") == ERROR_REF, (
            f"{status}: not the Error schema"
        )


@per_operation
def test_the_errors_an_operation_can_answer_are_documented(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    statuses = {str(s) for s in operation.get("responses", {})}
    if operation.get("security"):
        assert "401" in statuses, "behind sign-in, but no 401 documented"
    if "{" in path:
        assert "404" in statuses, "a path id or code that may name nothing, but no 404 documented"
    takes_input = operation.get("requestBody") or any(
        resolve(p).get("in") == "query" for p in operation.get("parameters", [])
    )
    if takes_input:
        assert "422" in statuses, "takes input, but no 422 documented"
    if operation.get("requestBody"):
        # Any body beyond the server's limit is refused before the view (MAX_CONTENT_LENGTH).
        assert "413" in statuses, "takes a body, but no 413 documented"


@per_operation
def test_no_enum_contains_null(method: str, path: str, operation: dict[str, Any]) -> None:
    nulls = [
        where or "(the operation)"
        for where, schema in schemas_in(operation)
        if isinstance(schema.get("enum"), list) and None in schema["enum"]
    ]
    assert not nulls, (
        f"null in the enum of {', '.join(nulls)}: say null as an alternative (anyOf [..., {type: null}])"
    )


@per_operation
def test_no_free_form_object_in_any_answer(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    free = sorted(
        {
            f"{status}: {where or '(the answer)'}"
            for status, response in answers(operation)
            for where, schema in schemas_in(response.get("content", {}))
            if is_free_form_object(schema)
        }
    )
    assert not free, "free-form objects (type them): " + "; ".join(free)


def test_no_enum_anywhere_contains_null() -> None:
    # Components no operation uses (yet) count too.
    nulls = [
        where
        for where, schema in schemas_in(SPEC)
        if isinstance(schema.get("enum"), list) and None in schema["enum"]
    ]
    assert not nulls, f"null in the enum of {', '.join(nulls)}"


def test_the_error_shape_is_typed() -> None:
    error = resolve(ERROR_REF)
    assert set(error["required"]) == {"code", "status", "message"}
    errors = error["properties"]["errors"]
    assert errors["properties"]["error_code"] == {
        "type": "string",
        "description": errors["properties"]["error_code"]["description"],
    }
    assert errors["additionalProperties"] == {"$ref": "#/components/schemas/FieldMessages"}
    assert not [where for where, schema in schemas_in(ERROR_REF) if is_free_form_object(schema)]


def nesting(schema: Any) -> int:
    """How many levels of keys the messages about a body of this schema can have: one per
    object (its field names) and one per list (its items' indexes)."""
    schema = resolve(schema)
    for union in ("allOf", "anyOf", "oneOf"):
        if union in schema:
            return max(nesting(branch) for branch in schema[union])
    if schema.get("type") == "array":
        return 1 + nesting(schema.get("items", {}))
    if schema.get("type") == "object" or "properties" in schema:
        inner = [nesting(field) for field in schema.get("properties", {}).values()]
        if isinstance(schema.get("additionalProperties"), dict):
            inner.append(nesting(schema["additionalProperties"]))
        return 1 + max(inner, default=0)
    return 0


@per_operation
def test_the_error_shape_reaches_as_deep_as_the_body(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    """`errors` describes field messages level by level (FieldMessages, FieldMessages2, ...):
    a body nested deeper than those levels would get messages the document does not allow."""
    from api.errors import FIELD_MESSAGE_LEVELS

    for media_type, media in (operation.get("requestBody") or {}).get("content", {}).items():
        depth = nesting(media["schema"])
        assert depth <= FIELD_MESSAGE_LEVELS, (
            f"{media_type} is nested {depth} deep; raise FIELD_MESSAGE_LEVELS"
        )


def test_error_bodies_are_what_the_error_shape_says(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    """The typed description fits the bodies as they are (which the screens read): a
    flat field message, nested ones, a domain rule's code and detail, none at all."""
    validator = OAS31Validator({**ERROR_REF, "components": SPEC["components"]})
    clerk = f.user(db, "clerk@example.org", "call_taker")
    answers = {
        "401": client.get("/api/v1/crews"),
        "403": client.get("/api/v1/crews", headers=f.token_for(db, clerk)),
        "404": client.get("/api/v1/users/987654", headers=admin),
        "422 nested": client.post(
            "/api/v1/depots",
            headers=admin,
            json={"code": "D1", "name": "Depot", "location": {"lat": "north", "lon": 1.5}},
        ),
        "422 unknown field": client.post("/api/v1/crews", headers=admin, json={"colour": "red"}),
    }
    client.post(f"/api/v1/users/{clerk.id}/deactivate", headers=admin, json={})
    answers["409 with detail"] = client.post(
        f"/api/v1/users/{clerk.id}/deactivate", headers=admin, json={}
    )
    for what, r in answers.items():
        assert r.status_code == int(what[:3]), (what, r.get_data(as_text=True))
        body = r.get_json()
        problems = [e.message for e in validator.iter_errors(body)]
        assert not problems, (what, body, problems)
    assert answers["422 nested"].get_json()["errors"]["location"] == {
        "lat": ["Not a valid number."]
    }
    # Messages as deep as the deepest body (a service type's attribute's value's key).
    deep = client.post(
        "/api/v1/service-types",
        headers=admin,
        json={
            "code": "deep",
            "name": "Deep",
            "agency": "Roads",
            "sla_hours": 24,
            "skill": "roads",
            "minutes_on_site": 10,
            "attributes": [
                {
                    "code": "a",
                    "datatype": "singlevaluelist",
                    "description": "A",
                    "values": [{"key": 5}],
                }
            ],
        },
    )
    assert deep.status_code == 422, deep.get_data(as_text=True)
    assert not [e.message for e in validator.iter_errors(deep.get_json())], deep.get_json()
    assert isinstance(deep.get_json()["errors"]["attributes"]["0"]["values"]["0"]["key"], list)
    conflict = answers["409 with detail"].get_json()["errors"]
    assert (
        conflict["error_code"] == "illegal_transition"
        and conflict["detail"]["current"] == "inactive"
    )
    # And the description is not so loose that anything fits it.
    assert list(
        validator.iter_errors(
            {"code": 422, "status": "x", "message": "m", "errors": {"f": "not a list"}}
        )
    )
    assert list(
        validator.iter_errors(
            {"code": 409, "status": "x", "message": "m", "errors": {"error_code": 3}}
        )
    )


def test_a_body_beyond_the_limit_is_the_documented_413(
    settings: Settings, sessions: sessionmaker[Session], queue: object, admin: dict[str, str]
) -> None:
    from api import create_app

    small = create_app(
        dataclasses.replace(settings, max_upload_bytes=1000), sessions=sessions, queue=queue
    ).test_client()
    r = small.post(
        "/api/v1/crews", headers=admin, json={"code": "C1", "name": "x" * 5000, "agency": "Roads"}
    )
    assert r.status_code == 413
    assert not list(
        OAS31Validator({**ERROR_REF, "components": SPEC["components"]}).iter_errors(r.get_json())
    )
    assert "413" in SPEC["paths"]["/api/v1/crews"]["post"]["responses"]


def test_the_document_validates_as_openapi_3_0() -> None:
    validate(SPEC)


def test_the_checked_document_is_the_served_one(client: Any) -> None:
    assert client.get("/openapi.json").get_json() == SPEC
