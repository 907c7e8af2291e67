"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) at /open311/v2.

Every endpoint answers in `.json` and `.xml`; errors are the spec's list of
`{code, description}`; empty parameters count as absent; reporter contact
details never leave the building. This module speaks the protocol: what a request
shows comes from its public read model (`core.public_requests`), which the status
page and the notifications read too."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from flask import Blueprint, Response, g, request
from sqlalchemy.orm import Session

from api.db import (
    base_url,
    defer_after_commit,
    media_storage,
    report_session,
    service_area,
    session,
    settings,
)
from api.inputs import year_problem
from api.open311.formats import render
from core import public_requests, service_catalog
from core.auth import api_key_for
from core.comments import NewComment, add_comment
from core.errors import Conflict, NotFound, ValidationFailed
from core.intake import Contact, NewRequest, submit_request
from core.lifecycle import Actor
from core.media_links import CopyPolicy, copy_job_lock
from core.models import (
    ApiKey,
    ServiceAttribute,
    ServiceRequest,
    ServiceType,
)
from core.photos import store_photo
from core.public_requests import PublicRequest, RequestFilter
from core.status import REQUEST_CLOSED_STATUSES, WORDING
from core.timefmt import iso
from core.urls import absolute_url
from geo.geocode import geocode
from geo.photos import InspectedPhoto, PhotoLimits, PhotoRejected, inspect_photos

blp = Blueprint("open311", __name__, url_prefix="/open311/v2")
FORMAT = "<any(json, xml):fmt>"
SPEC_URL = "http://wiki.open311.org/GeoReport_v2"


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@blp.errorhandler(Open311Error)
def _open311_error(exc: Open311Error) -> Response:
    from api.open311.formats import open311_error

    return open311_error(exc.status, exc.description)


@blp.url_value_preprocessor
def _pull_format(endpoint: str | None, values: dict[str, Any] | None) -> None:
    g.open311_format = (values or {}).pop("fmt", "json")


# The spec lets a client ask for up to 1,000 service_request_id values in one GET. As a
# client library encodes them (seven-digit ids, commas as %2C) that is about 10 KB, past
# gunicorn's largest request-line limit (8,190 bytes), so the server runs with
# `--limit-request-line 0` (scripts/demo.sh) and this bound is ours: room for 1,000 ids
# of up to 29 characters, and a clear GeoReport 400 beyond. A reverse proxy in front needs
# buffers as large (nginx: `large_client_header_buffers 4 64k;`).
MAX_QUERY_BYTES = 32 * 1024
# Methods that only read: no api_key is taken by them, so one in their URL is just ignored.
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@blp.before_request
def _bound_the_query() -> None:
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise Open311Error(
            400,
            f"the query string may have at most {MAX_QUERY_BYTES} bytes, got "
            f"{len(request.query_string)}; ask for fewer service_request_id values per call",
        )


# The one parameter a write may carry in its URL: it names the city, nothing personal, and
# clients put it there (FixMyStreet-style clients POST everything else as a form body).
_URL_PARAMS_OF_WRITES = frozenset({"jurisdiction_id"})
# A parameter name that is one of ours in shape (`email`, `attribute[size]`) is named in the
# error; any other name could itself be data (`?jane@example.org`), so it is only counted.
_PLAIN_NAME = re.compile(r"[a-z_]{1,40}(\[[A-Za-z0-9_.-]{1,64}\])?")
_MAX_NAMED = 10


# What a write's body may be: GeoReport v2 clients send forms (urlencoded, or multipart
# with a photo). A body of any other kind would be read as no fields at all.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


@blp.before_request
def _writes_are_forms() -> None:
    """A JSON (or any non-form) body is refused for what it is, before its missing fields
    ("api_key is required") would send the client looking in the wrong place."""
    if request.method in _READS or not request.content_length and not request.mimetype:
        return
    if request.mimetype not in _FORM_TYPES:
        raise Open311Error(
            400,
            f"send the fields as a form (application/x-www-form-urlencoded, or multipart/form-data "
            f"with photos), as GeoReport v2 asks; got a body of type {request.mimetype or 'unknown'}",
        )


