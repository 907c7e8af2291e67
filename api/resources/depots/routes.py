from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from api.auth import require
from api.db import session
from api.errors import abort
from api.resources.common import Blueprint, PointSchema, patch_schema, point_out
from core.models import Depot
from core.spatial import point

blp = Blueprint(
    "depots",
    __name__,
    url_prefix="/depots",
    description="Yards where crews start and end their day.",
)


class DepotSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    name = fields.String(required=True, validate=validate.Length(1, 255))
    agency = fields.String(required=True, validate=validate.Length(1, 255))
    address = fields.String(load_default=None, allow_none=True)
    location = fields.Nested(PointSchema, required=True)


def _dump(d: Depot) -> dict[str, Any]:
    return {
        "id": d.id,
        "code": d.code,
        "name": d.name,
        "agency": d.agency,
        "address": d.address,
        "location": point_out(d.location),
    }


@blp.route("")
@require("dispatcher", "supervisor")
@blp.response(200, DepotSchema(many=True))
@blp.doc(operationId="listDepots")
def list_depots() -> Any:
    return [_dump(d) for d in session().scalars(select(Depot).order_by(Depot.code))]


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(DepotSchema)
@blp.response(201, DepotSchema)
@blp.error(409)
@blp.doc(operationId="createDepot")
def create_depot(data: dict[str, Any]) -> Any:
    s = session()
    if s.scalar(select(Depot.id).where(Depot.code == data["code"])):
        abort(409, message=f"depot {data['code']!r} exists")
    loc = data.pop("location")
    depot = Depot(**data, location=point(loc["lon"], loc["lat"]))
    s.add(depot)
    s.commit()
    return _dump(depot)


@blp.route("/<code>", methods=["PATCH"])
@require("admin")
@blp.arguments(patch_schema(DepotSchema))
@blp.response(200, DepotSchema)
@blp.error(404)
@blp.error(409)
@blp.doc(operationId="updateDepot")
def update_depot(data: dict[str, Any], code: str) -> Any:
    s = session()
    depot = s.scalar(select(Depot).where(Depot.code == code))
    if depot is None:
        abort(404, message=f"depot {code!r} not found")
    if data.get("code", code) != code and s.scalar(
        select(Depot.id).where(Depot.code == data["code"])
    ):
        abort(409, message=f"depot {data['code']!r} exists")
    if "location" in data:
        loc = data.pop("location")
        depot.location = point(loc["lon"], loc["lat"])
    for key, value in data.items():
        setattr(depot, key, value)
    s.commit()
    return _dump(depot)
