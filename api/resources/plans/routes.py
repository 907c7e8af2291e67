from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from flask import url_for
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from api import inputs
from api.auth import current_actor, require
from api.db import day_rules, defer_after_commit, session, settings, travel
from api.errors import abort
from api.resources.common import Blueprint
from api.resources.geojson import GeoJSONLineStringSchema, feature_collection_type, feature_type
from api.resources.typed import Computed, JSONObject
from core.models import Crew, PlanRoute, RoutePlan
from core.status import NOT_REACHED, PLAN_STATUSES
from dispatch.build import Scope
from dispatch.drafts import move_stop, remove_stop, set_lock
from dispatch.plans import (
    MAX_TIME_LIMIT_S,
    PlanRequest,
    ReplanPending,
    publish_plan,
    replan_plan,
    request_plan,
)
from dispatch.promises import late_minutes

blp = Blueprint(
    "plans",
    __name__,
    url_prefix="/plans",
    description="Crews' daily routes, planned by the solver.",
)


class ScopeSchema(Schema):
    agency = fields.String(load_default=None, allow_none=True)
    depot = fields.String(
        load_default=None, allow_none=True, metadata={"description": "depot code"}
    )
    district = fields.String(
        load_default=None, allow_none=True, metadata={"description": "district code"}
    )


class PlanRequestSchema(Schema):
    date = inputs.Date(required=True)
    scope = fields.Nested(ScopeSchema, load_default=dict)
    time_limit_s = fields.Integer(load_default=30, validate=validate.Range(1, MAX_TIME_LIMIT_S))


class ReplanSchema(Schema):
    time_limit_s = fields.Integer(load_default=None, validate=validate.Range(1, MAX_TIME_LIMIT_S))


class MoveSchema(Schema):
    work_order_id = inputs.Id(required=True)
    crew = fields.String(required=True, metadata={"description": "crew code"})
    position = fields.Integer(
        required=True,
        validate=validate.Range(min=1, max=10_000),
        metadata={"description": "1-based among the route's jobs"},
    )
    make_room = fields.Boolean(
        load_default=False,
        metadata={
            "description": "when the crew's day cannot hold it, take its least urgent unlocked stops off until it fits"
        },
    )


class LockSchema(Schema):
    locked = fields.Boolean(
        required=True,
        metadata={
            "description": "true: the stop stays with its crew, in its place among the crew's "
            "locked stops, through edits and re-plans"
        },
    )


class AcceptedSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    url = fields.String()


class StopSchema(Schema):
    sequence = fields.Integer()
    kind = fields.String()
    work_order_id = fields.Integer(allow_none=True)
    arrival_at = fields.DateTime()
    start_at = fields.DateTime()
    end_at = fields.DateTime()
    locked = fields.Boolean()
    projected_start_at = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "during the day: when the crew now looks like starting it, from its progress and position"
        },
    )
    late_minutes = Computed(
        late_minutes,
        fields.Integer(allow_none=True),
        metadata={
            "description": "how far the projection is behind the plan, minutes; null with no projection"
        },
    )
    projected_at = fields.DateTime(
        allow_none=True, metadata={"description": "when the projection was made"}
    )


class UnassignedSchema(Schema):
    work_order_id = fields.Integer()
    reason = fields.String(
        metadata={
            "description": "needs_pin, window_passed, no_skill, capacity, time_window, dropped_for_cost, "
            "displaced_by_must_do, displaced_by_move, removed_by_dispatcher, "
            "must_do_crew_unavailable, crew_off_shift, changed_during_planning"
        }
    )
    message = fields.String(metadata={"description": "the reason in words"})


class ExcludedCrewSchema(Schema):
    crew = fields.String()
    reason = fields.String(metadata={"description": "off, shift_over, no_depot"})
    message = fields.String()


class RouteSchema(Schema):
    crew = Computed(lambda r: r.crew.code, fields.String(), metadata={"description": "crew code"})
    start_at = fields.DateTime()
    end_at = fields.DateTime()
    drive_s = fields.Integer()
    distance_m = fields.Integer()
    stops = fields.List(fields.Nested(StopSchema))