@blp.before_request
def _no_fields_in_the_url_of_writes() -> None:
    """A write's fields (the reporter's email, name and phone among them) are read from the
    body only, and any in its URL is refused before anything is stored: a URL is written to
    access logs. The error names the parameters, never their values."""
    if request.method in _READS:
        return
    extra = sorted(set(request.args.keys()) - _URL_PARAMS_OF_WRITES)
    if not extra:
        return
    if "api_key" in extra:
        # A key in a URL is as good as published (ours, a proxy's, the client's logs):
        # the client must also be told to treat it as exposed.
        raise Open311Error(
            400,
            "send api_key in the form body, not in the URL: URLs are written to access logs, "
            "so treat a key sent that way as exposed",
        )
    named = [n for n in extra if _PLAIN_NAME.fullmatch(n)][:_MAX_NAMED]
    others = len(extra) - len(named)
    listed = ", ".join(named) + (
        f" and {others} other parameter(s)"
        if named and others
        else f"{others} parameter(s)"
        if others
        else ""
    )
    raise Open311Error(
        400,
        f"send the fields of a POST in its form body, not in the URL (only jurisdiction_id may "
        f"be there): URLs are written to access logs; found in the URL: {listed}",
    )


@blp.before_request
def _check_jurisdiction() -> None:
    wanted = settings().jurisdiction_id
    if not wanted:
        return
    given = [arg("jurisdiction_id")]
    if request.method not in _READS:  # in the query (allowed there) as well as in the form body
        given.append((request.args.get("jurisdiction_id") or "").strip() or None)
    for value in given:
        if value and value != wanted:
            raise Open311Error(
                404, f"jurisdiction_id {value!r} not found; this endpoint serves {wanted!r}"
            )


# -- helpers -------------------------------------------------------------------


def arg(name: str) -> str | None:
    """A parameter, with empty values treated as absent: from the query string of a read, from
    the form body of a write (never a write's URL, see _no_fields_in_the_url_of_writes)."""
    value = (request.args if request.method in _READS else request.form).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _parse_datetime(name: str) -> datetime | None:
    raw = arg(name)
    if raw is None:
        return None
    # A '+' in an unencoded query string arrives as a space: "...T00:00:00 01:00".
    text = raw.replace("Z", "+00:00")
    if "T" in text and text.count(" ") == 1:
        text = text.replace(" ", "+")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Open311Error(
            400, f"{name} must be an ISO 8601 date-time such as 2026-01-31T00:00:00Z, got {raw!r}"
        ) from None
    problem = year_problem(value)
    if problem:
        raise Open311Error(400, f"{name}: {problem}, got {raw!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings().tz)
    return value


# -- discovery and services ----------------------------------------------------------


@blp.route(f"/discovery.{FORMAT}")
@blp.route("/discovery")
def discovery() -> Response:
    changed = iso(service_catalog.changed_at(session()), settings().tz)
    endpoint_url = f"{base_url()}/open311/v2"
    body = {
        "changeset": changed,
        "contact": settings().contact_email,
        "key_service": f"Ask {settings().contact_email} for an api_key",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": endpoint_url,
                "changeset": changed,
                "type": "production",
                "formats": ["application/json", "text/xml"],
            }
        ],
    }
    return render(body, root="discovery")


def _service_body(st: ServiceType) -> dict[str, Any]:
    return {
        "service_code": st.code,
        "service_name": st.name,
        "description": st.description,
        "metadata": any(True for _ in st.attributes),
        "type": "realtime",
        "keywords": ", ".join(st.keywords),
        "group": st.group,
    }


@blp.route(f"/services.{FORMAT}")
@blp.route("/services")
def services() -> Response:
    found = service_catalog.active(session())
    return render([_service_body(st) for st in found], root="services", item="service")


