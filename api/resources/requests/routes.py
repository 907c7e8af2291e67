from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import current_actor, current_user, require
from api.db import session
from api.resources.common import (
    BBoxArgs,
    EventSchema,
    PageArgs,
    PointSchema,
    bbox_filter,
    csv_list,
    page_schema,
    paginate,
    point_out,
    timeline,
)
from core.intake import pin_request
from core.models import REQUEST_STATUSES, District, ServiceRequest, ServiceType

blp = Blueprint("requests", __name__, url_prefix="/requests", description="Service requests as staff see them.")


class RequestArgs(PageArgs, BBoxArgs):
    status = fields.String(metadata={"description": f"comma list of: {', '.join(REQUEST_STATUSES)}"})
    service_code = fields.String(metadata={"description": "comma list"})
    district = fields.String(metadata={"description": "district code"})
    needs_pin = fields.Boolean(metadata={"description": "only requests with no location yet"})
    from_ = fields.DateTime(data_key="from", metadata={"description": "received at or after"})
    to = fields.DateTime(metadata={"description": "received before"})


class RequestSchema(Schema):
    id = fields.Integer()
    service_request_id = fields.String(attribute="public_id")
    service_code = fields.Function(lambda r: r.service_type.code)
    detailed_status = fields.String()
    status = fields.String()
    description = fields.String()
    attributes = fields.Dict()
    extra_attributes = fields.Dict(metadata={"description": "attributes the client sent beyond the service definition"})
    address = fields.String(allow_none=True)
    location = fields.Function(lambda r: point_out(r.location))
    location_source = fields.String()
    needs_pin = fields.Boolean()
    district = fields.Function(lambda r: r.district.code if r.district else None)
    duplicate_of = fields.Function(lambda r: r.duplicate_of.public_id if r.duplicate_of else None)
    work_order_id = fields.Integer(allow_none=True)
    channel = fields.String()
    media_url = fields.String(allow_none=True)
    requested_at = fields.DateTime()
    updated_at = fields.DateTime()
    expected_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


class ContactSchema(Schema):
    email = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)


class RequestDetailSchema(RequestSchema):
    timeline = fields.List(fields.Nested(EventSchema))
    contact = fields.Function(
        lambda r: ContactSchema().dump(r.contact) if getattr(r, "show_contact", False) and r.contact else None,
        metadata={"description": "reporter contact; supervisors and admins only"},
    )


def _load(public_id: str) -> ServiceRequest:
    req = session().scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    if req is None:
        abort(404, message=f"service request {public_id!r} not found")
    return req


@blp.route("")
@require("dispatcher", "supervisor")
@blp.arguments(RequestArgs, location="query")
@blp.response(200, page_schema(RequestSchema))
def list_requests(args: dict[str, Any]) -> Any:
    q = select(ServiceRequest).options(
        selectinload(ServiceRequest.service_type), selectinload(ServiceRequest.district), selectinload(ServiceRequest.duplicate_of)
    )
    if statuses := csv_list(args.get("status")):
        bad = set(statuses) - set(REQUEST_STATUSES)
        if bad:
            abort(422, message=f"unknown status {sorted(bad)[0]!r}", errors={"status": [f"one of {', '.join(REQUEST_STATUSES)}"]})
        q = q.where(ServiceRequest.detailed_status.in_(statuses))
    if codes := csv_list(args.get("service_code")):
        q = q.where(ServiceRequest.service_type_id.in_(select(ServiceType.id).where(ServiceType.code.in_(codes))))
    if args.get("district"):
        q = q.where(ServiceRequest.district_id.in_(select(District.id).where(District.code == args["district"])))
    if args.get("bbox"):
        q = q.where(bbox_filter(ServiceRequest.location, args["bbox"]))
    if args.get("needs_pin") is not None:
        q = q.where(ServiceRequest.location.is_(None) if args["needs_pin"] else ServiceRequest.location.is_not(None))
    if args.get("from_"):
        q = q.where(ServiceRequest.requested_at >= args["from_"])
    if args.get("to"):
        q = q.where(ServiceRequest.requested_at < args["to"])
    q = q.order_by(ServiceRequest.requested_at.desc(), ServiceRequest.id.desc())
    return paginate(session(), q, args["page"], args["page_size"])


@blp.route("/<public_id>")
@require("dispatcher", "supervisor")
@blp.response(200, RequestDetailSchema)
def get_request(public_id: str) -> Any:
    return _detail(_load(public_id))


def _detail(req: ServiceRequest) -> ServiceRequest:
    req.timeline = timeline(session(), "service_request", req.id)  # type: ignore[attr-defined]
    # Dispatchers route work; they have no need for the reporter's identity.
    req.show_contact = current_user().role in {"supervisor", "admin"}  # type: ignore[attr-defined]
    return req


@blp.route("/<public_id>/pin", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(PointSchema)
@blp.response(200, RequestDetailSchema)
def pin(data: dict[str, Any], public_id: str) -> Any:
    s = session()
    req = _load(public_id)
    pin_request(s, req, data["lon"], data["lat"], actor=current_actor())
    s.commit()
    return _detail(req)