class BestSoFarSchema(Schema):
    scheduled = fields.Integer(metadata={"description": "jobs on the crews' routes"})
    unassigned = fields.Integer(metadata={"description": "jobs of the solve left off every route"})
    drive_s = fields.Integer(metadata={"description": "driving time of all routes, seconds"})
    distance_m = fields.Integer()


class PartsProgressSchema(Schema):
    done = fields.Integer(metadata={"description": "parts solved so far"})
    total = fields.Integer(metadata={"description": "independent parts the day was split into"})


class ProgressSchema(Schema):
    phase = fields.String(
        metadata={"description": "building (the problem and its travel matrix), solving, done"}
    )
    elapsed_s = fields.Float(
        metadata={"description": "seconds the search has used of time_limit_s"}
    )
    time_limit_s = fields.Integer()
    best = fields.Nested(
        BestSoFarSchema,
        allow_none=True,
        metadata={"description": "the best day found so far (null until the first)"},
    )
    updated_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "when the job last wrote this (every second while it solves)",
        }
    )
    parts = fields.Nested(
        PartsProgressSchema,
        metadata={
            "description": "a big day solved part by part, each part a job on any worker: "
            "parts done of all (absent for a day solved whole); `best` then sums the parts done"
        },
    )


class MustDoStatsSchema(Schema):
    work_orders = fields.List(
        fields.Integer(), required=True, metadata={"description": "the day's must-do work orders"}
    )
    scheduled = fields.List(
        fields.Integer(), required=True, metadata={"description": "those of them on a route"}
    )
    displaced = fields.List(
        fields.Integer(),
        required=True,
        metadata={"description": "work taken off to make room for them"},
    )


class PlanStatsSchema(Schema):
    """What dispatch/plans.py (and dispatch/drafts.py, on an edit) store in `route_plans.stats`
    once the solve is done; {} before. The JSON is answered as stored, so a key stored
    there must be listed here: the schema is closed, and tests/api/test_openapi_types.py
    checks solved and edited plans against it."""

    jobs = fields.Integer(metadata={"description": "work orders given to the solver"})
    crews = fields.Integer(metadata={"description": "crews given to the solver"})
    scheduled = fields.Integer(metadata={"description": "jobs on the routes"})
    distance_m = fields.Integer(metadata={"description": "metres driven by all routes"})
    drive_s = fields.Integer(metadata={"description": "seconds driven by all routes"})
    route_s = fields.Integer(
        metadata={
            "description": "seconds from the first start to the last end, summed over the routes"
        }
    )
    penalty = fields.Integer(metadata={"description": "the solver's penalty for the jobs left out"})
    feasible = fields.Boolean(
        metadata={
            "description": "false: the validator found broken constraints (the plan cannot be published)"
        }
    )
    violations = fields.List(
        fields.String(), metadata={"description": "the broken constraints, in words"}
    )
    solve_seconds = fields.Float(metadata={"description": "the whole solve, seconds"})
    seconds = fields.Float(metadata={"description": "the search, seconds"})
    status = fields.String(metadata={"description": "how the search ended"})
    start_from = fields.String(
        metadata={"description": "the first solution the search improved on"}
    )
    solver_objective = fields.Integer(
        metadata={
            "description": "the chosen day's scaled cost: crew costs and the drop penalties of"
            " the work it leaves out, from its routes as timed"
        }
    )
    vroom_seconds = fields.Float(metadata={"description": "the VROOM first solution, seconds"})
    vroom_distance = fields.Integer(metadata={"description": "metres of the VROOM first solution"})
    split = fields.Integer(metadata={"description": "a large day solved in this many parts"})
    must_do = fields.Nested(
        MustDoStatsSchema, metadata={"description": "only when the day has must-do work"}
    )
    edited = fields.Boolean(
        metadata={"description": "a dispatcher moved, removed or locked stops since the solve"}
    )


class RoutePropertiesSchema(Schema):
    crew = fields.String(required=True, metadata={"description": "crew code"})