@blp.route(f"/services/<code>.{FORMAT}")
def service_definition(code: str) -> Response:
    st = service_catalog.active_one(session(), code)
    if st is None:
        raise Open311Error(404, f"service_code {code!r} not found")
    attrs = [_attribute_body(a) for a in st.attributes]
    return render({"service_code": st.code, "attributes": attrs}, root="service_definition")


def _attribute_body(a: ServiceAttribute) -> dict[str, Any]:
    body: dict[str, Any] = {
        "variable": a.variable,
        "code": a.code,
        "datatype": a.datatype,
        "required": a.required,
        "datatype_description": a.datatype_description or None,
        "order": a.order,
        "description": a.description,
    }
    if a.datatype in {"singlevaluelist", "multivaluelist"}:
        body["values"] = [{"key": v["key"], "name": v["name"]} for v in a.values]
    return body


# -- requests ------------------------------------------------------------------------------


def _collect_attributes() -> dict[str, str | list[str]]:
    attrs: dict[str, str | list[str]] = {}
    for key in request.form:
        if not key.startswith("attribute[") or "]" not in key:
            continue
        code = key[len("attribute[") : key.index("]")]
        if not code:
            raise Open311Error(400, f"malformed attribute parameter {key!r}")
        if key.endswith("[]"):
            existing = attrs.get(code)
            values = (
                list(existing) if isinstance(existing, list) else ([existing] if existing else [])
            )
            attrs[code] = values + request.form.getlist(key)
        else:
            values = request.form.getlist(key)
            attrs[code] = values if len(values) > 1 else values[0]
    return attrs


# A report's photo files: `media` (GeoReport v2; repeated for several), and FixMyStreet's
# upload mode, which names them photo1, photo2, ...
_PHOTO_PART = re.compile(r"photo([1-9][0-9]{0,2})")


def _photo_parts() -> list[Any]:
    """The photo file parts in the order they are kept: every `media`, then photo<N> by N."""
    numbered = sorted(
        (int(m.group(1)), name) for name in request.files if (m := _PHOTO_PART.fullmatch(name))
    )
    return request.files.getlist("media") + [
        f for _, name in numbered for f in request.files.getlist(name)
    ]


def _report_photos() -> list[tuple[InspectedPhoto, bytes]]:
    """Every photo file of the report, inspected, an identical file kept once. Refused as a
    whole (413: nothing is stored) when there are more than the report may have, when one
    is too large, or when all of them together have more pixels than one report may make
    us decode (their bytes together are bounded by the body's limit, MAX_CONTENT_LENGTH,
    whose 413 is answered in Open311's format too); 400 when one is not an image of an
    accepted type."""
    cfg = settings()
    # The body is in already (Flask's MAX_CONTENT_LENGTH bounds it); an empty file input
    # sends an empty part, which is no photo.
    blobs = [data for data in (part.read() for part in _photo_parts()) if data]
    if len(blobs) > cfg.max_report_photos:
        raise Open311Error(
            413,
            f"media: {len(blobs)} photos sent; a report may have at most {cfg.max_report_photos}",
        )
    unique, seen = [], set()
    for data in blobs:  # the same file sent twice is one photo
        digest = hashlib.sha256(data).digest()
        if digest not in seen:
            seen.add(digest)
            unique.append(data)
    try:
        found = inspect_photos(unique, PhotoLimits.from_settings(cfg))
    except PhotoRejected as exc:
        raise Open311Error(413 if exc.too_large else 400, f"media: {exc}") from None
    return list(zip(found, unique, strict=True))


def _store_report_photos(
    s: Session, req: ServiceRequest, photos: list[tuple[InspectedPhoto, bytes]]
) -> None:
    """Each photo's original, kept private, and its row; processed after the commit."""
    if not photos:
        return
    storage = media_storage()
    for info, data in photos:
        photo = store_photo(s, storage, info, data, kind="report", request_id=req.id)
        defer_after_commit(s, "process_photo", photo_id=photo.id)


