"""What the crew phone API answers, typed: the schemas the OpenAPI document names and a
generated client parses into objects.

The answers are built as plain dicts in `dispatch.feed`, `core.completion` and the views,
with their times already formatted in the city's zone (`timespec="seconds"`); these schemas
dump them unchanged, so the JSON is the same with or without them. That is why instants
are strings documented as `format: date-time` here rather than `fields.DateTime`, which
would format a datetime itself (and refuse a string)."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, fields, pre_load, validate

from api import inputs
from core.field import EVENT_TYPES, MAX_PINGS_PER_BATCH
from core.lifecycle.work_order import UNABLE_REASONS
from core.models import CREW_CHANGE_KINDS
from core.status import COMPLETION_OUTCOMES, VERDICTS, WORK_ORDER_STATUSES


def _instant(description: str | None = None, **kwargs: Any) -> fields.String:  # noqa: ANN401
    """An ISO 8601 date-time with its UTC offset, as the answer already spells it."""
    metadata = {"format": "date-time"} | ({"description": description} if description else {})
    return fields.String(metadata=metadata, **kwargs)


def _status(**kwargs: Any) -> fields.String:  # noqa: ANN401
    """A work order's status."""
    return fields.String(validate=validate.OneOf(WORK_ORDER_STATUSES), **kwargs)


# -- the route ----------------------------------------------------------------------------


class CrewRefSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)


class PlaceSchema(Schema):
    """A depot the crew starts or ends its day at."""

    code = fields.String(required=True)
    name = fields.String(required=True)
    lat = fields.Float(required=True)
    lon = fields.Float(required=True)


class ShiftTimesSchema(Schema):
    start = _instant(required=True)
    end = _instant(required=True)


class RouteBreakSchema(Schema):
    """A break in the day. In a published plan it has its planned `start` and `end`;
    without one, the shift's break rule: `window_start`..`window_end` and its `minutes`."""

    start = _instant()
    end = _instant()
    window_start = _instant()
    window_end = _instant()
    minutes = fields.Integer()


class TimeWindowSchema(Schema):
    start = _instant(required=True)
    end = _instant(required=True)


class StopNoteSchema(Schema):
    at = _instant(required=True)
    note = fields.String(required=True)


class StopPhotoSchema(Schema):
    """A resident's photo (its public copy: faces and plates blurred, metadata removed)."""

    url = fields.String(required=True)
    thumbnail_url = fields.String(required=True)


class StopCommentSchema(Schema):
    """A resident's public comment on a report (e.g. from FixMyStreet)."""

    at = _instant(required=True)
    text = fields.String(required=True)


class StopPhotoLinkSchema(Schema):
    """A photo that arrived as a link (Open311 `media_url`), not stored by StreetLoop."""

    url = fields.String(required=True)


class RouteStopSchema(Schema):
    sequence = fields.Integer(
        required=True, metadata={"description": "1, 2, ... in the order to do them"}
    )
    work_order_id = fields.Integer(required=True)
    status = _status(required=True)
    eta = _instant(
        required=True,
        allow_none=True,
        description="planned start of work; null for work dispatched after the plan",
    )
    arrival = _instant(
        required=True,
        allow_none=True,
        description="planned arrival (before any wait for a time window)",
    )
    locked = fields.Boolean(
        required=True,
        metadata={"description": "a dispatcher locked it to this crew: a re-plan keeps it here"},
    )
    time_windows = fields.List(
        fields.Nested(TimeWindowSchema),
        required=True,
        metadata={"description": "when the work may start; empty: any time"},
    )
    lat = fields.Float(required=True, allow_none=True)
    lon = fields.Float(required=True, allow_none=True)
    address = fields.String(required=True, allow_none=True)
    service_code = fields.String(required=True)
    service_name = fields.String(required=True)
    priority = fields.Integer(required=True, metadata={"description": "1 (low) to 5 (urgent)"})
    due_at = _instant(required=True)
    minutes_on_site = fields.Integer(required=True)
    demand = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(metadata={"type": "number"}),
        required=True,
        metadata={"description": 'capacity it takes per dimension, e.g. {"bulk_items": 3}'},
    )
    reports = fields.Integer(
        required=True, metadata={"description": "how many residents' reports it answers"}
    )
    description = fields.String(
        required=True, metadata={"description": "the first report's description"}
    )
    descriptions = fields.List(
        fields.String(), required=True, metadata={"description": "every report's, where given"}
    )
    attributes = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(
            metadata={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        ),
        required=True,
        metadata={"description": "the first report's answers to the service type's questions"},
    )
    notes = fields.List(
        fields.Nested(StopNoteSchema), required=True, metadata={"description": "oldest first"}
    )
    photos = fields.List(fields.Nested(StopPhotoSchema), required=True)
    comments = fields.List(
        fields.Nested(StopCommentSchema),
        required=True,
        metadata={
            "description": "residents' public comments on the stop's requests, oldest first, never who wrote them"
        },
    )
    photo_links = fields.List(
        fields.Nested(StopPhotoLinkSchema),
        required=True,
        metadata={
            "description": "photos the reports sent as links and not (yet) copied into our "
            "storage: they need the network"
        },
    )


