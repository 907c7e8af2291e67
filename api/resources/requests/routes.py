from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import url_for
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api import inputs
from api.auth import current_actor, current_user, require
from api.db import base_url, service_area, session, settings
from api.errors import ErrorSchema, abort
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
from api.resources.typed import Computed, JSONValue
from api.status_page import public_timeline
from core.db import existing
from core.errors import OutsideServiceArea, ValidationFailed
from core.intake import Contact, NewRequest, duplicate_candidates, pin_request, submit_request
from core.models import (
    MEDIA_LINK_COPY_STATES,
    REDACTABLE_FIELDS,
    District,
    ServiceRequest,
    ServiceType,
    WorkOrder,
)
from core.photos import public_url
from core.public_requests import expected_at_expr, late_since
from core.redaction import MAX_REASON, MAX_TEXT, REDACTED, redact, redactions_of
from core.status import REQUEST_STATUSES, words_for
from geo.geocode import geocode

blp = Blueprint(
    "requests", __name__, url_prefix="/requests", description="Service requests as staff see them."
)


class RequestArgs(BBoxArgs):
    status = fields.String(
        metadata={"description": f"comma list of: {', '.join(REQUEST_STATUSES)}"}
    )
    service_code = fields.String(metadata={"description": "comma list"})
    district = fields.String(metadata={"description": "district code"})
    needs_pin = fields.Boolean(metadata={"description": "only requests with no location yet"})
    from_ = inputs.DateTime(data_key="from", metadata={"description": "received at or after"})
    to = inputs.DateTime(metadata={"description": "received before"})


# An attribute's stored value: the service definition's number datatype is kept as a
# number, a multivaluelist as a list of its keys, every other datatype as a string.
_ATTRIBUTE_VALUE = JSONValue(
    {"type": "string"}, {"type": "number"}, {"type": "array", "items": {"type": "string"}}
)
# What a client sent beyond the definition is kept as sent: a string, or several.
_EXTRA_VALUE = JSONValue({"type": "string"}, {"type": "array", "items": {"type": "string"}})


class RequestSchema(Schema):
    id = fields.Integer()
    service_request_id = fields.String(attribute="public_id")
    service_code = Computed(lambda r: r.service_type.code, fields.String())
    detailed_status = fields.String()
    status = fields.String()
    description = fields.String()
    attributes = fields.Dict(
        keys=fields.String(),
        values=_ATTRIBUTE_VALUE,
        metadata={"description": "attribute code -> value, as the service definition asked for it"},
    )
    extra_attributes = fields.Dict(
        keys=fields.String(),
        values=_EXTRA_VALUE,
        metadata={"description": "attributes the client sent beyond the service definition"},
    )
    address = fields.String(allow_none=True)
    location = Computed(
        lambda r: point_out(r.location),
        fields.Nested(PointSchema, allow_none=True),
        metadata={"description": "null until the request has a location (see needs_pin)"},
    )
    location_source = fields.String()
    needs_pin = fields.Boolean()
    district = Computed(
        lambda r: r.district.code if r.district else None,
        fields.String(allow_none=True),
        metadata={"description": "district code"},
    )
    duplicate_of = Computed(
        lambda r: r.duplicate_of.public_id if r.duplicate_of else None,
        fields.String(allow_none=True),
        metadata={"description": "the request this one duplicates"},
    )
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


class PublicEventSchema(Schema):
    at = fields.DateTime()
    status_words = fields.String(
        allow_none=True,
        metadata={
            "description": "the new status in the status page's words; "
            "null for a note that keeps the status"
        },
    )
    note = fields.String(allow_none=True)


class RequestPhotoSchema(Schema):
    kind = fields.String(
        validate=validate.OneOf(("report",)), metadata={"description": "the resident's photo"}
    )
    state = fields.String(
        validate=validate.OneOf(("pending", "ready", "rejected")),
        metadata={
            "description": "pending until its public copy (no EXIF) is made; the URLs are null until then"
        },
    )
    url = fields.String(allow_none=True, metadata={"description": "the public copy"})
    thumbnail_url = fields.String(allow_none=True)


