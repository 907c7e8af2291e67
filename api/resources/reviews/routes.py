"""Supervisors' review of crews' completions: the queue, the evidence, the decision."""

from __future__ import annotations

import mimetypes
from typing import Any

from flask import Response
from flask_smorest.pagination import PaginationParameters
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import current_actor, current_user, require
from api.db import media_storage, session
from api.errors import abort
from api.resources.common import (
    PHOTO_FILE,
    Blueprint,
    EventSchema,
    PointSchema,
    SelectPage,
    page_schema,
    point_out,
    timeline,
)
from api.resources.geojson import (
    GeoJSONLineStringSchema,
    GeoJSONPointSchema,
    feature_collection_type,
    feature_type,
)
from api.resources.typed import Computed, JSONObject, JSONValue
from core import closing
from core.completion import done_time, proof_policy, track_pings
from core.models import (
    REVIEW_DECISIONS,
    Completion,
    Crew,
    District,
    Photo,
    Review,
    ServiceRequest,
    ServiceType,
    WorkOrder,
)
from core.photos import public_url
from core.spatial import lon_lat
from core.status import CLOSE_OUTCOMES
from geo import proof

blp = Blueprint(
    "reviews",
    __name__,
    url_prefix="",
    description="Supervisors verify or reject crews' proof of work.",
)


class ReviewQueueArgs(Schema):
    district = fields.String(metadata={"description": "district code"})
    service_code = fields.String(metadata={"description": "service type code"})
    crew = fields.String(metadata={"description": "crew code"})
    reason = fields.String(
        metadata={"description": "a reason code, e.g. distance_failed or audit_sample"}
    )


class PhotoOutSchema(Schema):
    id = fields.Integer()
    kind = fields.String(
        metadata={"description": "after or before (the crew's), report (the resident's)"}
    )
    state = fields.String(metadata={"description": "pending until the public copy is made"})
    url = fields.String(allow_none=True, metadata={"description": "public copy (EXIF removed)"})
    thumbnail_url = fields.String(allow_none=True)
    original_url = fields.String(
        metadata={"description": "the original as uploaded, for supervisors"}
    )
    width = fields.Integer()
    height = fields.Integer()


class CheckSchema(Schema):
    name = fields.String(
        metadata={
            "description": "distance, fix_age, exif_location, exif_time, track, teleport, reuse, photo_present"
        }
    )
    passed = fields.Boolean(
        allow_none=True,
        metadata={"description": "null: not applicable or unknown (does not block)"},
    )
    value = fields.Float(
        allow_none=True, metadata={"description": "the measured number, in `unit`"}
    )
    limit = fields.Float(
        allow_none=True, metadata={"description": "the limit it was held to, in `unit`"}
    )
    unit = fields.String(
        allow_none=True,
        metadata={"description": "m, s, km/h, or bits (of a 64-bit perceptual hash)"},
    )
    pass_when = fields.String(
        allow_none=True,
        validate=validate.OneOf((proof.AT_MOST, proof.ABOVE)),
        metadata={
            "description": "at_most: passes when value <= limit; above: when value > limit "
            "(reuse: a small distance is a copy)"
        },
    )
    detail = fields.String(metadata={"description": "what was measured, in words"})


class TrackPointSchema(Schema):
    at = fields.DateTime()
    lat = fields.Float()
    lon = fields.Float()
    accuracy_m = fields.Float(allow_none=True)


class ReportOutSchema(Schema):
    service_request_id = fields.String(metadata={"description": "the confirmation number"})
    requested_at = fields.DateTime()
    detailed_status = fields.String()
    address = fields.String(allow_none=True)
    description = fields.String(
        allow_none=True, metadata={"description": "the resident's own words (untrusted text)"}
    )
    photos = fields.List(
        fields.Nested(PhotoOutSchema), metadata={"description": "the resident's photos"}
    )


class ReviewOutSchema(Schema):
    id = fields.Integer()
    decision = fields.String()
    outcome = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    reviewer = Computed(
        lambda r: r.reviewer.email,
        fields.String(),
        metadata={"description": "the supervisor's email"},
    )
    at = fields.DateTime()


class ReviewWorkOrderSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    service_code = fields.String(required=True)
    service_name = fields.String(required=True)
    priority = fields.Integer(required=True)
    due_at = fields.DateTime(required=True)
    address = fields.String(required=True, allow_none=True)
    location = fields.Nested(PointSchema, required=True, allow_none=True)
    district = fields.String(
        required=True, allow_none=True, metadata={"description": "district code"}
    )
    reopen_count = fields.Integer(required=True)
    service_request_ids = fields.List(fields.String(), required=True)


# The review map's features, one schema per kind: `properties.role` tells them apart.
class SitePropertiesSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["site"]))
    address = fields.String(required=True, allow_none=True)


class FixPropertiesSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["fix"]))
    accuracy_m = fields.Float(
        required=True, allow_none=True, metadata={"description": "the fix's accuracy radius"}
    )
    fix_time = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "when the phone took the fix"}
    )


class TrackPropertiesSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["track"]))
    from_ = fields.DateTime(
        required=True, data_key="from", metadata={"description": "the first fix's time"}
    )
    to = fields.DateTime(required=True, metadata={"description": "the last fix's time"})


class SiteFeatureSchema(Schema):
    type = feature_type()
    geometry = fields.Nested(GeoJSONPointSchema, required=True)
    properties = fields.Nested(SitePropertiesSchema, required=True)


class FixFeatureSchema(Schema):
    type = feature_type()
    geometry = fields.Nested(GeoJSONPointSchema, required=True)
    properties = fields.Nested(FixPropertiesSchema, required=True)


class TrackFeatureSchema(Schema):
    type = feature_type()
    geometry = fields.Nested(GeoJSONLineStringSchema, required=True)
    properties = fields.Nested(TrackPropertiesSchema, required=True)


class CompletionMapSchema(Schema):
    type = feature_collection_type()
    features = fields.List(
        JSONValue(SiteFeatureSchema, FixFeatureSchema, TrackFeatureSchema),
        required=True,
        metadata={
            "description": "the site (where the work order is), the crew's fix (where the phone "
            "said it was), and the track"
        },
    )


class CompletionReviewSchema(Schema):
    id = fields.Integer()
    verdict = fields.String()
    auto_verdict = fields.String(allow_none=True, metadata={"description": "what the checks said"})
    audit_sampled = fields.Boolean()
    reasons = fields.List(fields.String())
    outcome = fields.String()
    notes = fields.String(allow_none=True)
    crew = fields.String()
    submitted_at = fields.DateTime()
    captured_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    checks = fields.List(
        fields.Nested(CheckSchema),
        metadata={"description": "every check with its number, limit and result"},
    )
    photos = fields.List(
        fields.Nested(PhotoOutSchema), metadata={"description": "the crew's photos"}
    )
    reports = fields.List(
        fields.Nested(ReportOutSchema),
        metadata={
            "description": "the residents' reports on the work order (duplicates included), with their photos"
        },
    )
    work_order = fields.Nested(ReviewWorkOrderSchema)
    track = fields.List(
        fields.Nested(TrackPointSchema),
        metadata={
            "description": "GET /completions/{id} only: the crew's GPS fixes in the track check's window around the "
            "completion, oldest first (what the track and teleport checks read); empty once purged"
        },
    )
    geojson = JSONObject(
        CompletionMapSchema,
        metadata={
            "description": "FeatureCollection: the site, the crew's fix with its accuracy, and (GET /completions/{id}) "
            "the track as a LineString"
        },
    )
    timeline = fields.List(
        fields.Nested(EventSchema), metadata={"description": "the work order's audit trail"}
    )
    reviews = fields.List(fields.Nested(ReviewOutSchema))


class DecisionSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(REVIEW_DECISIONS))
    reason = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=2000),
        metadata={"description": "required to reject: what the crew should do differently"},
    )
    outcome = fields.String(
        load_default=None,
        validate=validate.OneOf(CLOSE_OUTCOMES),
        metadata={"description": "required to close"},
    )
    note = fields.String(
        load_default=None, validate=validate.Length(max=2000), metadata={"description": "internal"}
    )
    status_notes = fields.String(
        load_default=None,
        validate=validate.Length(max=2000),
        metadata={"description": "what residents read when closing; a standard text if omitted"},
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        decision = data.get("decision")
        if decision == "reject" and not (data.get("reason") or "").strip():
            raise ValidationError("a rejection needs a reason the crew can act on", "reason")
        if decision == "close" and not data.get("outcome"):
            raise ValidationError(
                f"closing needs an outcome, one of: {', '.join(CLOSE_OUTCOMES)}", "outcome"
            )
        if decision != "close" and data.get("outcome"):
            raise ValidationError("an outcome is only given when closing", "outcome")


class RequestStatusSchema(Schema):
    service_request_id = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"description": "the Open311 status: open or closed"}
    )
    detailed_status = fields.String(required=True)