class LineStringSchema(Schema):
    """GeoJSON LineString: the road line of the planned route."""

    type = fields.String(required=True, validate=validate.OneOf(["LineString"]))
    # Raw, not a list of lists of Float: a road line has thousands of points, and dumping
    # each through a field would cost the route feed more than building it.
    coordinates = fields.Raw(
        required=True,
        metadata={
            "type": "array",
            "description": "[lon, lat] pairs",
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
    )


class CrewRouteSchema(Schema):
    date = fields.String(required=True, metadata={"format": "date"})
    crew = fields.Nested(CrewRefSchema, required=True)
    plan_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "null: no published plan; the work assigned directly"},
    )
    plan_version = fields.Integer(required=True, allow_none=True)
    shift = fields.Nested(ShiftTimesSchema, required=True, allow_none=True)
    depot_start = fields.Nested(PlaceSchema, required=True, allow_none=True)
    depot_end = fields.Nested(PlaceSchema, required=True, allow_none=True)
    breaks = fields.List(fields.Nested(RouteBreakSchema), required=True)
    stops = fields.List(fields.Nested(RouteStopSchema), required=True)
    geometry = fields.Nested(LineStringSchema, required=True, allow_none=True)
    changes_cursor = fields.Integer(
        required=True, metadata={"description": "follow /crew/changes from here"}
    )
    unable_reasons = fields.List(
        fields.String(validate=validate.OneOf(sorted(UNABLE_REASONS))),
        required=True,
        metadata={"description": "the reasons an 'unable' event takes"},
    )
    outcomes = fields.List(
        fields.String(validate=validate.OneOf(COMPLETION_OUTCOMES)),
        required=True,
        metadata={"description": "the outcomes a completion takes"},
    )


# -- changes, events, positions --------------------------------------------------------------


class CrewChangeSchema(Schema):
    cursor = fields.Integer(required=True)
    work_order_id = fields.Integer(required=True, allow_none=True)
    plan_id = fields.Integer(required=True, allow_none=True)
    change = fields.String(required=True, validate=validate.OneOf(CREW_CHANGE_KINDS))
    status = _status(required=True, allow_none=True)
    event = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the status the change moved it to"},
    )
    at = _instant(required=True)


class CrewChangesSchema(Schema):
    changes = fields.List(
        fields.Nested(CrewChangeSchema), required=True, metadata={"description": "oldest first"}
    )
    cursor = fields.Integer(required=True, metadata={"description": "ask again from here"})
    more = fields.Boolean(
        required=True, metadata={"description": "more changes wait after this page"}
    )
    reset = fields.Boolean(
        required=True,
        metadata={
            "description": "the cursor was beyond the feed (a phone restored from another "
            "database): read the route again"
        },
    )


class FieldEventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    device_time = inputs.AwareDateTime(required=True)
    lat = fields.Float(load_default=None, validate=validate.Range(-90, 90))
    lon = fields.Float(load_default=None, validate=validate.Range(-180, 180))
    accuracy_m = fields.Float(load_default=None, validate=validate.Range(0, 100_000))
    # Nullable in the spec, its enum the real reasons only; required when type is 'unable'.
    reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(sorted(UNABLE_REASONS)),
        metadata={"description": "why not: required with type 'unable'"},
    )


class EventAppliedSchema(Schema):
    work_order_id = fields.Integer(required=True)
    status = _status(required=True)
    applied = fields.Boolean(
        required=True,
        metadata={"description": "false: already applied (a resend), nothing changed"},
    )


