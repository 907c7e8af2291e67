"""The OpenAPI document's schema names, and how it says a value may be null."""

from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask
from flask_smorest import Api


def schema_name(schema: object) -> str:
    """`FooSchema` is `Foo`; a partial (PATCH) instance of it is `FooPatch`."""
    resolved = resolve_schema_cls(schema)
    cls = resolved[0] if isinstance(resolved, list) else resolved
    name = cls.__name__.removesuffix("Schema") or cls.__name__
    if not isinstance(schema, type) and getattr(schema, "partial", False):
        name += "Patch"
    return name


def nullable_as_any_of(self: Any, field: Any, ret: dict[str, Any], **kwargs: Any) -> dict[str, Any]:  # noqa: ANN401, ARG001
    """A field that may be null (`allow_none`), when it is an enum or another schema:
    `{"nullable": true, "anyOf": [<the enum or the $ref>]}`.

    apispec (OpenAPI 3.0) writes the first as an enum with null among its values, which a
    generated client turns into three enum classes for one field, and the second as anyOf
    [a free-form object, the schema], which a client parses into the free-form object.
    Null cannot just be dropped from the enum either: a generator then reads the field as
    never null and fails on a null value. Runs after apispec's own attribute functions,
    and rewrites `ret` in place (the others only add to it)."""
    if not ret.get("nullable") and not any(s == {"type": "object", "nullable": True} for s in ret.get("anyOf", [])):
        return {}
    if "enum" in ret:
        inner = {"type": ret.pop("type"), "enum": [v for v in ret.pop("enum") if v is not None]}
        if "format" in ret:
            inner["format"] = ret.pop("format")
        ret["anyOf"] = [inner]
    elif "anyOf" in ret:
        ret["anyOf"] = [s for s in ret["anyOf"] if s != {"type": "object", "nullable": True}]
    else:
        return {}
    ret["nullable"] = True
    return {}


def make_api(app: Flask) -> Api:
    # One Api per app: flask-smorest keeps per-app state (the spec, its blueprints).
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    api = Api(app, spec_kwargs={"marshmallow_plugin": plugin})
    plugin.converter.add_attribute_function(nullable_as_any_of)
    return api
