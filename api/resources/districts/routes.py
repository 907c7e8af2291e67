from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema, fields, validate, validates
from shapely.geometry import mapping
from sqlalchemy import func, select

from api.auth import require
from api.db import session
from api.errors import abort
from api.resources.common import Blueprint, as_multipolygon
from api.resources.geojson import GeoJSONMultiPolygonSchema, GeoJSONPolygonSchema
from api.resources.typed import JSONObject
from core.models import District

blp = Blueprint(
    "districts",
    __name__,
    url_prefix="/districts",
    description="Council districts / wards as polygons.",
)


class DistrictSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    name = fields.String(required=True, validate=validate.Length(1, 255))
    geometry = JSONObject(
        GeoJSONPolygonSchema,
        GeoJSONMultiPolygonSchema,
        required=True,
        metadata={
            "description": "GeoJSON Polygon or MultiPolygon (lon, lat); answered as a MultiPolygon"
        },
    )

    @validates("geometry")
    def _geometry(self, value: dict[str, Any], **kwargs: Any) -> None:
        as_multipolygon(value)


@blp.route("")
@require("dispatcher", "supervisor")
@blp.response(200, DistrictSchema(many=True))
@blp.doc(operationId="listDistricts")
def list_districts() -> Any:
    rows = (
        session()
        .execute(select(District, func.ST_AsGeoJSON(District.geom, 6)).order_by(District.code))
        .all()
    )
    return [
        {"id": d.id, "code": d.code, "name": d.name, "geometry": json.loads(g)} for d, g in rows
    ]


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(DistrictSchema)
@blp.response(201, DistrictSchema)
@blp.error(409)
@blp.doc(operationId="createDistrict")
def create_district(data: dict[str, Any]) -> Any:
    s = session()
    if s.scalar(select(District.id).where(District.code == data["code"])):
        abort(409, message=f"district {data['code']!r} exists")
    geom = as_multipolygon(data["geometry"])
    district = District(code=data["code"], name=data["name"], geom=f"SRID=4326;{geom.wkt}")
    s.add(district)
    s.commit()
    return {
        "id": district.id,
        "code": district.code,
        "name": district.name,
        "geometry": mapping(geom),
    }
