"""Points, distances in metres, and the queries that must hit a spatial index."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, overload

import shapely
from geoalchemy2 import WKBElement
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from sqlalchemy import ColumnElement, ColumnExpressionArgument, func

from core.errors import ValidationFailed


def parse_coordinate(raw: object, *, field: str, low: float, high: float) -> float:
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise ValidationFailed(
            f"{field} must be a decimal number of degrees, got {raw!r}", field=field
        ) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValidationFailed(
            f"{field} must be between {low:g} and {high:g}, got {raw!r}", field=field
        )
    return value


def multipolygon_from_geojson(geojson: Any, *, what: str) -> MultiPolygon:
    """A GeoJSON Polygon or MultiPolygon (lon, lat) as a valid 2D MultiPolygon; ValueError
    names what is wrong. `what` says what the shape is for ("a district")."""
    if not isinstance(geojson, dict):
        raise ValueError("not a GeoJSON geometry: expected an object with type and coordinates")
    try:
        geom = shape(geojson)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise ValueError(f"not a GeoJSON geometry: {exc}") from None
    if isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    if not isinstance(geom, MultiPolygon):
        raise ValueError(f"{what} is a Polygon or MultiPolygon")
    if geom.is_empty or not geom.is_valid:
        raise ValueError("the polygon is empty or self-intersecting")
    minx, miny, maxx, maxy = geom.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        raise ValueError("coordinates must be longitude, latitude in degrees (EPSG:4326)")
    # Heights (from GPS tools' exports) would not fit the 2D columns.
    return shapely.force_2d(geom)


def point(lon: float, lat: float) -> WKBElement:
    """A WGS84 point ready to store in a Geometry(POINT, 4326) column."""
    return from_shape(Point(lon, lat), srid=4326)


@overload
def lon_lat(element: WKBElement) -> tuple[float, float]: ...
@overload
def lon_lat(element: None) -> None: ...
@overload
def lon_lat(element: WKBElement | None) -> tuple[float, float] | None: ...


def lon_lat(element: WKBElement | None) -> tuple[float, float] | None:
    if element is None:
        return None
    shape = to_shape(element)
    return (shape.x, shape.y)


def within_metres(
    column: ColumnExpressionArgument[Any], lon: float, lat: float, metres: float
) -> ColumnElement[bool]:
    """ST_DWithin on geography, written so the `(col::geography)` gist index applies."""
    target = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    return func.ST_DWithin(func.geography(column), target, metres)


def distance_metres(
    column: ColumnExpressionArgument[Any], lon: float, lat: float
) -> ColumnElement[float]:
    target = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
    return func.ST_Distance(func.geography(column), target)


@dataclass(frozen=True)
class GeocodeMatch:
    """Where an address was found (`geo.geocode`), and how precisely: intake pins a report
    there, so the type lives with core's other place values."""

    lon: float
    lat: float
    label: str
    precision: str  # "address" or "street"