class RouteFeatureSchema(Schema):
    type = feature_type()
    id = fields.Integer(required=True, metadata={"description": "the route's id"})
    properties = fields.Nested(RoutePropertiesSchema, required=True)
    geometry = fields.Nested(
        GeoJSONLineStringSchema, required=True, metadata={"description": "the road the crew drives"}
    )


class RouteMapSchema(Schema):
    type = feature_collection_type()
    features = fields.List(
        fields.Nested(RouteFeatureSchema),
        required=True,
        metadata={"description": "one per crew route that has stops"},
    )


class PlanSchema(Schema):
    id = fields.Integer()
    date = fields.Date(attribute="plan_date")
    scope = JSONObject(
        ScopeSchema, metadata={"description": "the plan's agency, depot and district (null: all)"}
    )
    version = fields.Integer()
    status = fields.String()
    provider = fields.String(allow_none=True)
    time_limit_s = fields.Integer()
    parent_id = fields.Integer(allow_none=True)
    replan_from = fields.DateTime(allow_none=True)
    planned_from = fields.DateTime(
        allow_none=True, metadata={"description": "a day under way: no stop starts before this"}
    )
    stats = JSONObject(
        PlanStatsSchema, metadata={"description": "the solve's figures; empty until it is done"}
    )
    error = fields.String(allow_none=True)
    progress = fields.Nested(
        ProgressSchema,
        allow_none=True,
        metadata={
            "description": "how far the solve is; null while queued. Poll GET /plans/{id} while running"
        },
    )
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    unassigned = fields.List(fields.Nested(UnassignedSchema))
    excluded_crews = fields.List(
        fields.Nested(ExcludedCrewSchema),
        metadata={"description": "crews of the scope left out, with why"},
    )


class PlanDetailSchema(PlanSchema):
    routes = fields.List(fields.Nested(RouteSchema))
    geojson = JSONObject(
        RouteMapSchema,
        metadata={"description": "GeoJSON FeatureCollection: one LineString per crew route"},
    )


class PlanListArgs(Schema):
    date = inputs.Date(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(PLAN_STATUSES))


def _load(plan_id: int) -> RoutePlan:
    """The plan, unlocked: the domain takes the day's lock before the plan's row."""
    q = (
        select(RoutePlan)
        .where(RoutePlan.id == plan_id)
        .options(
            selectinload(RoutePlan.routes).selectinload(PlanRoute.stops),
            selectinload(RoutePlan.routes).selectinload(PlanRoute.crew),
        )
    )
    plan = session().scalar(q)
    if plan is None:
        abort(404, message=f"plan {plan_id} not found")
    return plan


def _accepted(plan: RoutePlan) -> tuple[dict[str, Any], int, dict[str, str]]:
    url = url_for("plans.get_plan", plan_id=plan.id)
    return {"id": plan.id, "status": plan.status, "url": url}, 202, {"Location": url}


def _geojson(plan: RoutePlan) -> dict[str, Any]:
    features = []
    rows = session().execute(
        select(PlanRoute.id, Crew.code, func.ST_AsGeoJSON(PlanRoute.geometry, 6))
        .join(Crew, Crew.id == PlanRoute.crew_id)
        .where(PlanRoute.plan_id == plan.id, PlanRoute.geometry.is_not(None))
        .order_by(PlanRoute.id)
    )
    for route_id, crew, geom in rows:
        features.append(
            {
                "type": "Feature",
                "id": route_id,
                "properties": {"crew": crew},
                "geometry": json.loads(geom),
            }
        )
    return {"type": "FeatureCollection", "features": features}