def _queue_link_copies(s: Session, req: ServiceRequest, policy: CopyPolicy) -> None:
    """Links from hosts an admin allowed are copied by the worker after the commit; the
    others stay links (and are never fetched)."""
    for link in req.media_links:
        if policy.allows(link.url):
            link.copy_state = "pending"
    s.flush()
    for link in req.media_links:
        if link.copy_state == "pending":
            defer_after_commit(
                s, "copy_media_link", queueing_lock=copy_job_lock(link.id), link_id=link.id
            )


@blp.route(f"/requests.{FORMAT}", methods=["POST"])
@blp.route("/requests", methods=["POST"])
def post_request() -> Response:
    s = session()
    client = _api_client("submit a service request")
    if request.is_json:
        raise Open311Error(
            400,
            "send the request form-encoded (application/x-www-form-urlencoded) or as multipart/form-data",
        )

    photos = _report_photos()
    cfg = settings()

    new = NewRequest(
        service_code=arg("service_code") or "",
        lat=arg("lat"),
        lon=arg("long"),
        address_string=arg("address_string"),
        address_id=arg("address_id"),
        zipcode=arg("zipcode"),
        description=request.form.get("description", "") or "",
        attributes=_collect_attributes(),
        # Each value (FixMyStreet's multi_photos repeats the field), empty ones dropped.
        media_urls=tuple(request.form.getlist("media_url")),
        max_media_links=cfg.max_report_photos,
        contact=Contact(
            email=arg("email"),
            first_name=arg("first_name"),
            last_name=arg("last_name"),
            phone=arg("phone"),
            device_id=arg("device_id"),
            account_id=arg("account_id"),
        ),
        channel="open311",
        api_key_id=client.id,
    )
    try:
        result = submit_request(
            s,
            new,
            actor=Actor.client(client.name),
            geocode=geocode,
            reopen_within=timedelta(days=settings().reopen_window_days),
            area=service_area(),
        )
    except ValidationFailed as exc:
        raise Open311Error(400, exc.message) from None

    _store_report_photos(s, result.request, photos)
    _queue_link_copies(s, result.request, CopyPolicy.from_settings(cfg))
    s.commit()

    body = [
        {
            "service_request_id": result.request.public_id,
            "token": result.request.token,
            "service_notice": result.request.service_notice,
            "account_id": result.request.contact.account_id if result.request.contact else None,
        }
    ]
    return render(body, root="service_requests", status=201)


def _serialize(requests: list[PublicRequest]) -> list[dict[str, Any]]:
    """GeoReport v2's service requests; with their details (`extensions=true`), also the
    detailed status, the original of a duplicate, the public timeline as notes and every
    photo."""
    tz = settings().tz
    base = base_url()
    out: list[dict[str, Any]] = []
    for r in requests:
        body: dict[str, Any] = {
            "service_request_id": r.public_id,
            "status": "closed" if r.closed else "open",
            "status_notes": r.status_notes,
            "service_name": r.service_name,
            "service_code": r.service_code,
            "description": r.description,
            "agency_responsible": r.agency,
            "service_notice": r.service_notice,
            "requested_datetime": iso(r.requested_at, tz),
            "updated_datetime": iso(r.updated_at, tz),
            "expected_datetime": iso(r.expected_at, tz),
            "address": r.address,
            "address_id": r.address_id,
            "zipcode": r.zipcode,
            "lat": r.lat,
            "long": r.lon,
            "media_url": absolute_url(r.media_url, base),
        }
        if r.details is not None:
            d = r.details
            body["detailed_status"] = r.detailed_status
            body["duplicate_of"] = d.duplicate_of
            body["notes"] = [
                {"datetime": iso(ev.at, tz), "status": ev.to_status, "description": ev.note}
                for ev in d.timeline
            ]
            # The resident's own picture of the problem, then the proof the work was done.
            body["photos"] = [
                {
                    "kind": p.kind,
                    "url": absolute_url(p.url, base),
                    "thumbnail_url": absolute_url(p.thumbnail_url, base),
                }
                for p in d.photos + d.after_photos
            ]
            # Every photo of the report (GeoReport's media_url is one): the links it was
            # sent with, in order, then the files uploaded with it (a link's copy is not
            # listed again: it is in `photos`).
            body["media_urls"] = list(d.links) + [
                absolute_url(p.url, base) for p in d.photos if not p.copy_of_link
            ]
        out.append(body)
    return out


