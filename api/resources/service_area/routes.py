"""The city's service area, as staff see it and admins set it."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validates

from api.auth import current_actor, require
from api.db import service_area, session
from api.resources.common import Blueprint, EventSchema, as_multipolygon, timeline
from api.resources.geojson import GeoJSONMultiPolygonSchema, GeoJSONPolygonSchema
from api.resources.typed import JSONObject
from core.service_area import (
    ENTITY,
    ROW_ID,
    SETTING,
    area_in_force,
    clear_admin_area,
    set_admin_area,
)

blp = Blueprint(
    "service_area",
    __name__,
    url_prefix="/service-area",
    description="Where reports are taken: a polygon, else the union of the districts.",
)

_SOURCES = ["setting", "admin", "districts", "none"]


class ServiceAreaSchema(Schema):
    source = fields.String(
        metadata={
            "enum": _SOURCES,
            "description": f"where the area comes from: the {SETTING} file, an admin's polygon, "
            "the union of the districts, or none (every location is accepted)",
        }
    )
    tolerance_m = fields.Float(
        metadata={"description": "a location this close to the area counts as inside"}
    )
    geometry = JSONObject(
        GeoJSONMultiPolygonSchema,
        allow_none=True,
        metadata={"description": "GeoJSON MultiPolygon (lon, lat); null for none"},
    )
    timeline = fields.List(
        fields.Nested(EventSchema), metadata={"description": "changes made through this API"}
    )


class ServiceAreaPolygonSchema(Schema):
    geometry = JSONObject(
        GeoJSONPolygonSchema,
        GeoJSONMultiPolygonSchema,
        required=True,
        metadata={"description": "GeoJSON Polygon or MultiPolygon (lon, lat)"},
    )

    @validates("geometry")
    def _geometry(self, value: dict[str, Any], **kwargs: Any) -> None:
        as_multipolygon(value, what="the service area")


def _answer() -> dict[str, Any]:
    s = session()
    now = area_in_force(s, service_area())
    return {
        "source": now.source,
        "tolerance_m": now.tolerance_m,
        "geometry": now.geometry,
        "timeline": timeline(s, ENTITY, ROW_ID),
    }


@blp.route("")
@require("dispatcher", "supervisor")
@blp.response(200, ServiceAreaSchema)
@blp.doc(operationId="getServiceArea")
def get_service_area() -> Any:
    return _answer()


@blp.route("", methods=["PUT"])
@require("admin")
@blp.arguments(ServiceAreaPolygonSchema)
@blp.response(200, ServiceAreaSchema)
@blp.error(409, f"{SETTING} is set: the area comes from that file")
@blp.doc(operationId="replaceServiceArea")
def put_service_area(data: dict[str, Any]) -> Any:
    """Set the city's own polygon; it replaces the districts' union."""
    s = session()
    set_admin_area(
        s,
        as_multipolygon(data["geometry"], what="the service area"),
        area=service_area(),
        actor=current_actor(),
    )
    s.commit()
    return _answer()


@blp.route("", methods=["DELETE"])
@require("admin")
@blp.response(204)
@blp.error(409, f"{SETTING} is set: the area comes from that file")
@blp.doc(operationId="deleteServiceArea")
def delete_service_area() -> None:
    """Drop the admin's polygon: the union of the districts is the area again."""
    s = session()
    clear_admin_area(s, area=service_area(), actor=current_actor())
    s.commit()