@blp.route("", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(PlanRequestSchema)
@blp.response(202, AcceptedSchema)
@blp.error(
    409,
    "The day already has a published plan for this scope: re-plan that one (`errors.detail.plan_id`)",
)
@blp.doc(operationId="createPlan")
def create_plan(data: dict[str, Any]) -> Any:
    s = session()
    scope = Scope(**{k: v for k, v in data["scope"].items() if v})
    plan = request_plan(
        s,
        PlanRequest(data["date"], scope, data["time_limit_s"]),
        actor=current_actor(),
        tz=settings().tz,
    )
    defer_after_commit(s, "optimise_plan", plan_id=plan.id)
    s.commit()
    return _accepted(plan)


@blp.route("")
@require("dispatcher", "supervisor")
@blp.arguments(PlanListArgs, location="query")
@blp.response(200, PlanSchema(many=True))
@blp.doc(operationId="listPlans")
def list_plans(args: dict[str, Any]) -> Any:
    q = select(RoutePlan).order_by(RoutePlan.plan_date.desc(), RoutePlan.id.desc()).limit(200)
    if args.get("date"):
        q = q.where(RoutePlan.plan_date == args["date"])
    if args.get("status"):
        q = q.where(RoutePlan.status == args["status"])
    return session().scalars(q).all()


class LateArgs(Schema):
    date = inputs.Date(load_default=None, metadata={"description": "default today"})
    min_minutes = fields.Integer(
        load_default=1,
        validate=validate.Range(min=0, max=7 * 24 * 60),
        metadata={"description": "late by at least this"},
    )


class LateStopSchema(Schema):
    plan_id = fields.Integer()
    crew = fields.String()
    sequence = fields.Integer()
    work_order_id = fields.Integer()
    address = fields.String(allow_none=True)
    start_at = fields.DateTime(metadata={"description": "as planned"})
    projected_start_at = fields.DateTime()
    late_minutes = fields.Integer()
    projected_at = fields.DateTime()


@blp.route("/late-stops")
@require("dispatcher", "supervisor")
@blp.arguments(LateArgs, location="query")
@blp.response(200, LateStopSchema(many=True))
@blp.doc(operationId="listLateStops")
def late_stops(args: dict[str, Any]) -> Any:
    """Stops of the day's published routes that the crews' progress and positions say will
    start late, most late first (projected every few minutes by the worker)."""
    from core.models import CrewDay, RouteStop, WorkOrder

    day = args["date"] or datetime.now(settings().tz).date()
    rows = (
        session()
        .execute(
            select(RouteStop, PlanRoute.plan_id, Crew.code, WorkOrder.address)
            .join(PlanRoute, PlanRoute.id == RouteStop.route_id)
            .join(
                CrewDay,
                (CrewDay.plan_id == PlanRoute.plan_id) & (CrewDay.crew_id == PlanRoute.crew_id),
            )
            .join(Crew, Crew.id == PlanRoute.crew_id)
            .join(WorkOrder, WorkOrder.id == RouteStop.work_order_id)
            .where(
                CrewDay.plan_date == day,
                RouteStop.projected_start_at.is_not(None),
                WorkOrder.status.in_(NOT_REACHED),
                WorkOrder.crew_id == PlanRoute.crew_id,
            )
        )
        .all()
    )
    out = [
        {
            "plan_id": plan_id,
            "crew": code,
            "sequence": st.sequence,
            "work_order_id": st.work_order_id,
            "address": address,
            "start_at": st.start_at,
            "projected_start_at": st.projected_start_at,
            "late_minutes": late_minutes(st),
            "projected_at": st.projected_at,
        }
        for st, plan_id, code, address in rows
    ]
    return sorted(
        (o for o in out if o["late_minutes"] >= args["min_minutes"]),
        key=lambda o: -o["late_minutes"],
    )


@blp.route("/<int:plan_id>")
@require("dispatcher", "supervisor")
@blp.response(200, PlanDetailSchema)
@blp.error(404)
@blp.doc(operationId="getPlan")
def get_plan(plan_id: int) -> Any:
    return _detail(plan_id)


@blp.route("/<int:plan_id>/publish", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.response(200, PlanSchema)
@blp.error(
    409,
    "The plan is not ready or not feasible, its times have passed, or another published "
    "plan of the day holds one of its crews (the message names it)",
)
@blp.error(404)
@blp.doc(operationId="publishPlan")
def publish(plan_id: int) -> Any:
    s = session()
    plan = _load(plan_id)
    cfg = settings()
    # A draft of a day under way goes stale once its first stops are this far past.
    stale_after = max(day_rules().lead, timedelta(minutes=10))
    publish_plan(
        s,
        plan,
        actor=current_actor(),
        tz=cfg.tz,
        stale_after=stale_after,
        slip=timedelta(minutes=cfg.promise_slip_minutes),
    )
    s.commit()
    return plan


@blp.route("/<int:plan_id>/replan", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(ReplanSchema)
@blp.response(202, AcceptedSchema)
@blp.error(409, "Only the published plan of a day is re-planned")
@blp.error(404)
@blp.doc(operationId="replanPlan")
def replan(data: dict[str, Any], plan_id: int) -> Any:
    """A new version of the published day from now. While one is queued or running,
    asking again answers with that one."""
    s = session()
    parent = _load(plan_id)
    try:
        plan = replan_plan(
            s,
            parent,
            actor=current_actor(),
            time_limit_s=data.get("time_limit_s"),
            tz=settings().tz,
        )
    except ReplanPending as pending:
        s.rollback()
        return _accepted(pending.plan)
    defer_after_commit(s, "optimise_plan", plan_id=plan.id)
    s.commit()
    return _accepted(plan)


@blp.route("/<int:plan_id>/moves", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(MoveSchema)
@blp.response(200, PlanDetailSchema)
@blp.error(409, "Only a draft (ready) plan is edited")
@blp.error(422, "The edited route would break a constraint; nothing changed")
@blp.error(404)
@blp.doc(operationId="movePlanStop")
def move(data: dict[str, Any], plan_id: int) -> Any:
    s = session()
    plan = _load(plan_id)
    crew_id = s.scalar(select(Crew.id).where(Crew.code == data["crew"]))
    if crew_id is None:
        abort(422, message=f"crew {data['crew']!r} not found", errors={"crew": ["unknown crew"]})
    move_stop(
        s,
        plan,
        work_order_id=data["work_order_id"],
        crew_id=crew_id,
        position=data["position"],
        travel=travel(),
        tz=settings().tz,
        actor=current_actor(),
        make_room=data["make_room"],
        rules=day_rules(),
    )
    s.commit()
    return _detail(plan_id)


@blp.route("/<int:plan_id>/stops/<int:work_order_id>", methods=["DELETE"])
@require("dispatcher", "supervisor")
@blp.response(200, PlanDetailSchema)
@blp.error(409, "Only a draft (ready) plan is edited, and a locked stop stays")
@blp.error(422, "That work order is not on the plan's routes")
@blp.error(404)
@blp.doc(operationId="removePlanStop")
def remove(plan_id: int, work_order_id: int) -> Any:
    """Take a stop off a draft: its work goes back to the pool, and the plan lists it."""
    s = session()
    remove_stop(
        s,
        _load(plan_id),
        work_order_id=work_order_id,
        travel=travel(),
        tz=settings().tz,
        actor=current_actor(),
        rules=day_rules(),
    )
    s.commit()
    return _detail(plan_id)


@blp.route("/<int:plan_id>/stops/<int:work_order_id>/lock", methods=["PUT"])
@require("dispatcher", "supervisor")
@blp.arguments(LockSchema)
@blp.response(200, PlanDetailSchema)
@blp.error(409, "Only a draft or the published plan")
@blp.error(422, "That work order is not on the plan's routes")
@blp.error(404)
@blp.doc(operationId="lockPlanStop")
def lock(data: dict[str, Any], plan_id: int, work_order_id: int) -> Any:
    """Lock a stop to its crew and its place (or unlock it). Edits leave a locked stop
    alone, and a re-plan of the day keeps it on its crew, in order."""
    s = session()
    set_lock(
        s, _load(plan_id), work_order_id=work_order_id, locked=data["locked"], actor=current_actor()
    )
    s.commit()
    return _detail(plan_id)


def _detail(plan_id: int) -> RoutePlan:
    session().expire_all()
    plan = _load(plan_id)
    # Read by the answer's schema; no column, hence the ignore.
    plan.geojson = _geojson(plan)  # type: ignore[attr-defined]
    return plan
