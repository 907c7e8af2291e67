"""One JSON error shape for /api/v1 (`{code, status, message, errors}`, as flask-smorest
emits it), the GeoReport v2 shape for /open311."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, NoReturn

from flask import Flask, Response, jsonify, request
from flask_smorest import abort as _smorest_abort
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from core.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed

log = logging.getLogger(__name__)

# How the OpenAPI document describes `errors` (components registered by api/spec.py):
# generated clients get typed objects instead of a bag of anything.
#
# A field's messages are a list of strings; a nested field's (an object's fields, a list's
# items by index) are an object of the same, one level down. The levels are spelled out,
# FieldMessages to FieldMessages<N>, rather than as one schema referring to itself: client
# generators (openapi-python-client) cannot type a union that refers to itself. N covers
# the deepest body any operation takes (tests/api/test_openapi_contract.py checks it).
FIELD_MESSAGE_LEVELS = 6
MESSAGES = {"type": "array", "items": {"type": "string"}}


def field_message_level(level: int) -> str:
    return "FieldMessages" if level == 1 else f"FieldMessages{level}"


def field_message_schemas() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for level in range(1, FIELD_MESSAGE_LEVELS + 1):
        if level == FIELD_MESSAGE_LEVELS:
            schemas[field_message_level(level)] = {**MESSAGES, "description": "a field's messages"}
            continue
        nested = {
            "type": "object",
            "additionalProperties": {
                "$ref": f"#/components/schemas/{field_message_level(level + 1)}"
            },
            "description": "a nested field's messages: by field name, or by index for a list's items",
        }
        schemas[field_message_level(level)] = {"anyOf": [MESSAGES, nested]}
    return schemas


ERROR_DETAIL = {
    "type": "object",
    "description": "What the refusal depends on, by name (a domain error's context)",
    "properties": {
        "current": {"type": "string", "description": "the status it is in"},
        "target": {"type": "string", "description": "the status that was asked for"},
        "crew_id": {"type": ["integer", "null"]},
        "plan_id": {"type": "integer"},
        "shift_id": {"type": "integer", "description": "the shift it clashes with"},
        "violations": {
            "type": "array",
            "items": {"type": "string"},
            "description": "broken constraints, in words",
        },
    },
    # Other names carry one plain value each (a time is an ISO 8601 or HTTP date string).
    "additionalProperties": {
        "anyOf": [
            {"type": ["string", "null"]},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "array", "items": {"type": "string"}},
        ]
    },
}


class ErrorSchema(Schema):
    """The one error body of /api/v1 (documentation only: `error_response` writes it).

    Every error answer's schema is this one: `from api.errors import ErrorSchema`, never
    flask-smorest's own (two schemas named `Error` would clash in the document)."""

    code = fields.Integer(required=True, metadata={"description": "the HTTP status code"})
    status = fields.String(required=True, metadata={"description": "the HTTP status phrase"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for people"})
    errors = fields.Dict(
        metadata={
            "description": "Field name -> its messages (`_schema` for the body as a whole); "
            "a refused domain rule adds `error_code` and may add `detail`",
            "properties": {
                "error_code": {
                    "type": "string",
                    "description": "stable code of a refused domain rule: not_found, conflict, "
                    "illegal_transition, invalid, outside_service_area, ...",
                },
                "detail": {"$ref": "#/components/schemas/ErrorDetail"},
            },
            "additionalProperties": {"$ref": "#/components/schemas/FieldMessages"},
        }
    )


def status_for(exc: DomainError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, ValidationFailed):
        return 422
    return 400


def error_response(status: int, message: str, errors: dict[str, Any] | None = None) -> Response:
    body = {"code": status, "status": HTTPStatus(status).phrase, "message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


def abort(
    status: int,
    message: str | None = None,
    *,
    errors: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> NoReturn:
    """End the view with an error answer in the one shape (`_http` below writes it).

    flask-smorest's `abort` ships no type information, so to mypy it is a call that may
    return and a view's code after it would be checked as reachable (a `None` from
    `session.get()` still `None` on the next line). This is the same call, typed: views
    use it instead of flask-smorest's own."""
    data: dict[str, Any] = {}
    if message is not None:
        data["message"] = message
    if errors is not None:
        data["errors"] = errors
    if headers is not None:
        data["headers"] = headers
    _smorest_abort(status, **data)
    # Unreachable: flask-smorest's abort always raises an HTTPException.
    raise AssertionError(f"flask_smorest.abort({status}) returned")


def _is_open311() -> bool:
    return request.path.startswith("/open311")


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        if _is_open311():
            from api.open311.formats import open311_error

            return open311_error(400 if not isinstance(exc, NotFound) else 404, exc.message)
        errors: dict[str, Any] = {}
        if exc.field:
            errors[exc.field] = [exc.message]
        if exc.details:
            errors["detail"] = exc.details
        errors["error_code"] = exc.code
        return error_response(status_for(exc), exc.message, errors)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if _is_open311():
            from api.open311.formats import open311_error

            response = open311_error(status, exc.description or HTTPStatus(status).phrase)
            # A 405 says which methods the route takes (RFC 9110), in either format.
            for key, value in exc.get_headers() or []:
                if key.lower() in {"allow", "retry-after"}:
                    response.headers[key] = value
            return response
        # webargs puts field messages on exc.data (flask-smorest's 422s).
        data = getattr(exc, "data", None) or {}
        messages = data.get("messages")
        errors = None
        if isinstance(messages, dict):
            # One location ("json", "query", "form"): flatten it for clients, unless its
            # messages are a bare list (a body that is not JSON at all): `errors` is
            # always an object of field -> messages, as documented.
            location = next(iter(messages), None)
            errors = (
                messages[location]
                if len(messages) == 1 and isinstance(messages[location], dict)
                else messages
            )
        elif isinstance(data.get("errors"), dict):
            # abort(..., errors={...}) from a view.
            errors = data["errors"]
        message = data.get("message") or exc.description or HTTPStatus(status).phrase
        response = error_response(status, message, errors)
        # abort(..., headers=...) puts them on exc.data, not on the exception itself.
        headers = [*(exc.get_headers() or []), *dict(data.get("headers") or {}).items()]
        for key, value in headers:
            if key.lower() in {"www-authenticate", "allow", "retry-after"}:
                response.headers[key] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _is_open311():
            from api.open311.formats import open311_error

            return open311_error(500, "internal error")
        return error_response(500, "internal error; it has been logged")
