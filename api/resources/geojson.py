"""GeoJSON (RFC 7946) as our answers carry it, for the OpenAPI document.

Only documentation: the GeoJSON itself comes from PostGIS (ST_AsGeoJSON) or shapely and
is passed through as it is (see api/resources/typed.py). Each geometry kind is a schema
of its own whose `type` is a one-value enum, so a generated client tells a Point from a
LineString when a value may be either. Positions are [lon, lat].
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

_POSITION = {"description": "[lon, lat] (WGS84)", "minItems": 2, "maxItems": 3}


def _kind(name: str) -> fields.String:
    return fields.String(required=True, validate=validate.OneOf([name]))


def _positions(depth: int) -> fields.Field:
    """Arrays of positions `depth` deep (0: one position)."""
    field: fields.Field = fields.List(fields.Float(), required=depth == 0, metadata=_POSITION)
    for level in range(depth):
        field = fields.List(field, required=level == depth - 1)
    return field


class GeoJSONPointSchema(Schema):
    type = _kind("Point")
    coordinates = _positions(0)


class GeoJSONLineStringSchema(Schema):
    type = _kind("LineString")
    coordinates = _positions(1)


class GeoJSONPolygonSchema(Schema):
    type = _kind("Polygon")
    coordinates = _positions(2)


class GeoJSONMultiPolygonSchema(Schema):
    type = _kind("MultiPolygon")
    coordinates = _positions(3)


# A Feature's and a FeatureCollection's `type` is a pattern rather than a one-value enum:
# each Feature schema would give a generated client an enum class of its own, all with the
# same one value. Nothing needs to tell them apart by it (a review map's features differ
# by `properties.role`).
def feature_type() -> fields.String:
    return fields.String(
        required=True, validate=validate.Regexp("^Feature$"), metadata={"description": "Feature"}
    )


def feature_collection_type() -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Regexp("^FeatureCollection$"),
        metadata={"description": "FeatureCollection"},
    )
