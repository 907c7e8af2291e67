"""The public status page of one request, at /status/<confirmation number>.

Plain HTML for any phone: no login, no script, nothing fetched from another site (cities
run offline networks too, and a resident's page must not tell a third party what they
reported). It shows what Open311 shows, in words: never the reporter, the token, staff
notes or who was on the crew."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, render_template

from api.db import session, settings
from core import public_requests
from core.public_requests import late_since
from core.status import REQUEST_WITH_A_CREW, words_for
from core.timefmt import iso

blp = Blueprint("status_page", __name__)

# Nothing of the page may come from elsewhere; the inline style is the only exception.
CSP = (
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
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
            "status_words": change_in_words(ev.from_status, ev.to_status),
            "note": ev.note,
            "resident_comment": ev.id in comment_event_ids,
        }
        for ev in events
        if ev.public
    ]


def change_in_words(from_status: str | None, to_status: str) -> str | None:
    """A status change as a resident reads it; None for an annotation, which keeps the
    status: it is news, not a change."""
    return words_for(to_status) if from_status != to_status else None


def _when(value: datetime, tz: ZoneInfo) -> dict[str, str]:
    local = value.astimezone(tz)
    return {
        "iso": iso(value, tz),
        "text": f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}",
    }


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
    tz = settings().tz
    found = None
    if len(public_id) <= MAX_PUBLIC_ID:
        found = public_requests.by_public_id(session(), public_id, details=True)
    if found is None:
        return _page("status_404.html", 404, public_id=public_id, contact=settings().contact_email)
    details = found.details
    assert details is not None  # asked for above: a read with details=True always has them
    place = None
    if found.lat is not None and found.lon is not None:
        lat, lon = round(found.lat, 6), round(found.lon, 6)
        place = {
            "lat": f"{lat:.6f}",
            "lon": f"{lon:.6f}",
            "osm_url": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}"
            f"#map=18/{lat:.6f}/{lon:.6f}",
        }
    late = late_since(found.detailed_status, found.expected_at, found.due_at)
    return _page(
        "status.html",
        200,
        request=found,
        closed=found.closed,
        status_words=words_for(found.detailed_status),
        with_a_crew=found.detailed_status in REQUEST_WITH_A_CREW,
        reported=_when(found.requested_at, tz),
        expected=_when(found.expected_at, tz) if found.expected_at is not None else None,
        late=_when(late, tz) if late else None,
        place=place,
        timeline=[
            {
                "when": _when(ev.at, tz),
                "status": change_in_words(ev.from_status, ev.to_status),
                "note": ev.note,
                "comment": ev.resident_comment,
            }
            for ev in details.timeline
        ],
        before=[{"url": p.url, "thumbnail_url": p.thumbnail_url} for p in details.photos],
        after=[{"url": p.url, "thumbnail_url": p.thumbnail_url} for p in details.after_photos],
        original=details.duplicate_of,
    )
