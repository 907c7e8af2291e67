"""Points, distances in metres, and the queries that must hit a spatial index."""

from __future__ import annotations

import math

from geoalchemy2 import WKBElement
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import Point
from sqlalchemy import ColumnElement, func

from core.errors import ValidationFailed


def parse_coordinate(raw: object, *, field: str, low: float, high: float) -> float:
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise ValidationFailed(f"{field} must be a decimal number of degrees, got {raw!r}", field=field) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValidationFailed(f"{field} must be between {low:g} and {high:g}, got {raw!r}", field=field)
    return value


def point(lon: float, lat: float) -> WKBElement:
    """A WGS84 point ready to store in a Geometry(POINT, 4326) column."""
    return from_shape(Point(lon, lat), srid=4326)


def lon_lat(element: WKBElement | None) -> tuple[float, float] | None:
    if element is None:
        return None
    shape = to_shape(element)
    return (shape.x, shape.y)


def within_metres(column: ColumnElement, lon: float, lat: float, metres: float) -> ColumnElement[bool]:
    """ST_DWithin on geography, written so the `(col::geography)` gist index applies."""
    target = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    return func.ST_DWithin(func.geography(column), target, metres)


def distance_metres(column: ColumnElement, lon: float, lat: float) -> ColumnElement[float]:
    target = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    return func.ST_Distance(func.geography(column), target)
