from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import require
from api.db import session
from api.errors import abort
from api.resources.common import Blueprint
from core.models import Crew, Depot

blp = Blueprint(
    "crews", __name__, url_prefix="/crews", description="Field crews, their skills and capacities."
)


class CrewSchema(Schema):
    id = fields.Integer(dump_only=True)
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{1,64}$"))
    name = fields.String(required=True, validate=validate.Length(1, 255))
    agency = fields.String(required=True, validate=validate.Length(1, 255))
    skills = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)
    capacity = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(validate=validate.Range(min=0)),
        load_default=dict,
    )
    depot = fields.String(
        load_default=None, allow_none=True, metadata={"description": "depot code"}
    )
    active = fields.Boolean(load_default=True)


def _dump(c: Crew) -> dict[str, Any]:
    return {
        "id": c.id,
        "code": c.code,
        "name": c.name,
        "agency": c.agency,
        "skills": c.skills,
        "capacity": c.capacity,
        "depot": c.depot.code if c.depot else None,
        "active": c.active,
    }


def _depot_id(code: str | None) -> int | None:
    if code is None:
        return None
    depot_id = session().scalar(select(Depot.id).where(Depot.code == code))
    if depot_id is None:
        abort(422, message=f"depot {code!r} not found", errors={"depot": [f"no depot {code!r}"]})
    return depot_id


@blp.route("")
@require("dispatcher", "supervisor")
@blp.response(200, CrewSchema(many=True))
@blp.doc(operationId="listCrews")
def list_crews() -> Any:
    rows = session().scalars(select(Crew).options(selectinload(Crew.depot)).order_by(Crew.code))
    return [_dump(c) for c in rows]


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(CrewSchema)
@blp.response(201, CrewSchema)
@blp.error(409)
@blp.doc(operationId="createCrew")
def create_crew(data: dict[str, Any]) -> Any:
    s = session()
    if s.scalar(select(Crew.id).where(Crew.code == data["code"])):
        abort(409, message=f"crew {data['code']!r} exists")
    crew = Crew(
        **{k: v for k, v in data.items() if k != "depot"}, depot_id=_depot_id(data.get("depot"))
    )
    s.add(crew)
    s.commit()
    s.refresh(crew)
    return _dump(crew)


@blp.route("/<code>", methods=["PATCH"])
@require("admin")
@blp.arguments(CrewSchema(partial=True))
@blp.response(200, CrewSchema)
@blp.error(404)
@blp.doc(operationId="updateCrew")
def update_crew(data: dict[str, Any], code: str) -> Any:
    s = session()
    crew = s.scalar(select(Crew).where(Crew.code == code))
    if crew is None:
        abort(404, message=f"crew {code!r} not found")
    if "code" in data and data["code"] != code:
        abort(422, message="a crew's code cannot change; logins are named after it")
    if "depot" in data:
        crew.depot_id = _depot_id(data.pop("depot"))
    for key, value in data.items():
        setattr(crew, key, value)
    s.commit()
    s.refresh(crew)
    return _dump(crew)