class MediaLinkSchema(Schema):
    url = fields.String(
        metadata={
            "description": "a photo link the report was sent with (its media_url values, in order)"
        }
    )
    copy_state = fields.String(
        validate=validate.OneOf(MEDIA_LINK_COPY_STATES),
        metadata={
            "description": (
                "link: kept as a link (its host is not in STREETLOOP_MEDIA_COPY_HOSTS); pending: being copied into our "
                "storage; copied: among the photos; failed: the copy did not get a photo (copy_error says why)"
            )
        },
    )
    copy_error = fields.String(
        allow_none=True,
        metadata={
            "description": "why the copy failed, or (still pending) why its last try did, in our own words"
        },
    )


class RequestDetailSchema(RequestSchema):
    photos = fields.List(
        fields.Nested(RequestPhotoSchema),
        attribute="photo_list",
        metadata={
            "description": "the photos sent with the report, uploaded or copied from its links, in the order stored"
        },
    )
    media_links = fields.List(fields.Nested(MediaLinkSchema))
    status_words = Computed(
        lambda r: words_for(r.detailed_status),
        fields.String(),
        metadata={
            "description": "the status in the words of the resident's status page, to read to a caller"
        },
    )
    public_expected_at = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "when the status page tells the resident to expect it done: the planned visit's time, else "
            "the SLA due time; null once closed, or when late with no visit planned"
        },
    )
    late_since = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "open, with no visit planned, past the time the city aimed for: the status page says it is "
            "late since then"
        },
    )
    public_timeline = fields.List(
        fields.Nested(PublicEventSchema),
        metadata={
            "description": "the timeline the resident's status page shows: public events only, "
            "status changes in its words"
        },
    )
    service_notice = fields.String(
        allow_none=True,
        metadata={
            "description": "what the reporter was told: the report joined or reopened another"
        },
    )
    timeline = fields.List(fields.Nested(EventSchema))
    contact = Computed(
        lambda r: (
            ContactSchema().dump(r.contact)
            if getattr(r, "show_contact", False) and r.contact
            else None
        ),
        fields.Nested(ContactSchema, allow_none=True),
        metadata={"description": "reporter contact; supervisors and admins only"},
    )


# Ways a report reaches staff other than a resident's app (those come through Open311).
STAFF_CHANNELS = ("phone", "email", "walk_in", "staff")
OUTSIDE_FLAG = "outside_service_area"
_OUTSIDE_FLAG_DOC = {
    "description": "record it even though the location is outside the city's service area; the override is audited"
}


