"""The OpenAPI document: schema names, how it says a value may be null, the error shape
and the shared error answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from marshmallow import Schema

from api.errors import ERROR_DETAIL, ErrorSchema, field_message_schemas

# The shared error answers operations refer to (`components/responses/<NAME>`, named as
# flask-smorest names them, after http.HTTPStatus), with what they mean here. flask-smorest
# registers one per status with the bare phrase; these replace the ones we use.
ERROR_RESPONSES = {
    401: "Not signed in: no bearer token, or one that is invalid, expired or revoked; "
    "sign in again (POST /api/v1/auth/token)",
    403: "Signed in, but without a role this operation needs",
    404: "Nothing has this id or code",
    409: "Not allowed in the state it is in now; `errors.error_code` and `errors.detail` say why",
    413: "The body is larger than the server accepts (four times STREETLOOP_MAX_UPLOAD_BYTES); nothing was read",
    422: "Bad input; nothing was stored. `errors` names each field with its messages",
}


def error_response_name(status: int) -> str:
    """The shared answer's component name: `UNAUTHORIZED`, `NOT_FOUND`, ..."""
    return HTTPStatus(status).name


def schema_name(schema: type[Schema] | str | Schema) -> str:
    """`FooSchema` is `Foo`; a partial (PATCH) instance of it is `FooPatch`."""
    resolved = resolve_schema_cls(schema)
    cls = resolved[0] if isinstance(resolved, list) else resolved
    name = cls.__name__.removesuffix("Schema") or cls.__name__
    if not isinstance(schema, type) and getattr(schema, "partial", False):
        name += "Patch"
    return name


NULL = {"type": "null"}


def nullable_enum(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: ARG001
    """An enum that may be null: `anyOf: [<the enum>, {"type": "null"}]`.

    apispec writes it as `type: [<type>, "null"]` with null among the enum's values, which
    a generated client turns into several enum classes for one field (and a None member).
    OpenAPI 3.1 (JSON Schema) says "this enum, or null" as two alternatives instead, which
    generators read as one enum class, optional. A nullable object is already written that
    way by apispec (`anyOf: [$ref, {"type": "null"}]`), and a nullable plain value as
    `type: [<type>, "null"]`. Runs after apispec's own attribute functions and rewrites
    `ret` in place (those only add to it)."""
    enum = ret.get("enum")
    if not (isinstance(enum, list) and None in enum):
        return {}
    types = ret.pop("type", None)
    inner: dict[str, Any] = {"enum": [v for v in ret.pop("enum") if v is not None]}
    kinds = [t for t in (types if isinstance(types, list) else [types]) if t not in (None, "null")]
    if kinds:
        inner["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "format" in ret:
        inner["format"] = ret.pop("format")
    ret["anyOf"] = [inner, NULL]
    return {}


class StreetLoopApi(Api):
    # Every error answer (the default one included) is documented with our error shape,
    # whose `errors` is typed, instead of flask-smorest's free-form one.
    ERROR_SCHEMA = ErrorSchema


def make_api(app: Flask) -> Api:
    # One Api per app: flask-smorest keeps per-app state (the spec, its blueprints).
    api = StreetLoopApi(
        app, spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)}
    )
    api.ma_plugin.converter.add_attribute_function(nullable_enum)
    components = api.spec.components
    for name, schema in field_message_schemas().items():
        components.schema(name, schema)
    components.schema("ErrorDetail", ERROR_DETAIL)
    for status, description in ERROR_RESPONSES.items():
        response = {"description": description, "schema": ErrorSchema}
        prepare_response(response, api.spec, api.DEFAULT_RESPONSE_CONTENT_TYPE)
        # Lazy, like flask-smorest's own (which this replaces): only the answers some
        # operation refers to appear in the document.
        components.response(error_response_name(status), response, lazy=True)
    return api
