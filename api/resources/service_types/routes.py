from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, select

from api.auth import require
from api.db import session
from api.errors import abort
from api.resources.common import Blueprint, patch_schema
from api.resources.service_types.schemas import ServiceTypeSchema
from core.models import ServiceAttribute, ServiceType

blp = Blueprint(
    "service_types",
    __name__,
    url_prefix="/service-types",
    description="What residents can report, with SLA and skill.",
)


def _get(code: str) -> ServiceType:
    st = session().scalar(select(ServiceType).where(ServiceType.code == code))
    if st is None:
        abort(404, message=f"service type {code!r} not found")
    return st


def _apply(st: ServiceType, data: dict[str, Any]) -> None:
    attrs = data.pop("attributes", None)
    for key, value in data.items():
        setattr(st, key, value)
    if attrs is not None:
        if inspect(st).persistent and st.attributes:
            # Delete the old rows first: (service_type_id, code) is unique, and the
            # unit of work would insert the replacements before deleting the orphans.
            st.attributes = []
            session().flush()
        st.attributes = [ServiceAttribute(**a) for a in attrs]


@blp.route("")
@require("call_taker", "dispatcher", "supervisor")
@blp.response(200, ServiceTypeSchema(many=True))
@blp.doc(operationId="listServiceTypes")
def list_types() -> Any:
    return session().scalars(select(ServiceType).order_by(ServiceType.code)).all()


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(ServiceTypeSchema)
@blp.response(201, ServiceTypeSchema)
@blp.error(409, "The code is taken")
@blp.doc(operationId="createServiceType")
def create_type(data: dict[str, Any]) -> Any:
    s = session()
    if s.scalar(select(ServiceType.id).where(ServiceType.code == data["code"])):
        abort(409, message=f"service type {data['code']!r} exists")
    st = ServiceType()
    _apply(st, data)
    s.add(st)
    s.commit()
    return st


@blp.route("/<code>")
@require("call_taker", "dispatcher", "supervisor")
@blp.response(200, ServiceTypeSchema)
@blp.error(404)
@blp.doc(operationId="getServiceType")
def get_type(code: str) -> Any:
    return _get(code)


@blp.route("/<code>", methods=["PATCH"])
@require("admin")
@blp.arguments(patch_schema(ServiceTypeSchema))
@blp.response(200, ServiceTypeSchema)
@blp.error(404)
@blp.doc(operationId="updateServiceType")
def update_type(data: dict[str, Any], code: str) -> Any:
    st = _get(code)
    if "code" in data and data["code"] != code:
        abort(422, message="a service type's code cannot change; Open311 clients key on it")
    _apply(st, data)
    session().commit()
    return st