class AttributeValue(fields.Field):
    """An attribute's value as Open311 takes it: a string, or a list of strings for a multivaluelist."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str | list[str]:
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            return value
        raise ValidationError("a string, or a list of strings")


class ReporterSchema(Schema):
    email = fields.Email(validate=validate.Length(max=320))
    first_name = fields.String(validate=validate.Length(max=255))
    last_name = fields.String(validate=validate.Length(max=255))
    phone = fields.String(validate=validate.Length(max=64))


class NewRequestSchema(Schema):
    """A report taken by staff, e.g. a call-taker on the phone."""

    service_code = fields.String(required=True)
    lat = fields.Float(validate=validate.Range(-90, 90))
    lon = fields.Float(validate=validate.Range(-180, 180))
    address_string = fields.String(
        validate=validate.Length(max=1000),
        metadata={"description": "geocoded when lat and lon are not given"},
    )
    description = fields.String(load_default="")
    attributes = fields.Dict(
        keys=fields.String(),
        values=AttributeValue(
            metadata={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        ),
        load_default=dict,
        metadata={
            "description": "attribute code -> value, as in the service definition (a list for a multivaluelist)"
        },
    )
    contact = fields.Nested(
        ReporterSchema, metadata={"description": "the reporter, if they gave their details"}
    )
    channel = fields.String(load_default="phone", validate=validate.OneOf(STAFF_CHANNELS))
    outside_service_area = fields.Boolean(load_default=False, metadata=_OUTSIDE_FLAG_DOC)

    @validates_schema
    def _location(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("lat" in data) != ("lon" in data):
            raise ValidationError(
                "lat and lon must be given together", "lon" if "lat" in data else "lat"
            )
        if "lat" not in data and not (data.get("address_string") or "").strip():
            raise ValidationError("a location is required: lat and lon, or address_string", "lat")


class PinSchema(PointSchema):
    outside_service_area = fields.Boolean(load_default=False, metadata=_OUTSIDE_FLAG_DOC)


def _with_override_hint(exc: OutsideServiceArea) -> OutsideServiceArea:
    """Staff may override the area check; the error says how."""
    return OutsideServiceArea(
        f'{exc.message}; to record it anyway, send "{OUTSIDE_FLAG}": true',
        field=exc.field,
        **exc.details,
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
@blp.paginate(SelectPage)
@blp.doc(operationId="listRequests")
def list_requests(args: dict[str, Any]) -> Any:
    q = select(ServiceRequest).options(
        selectinload(ServiceRequest.service_type),
        selectinload(ServiceRequest.district),
        selectinload(ServiceRequest.duplicate_of),
    )
    if statuses := csv_list(args.get("status")):
        bad = set(statuses) - set(REQUEST_STATUSES)
        if bad:
            abort(
                422,
                message=f"unknown status {sorted(bad)[0]!r}",
                errors={"status": [f"one of {', '.join(REQUEST_STATUSES)}"]},
            )
        q = q.where(ServiceRequest.detailed_status.in_(statuses))
    if codes := csv_list(args.get("service_code")):
        q = q.where(
            ServiceRequest.service_type_id.in_(
                select(ServiceType.id).where(ServiceType.code.in_(codes))
            )
        )
    if args.get("district"):
        q = q.where(
            ServiceRequest.district_id.in_(
                select(District.id).where(District.code == args["district"])
            )
        )
    if args.get("bbox"):
        q = q.where(bbox_filter(ServiceRequest.location, args["bbox"]))
    if args.get("needs_pin") is not None:
        q = q.where(
            ServiceRequest.location.is_(None)
            if args["needs_pin"]
            else ServiceRequest.location.is_not(None)
        )
    if args.get("from_"):
        q = q.where(ServiceRequest.requested_at >= args["from_"])
    if args.get("to"):
        q = q.where(ServiceRequest.requested_at < args["to"])
    return q.order_by(ServiceRequest.requested_at.desc(), ServiceRequest.id.desc())


@blp.route("", methods=["POST"])
@require("call_taker", "dispatcher", "supervisor")
@blp.arguments(NewRequestSchema)
@blp.response(201, RequestDetailSchema)
@blp.error(422, "Invalid, or outside the service area without outside_service_area: true")
@blp.doc(operationId="createRequest")
def create_request(data: dict[str, Any]) -> Any:
    """Record a report taken by staff (a phone call, a walk-in); it joins or reopens
    work exactly as a resident's Open311 report would."""
    s = session()
    new = NewRequest(
        service_code=data["service_code"],
        lat=data.get("lat"),
        lon=data.get("lon"),
        address_string=data.get("address_string"),
        description=data["description"],
        attributes=data["attributes"],
        contact=Contact(**(data.get("contact") or {})),
        channel=data["channel"],
    )
    try:
        result = submit_request(
            s,
            new,
            actor=current_actor(),
            geocode=geocode,
            reopen_within=timedelta(days=settings().reopen_window_days),
            area=service_area(),
            allow_outside_area=data[OUTSIDE_FLAG],
        )
    except OutsideServiceArea as exc:
        raise _with_override_hint(exc) from None
    s.commit()
    req = result.request
    return _detail(req), 201, {"Location": url_for("requests.get_request", public_id=req.public_id)}


