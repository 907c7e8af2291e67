"""The public status page of one request, at /status/<confirmation number>.

Plain HTML for any phone: no login, no script, nothing fetched from another site (cities
run offline networks too, and a resident's page must not tell a third party what they
reported). It shows what Open311 shows, in words: never the reporter, the token, staff
notes or who was on the crew."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, render_template
from sqlalchemy import func, select

from api.db import session, settings
from api.open311.routes import closing_photos, expected_at_expr
from core.models import Photo, RequestComment, ServiceRequest, ServiceType, StatusEvent, WorkOrder
from core.status import REQUEST_CLOSED_STATUSES, words_for

blp = Blueprint("status_page", __name__)

# Nothing of the page may come from elsewhere; the inline style is the only exception.
CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# Confirmation numbers are stored in 32 characters; anything longer is not one.
MAX_PUBLIC_ID = 32


def public_timeline(
    events: Iterable[Any], comment_event_ids: Collection[int] = ()
) -> list[dict[str, Any]]:
    """The events a resident reads (public ones, in order), each status change in words;
    the events in `comment_event_ids` are residents' comments (`core.comments`), said to
    be so, never by whom. The intake desk reads a caller the same list (GET /api/v1/requests/<id>)."""
    return [
        {
            "at": ev.at,
            # An annotation keeps the status: it is news, not a change.
            "status_words": words_for(ev.to_status) if ev.from_status != ev.to_status else None,
            "note": ev.note,
            "resident_comment": ev.id in comment_event_ids,
        }
        for ev in events
        if ev.public
    ]


def late_since(
    detailed_status: str, expected_at: datetime | None, due_at: datetime | None
) -> datetime | None:
    """Open, past its due time and no visit planned: the page says so (since `due_at`)
    rather than promise a time already past."""
    if (
        detailed_status not in REQUEST_CLOSED_STATUSES
        and expected_at is None
        and due_at is not None
        and due_at < datetime.now(UTC)
    ):
        return due_at
    return None


def _when(value: datetime, tz: ZoneInfo) -> dict[str, str]:
    local = value.astimezone(tz)
    return {
        "iso": local.isoformat(timespec="seconds"),
        "text": f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}",
    }


def _media(key: str | None) -> str | None:
    return f"/media/{key}" if key else None


def _page(template: str, status: int, **context: Any) -> Response:
    response = make_response(render_template(template, **context), status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # The status changes; a phone going back to the page must ask again.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/status/<public_id>")
def status(public_id: str) -> Response:
    s = session()
    tz = settings().tz
    row = None
    if len(public_id) <= MAX_PUBLIC_ID:
        row = s.execute(
            select(
                ServiceRequest.id,
                ServiceRequest.public_id,
                ServiceRequest.detailed_status,
                ServiceRequest.status_notes,
                ServiceRequest.service_notice,
                ServiceRequest.description,
                ServiceRequest.requested_at,
                ServiceRequest.address,
                ServiceRequest.duplicate_of_id,
                ServiceRequest.completion_id,
                expected_at_expr().label("expected_at"),
                WorkOrder.due_at,
                func.ST_Y(ServiceRequest.location).label("lat"),
                func.ST_X(ServiceRequest.location).label("lon"),
                ServiceType.name.label("service_name"),
                ServiceType.agency,
            )
            .join(ServiceType, ServiceType.id == ServiceRequest.service_type_id)
            .outerjoin(WorkOrder, WorkOrder.id == ServiceRequest.work_order_id)
            .where(ServiceRequest.public_id == public_id)
        ).first()
    if row is None:
        return _page("status_404.html", 404, public_id=public_id, contact=settings().contact_email)

    comments = set(
        s.scalars(
            select(RequestComment.status_event_id).where(
                RequestComment.service_request_id == row.id
            )
        )
    )
    timeline = [
        {
            "when": _when(ev["at"], tz),
            "status": ev["status_words"],
            "note": ev["note"],
            "comment": ev["resident_comment"],
        }
        for ev in public_timeline(
            s.execute(
                select(
                    StatusEvent.id,
                    StatusEvent.at,
                    StatusEvent.from_status,
                    StatusEvent.to_status,
                    StatusEvent.note,
                    StatusEvent.public,
                )
                .where(
                    StatusEvent.entity == "service_request",
                    StatusEvent.entity_id == row.id,
                    StatusEvent.public,
                )
                .order_by(StatusEvent.at, StatusEvent.id)
            ),
            comments,
        )
    ]
    before = [
        {
            "url": _media(p.public_key),
            "thumbnail_url": _media(p.thumbnail_key) or _media(p.public_key),
        }
        for p in s.execute(
            select(Photo.public_key, Photo.thumbnail_key)
            .where(
                Photo.service_request_id == row.id,
                Photo.kind == "report",
                Photo.state == "ready",
                Photo.public_key.is_not(None),
            )
            .order_by(Photo.id)
        )
    ]
    after = []
    if row.completion_id is not None:
        after = [
            {
                "url": _media(p.public_key),
                "thumbnail_url": _media(p.thumbnail_key) or _media(p.public_key),
            }
            for p in closing_photos(s, {row.completion_id})[row.completion_id]
        ]
    original = None
    if row.duplicate_of_id is not None:
        original = s.scalar(
            select(ServiceRequest.public_id).where(ServiceRequest.id == row.duplicate_of_id)
        )

    place = None
    if row.lat is not None and row.lon is not None:
        lat, lon = round(row.lat, 6), round(row.lon, 6)
        place = {
            "lat": f"{lat:.6f}",
            "lon": f"{lon:.6f}",
            "osm_url": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=18/{lat:.6f}/{lon:.6f}",
        }
    return _page(
        "status.html",
        200,
        request=row,
        closed=row.detailed_status in REQUEST_CLOSED_STATUSES,
        status_words=words_for(row.detailed_status),
        reported=_when(row.requested_at, tz),
        expected=_when(row.expected_at, tz) if row.expected_at is not None else None,
        late=_when(late, tz)
        if (late := late_since(row.detailed_status, row.expected_at, row.due_at))
        else None,
        place=place,
        timeline=timeline,
        before=before,
        after=after,
        original=original,
    )
