"""Fields whose OpenAPI description says what their JSON holds.

A client generated from /openapi.json (openapi-python-client, say) turns a value the spec
leaves untyped -- `{"type": "object", "additionalProperties": {}}`, or a property with no
type at all -- into an untyped dict or `Any`, and the app decodes it by hand. Some of our
answers carry JSON that no marshmallow schema dumps field by field: a plan's statistics
and a route map are stored as JSON, GeoJSON comes straight from PostGIS, a request's
attributes are a map of whatever the service definition asked for. Dumping those through
typed fields would change them (marshmallow's Integer turns 12.5 into 12, Float turns 12
into 12.0), so these fields keep dumping the value as it is and only *document* its shape:

- `JSONObject(*shapes)` loads and dumps like `fields.Dict` (a body that sends something
  other than a JSON object still gets marshmallow's 422), documented as one of `shapes`;
- `JSONValue(*shapes)` passes any value through, documented as one of `shapes`;
- `Computed(function, shape)` is a `fields.Function` documented as `shape`.

A shape is a Schema class (documented as a `$ref` to its component), a field instance
(documented as apispec documents that field), or an OpenAPI schema dict. Several shapes
are a `oneOf`. tests/api/test_openapi_types.py checks real answers against the spec, so a
shape that stops matching its value fails there, and a key added to one of these values
without its schema fails too.

A field that may be null (`allow_none`) is one of its shapes or `{"type": "null"}`, as
OpenAPI 3.1 says it. `install(api)` teaches apispec these fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Api
from marshmallow import Schema, fields

from api.spec import NULL

Shape = type[Schema] | fields.Field | dict[str, Any]

# Keys apispec sets from the field's own class (Dict: an object of anything), which the
# documented shape replaces.
_REPLACED = ("type", "format", "additionalProperties", "items", "anyOf", "allOf", "oneOf", "$ref")


class _Shaped:
    shapes: tuple[Shape, ...]

    def _set_shapes(self, shapes: tuple[Shape, ...]) -> None:
        if not shapes:
            raise TypeError(f"{type(self).__name__} needs at least one shape")
        self.shapes = shapes


class JSONObject(_Shaped, fields.Dict):
    """A JSON object dumped as it is, documented as one of `shapes`."""

    def __init__(self, *shapes: Shape, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_shapes(shapes)


class JSONValue(_Shaped, fields.Raw):
    """Any JSON value passed through as it is, documented as one of `shapes`."""

    def __init__(self, *shapes: Shape, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_shapes(shapes)


class Computed(_Shaped, fields.Function):
    """A value computed from the object (as `fields.Function`), documented as `shape`."""

    def __init__(self, serialize: Callable[[Any], Any], shape: Shape, **kwargs: Any) -> None:
        super().__init__(serialize, **kwargs)
        self._set_shapes((shape,))


def _shape_property(converter: Any, shape: Shape) -> dict[str, Any]:
    if isinstance(shape, type) and issubclass(shape, Schema):
        return converter.resolve_nested_schema(shape)
    if isinstance(shape, fields.Field):
        return converter.field2property(shape)
    return dict(shape)


def typed2properties(
    self: Any, field: fields.Field, ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """An apispec attribute function (bound to its OpenAPIConverter as `self`)."""
    shapes = getattr(field, "shapes", None) if isinstance(field, _Shaped) else None
    if shapes is not None:
        for key in _REPLACED:
            ret.pop(key, None)
        alternatives = [_shape_property(self, s) for s in shapes]
        out = alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}
        return {"anyOf": [out, NULL]} if field.allow_none else out
    return {}


def install(api: Api) -> None:
    """Before any blueprint is registered: the schemas are documented as they are read."""
    api.ma_plugin.converter.add_attribute_function(typed2properties)