class DecisionResultSchema(Schema):
    completion = fields.Nested(CompletionReviewSchema)
    work_order_status = fields.String()
    requests = fields.List(
        fields.Nested(RequestStatusSchema),
        metadata={"description": "each linked request's public id and status"},
    )


def _photo_out(p: Photo) -> dict[str, Any]:
    return {
        "id": p.id,
        "kind": p.kind,
        "state": p.state,
        "width": p.width,
        "height": p.height,
        "url": public_url(p.public_key) if p.public_key else None,
        "thumbnail_url": public_url(p.thumbnail_key) if p.thumbnail_key else None,
        "original_url": f"/api/v1/photos/{p.id}/original",
    }


def _geojson(c: Completion, track: list[proof.Ping]) -> dict[str, Any]:
    features = []
    site = lon_lat(c.work_order.location)
    if site is not None:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(site)},
                "properties": {"role": "site", "address": c.work_order.address},
            }
        )
    fix = lon_lat(c.location)
    if fix is not None:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": list(fix)},
                "properties": {
                    "role": "fix",
                    "accuracy_m": c.accuracy_m,
                    "fix_time": c.fix_time.isoformat() if c.fix_time else None,
                },
            }
        )
    if len(track) >= 2:
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in track]},
                "properties": {
                    "role": "track",
                    "from": track[0].at.isoformat(),
                    "to": track[-1].at.isoformat(),
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _work_order_out(wo: WorkOrder) -> dict[str, Any]:
    return {
        "id": wo.id,
        "status": wo.status,
        "service_code": wo.service_type.code,
        "priority": wo.priority,
        "due_at": wo.due_at,
        "address": wo.address,
        "location": point_out(wo.location),
        "service_name": wo.service_type.name,
        "district": wo.district.code if wo.district else None,
        "reopen_count": wo.reopen_count,
        "service_request_ids": [r.public_id for r in wo.requests],
    }


def _reports(wo: WorkOrder) -> list[dict[str, Any]]:
    """The residents' side of the evidence: what each report on the order said and showed."""
    return [
        {
            "service_request_id": r.public_id,
            "requested_at": r.requested_at,
            "detailed_status": r.detailed_status,
            "address": r.address,
            "description": r.description,
            "photos": [_photo_out(p) for p in r.photos if p.kind == "report"],
        }
        for r in sorted(wo.requests, key=lambda r: r.id)
    ]


def _detail(c: Completion, *, with_track: bool = False) -> dict[str, Any]:
    # The track is read for one completion at a time: a queue page of them would carry
    # up to an hour of fixes each.
    track = (
        track_pings(session(), c.crew_id, done_time(c), proof_policy(c.work_order.service_type))
        if with_track
        else []
    )
    out = {
        "id": c.id,
        "verdict": c.verdict,
        "auto_verdict": c.auto_verdict,
        "audit_sampled": c.audit_sampled,
        "reasons": list(c.reasons),
        "outcome": c.outcome,
        "notes": c.notes,
        "crew": c.crew.code,
        "submitted_at": c.submitted_at,
        "captured_at": c.captured_at,
        "decided_at": c.decided_at,
        "checks": proof.explained(c.checks),
        "photos": [_photo_out(p) for p in c.photos],
        "reports": _reports(c.work_order),
        "work_order": _work_order_out(c.work_order),
        "geojson": _geojson(c, track),
        "timeline": timeline(session(), "work_order", c.work_order_id),
        "reviews": c.reviews,
    }
    if with_track:
        out["track"] = [
            {"at": p.at, "lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m} for p in track
        ]
    return out


def _options() -> list[Any]:
    return [
        selectinload(Completion.crew),
        selectinload(Completion.photos),
        selectinload(Completion.reviews).selectinload(Review.reviewer),
        selectinload(Completion.work_order).selectinload(WorkOrder.service_type),
        selectinload(Completion.work_order).selectinload(WorkOrder.district),
        selectinload(Completion.work_order)
        .selectinload(WorkOrder.requests)
        .selectinload(ServiceRequest.photos),
    ]


def _load(completion_id: int) -> Completion:
    c = session().scalar(
        select(Completion).where(Completion.id == completion_id).options(*_options())
    )
    if c is None:
        abort(404, message=f"completion {completion_id} not found")
    return c


@blp.route("/reviews")
@require("supervisor")
@blp.arguments(ReviewQueueArgs, location="query")
@blp.response(200, page_schema(CompletionReviewSchema))
@blp.paginate()
@blp.doc(operationId="listReviews")
def review_queue(args: dict[str, Any], pagination_parameters: PaginationParameters) -> Any:
    """Completions waiting for a supervisor, oldest first."""
    q = (
        select(Completion)
        .join(WorkOrder, Completion.work_order_id == WorkOrder.id)
        .where(Completion.verdict == closing.NEEDS_REVIEW)
        .options(*_options())
    )
    if args.get("district"):
        q = q.where(
            WorkOrder.district_id.in_(select(District.id).where(District.code == args["district"]))
        )
    if args.get("service_code"):
        q = q.where(
            WorkOrder.service_type_id.in_(
                select(ServiceType.id).where(ServiceType.code == args["service_code"])
            )
        )
    if args.get("crew"):
        q = q.where(Completion.crew_id.in_(select(Crew.id).where(Crew.code == args["crew"])))
    if args.get("reason"):
        q = q.where(Completion.reasons.contains([args["reason"]]))
    # Paged here rather than by the decorator: each completion of the page is detailed.
    page = SelectPage(q.order_by(Completion.submitted_at, Completion.id), pagination_parameters)
    return [_detail(c) for c in page.items]


@blp.route("/completions/<int:completion_id>")
@require("supervisor")
@blp.response(200, CompletionReviewSchema)
@blp.error(404)
@blp.doc(operationId="getCompletion")
def get_completion(completion_id: int) -> Any:
    """One completion with all its evidence: the checks with their numbers and limits, the
    crew's and the residents' photos, the crew's GPS track around the visit, the timeline."""
    return _detail(_load(completion_id), with_track=True)


@blp.route("/completions/<int:completion_id>/review", methods=["POST"])
@require("supervisor")
@blp.arguments(DecisionSchema)
@blp.response(200, DecisionResultSchema)
@blp.error(409, "Already decided, or the decision does not fit the completion")
@blp.error(404)
@blp.doc(operationId="reviewCompletion")
def review(data: dict[str, Any], completion_id: int) -> Any:
    """Verify (closes the work with the crew's outcome), reject (the work goes back to the
    pool), or close with another outcome."""
    s = session()
    user, actor = current_user(), current_actor()
    if data["decision"] == "verify":
        closing.verify(s, completion_id, reviewer_id=user.id, actor=actor, note=data.get("note"))
    elif data["decision"] == "reject":
        closing.reject(
            s,
            completion_id,
            reviewer_id=user.id,
            actor=actor,
            reason=data["reason"],
            note=data.get("note"),
        )
    else:
        closing.close_with_outcome(
            s,
            completion_id,
            reviewer_id=user.id,
            actor=actor,
            outcome=data["outcome"],
            note=data.get("note"),
            status_notes=data.get("status_notes"),
        )
    s.commit()
    c = _load(completion_id)
    return {
        "completion": _detail(c),
        "work_order_status": c.work_order.status,
        "requests": [
            {
                "service_request_id": r.public_id,
                "status": r.status,
                "detailed_status": r.detailed_status,
            }
            for r in c.work_order.requests
        ],
    }


@blp.route("/photos/<int:photo_id>/original")
@require("supervisor")
@blp.response(200, description="The photo as uploaded, with its metadata")
@blp.error(404)
@blp.doc(operationId="getPhotoOriginal", responses=PHOTO_FILE)
def photo_original(photo_id: int) -> Any:
    """Supervisors judging proof may need what the public copy strips (EXIF place and time)."""
    photo = session().get(Photo, photo_id)
    if photo is None:
        abort(404, message=f"photo {photo_id} not found")
    data = media_storage().get(photo.original_key)
    ext = photo.original_key.rsplit(".", 1)[-1]
    return Response(
        data,
        mimetype=photo.content_type
        or mimetypes.guess_type(photo.original_key)[0]
        or "application/octet-stream",
        headers={
            "Cache-Control": "private, no-store",
            "Content-Disposition": f'inline; filename="photo-{photo.id}.{ext}"',
        },
    )