@blp.route("/<public_id>")
@require("call_taker", "dispatcher", "supervisor")
@blp.response(200, RequestDetailSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No request has this confirmation number")
@blp.doc(operationId="getRequest")
def get_request(public_id: str) -> Any:
    """One request by its confirmation number, with its timeline and, in the status page's
    words, its status: what a call-taker reads to a caller asking about their report."""
    return _detail(_load(public_id))


def _detail(req: ServiceRequest) -> ServiceRequest:
    s = session()
    events = timeline(s, "service_request", req.id)
    # The answer's extra fields ride on the request for RequestDetailSchema to read; none of
    # them is a column, hence the attr-defined ignores.
    # A call-taker answers the caller from what the resident may read: the public events.
    shown = [e for e in events if e.public] if current_user().role == "call_taker" else events
    req.timeline = shown  # type: ignore[attr-defined]
    # The status page's own expression and rules, so the desk and the page say the same.
    expected, due = s.execute(
        select(expected_at_expr(), WorkOrder.due_at)
        .select_from(ServiceRequest)
        .outerjoin(WorkOrder, WorkOrder.id == ServiceRequest.work_order_id)
        .where(ServiceRequest.id == req.id)
    ).one()
    req.public_expected_at = expected  # type: ignore[attr-defined]
    req.late_since = late_since(req.detailed_status, expected, due)  # type: ignore[attr-defined]
    req.public_timeline = public_timeline(events)  # type: ignore[attr-defined]
    # Dispatchers route work and call-takers take calls; neither needs the reporter's
    # identity (a call-taker hears the details the caller gives, and is not shown them back).
    req.show_contact = current_user().role in {"supervisor", "admin"}  # type: ignore[attr-defined]
    base = base_url()
    req.photo_list = [  # type: ignore[attr-defined]
        {
            "kind": p.kind,
            "state": p.state,
            "url": base + public_url(p.public_key) if p.state == "ready" and p.public_key else None,
            "thumbnail_url": base + public_url(p.thumbnail_key)
            if p.state == "ready" and p.thumbnail_key
            else None,
        }
        for p in req.photos
        if p.kind == "report"
    ]
    return req


# -- before a duplicate is made: what a report here would join ----------------------------


class NearbyArgs(Schema):
    service_code = fields.String(required=True)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))


class CandidateSchema(Schema):
    service_request_id = fields.String(
        attribute="request.public_id",
        metadata={
            "description": "the work's first report: the number the caller may have been given"
        },
    )
    outcome = fields.String(
        metadata={
            "description": (
                "joins: a report here joins this work (the nearest open one); nearby: open and "
                "within the radius too, but a nearer one is joined; reopens: no open work here, "
                "and this was fixed lately, so a report reopens it"
            )
        }
    )
    distance_m = fields.Float()
    detailed_status = fields.String(attribute="request.detailed_status")
    status_words = fields.Function(
        lambda c: words_for(c.request.detailed_status),
        metadata={"type": "string", "description": "in the status page's words"},
    )
    description = fields.String(attribute="request.description")
    address = fields.Function(
        lambda c: c.request.address or c.work_order.address, metadata={"type": ["string", "null"]}
    )
    location = Computed(
        lambda c: point_out(c.work_order.location), fields.Nested(PointSchema, allow_none=True)
    )
    requested_at = fields.DateTime(attribute="request.requested_at")
    report_count = fields.Integer(
        attribute="work_order.report_count",
        metadata={
            "description": "reports the work has so far (a new one joining raises its priority)"
        },
    )


class NearbySchema(Schema):
    service_code = fields.String()
    radius_m = fields.Integer(
        metadata={"description": "the type's duplicate radius: reports closer than this join"}
    )
    candidates = fields.List(fields.Nested(CandidateSchema))


@blp.route("/nearby")
@require("call_taker", "dispatcher", "supervisor")
@blp.arguments(NearbyArgs, location="query")
@blp.response(200, NearbySchema)
@blp.alt_response(
    422, schema=ErrorSchema, description="Unknown or inactive service_code, or a bad point"
)
@blp.doc(operationId="listNearbyRequests")
def nearby(args: dict[str, Any]) -> Any:
    """The open requests of this type a report at this point would join, nearest first,
    the one it joins marked: the same rule POST /requests and Open311 apply (the type's
    duplicate radius, work still waiting for or in a visit), or the lately fixed one it
    would reopen. For the call-taker to ask "is it this one?" before a duplicate is made."""
    s = session()
    service_type = s.scalar(
        select(ServiceType).where(
            ServiceType.code == args["service_code"], ServiceType.active.is_(True)
        )
    )
    if service_type is None:
        raise ValidationFailed(
            f"unknown service_code {args['service_code']!r}", field="service_code"
        )
    found = duplicate_candidates(
        s,
        service_type,
        args["lon"],
        args["lat"],
        reopen_within=timedelta(days=settings().reopen_window_days),
    )
    return {
        "service_code": service_type.code,
        "radius_m": service_type.duplicate_radius_m,
        "candidates": found,
    }