def _extensions() -> bool:
    return (arg("extensions") or "").lower() in {"true", "1", "yes"}


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Open311Error(400, f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise Open311Error(400, f"{name} must be between {low} and {high}, got {value}")
    return value


@blp.route(f"/requests.{FORMAT}", methods=["GET"])
@blp.route("/requests", methods=["GET"])
def get_requests() -> Response:
    cfg = settings()
    details = _extensions()
    ids_raw = arg("service_request_id")
    if ids_raw:
        # The spec: a list of ids overrides every other filter.
        ids = [i.strip() for i in ids_raw.split(",") if i.strip()]
        if len(ids) > cfg.open311_max_results:
            raise Open311Error(
                400, f"at most {cfg.open311_max_results} service_request_id values per call"
            )
        # Ids a client holds are its own reports, read back: from the primary.
        found = public_requests.by_public_ids(session(), ids, details=details)
        return render(_serialize(found), root="service_requests")

    codes = tuple(c.strip() for c in (arg("service_code") or "").split(",") if c.strip())
    start, end = _parse_datetime("start_date"), _parse_datetime("end_date")
    if start and end and end < start:
        raise Open311Error(400, "end_date is before start_date")
    if start is None:
        start = (end or datetime.now(UTC)) - timedelta(days=cfg.open311_default_days)
    status: Literal["open", "closed"] | None = None
    status_raw = arg("status")
    if status_raw:
        wanted = {v.strip().lower() for v in status_raw.split(",") if v.strip()}
        bad = wanted - {"open", "closed"}
        if bad:
            raise Open311Error(400, f"status must be open or closed, got {sorted(bad)[0]!r}")
        if wanted == {"open"}:
            status = "open"
        elif wanted == {"closed"}:
            status = "closed"
    # page_size before page: a request wrong in both is told about page_size, as it was.
    page_size = _int_arg("page_size", cfg.open311_max_results, 1, cfg.open311_max_results)
    page = _int_arg("page", 1, 1, 1_000_000)
    wanted_page = RequestFilter(
        start=start, end=end, service_codes=codes, status=status, page=page, page_size=page_size
    )
    # A list is not a client reading back its own report (that is by id, above and
    # below): it may come from the read replica, up to STREETLOOP_REPLICA_MAX_LAG_S (30 s) behind.
    found = public_requests.page(report_session(), wanted_page, details=details)
    return render(_serialize(found), root="service_requests")


@blp.route(f"/requests/<request_id>.{FORMAT}", methods=["GET"])
def get_request(request_id: str) -> Response:
    found = public_requests.by_public_id(session(), request_id, details=_extensions())
    if found is None:
        raise Open311Error(404, f"service_request_id {request_id!r} not found")
    return render(_serialize([found]), root="service_requests")


@blp.route(f"/tokens/<token>.{FORMAT}", methods=["GET"])
def get_token(token: str) -> Response:
    public_id = public_requests.public_id_for_token(session(), token)
    if public_id is None:
        raise Open311Error(404, f"token {token!r} not found")
    return render([{"service_request_id": public_id, "token": token}], root="service_requests")


# -- service request updates (mySociety's extension, as FixMyStreet reads it) -----------------

# Our detailed statuses in FixMyStreet's extended vocabulary (`core.status.WORDING`).
FMS_STATUS = {status: w.fixmystreet for status, w in WORDING.items()}
# FixMyStreet polls the last two hours by default; a client that sends no dates gets a day.
UPDATES_DEFAULT_WINDOW = timedelta(hours=24)
# Longer back-fills are asked for in pieces, so one call cannot read the whole history.
UPDATES_MAX_WINDOW = timedelta(days=31)


def _updates_window() -> tuple[datetime, datetime]:
    start, end = _parse_datetime("start_date"), _parse_datetime("end_date")
    if end is None:
        end = datetime.now(UTC) if start is None else max(start, datetime.now(UTC))
    if start is None:
        start = end - UPDATES_DEFAULT_WINDOW
    if end < start:
        raise Open311Error(400, "end_date is before start_date")
    if end - start > UPDATES_MAX_WINDOW:
        raise Open311Error(
            400,
            f"start_date to end_date (or now) spans more than {UPDATES_MAX_WINDOW.days} days; "
            "ask for longer periods in several calls",
        )
    return start, end


@blp.route(f"/servicerequestupdates.{FORMAT}", methods=["GET"])
@blp.route("/servicerequestupdates", methods=["GET"])
def get_service_request_updates() -> Response:
    """The public timeline of every request, as updates between start_date and end_date
    (both inclusive, like FixMyStreet's own check), oldest first."""
    start, end = _updates_window()
    tz = settings().tz
    base = base_url()
    body = [
        {
            "update_id": str(u.id),
            "service_request_id": u.public_id,
            "status": FMS_STATUS.get(u.to_status)
            or ("CLOSED" if u.to_status in REQUEST_CLOSED_STATUSES else "OPEN"),
            "updated_datetime": iso(u.at, tz),
            "description": u.note or "",
            "media_url": absolute_url(u.media_url, base) or "",
            "external_status_code": u.to_status,
        }
        for u in public_requests.updates(session(), start, end)
    ]
    return render(body, root="service_request_updates", item="request_update")


def _api_client(doing: str) -> ApiKey:
    """The client app of a write, from the api_key in its form body (403 without one)."""
    key = arg("api_key")
    if key is None:
        raise Open311Error(403, f"api_key is required to {doing}")
    client = api_key_for(session(), key)
    if client is None:
        raise Open311Error(403, "api_key is not valid")
    return client


@blp.route(f"/servicerequestupdates.{FORMAT}", methods=["POST"])
@blp.route("/servicerequestupdates", methods=["POST"])
def post_service_request_update() -> Response:
    """A resident's comment on a request, as FixMyStreet sends it (perllib/Open311.pm,
    `post_service_request_update`): a form with the request's id, the comment's text and
    FixMyStreet's own id of it. Answered with our update_id, the one Open311's updates list
    the comment with, so FixMyStreet recognises it there as its own and does not show it
    twice. Fields this does not use (title, email_alerts_requested, *_ext) are ignored."""
    s = session()
    client = _api_client("post a service request update")
    new = NewComment(
        service_request_id=arg("service_request_id") or "",
        client_update_id=arg("update_id"),
        text=request.form.get("description"),
        status=arg("status"),
        client_time=_parse_datetime("updated_datetime"),
        media_url=arg("media_url"),
        commenter=Contact(
            email=arg("email"),
            first_name=arg("first_name"),
            last_name=arg("last_name"),
            phone=arg("phone"),
        ),
    )
    if not new.service_request_id:
        raise Open311Error(400, "service_request_id is required")
    try:
        result = add_comment(
            s,
            new,
            api_key_id=client.id,
            actor=Actor.client(client.name),
            reopen_within=timedelta(days=settings().reopen_window_days),
        )
    except ValidationFailed as exc:
        raise Open311Error(400, exc.message) from None
    except NotFound as exc:
        raise Open311Error(404, exc.message) from None
    except Conflict as exc:
        raise Open311Error(409, exc.message) from None
    s.commit()
    return render(
        [{"update_id": result.update_id}],
        root="service_request_updates",
        item="request_update",
        status=201 if result.created else 200,
    )
