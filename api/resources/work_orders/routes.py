from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from api import inputs
from api.auth import current_actor, current_user, require
from api.db import session, settings
from api.errors import abort
from api.resources.common import (
    BBoxArgs,
    Blueprint,
    EventSchema,
    PointSchema,
    SelectPage,
    bbox_filter,
    csv_list,
    page_schema,
    point_out,
    timeline,
)
from api.resources.typed import Computed
from core.closing import close_work_order
from core.lifecycle.work_order import UNABLE_REASONS
from core.models import Crew, District, ServiceType, WorkOrder
from core.status import CLOSE_OUTCOMES, WORK_ORDER_STATUSES
from core.workorders import clear_must_do, mark_must_do, staff_change_status

blp = Blueprint(
    "work_orders",
    __name__,
    url_prefix="/work-orders",
    description="Work for crews: priority, SLA due time, skill.",
)


class WorkOrderArgs(BBoxArgs):
    status = fields.String(
        metadata={"description": f"comma list of: {', '.join(WORK_ORDER_STATUSES)}"}
    )
    service_code = fields.String(metadata={"description": "comma list"})
    district = fields.String(metadata={"description": "district code"})
    crew = fields.String(metadata={"description": "crew code"})
    needs_location = fields.Boolean(
        metadata={"description": "only orders that cannot be routed until pinned"}
    )
    overdue = fields.Boolean(metadata={"description": "only orders past their SLA due time"})
    from_ = inputs.DateTime(data_key="from", metadata={"description": "created at or after"})
    to = inputs.DateTime(metadata={"description": "created before"})


class WorkOrderSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    service_code = Computed(lambda w: w.service_type.code, fields.String())
    priority = fields.Integer()
    report_count = fields.Integer()
    due_at = fields.DateTime()
    skill = fields.String()
    minutes_on_site = fields.Integer()
    location = Computed(
        lambda w: point_out(w.location),
        fields.Nested(PointSchema, allow_none=True),
        metadata={"description": "null until the work has a location"},
    )
    address = fields.String(allow_none=True)
    district = Computed(
        lambda w: w.district.code if w.district else None,
        fields.String(allow_none=True),
        metadata={"description": "district code"},
    )
    crew = Computed(
        lambda w: w.crew.code if w.crew else None,
        fields.String(allow_none=True),
        metadata={"description": "crew code, once dispatched"},
    )
    reopen_count = fields.Integer()
    unable_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    service_request_ids = Computed(
        lambda w: [r.public_id for r in w.requests],
        fields.List(fields.String()),
        metadata={"description": "the reports of this work, first one first"},
    )
    must_do_on = fields.Date(
        allow_none=True, metadata={"description": "a dispatcher made it must-do on this day"}
    )
    must_do_crew = Computed(
        lambda w: w.must_do_crew.code if w.must_do_crew else None,
        fields.String(allow_none=True),
        metadata={"description": "and by this crew, if one was named"},
    )


class WorkOrderDetailSchema(WorkOrderSchema):
    timeline = fields.List(fields.Nested(EventSchema))


