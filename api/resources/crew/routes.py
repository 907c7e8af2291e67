"""The crew phone API: route feed with ETag, changes since a cursor, progress events, GPS pings."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

import flask
from flask import Response, request
from geoalchemy2.shape import to_shape
from marshmallow import Schema, fields
from sqlalchemy import select

from api import inputs
from api.auth import current_actor, current_user, require
from api.db import base_url, defer_after_commit, media_storage, session, settings
from api.errors import ErrorSchema, abort
from api.resources.common import Blueprint
from api.resources.crew.schemas import (
    CompletionFilesSchema,
    CompletionFormSchema,
    CompletionSchema,
    CompletionSubmissionSchema,
    CrewChangesSchema,
    CrewPositionSchema,
    CrewRouteSchema,
    EventAppliedSchema,
    FieldEventSchema,
    PositionsBatchSchema,
    PositionsStoredSchema,
)
from core.completion import (
    Completer,
    CompletionInput,
    CompletionSettings,
    KeyReused,
    SubmissionKey,
    complete_work_order,
    earlier_answer,
    public_view,
    remember_answer,
)
from core.field import MAX_PINGS_PER_BATCH, FieldEvent, apply_event, ingest_positions
from core.lifecycle.work_order import UNABLE_REASONS
from core.models import Crew, CrewPosition, WorkOrder
from core.timefmt import iso
from dispatch.feed import changes_since, route_feed
from geo.photos import PhotoRejected
from geo.proof import Ping

# The route is read again and again by a phone; an intermediary must not keep it (it is
# one crew's), and the phone must revalidate it each time (its ETag makes that cheap).
ROUTE_CACHE_CONTROL = "private, no-cache"


class CrewBlueprint(Blueprint):
    """Our Blueprint (api.resources.common), with a 304 that keeps the ETag and Cache-Control.

    `blp.etag` computes the route's tag from the dumped answer and answers a matching
    If-None-Match with 304, but by raising `NotModified`, whose answer carries neither
    header: RFC 9110 (15.4.5) asks a 304 to send the ETag and Cache-Control the 200 would
    have, and a phone that keeps the tag it was last given would otherwise lose it. This
    answers the same 304 with both headers (and no body) instead: `flask.abort` with a
    ready answer sends it as it is, past the error handlers that would dress it as an error."""

    def _check_not_modified(self, etag: str) -> None:
        if request.method in self.METHODS_CHECKING_NOT_MODIFIED and etag in request.if_none_match:
            response = Response(status=304)
            response.set_etag(etag)
            response.headers["Cache-Control"] = ROUTE_CACHE_CONTROL
            flask.abort(response)


blp = CrewBlueprint(
    "crew", __name__, url_prefix="", description="What crews' phones read and send."
)

NOT_YOURS = {"schema": ErrorSchema, "description": "Not this crew's work order"}
BAD_INPUT = {"schema": ErrorSchema, "description": "Bad input; `errors` names the fields"}


def _crew(code: str | None = None) -> Crew:
    """The signed-in crew; staff may name one with ?crew=."""
    user = current_user()
    s = session()
    if user.role == "crew":
        mine = user.crew
        if mine is None:
            raise LookupError(f"crew member {user.id} has no crew, which crew_has_crew forbids")
        if code and code != mine.code:
            abort(404, message="not found")  # another crew's route: don't reveal it exists
        return mine
    if not code:
        abort(
            422,
            message="staff name the crew: ?crew=<code>",
            errors={"crew": ["required for staff"]},
        )
    crew = s.scalar(select(Crew).where(Crew.code == code))
    if crew is None:
        abort(404, message=f"crew {code!r} not found")
    return crew


class RouteArgs(Schema):
    date = inputs.Date(
        load_default=None, metadata={"description": "default: today in the city's time zone"}
    )
    crew = fields.String(load_default=None, metadata={"description": "staff only"})


class ChangesArgs(Schema):
    since = inputs.Id(
        low=0,
        load_default=0,
        metadata={
            "description": "cursor from the last sync (or the route's changes_cursor); 0 reads the crew's whole feed"
        },
    )
    crew = fields.String(load_default=None, metadata={"description": "staff only"})


@blp.route("/crew/route")
@blp.etag
@require("crew", "dispatcher", "supervisor")
@blp.arguments(RouteArgs, location="query")
@blp.response(200, CrewRouteSchema)
@blp.alt_response(
    404, schema=ErrorSchema, description="Another crew's route (to a crew), or no such crew"
)
@blp.alt_response(422, **BAD_INPUT)
@blp.doc(operationId="getCrewRoute")
def crew_route(args: dict[str, Any]) -> Any:
    """The crew's route for a day.

    In order: each stop's place, work, time windows and ETA, residents' descriptions,
    comments, notes and photos (stored, and linked); the shift, breaks and route line; the
    choices the phone offers (`unable_reasons`, `outcomes`); and `changes_cursor`, where to
    follow `/crew/changes` from. Send the ETag back as If-None-Match: an unchanged route
    answers 304 with no body."""
    crew = _crew(args.get("crew"))
    day = args.get("date") or datetime.now(settings().tz).date()
    # blp.etag tags the answer as dumped (any change to its content changes the tag) and
    # answers 304 to a matching If-None-Match (see CrewBlueprint).
    return route_feed(session(), crew, day, settings().tz, base_url()), {
        "Cache-Control": ROUTE_CACHE_CONTROL
    }


@blp.route("/crew/changes")
@require("crew", "dispatcher", "supervisor")
@blp.arguments(ChangesArgs, location="query")
@blp.response(200, CrewChangesSchema)
@blp.alt_response(
    404, schema=ErrorSchema, description="Another crew's changes (to a crew), or no such crew"
)
@blp.alt_response(422, **BAD_INPUT)
@blp.doc(operationId="getCrewChanges")
def crew_changes(args: dict[str, Any]) -> Any:
    """What changed for the crew after the cursor, oldest first (at most 500, then `more`)."""
    return changes_since(session(), _crew(args.get("crew")), args["since"], settings().tz)


@blp.route("/work-orders/<int:wo_id>/events", methods=["POST"])
@require("crew")
@blp.arguments(FieldEventSchema)
@blp.response(200, EventAppliedSchema)
@blp.alt_response(404, **NOT_YOURS)
@blp.alt_response(
    409,
    schema=ErrorSchema,
    description="The lifecycle no longer allows it; `errors.detail.current` is its status now",
)
@blp.alt_response(422, **BAD_INPUT)
@blp.doc(operationId="postWorkOrderEvent")
def work_order_event(data: dict[str, Any], wo_id: int) -> Any:
    """The crew is on its way, on site, or unable to do it, as the phone saw it (`device_time`)."""
    s = session()
    crew = _crew()
    wo = s.scalar(select(WorkOrder).where(WorkOrder.id == wo_id).with_for_update())
    if wo is None or wo.crew_id != crew.id:
        abort(404, message=f"work order {wo_id} not found")
    if data["type"] == "unable" and not data.get("reason"):
        abort(
            422,
            message="'unable' needs a reason",
            errors={"reason": [f"one of {', '.join(sorted(UNABLE_REASONS))}"]},
        )
    if (data["lat"] is None) != (data["lon"] is None):
        abort(422, message="lat and lon go together", errors={"lat": ["lat and lon go together"]})
    applied = apply_event(s, wo, FieldEvent(**data), actor=current_actor())
    s.commit()
    return {"work_order_id": wo.id, "status": wo.status, "applied": applied}


def _pings(payload: Any) -> list[Ping]:
    """Hand-parsed: a phone sends thousands of pings, and a schema per ping costs more than the insert."""
    items = payload.get("pings") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        abort(
            422,
            message='send {"pings": [{time, lat, lon, accuracy?, speed?, heading?}, ...]}',
            errors={"pings": ["a non-empty list"]},
        )
    if len(items) > MAX_PINGS_PER_BATCH:
        abort(
            422,
            message=f"at most {MAX_PINGS_PER_BATCH} pings per request",
            errors={"pings": ["too many"]},
        )
    out: list[Ping] = []
    for k, it in enumerate(items):
        try:
            at = datetime.fromisoformat(it["time"])
            lat, lon = float(it["lat"]), float(it["lon"])
            acc = None if it.get("accuracy") is None else float(it["accuracy"])
            speed = None if it.get("speed") is None else float(it["speed"])
            heading = None if it.get("heading") is None else float(it["heading"])
        except (KeyError, TypeError, ValueError):
            abort(
                422,
                message=f"ping {k} is malformed: time (ISO 8601 with offset), lat and lon are required",
                errors={f"pings.{k}": ["malformed"]},
            )
        # What `Ping` itself refuses, refused here as the phone's mistake (a 422 naming the
        # ping), not as an error of ours.
        if (
            at.tzinfo is None
            or not (-90 <= lat <= 90 and -180 <= lon <= 180)
            or not all(v is None or math.isfinite(v) for v in (lat, lon, acc, speed, heading))
            or (acc is not None and acc < 0)
        ):
            abort(
                422,
                message=f"ping {k}: time needs an offset, coordinates must be valid degrees "
                "and accuracy not negative",
                errors={f"pings.{k}": ["invalid"]},
            )
        out.append(
            Ping(at=at, lat=lat, lon=lon, accuracy_m=acc, speed_mps=speed, heading_deg=heading)
        )
    return out


@blp.route("/crew/positions", methods=["POST"])
@require("crew")
@blp.response(201, PositionsStoredSchema)
@blp.alt_response(422, **BAD_INPUT)
@blp.error(413)  # beyond the server's body limit, as for every body
# The body is documented by its schema but parsed by `_pings`: see PositionsBatchSchema.
@blp.doc(
    operationId="postCrewPositions",
    requestBody={
        "required": True,
        "content": {"application/json": {"schema": PositionsBatchSchema}},
    },
)
def post_positions() -> Any:
    """The phone's GPS fixes, a batch at a time (see `maxItems`); a resent batch stores nothing twice."""
    pings = _pings(request.get_json(silent=True))
    s = session()
    # A crew user always has its crew (the constraint crew_has_crew): no need to load it.
    crew_id = current_user().crew_id
    if crew_id is None:
        raise LookupError("a crew member without a crew, which crew_has_crew forbids")
    stored, duplicates, rejected = ingest_positions(s, crew_id, pings)
    s.commit()
    return {"stored": stored, "duplicates": duplicates, "rejected": rejected}


