"""Schemas and helpers shared by the /api/v1 resources."""

from __future__ import annotations

from typing import Any

from geoalchemy2 import WKBElement
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from shapely.geometry import MultiPolygon
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.resources.typed import Computed
from core.models import StatusEvent
from core.spatial import lon_lat, multipolygon_from_geojson

MAX_PAGE_SIZE = 500
# Any page beyond this is empty for any city (a billion rows at the largest page size),
# and keeps (page - 1) * page_size inside the bigint an OFFSET takes.
MAX_PAGE = 2_000_000


class PointSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))


def point_out(element: WKBElement | None) -> dict[str, float] | None:
    ll = lon_lat(element)
    return None if ll is None else {"lat": ll[1], "lon": ll[0]}


def as_multipolygon(geojson: dict[str, Any], *, what: str = "a district") -> MultiPolygon:
    """A body's GeoJSON polygon, or a marshmallow error (a 422 on the field that holds it)."""
    try:
        return multipolygon_from_geojson(geojson, what=what)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def patch_schema(schema_cls: type[Schema]) -> Schema:
    """A PATCH body: every top-level field optional, but a nested object that is sent is
    validated in full (`partial=True` would also skip the nested schemas' required fields)."""
    return schema_cls(partial=tuple(schema_cls().fields))


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class BBoxArgs(Schema):
    bbox = fields.String(metadata={"description": "min_lon,min_lat,max_lon,max_lat"})

    @validates_schema
    def _bbox(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("bbox"):
            parse_bbox(data["bbox"])


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    try:
        parts = [float(p) for p in raw.split(",")]
    except ValueError:
        raise ValidationError("bbox must be four numbers: min_lon,min_lat,max_lon,max_lat", "bbox") from None
    if len(parts) != 4:
        raise ValidationError("bbox must be four numbers: min_lon,min_lat,max_lon,max_lat", "bbox")
    min_lon, min_lat, max_lon, max_lat = parts
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        raise ValidationError("bbox corners are out of range or in the wrong order", "bbox")
    return min_lon, min_lat, max_lon, max_lat


def bbox_filter(column: Any, raw: str) -> Any:
    min_lon, min_lat, max_lon, max_lat = parse_bbox(raw)
    return func.ST_Intersects(column, func.ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat, 4326))


def paginate(session: Session, query: Select, page: int, page_size: int) -> dict[str, Any]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = session.scalars(query.limit(page_size).offset((page - 1) * page_size)).all()
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def page_schema(item: type[Schema]) -> type[Schema]:
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item)),
            "page": fields.Integer(),
            "page_size": fields.Integer(),
            "total": fields.Integer(),
        },
        name=f"{item.__name__.removesuffix('Schema')}PageSchema",
    )


class EventSchema(Schema):
    id = fields.Integer(metadata={"description": "names a public note to redact (POST .../redactions)"})
    at = fields.DateTime()
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    actor = fields.String()
    note = fields.String(allow_none=True)
    public = fields.Boolean()
    # Where it happened, when the event has a place (a crew's); typed, see api/resources/typed.py.
    location = Computed(lambda e: point_out(e.location), fields.Nested(PointSchema, allow_none=True))


def timeline(session: Session, entity: str, entity_id: int) -> list[StatusEvent]:
    return list(
        session.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.at, StatusEvent.id)
        )
    )


def csv_list(raw: str | None) -> list[str]:
    return [v.strip() for v in (raw or "").split(",") if v.strip()]