class TransitionSchema(Schema):
    to = fields.String(required=True, validate=validate.OneOf(WORK_ORDER_STATUSES))
    note = fields.String(load_default=None, validate=validate.Length(max=2000))
    crew = fields.String(
        load_default=None, metadata={"description": "crew code, to dispatch directly"}
    )
    reason = fields.String(load_default=None, validate=validate.OneOf(sorted(UNABLE_REASONS)))

    @validates_schema
    def _unable_reason(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Checked here: the domain error's field "reason" would collide with errors.reason (the error code).
        if data.get("to") == "unable" and not data.get("reason"):
            raise ValidationError(
                f"'unable' needs a reason, one of: {', '.join(sorted(UNABLE_REASONS))}", "reason"
            )


def _options() -> list[Any]:
    return [
        selectinload(WorkOrder.service_type),
        selectinload(WorkOrder.district),
        selectinload(WorkOrder.crew),
        selectinload(WorkOrder.must_do_crew),
        selectinload(WorkOrder.requests),
    ]


def _load(wo_id: int) -> WorkOrder:
    wo = session().scalar(select(WorkOrder).where(WorkOrder.id == wo_id).options(*_options()))
    if wo is None:
        abort(404, message=f"work order {wo_id} not found")
    return wo


def _locked(wo_id: int) -> WorkOrder:
    """The order's row locked for this transaction's change, or a 404."""
    wo = session().scalar(select(WorkOrder).where(WorkOrder.id == wo_id).with_for_update())
    if wo is None:
        abort(404, message=f"work order {wo_id} not found")
    return wo


def _detail(wo_id: int) -> WorkOrder:
    """The order as it now is, with its timeline."""
    session().expire_all()
    wo = _load(wo_id)
    # Read by the answer's schema; no column, hence the ignore.
    wo.timeline = timeline(session(), "work_order", wo.id)  # type: ignore[attr-defined]
    return wo


@blp.route("")
@require("dispatcher", "supervisor")
@blp.arguments(WorkOrderArgs, location="query")
@blp.response(200, page_schema(WorkOrderSchema))
@blp.paginate(SelectPage)
@blp.doc(operationId="listWorkOrders")
def list_work_orders(args: dict[str, Any]) -> Any:
    q = select(WorkOrder).options(*_options())
    if statuses := csv_list(args.get("status")):
        bad = set(statuses) - set(WORK_ORDER_STATUSES)
        if bad:
            abort(
                422,
                message=f"unknown status {sorted(bad)[0]!r}",
                errors={"status": [f"one of {', '.join(WORK_ORDER_STATUSES)}"]},
            )
        q = q.where(WorkOrder.status.in_(statuses))
    if codes := csv_list(args.get("service_code")):
        q = q.where(
            WorkOrder.service_type_id.in_(select(ServiceType.id).where(ServiceType.code.in_(codes)))
        )
    if args.get("district"):
        q = q.where(
            WorkOrder.district_id.in_(select(District.id).where(District.code == args["district"]))
        )
    if args.get("crew"):
        q = q.where(WorkOrder.crew_id.in_(select(Crew.id).where(Crew.code == args["crew"])))
    if args.get("bbox"):
        q = q.where(bbox_filter(WorkOrder.location, args["bbox"]))
    if args.get("needs_location") is not None:
        q = q.where(
            WorkOrder.location.is_(None)
            if args["needs_location"]
            else WorkOrder.location.is_not(None)
        )
    if args.get("overdue") is not None:
        q = q.where(
            WorkOrder.due_at < func.now() if args["overdue"] else WorkOrder.due_at >= func.now()
        )
    if args.get("from_"):
        q = q.where(WorkOrder.created_at >= args["from_"])
    if args.get("to"):
        q = q.where(WorkOrder.created_at < args["to"])
    return q.order_by(WorkOrder.priority.desc(), WorkOrder.due_at, WorkOrder.id)


@blp.route("/<int:wo_id>")
@require("dispatcher", "supervisor")
@blp.response(200, WorkOrderDetailSchema)
@blp.error(404)
@blp.doc(operationId="getWorkOrder")
def get_work_order(wo_id: int) -> Any:
    return _detail(wo_id)


@blp.route("/<int:wo_id>/transitions", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(TransitionSchema)
@blp.response(200, WorkOrderDetailSchema)
@blp.error(409, "Not allowed from the current status")
@blp.error(404)
@blp.doc(operationId="transitionWorkOrder")
def transition(data: dict[str, Any], wo_id: int) -> Any:
    s = session()
    wo = _locked(wo_id)
    context: dict[str, Any] = {}
    if data.get("crew") and data["to"] != "dispatched":
        abort(
            422,
            message="a crew is only given when dispatching",
            errors={"crew": ["only with to=dispatched"]},
        )
    if data["to"] == "cancelled" and current_user().role not in ("supervisor", "admin"):
        # It closes the residents' requests with no work done: an explicit supervisor outcome.
        abort(403, message="cancelling work closes residents' requests; a supervisor decides that")
    if data.get("crew"):
        crew = s.scalar(select(Crew).where(Crew.code == data["crew"], Crew.active.is_(True)))
        if crew is None:
            abort(
                422,
                message=f"crew {data['crew']!r} not found",
                errors={"crew": ["unknown or inactive crew"]},
            )
        if wo.skill not in crew.skills:
            abort(
                422,
                message=f"crew {crew.code} lacks the skill {wo.skill!r} this work needs",
                errors={"crew": ["missing skill"]},
            )
        context["crew_id"] = crew.id
    if data.get("reason"):
        context["reason"] = data["reason"]
    staff_change_status(s, wo, data["to"], actor=current_actor(), note=data.get("note"), **context)
    s.commit()
    return _detail(wo_id)


class CloseSchema(Schema):
    outcome = fields.String(
        required=True,
        validate=validate.OneOf(CLOSE_OUTCOMES),
        metadata={"description": "'fixed' is not here: it needs a crew's verified completion"},
    )
    note = fields.String(
        load_default=None, validate=validate.Length(max=2000), metadata={"description": "internal"}
    )
    status_notes = fields.String(
        load_default=None,
        validate=validate.Length(max=2000),
        metadata={"description": "what residents read; a standard text if omitted"},
    )


@blp.route("/<int:wo_id>/close", methods=["POST"])
@require("supervisor")
@blp.arguments(CloseSchema)
@blp.response(200, WorkOrderDetailSchema)
@blp.error(409, "Not closable from its status (a completed order is reviewed instead)")
@blp.error(404)
@blp.doc(operationId="closeWorkOrder")
def close(data: dict[str, Any], wo_id: int) -> Any:
    """A supervisor closes work no crew completed, with an explicit outcome (a duplicate, a
    referral to another owner, nothing found); every request on it closes the same way."""
    s = session()
    wo = _locked(wo_id)
    close_work_order(
        s,
        wo,
        actor=current_actor(),
        outcome=data["outcome"],
        note=data.get("note"),
        status_notes=data.get("status_notes"),
    )
    s.commit()
    return _detail(wo_id)


class MustDoSchema(Schema):
    date = inputs.Date(
        required=True, metadata={"description": "the day it must be done (today or later)"}
    )
    crew = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "crew code, if it must be that crew"},
    )