@blp.route("/crews/positions")
@require("dispatcher", "supervisor")
@blp.response(200, CrewPositionSchema(many=True))
@blp.doc(operationId="listCrewPositions")
def latest_positions() -> Any:
    """Every crew's latest known position."""
    rows = (
        session()
        .execute(
            select(CrewPosition, Crew.code)
            .join(Crew, Crew.id == CrewPosition.crew_id)
            .order_by(Crew.code)
        )
        .all()
    )
    tz = settings().tz
    out = []
    for pos, code in rows:
        point = to_shape(pos.location)  # a crew's position always has its point
        lon, lat = point.x, point.y
        out.append(
            {
                "crew": code,
                "at": iso(pos.at, tz),
                "lat": lat,
                "lon": lon,
                "accuracy_m": pos.accuracy_m,
                "speed_mps": pos.speed_mps,
                "heading_deg": pos.heading_deg,
            }
        )
    return out


# -- completion with proof ------------------------------------------------------------


def _request_fingerprint(files: dict[str, list[bytes]]) -> str:
    """What makes two submissions 'the same': the order they are for, every form field and every file's bytes."""
    h = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    for key in sorted(request.form.keys()):
        for value in request.form.getlist(key):
            h.update(f"{key}={value}\n".encode())
    for name in sorted(files):
        for blob in files[name]:
            h.update(f"{name}:{hashlib.sha256(blob).hexdigest()}\n".encode())
    return h.hexdigest()