class PingSchema(Schema):
    time = _instant(required=True)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))
    accuracy = fields.Float(allow_none=True, metadata={"description": "metres"})
    speed = fields.Float(allow_none=True, metadata={"description": "metres per second"})
    heading = fields.Float(allow_none=True, metadata={"description": "degrees from north"})


class PositionsBatchSchema(Schema):
    """The body of POST /crew/positions. Documentation only: the view parses it by hand
    (`_pings`), since a schema per ping costs ten times the parse of a 1,000-ping batch."""

    pings = fields.List(
        fields.Nested(PingSchema), required=True, validate=validate.Length(1, MAX_PINGS_PER_BATCH)
    )


class PositionsStoredSchema(Schema):
    stored = fields.Integer(required=True)
    duplicates = fields.Integer(
        required=True, metadata={"description": "already stored (a resent batch)"}
    )
    rejected = fields.Integer(
        required=True, metadata={"description": "implausible fixes, not stored"}
    )


class CrewPositionSchema(Schema):
    crew = fields.String(required=True, metadata={"description": "the crew's code"})
    at = _instant(required=True)
    lat = fields.Float(required=True)
    lon = fields.Float(required=True)
    accuracy_m = fields.Float(required=True, allow_none=True)
    speed_mps = fields.Float(required=True, allow_none=True)
    heading_deg = fields.Float(required=True, allow_none=True)


# -- completion ----------------------------------------------------------------------------


class CompletionFormSchema(Schema):
    """The completion's text parts. Ranges are checked again by `core.completion`, which
    also requires a GPS fix's four parts together."""

    class Meta:
        # As before the schema: a part this API does not read (an older or newer app's) is
        # ignored, not refused. It still counts in the Idempotency-Key's fingerprint.
        unknown = EXCLUDE

    # Optional, never null: a part is sent or it is not (the view reads what is missing as None).
    outcome = fields.String(required=True, validate=validate.OneOf(COMPLETION_OUTCOMES))
    lat = fields.Float(allow_nan=False, validate=validate.Range(-90, 90))
    lon = fields.Float(allow_nan=False, validate=validate.Range(-180, 180))
    accuracy_m = fields.Float(
        allow_nan=False,
        validate=validate.Range(min=0),
        metadata={"description": "of the GPS fix, metres"},
    )
    fix_time = inputs.AwareDateTime(metadata={"description": "when the phone got its GPS fix"})
    captured_at = inputs.AwareDateTime(metadata={"description": "when the photo was taken"})
    notes = fields.String()

    @pre_load
    def _blank_is_absent(self, data: Any, **kwargs: Any) -> dict[str, str]:  # noqa: ANN401
        """A phone's form sends every field, the ones left empty as "": those are not sent."""
        return {
            key: value.strip()
            for key in data
            if isinstance(value := data.get(key), str) and value.strip()
        }


class CompletionFilesSchema(Schema):
    photos = fields.List(
        Upload(), load_default=list, metadata={"description": "after the work (the proof)"}
    )
    before_photos = fields.List(Upload(), load_default=list)


class CompletionSubmissionSchema(CompletionFormSchema, CompletionFilesSchema):
    """The completion's multipart/form-data body, text parts and files together, for the
    OpenAPI document only. The view reads it with two `blp.arguments` (location "form" and
    "files", one schema each, as webargs reads one location per schema), and flask-smorest
    0.47 documents only one of the two as the request body: this one says what is sent."""


class CheckResultSchema(Schema):
    name = fields.String(
        required=True, metadata={"description": "e.g. distance, fix_age, exif_time, reuse, track"}
    )
    passed = fields.Boolean(
        required=True, allow_none=True, metadata={"description": "null: could not be checked"}
    )


class CompletionSchema(Schema):
    id = fields.Integer(required=True)
    work_order_id = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(COMPLETION_OUTCOMES))
    verdict = fields.String(required=True, validate=validate.OneOf(VERDICTS))
    reasons = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "why it needs a supervisor's review"},
    )
    checks = fields.List(fields.Nested(CheckResultSchema), required=True)
    photos = fields.Integer(required=True, metadata={"description": "how many photos were stored"})
    submitted_at = _instant(required=True)