@blp.route("/<int:wo_id>/must-do", methods=["PUT"])
@require("dispatcher", "supervisor")
@blp.arguments(MustDoSchema)
@blp.response(200, WorkOrderDetailSchema)
@blp.error(409, "The work is finished or closed")
@blp.error(422, "A day that is over, an unknown or inactive crew, or one without the skill")
@blp.error(404)
@blp.doc(operationId="setWorkOrderMustDo")
def must_do(data: dict[str, Any], wo_id: int) -> Any:
    """Force urgent work into a day: plans of that day include it (on that crew, if one is
    named), dropping lower-value work if they must, and list what they dropped for it.
    Plan or re-plan the day to apply it."""
    s = session()
    wo = _locked(wo_id)
    crew = None
    if data.get("crew"):
        crew = s.scalar(select(Crew).where(Crew.code == data["crew"]))
        if crew is None:
            abort(
                422, message=f"crew {data['crew']!r} not found", errors={"crew": ["unknown crew"]}
            )
    mark_must_do(
        s,
        wo,
        day=data["date"],
        crew=crew,
        actor=current_actor(),
        today=datetime.now(settings().tz).date(),
    )
    s.commit()
    return _detail(wo_id)


@blp.route("/<int:wo_id>/must-do", methods=["DELETE"])
@require("dispatcher", "supervisor")
@blp.response(200, WorkOrderDetailSchema)
@blp.error(404)
@blp.doc(operationId="clearWorkOrderMustDo")
def clear_must_do_(wo_id: int) -> Any:
    s = session()
    wo = _locked(wo_id)
    clear_must_do(s, wo, actor=current_actor())
    s.commit()
    return _detail(wo_id)
