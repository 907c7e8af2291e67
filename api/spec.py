"""The OpenAPI document's schema names."""

from __future__ import annotations

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


def make_api(app: Flask) -> Api:
    # One Api per app: flask-smorest keeps per-app state (the spec, its blueprints).
    return Api(app, spec_kwargs={"marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)})