@blp.route("/<public_id>/pin", methods=["POST"])
@require("dispatcher", "supervisor")
@blp.arguments(PinSchema)
@blp.response(200, RequestDetailSchema)
@blp.error(422, "Already placed, or outside the service area without outside_service_area: true")
@blp.error(404)
@blp.doc(operationId="pinRequest")
def pin(data: dict[str, Any], public_id: str) -> Any:
    s = session()
    req = _load(public_id)
    try:
        pin_request(
            s,
            req,
            data["lon"],
            data["lat"],
            actor=current_actor(),
            area=service_area(),
            allow_outside_area=data[OUTSIDE_FLAG],
        )
    except OutsideServiceArea as exc:
        raise _with_override_hint(exc) from None
    s.commit()
    return _detail(req)


# -- redaction: a description or a public note that names a person ----------------------


class RedactionArgs(Schema):
    field = fields.String(
        required=True,
        validate=validate.OneOf(REDACTABLE_FIELDS),
        metadata={
            "description": "description, status_notes (also where the same text is in the public timeline), "
            "or note (the note of the public timeline event event_id)"
        },
    )
    event_id = fields.Integer(
        metadata={"description": "with field 'note': the timeline event's id"}
    )
    text = fields.String(
        validate=validate.Length(min=1, max=MAX_TEXT),
        metadata={
            "description": f"what the public sees from now on (default {REDACTED!r}), e.g. the text without the name"
        },
    )
    reason = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_REASON),
        metadata={"description": "why; recorded in the audit trail"},
    )


class RedactionSchema(Schema):
    id = fields.Integer()
    # The redaction's own request: a foreign key, and deleting a request deletes its redactions.
    request = Computed(
        lambda r: existing(session(), ServiceRequest, r.service_request_id).public_id,
        fields.String(),
        metadata={
            "description": "the request whose text it is: redacting the status notes redacts the same text on the "
            "other requests of the work order (its duplicates), one redaction each"
        },
    )
    field = fields.String()
    event_id = fields.Integer(attribute="status_event_id", allow_none=True)
    original = fields.String(
        allow_none=True,
        metadata={
            "description": "the text before the redaction; null once the retention purge "
            "removed it with the contact details"
        },
    )
    redacted = fields.String(metadata={"description": "the text the public sees"})
    reason = fields.String()
    redacted_by_id = fields.Integer()
    at = fields.DateTime()


@blp.route("/<public_id>/redactions", methods=["POST"])
@require("supervisor")
@blp.arguments(RedactionArgs)
@blp.response(201, RedactionSchema(many=True))
@blp.error(404, "No such request, or no such event of it")
@blp.error(409, "The text is empty: nothing to redact")
@blp.error(422, "Invalid: unknown field, no reason, the event is not public, ...")
@blp.doc(operationId="redactRequestText")
def redact_text(data: dict[str, Any], public_id: str) -> Any:
    """Redact the request's public text (supervisors and admins). Open311 and the status
    page show the new text at once; the original is kept, readable here only, and the
    redaction is recorded on the request's timeline with who and why."""
    s = session()
    req = _load(public_id)
    done = redact(
        s,
        req,
        field=data["field"],
        event_id=data.get("event_id"),
        replacement=data.get("text"),
        reason=data["reason"],
        actor=current_actor(),
    )
    s.commit()
    return done


@blp.route("/<public_id>/redactions")
@require("supervisor")
@blp.response(200, RedactionSchema(many=True))
@blp.error(404)
@blp.doc(operationId="listRequestRedactions")
def list_redactions(public_id: str) -> Any:
    """The request's redactions with the original text (supervisors and admins only)."""
    return redactions_of(session(), _load(public_id))