@blp.route("/work-orders/<int:wo_id>/completion", methods=["POST"])
@require("crew")
@blp.arguments(CompletionFormSchema, location="form", content_type="multipart/form-data")
@blp.arguments(CompletionFilesSchema, location="files")
@blp.response(201, CompletionSchema)
@blp.alt_response(404, **NOT_YOURS)
@blp.alt_response(409, schema=ErrorSchema, description="The order cannot be completed now")
@blp.alt_response(
    413,
    schema=ErrorSchema,
    description="A photo is too large or has too many pixels for its format, the photos have too many "
    "together, or the whole body is beyond the server's limit",
)
@blp.alt_response(
    422,
    schema=ErrorSchema,
    description="Bad input, or the Idempotency-Key was used for a different submission",
)
@blp.doc(
    operationId="completeWorkOrder",
    requestBody={
        "required": True,
        "content": {"multipart/form-data": {"schema": CompletionSubmissionSchema}},
    },
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": True,
            "schema": {"type": "string", "maxLength": 255},
            "description": "one per submission: a retry with the same key and content gets the first answer again",
        }
    ],
)
def complete(form: dict[str, Any], uploads: dict[str, Any], wo_id: int) -> Any:
    """The work is done (or why not), with its proof: photos, the GPS fix and times."""
    s = session()
    user, crew = current_user(), _crew()
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if not key or len(key) > 255:
        abort(
            422,
            message="send an Idempotency-Key header (1-255 characters) so a retry cannot store the proof twice",
            errors={"Idempotency-Key": ["required"]},
        )
    files = {name: [f.read() for f in uploads[name]] for name in ("photos", "before_photos")}
    submission = SubmissionKey(user.id, key, _request_fingerprint(files))
    try:
        seen = earlier_answer(s, submission)
    except KeyReused as exc:
        abort(422, message=exc.message, errors={"Idempotency-Key": ["reused"]})
    if seen is not None:
        return seen.response, seen.status_code, {"Idempotent-Replayed": "true"}
    wo = s.scalar(select(WorkOrder).where(WorkOrder.id == wo_id).with_for_update())
    if wo is None or wo.crew_id != crew.id:
        abort(404, message=f"work order {wo_id} not found")
    data = CompletionInput(
        outcome=form["outcome"],
        photos=[b for b in files["photos"] if b],
        before_photos=[b for b in files["before_photos"] if b],
        lat=form.get("lat"),
        lon=form.get("lon"),
        accuracy_m=form.get("accuracy_m"),
        fix_time=form.get("fix_time"),
        captured_at=form.get("captured_at"),
        notes=form.get("notes"),
    )
    by = Completer(crew_id=crew.id, user_id=user.id, actor=current_actor())
    try:
        result = complete_work_order(
            s, wo, data, by, CompletionSettings.from_settings(settings(), media_storage())
        )
    except PhotoRejected as exc:
        abort(
            413 if exc.too_large else 422,
            message=f"photo rejected: {exc}",
            errors={"photos": [str(exc)]},
        )
    body = public_view(result)
    remember_answer(s, submission, body, status_code=201)
    for photo in result.photos:
        defer_after_commit(s, "process_photo", photo_id=photo.id)
    s.commit()
    return body, 201
