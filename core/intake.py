"""Turning a resident's report into a ServiceRequest and a WorkOrder.

A report near an open one of the same type joins it: the resident keeps a
confirmation number of their own, the original's work order gains a report
and, with it, priority."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from core.closing import find_reopenable, reopen_fixed, reopenable_query
from core.errors import NotFound, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.lifecycle.work_order import WorkOrderLifecycle
from core.locks import AdvisoryLock
from core.media_links import clean_media_links
from core.models import (
    District,
    MediaLink,
    RequestContact,
    ServiceAttribute,
    ServiceRequest,
    ServiceType,
    WorkOrder,
)
from core.service_area import AreaConfig, inside_service_area, outside_area_error
from core.spatial import GeocodeMatch, distance_metres, parse_coordinate, point, within_metres
from core.status import JOINABLE

MAX_DESCRIPTION = 4000
MAX_SHORT_TEXT = 255
MAX_PRIORITY = 5

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Contact:
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    device_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class NewRequest:
    service_code: str
    lat: str | float | None = None
    lon: str | float | None = None
    address_string: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    description: str = ""
    # Raw values as sent: a string, or a list for multivaluelist.
    attributes: dict[str, str | list[str]] = field(default_factory=dict)
    media_url: str | None = None
    # More photo links (FixMyStreet's multi_photos sends several media_url values); all
    # are kept, after media_url, in order, repeats dropped (core.media_links).
    media_urls: tuple[str, ...] = ()
    # How many links a report may carry (Settings.max_report_photos).
    max_media_links: int = 10
    contact: Contact = field(default_factory=Contact)
    channel: str = "open311"
    api_key_id: int | None = None
    requested_at: datetime | None = None


Geocoder = Callable[[Session, str], GeocodeMatch | None]


@dataclass
class IntakeResult:
    request: ServiceRequest
    work_order: WorkOrder
    duplicate_of: ServiceRequest | None


def demand_for(service_type: ServiceType, attributes: dict[str, Any]) -> dict[str, int]:
    """Capacity one job uses, per dimension, from the type's rules and the report."""
    demand: dict[str, int] = {}
    for dimension, rule in (service_type.demands or {}).items():
        if isinstance(rule, str) and rule.startswith("attribute:"):
            value = attributes.get(rule.removeprefix("attribute:"))
            # A report without the number still needs room on the truck for something.
            amount = value if isinstance(value, int | float) and value > 0 else 1
        else:
            amount = rule
        demand[dimension] = max(0, math.ceil(amount))
    return demand


def priority_for(base: int, report_count: int) -> int:
    """Each doubling of the reports about one problem raises its priority by one."""
    return min(MAX_PRIORITY, base + int(math.log2(max(report_count, 1))))


def _clean(value: str | None, *, field: str, limit: int = MAX_SHORT_TEXT) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters", field=field)
    return value


# FixMyStreet sends this address_id when the resident placed no pin and gave no address
# (perllib/Open311.pm): it means "none", and must not be stored and published back as one.
NO_ADDRESS_ID = "#NOTPINPOINTED#"


def _address_id(value: str | None) -> str | None:
    cleaned = _clean(value, field="address_id")
    return None if cleaned == NO_ADDRESS_ID else cleaned


MAX_EXTRA_ATTRIBUTES = 50


def split_extra_attributes(
    service_type: ServiceType, raw: dict[str, str | list[str]]
) -> dict[str, str | list[str]]:
    """Attributes the definition does not know, kept verbatim but bounded."""
    defined = {a.code for a in service_type.attributes if a.variable}
    extra = {k: v for k, v in raw.items() if k not in defined}
    if len(extra) > MAX_EXTRA_ATTRIBUTES:
        raise ValidationFailed(
            f"at most {MAX_EXTRA_ATTRIBUTES} attributes beyond the service definition",
            field="attribute",
        )
    for code, value in extra.items():
        values = value if isinstance(value, list) else [value]
        if len(code) > 64 or any(len(v or "") > MAX_DESCRIPTION for v in values):
            raise ValidationFailed(
                f"attribute {code[:64]!r} is too long", field=f"attribute[{code[:64]}]"
            )
    return extra


def validate_attributes(
    service_type: ServiceType, raw: dict[str, str | list[str]]
) -> dict[str, Any]:
    """Check values against the service definition; returns the typed values to store.

    Codes the definition does not have are left out here (see split_extra_attributes)."""
    defined: dict[str, ServiceAttribute] = {
        a.code: a for a in service_type.attributes if a.variable
    }
    result: dict[str, Any] = {}
    for code, attr in defined.items():
        value = raw.get(code)
        values = value if isinstance(value, list) else ([value] if value is not None else [])
        # `v and`: a None inside a list (a lenient client's null) is skipped like a blank.
        values = [v.strip() for v in values if v and v.strip()]
        name = f"attribute[{code}]"
        if not values:
            if attr.required:
                raise ValidationFailed(
                    f"attribute {code!r} ({attr.description}) is required", field=name
                )
            continue
        if attr.datatype != "multivaluelist" and len(values) > 1:
            raise ValidationFailed(f"attribute {code!r} takes a single value", field=name)
        keys = {str(v["key"]) for v in attr.values}
        match attr.datatype:
            case "string":
                if len(values[0]) > MAX_SHORT_TEXT:
                    raise ValidationFailed(
                        f"attribute {code!r} is longer than {MAX_SHORT_TEXT} characters", field=name
                    )
                result[code] = values[0]
            case "text":
                if len(values[0]) > MAX_DESCRIPTION:
                    raise ValidationFailed(
                        f"attribute {code!r} is longer than {MAX_DESCRIPTION} characters",
                        field=name,
                    )
                result[code] = values[0]
            case "number":
                try:
                    number = float(values[0])
                except ValueError:
                    raise ValidationFailed(
                        f"attribute {code!r} must be a number, got {values[0]!r}", field=name
                    ) from None
                if not math.isfinite(number):
                    raise ValidationFailed(
                        f"attribute {code!r} must be a finite number", field=name
                    )
                result[code] = int(number) if number.is_integer() else number
            case "datetime":
                try:
                    parsed = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
                except ValueError:
                    raise ValidationFailed(
                        f"attribute {code!r} must be an ISO 8601 date-time, got {values[0]!r}",
                        field=name,
                    ) from None
                result[code] = parsed.isoformat()
            case "singlevaluelist":
                if values[0] not in keys:
                    raise ValidationFailed(
                        f"attribute {code!r} must be one of {sorted(keys)}, got {values[0]!r}",
                        field=name,
                    )
                result[code] = values[0]
            case "multivaluelist":
                bad = [v for v in values if v not in keys]
                if bad:
                    raise ValidationFailed(
                        f"attribute {code!r} values must be among {sorted(keys)}, got {bad[0]!r}",
                        field=name,
                    )
                result[code] = list(dict.fromkeys(values))
    return result


def validate_contact(contact: Contact) -> Contact:
    email = _clean(contact.email, field="email", limit=320)
    if email is not None and not _EMAIL.match(email):
        raise ValidationFailed(f"email {email!r} is not an e-mail address", field="email")
    return Contact(
        email=email,
        first_name=_clean(contact.first_name, field="first_name"),
        last_name=_clean(contact.last_name, field="last_name"),
        phone=_clean(contact.phone, field="phone", limit=64),
        device_id=_clean(contact.device_id, field="device_id"),
        account_id=_clean(contact.account_id, field="account_id"),
    )


def district_at(session: Session, lon: float, lat: float) -> int | None:
    return session.scalar(
        select(District.id)
        .where(func.ST_Covers(District.geom, func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)))
        .limit(1)
    )


def _joinable(service_type: ServiceType, lon: float, lat: float) -> Select[WorkOrder]:
    """Open work orders of this type within the type's duplicate radius, nearest first."""
    return (
        select(WorkOrder)
        .where(
            WorkOrder.service_type_id == service_type.id,
            WorkOrder.status.in_(JOINABLE),
            within_metres(WorkOrder.location, lon, lat, service_type.duplicate_radius_m),
        )
        .order_by(distance_metres(WorkOrder.location, lon, lat), WorkOrder.id)
    )


def find_joinable(
    session: Session, service_type: ServiceType, lon: float, lat: float
) -> WorkOrder | None:
    """The nearest open work order of this type within the type's duplicate radius."""
    if service_type.duplicate_radius_m <= 0:
        return None
    return session.scalar(_joinable(service_type, lon, lat).limit(1).with_for_update())


MAX_CANDIDATES = 20


@dataclass(frozen=True)
class Candidate:
    """An open (or lately fixed) report a new one at this place would join or reopen."""

    request: ServiceRequest
    work_order: WorkOrder
    distance_m: float
    outcome: str  # "joins", "reopens", or "nearby" (joinable, but a nearer one is joined)


def duplicate_candidates(
    session: Session,
    service_type: ServiceType,
    lon: float,
    lat: float,
    *,
    reopen_within: timedelta | None = None,
    now: datetime | None = None,
) -> list[Candidate]:
    """What `submit_request` would do with a report of this type here, before it is made:
    the work orders it could join (the same query `find_joinable` locks, nearest first,
    the first being the one joined), or, when there are none, the fixed request it would
    reopen. Each work order is shown by its first report, whose number the caller may have."""
    if service_type.duplicate_radius_m <= 0:
        return []
    found: list[Candidate] = []
    for wo in session.scalars(_joinable(service_type, lon, lat).limit(MAX_CANDIDATES)):
        first = session.scalar(
            select(ServiceRequest)
            .where(ServiceRequest.work_order_id == wo.id)
            .order_by(ServiceRequest.duplicate_of_id.is_not(None), ServiceRequest.id)
            .limit(1)
        )
        if first is None:  # a work order made by hand, with no report to show
            continue
        distance = session.scalar(
            select(distance_metres(WorkOrder.location, lon, lat)).where(WorkOrder.id == wo.id)
        )
        found.append(
            Candidate(first, wo, round(float(distance or 0), 1), "nearby" if found else "joins")
        )
    if not found and reopen_within is not None:
        fixed = session.scalar(
            reopenable_query(
                service_type, lon, lat, within=reopen_within, now=now or datetime.now(UTC)
            ).limit(1)
        )
        if fixed is not None and fixed.work_order is not None:
            distance = session.scalar(
                select(distance_metres(ServiceRequest.location, lon, lat)).where(
                    ServiceRequest.id == fixed.id
                )
            )
            found.append(
                Candidate(fixed, fixed.work_order, round(float(distance or 0), 1), "reopens")
            )
    return found


# -- submitting a report: validate, locate, join or reopen, create ----------------------------


@dataclass(frozen=True)
class _Checked:
    """A report's own fields, checked against its service type and cleaned: what is stored."""

    service_type: ServiceType
    description: str
    address: str | None
    address_id: str | None
    zipcode: str | None
    attributes: dict[str, Any]
    extra_attributes: dict[str, str | list[str]]
    contact: Contact
    media_links: list[str]


@dataclass(frozen=True)
class _Place:
    """Where a report is, once located: `lon`/`lat` None when it has no usable location yet
    (staff pin it). `source` is how the location was found: device, geocoded or none."""

    lon: float | None
    lat: float | None
    source: str
    # Staff recorded a location outside the service area on purpose (audited).
    outside_on_purpose: bool = False
    # The address geocoded to this (lon, lat) outside the service area, so it was dropped.
    geocoded_outside: tuple[float, float] | None = None

    @property
    def lon_lat(self) -> tuple[float, float] | None:
        return (self.lon, self.lat) if self.lon is not None and self.lat is not None else None


@dataclass(frozen=True)
class _Match:
    """What a new report meets at its place: an open work order to join, or else a request
    fixed lately whose work it reopens; neither means it starts a work order of its own."""

    joins: WorkOrder | None = None
    reopens: ServiceRequest | None = None


def _validated(session: Session, new: NewRequest) -> _Checked:
    """The report's fields checked and cleaned, before its location and before anything
    is written; raises ValidationFailed naming the first field that is wrong."""
    code = (new.service_code or "").strip()
    if not code:
        raise ValidationFailed("service_code is required", field="service_code")
    service_type = session.scalar(
        select(ServiceType).where(ServiceType.code == code, ServiceType.active.is_(True))
    )
    if service_type is None:
        raise ValidationFailed(f"unknown service_code {code!r}", field="service_code")
    description = (new.description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise ValidationFailed(
            f"description is {len(description)} characters; the limit is {MAX_DESCRIPTION}",
            field="description",
        )
    return _Checked(
        service_type=service_type,
        description=description,
        address=_clean(new.address_string, field="address_string", limit=1000),
        attributes=validate_attributes(service_type, new.attributes),
        extra_attributes=split_extra_attributes(service_type, new.attributes),
        contact=validate_contact(new.contact),
        media_links=clean_media_links([new.media_url, *new.media_urls], limit=new.max_media_links),
        # Checked once the report is located (`_with_identifiers`): a report wrong in its
        # location and in one of these is told about its location, as it always was.
        address_id=None,
        zipcode=None,
    )


def _with_identifiers(checked: _Checked, new: NewRequest) -> _Checked:
    """The report's address_id and zipcode, checked and cleaned, after its location."""
    return replace(
        checked,
        address_id=_address_id(new.address_id),
        zipcode=_clean(new.zipcode, field="zipcode", limit=32),
    )


def _located(
    session: Session,
    new: NewRequest,
    checked: _Checked,
    *,
    geocode: Geocoder | None,
    area: AreaConfig | None,
    allow_outside_area: bool,
) -> _Place:
    """Where the report is: the device's coordinates, else its address geocoded, else
    nowhere yet (an address the index does not know, or FixMyStreet's address_id alone).
    Raises ValidationFailed without any of them, and OutsideServiceArea for a device
    location outside `area` unless `allow_outside_area`."""
    has_lat = new.lat is not None and str(new.lat).strip() != ""
    has_lon = new.lon is not None and str(new.lon).strip() != ""
    if has_lat != has_lon:
        raise ValidationFailed(
            "lat and long must be given together", field="lat" if not has_lat else "long"
        )
    if has_lat:
        # lat first: a report with both wrong is told about lat, as it always was.
        lat = parse_coordinate(new.lat, field="lat", low=-90, high=90)
        lon = parse_coordinate(new.lon, field="long", low=-180, high=180)
        place = _Place(lon, lat, "device")
    elif checked.address:
        match = geocode(session, checked.address) if geocode else None
        place = (
            _Place(match.lon, match.lat, "geocoded")
            if match is not None
            else _Place(None, None, "none")
        )
    elif _address_id(new.address_id):
        place = _Place(None, None, "none")
    else:
        raise ValidationFailed(
            "a location is required: lat and long, or address_string", field="lat"
        )
    return _checked_against_area(session, place, area=area, allow_outside_area=allow_outside_area)


def _checked_against_area(
    session: Session, place: _Place, *, area: AreaConfig | None, allow_outside_area: bool
) -> _Place:
    """The place as the service area allows it (no `area`: as it is)."""
    at = place.lon_lat
    if area is None or at is None or inside_service_area(session, *at, area=area):
        return place
    if allow_outside_area:
        return replace(place, outside_on_purpose=True)
    if place.source == "geocoded":
        # The resident gave an address, not coordinates: a match beyond the city is a
        # namesake elsewhere or a gap in the index, so the report waits for a pin.
        return _Place(None, None, "none", geocoded_outside=at)
    raise outside_area_error(*at)


def _serialise_intake(session: Session, service_type: ServiceType) -> None:
    """Serialise reports of one type (until the transaction ends) so two people reporting
    the same pothole at the same moment cannot both open a work order for it."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(:c, :k)"),
        {"c": AdvisoryLock.INTAKE, "k": int(service_type.id % 2**31)},
    )


def _match_at(
    session: Session,
    service_type: ServiceType,
    place: _Place,
    *,
    reopen_within: timedelta | None,
    at: datetime,
) -> _Match:
    """The open work order a report here joins (locked), or else the fixed request it reopens."""
    if place.lon_lat is None:
        return _Match()
    lon, lat = place.lon_lat
    joins = find_joinable(session, service_type, lon, lat)
    if joins is not None or reopen_within is None:
        return _Match(joins=joins)
    return _Match(
        reopens=find_reopenable(session, service_type, lon, lat, within=reopen_within, now=at)
    )


def _new_request(
    session: Session, new: NewRequest, checked: _Checked, place: _Place, *, at: datetime
) -> ServiceRequest:
    """The request row, flushed so that it has its number (its id); not yet on a work order."""
    at_lon_lat = place.lon_lat
    links = checked.media_links
    request = ServiceRequest(
        public_id=secrets.token_hex(8),  # replaced by the confirmation number after flush
        token=secrets.token_urlsafe(16),
        service_type=checked.service_type,
        description=checked.description,
        attributes=checked.attributes,
        extra_attributes=checked.extra_attributes,
        location=point(*at_lon_lat) if at_lon_lat is not None else None,
        location_source=place.source,
        address=checked.address,
        address_id=checked.address_id,
        zipcode=checked.zipcode,
        # GeoReport v2's one media_url: the first link (every link is in media_links).
        media_url=links[0] if links else None,
        channel=new.channel,
        api_key_id=new.api_key_id,
        detailed_status="received",
        requested_at=at,
        updated_at=at,
        district_id=district_at(session, *at_lon_lat) if at_lon_lat is not None else None,
    )
    request.media_links = [MediaLink(position=k, url=url) for k, url in enumerate(links)]
    session.add(request)
    contact = checked.contact
    if any(getattr(contact, f) for f in contact.__dataclass_fields__):
        request.contact = RequestContact(
            **{f: getattr(contact, f) for f in contact.__dataclass_fields__}
        )
    session.flush()
    request.public_id = str(request.id)
    return request


def _join_or_reopen(
    session: Session, request: ServiceRequest, match: _Match, *, actor: Actor, at: datetime
) -> tuple[WorkOrder | None, ServiceRequest | None]:
    """Put the new request on the work order it joins or reopens: that work order (None when
    there is none) and its original request, whose number the resident is told."""
    joined = match.joins
    if match.reopens is not None:
        # The fix did not hold (or the problem is back): the same work order comes back
        # to the pool instead of a second one starting from scratch.
        joined = reopen_fixed(
            session, match.reopens, actor=actor, at=at, by_report=request.public_id
        )
    if joined is None:
        return None, None
    original = session.scalar(
        select(ServiceRequest)
        .where(ServiceRequest.work_order_id == joined.id, ServiceRequest.duplicate_of_id.is_(None))
        .order_by(ServiceRequest.id)
        .limit(1)
    )
    request.work_order = joined
    request.duplicate_of = original
    # One more report about the problem: its priority may rise (priority_for).
    before = joined.priority
    joined.report_count += 1
    joined.priority = max(
        joined.priority, priority_for(request.service_type.base_priority, joined.report_count)
    )
    joined.updated_at = at
    WorkOrderLifecycle.annotate(
        session,
        joined,
        actor=actor,
        at=at,
        note=(
            f"report {request.public_id} joined ({joined.report_count} reports); "
            f"priority {before} -> {joined.priority}"
        ),
    )
    return joined, original


def _new_work_order(
    session: Session, request: ServiceRequest, *, actor: Actor, at: datetime
) -> WorkOrder:
    """A work order of its own for a report that joins none, with its creation event."""
    service_type = request.service_type
    work_order = WorkOrder(
        service_type=service_type,
        status="new",
        priority=priority_for(service_type.base_priority, 1),
        report_count=1,
        due_at=at + timedelta(hours=service_type.sla_hours),
        skill=service_type.skill,
        minutes_on_site=service_type.minutes_on_site,
        demand=demand_for(service_type, request.attributes),
        location=request.location,
        address=request.address,
        district_id=request.district_id,
        created_at=at,
        updated_at=at,
    )
    session.add(work_order)
    request.work_order = work_order
    session.flush()
    WorkOrderLifecycle.record_creation(
        session, work_order, actor=actor, at=at, note=f"created for request {request.public_id}"
    )
    return work_order


def _record_received(
    session: Session,
    request: ServiceRequest,
    place: _Place,
    *,
    reopened: ServiceRequest | None,
    original: ServiceRequest | None,
    actor: Actor,
    at: datetime,
) -> None:
    """The request's creation event, with the public note the resident reads, the notice
    of the report it was added to, and the audit of a location outside the service area."""
    note = "Report received."
    if reopened is not None:
        note = (
            f"Report received; it reopens request {reopened.public_id}, which was closed as fixed."
        )
        request.service_notice = (
            f"This problem was reported as request {reopened.public_id} and closed as fixed. "
            "Your report has reopened it and you will be kept informed."
        )
    elif original is not None:
        note = (
            "Report received; the same problem was already reported as request "
            f"{original.public_id}."
        )
        request.service_notice = (
            f"This problem was already reported as request {original.public_id}. "
            "Your report has been added to it and you will be kept informed."
        )
    elif request.location is None:
        note = "Report received; staff will place it on the map from the address given."
    ServiceRequestLifecycle.record_creation(
        session, request, actor=actor, at=at, note=note, public=True
    )
    if place.outside_on_purpose:
        ServiceRequestLifecycle.annotate(
            session,
            request,
            actor=actor,
            at=at,
            location=request.location,
            note=f"recorded outside the service area on purpose by {actor.label}",
        )
    elif place.geocoded_outside is not None:
        lon, lat = place.geocoded_outside
        ServiceRequestLifecycle.annotate(
            session,
            request,
            actor=actor,
            at=at,
            note=(
                f"the address matched {lat:.6f}, {lon:.6f}, outside the service area; "
                "left for staff to pin"
            ),
        )


def submit_request(
    session: Session,
    new: NewRequest,
    *,
    actor: Actor,
    geocode: Geocoder | None = None,
    reopen_within: timedelta | None = None,
    area: AreaConfig | None = None,
    allow_outside_area: bool = False,
) -> IntakeResult:
    """Validate and store a report; the caller commits. Raises ValidationFailed/NotFound.

    A report near an open work order of its type joins it. With `reopen_within`, a
    report near a request of its type fixed that recently reopens that work instead.

    With `area`, a device location outside the city's service area is refused
    (OutsideServiceArea, before anything is written), and an address that geocodes
    outside it is kept without a location, for staff to pin. `allow_outside_area` is
    staff recording such a report on purpose; that override is audited. Without
    `area` nothing is checked (the demo seed, tests).

    Every field is checked, and the report located, before anything is written or
    locked; the rest happens in the caller's transaction, each change with its event."""
    checked = _validated(session, new)
    place = _located(
        session, new, checked, geocode=geocode, area=area, allow_outside_area=allow_outside_area
    )
    checked = _with_identifiers(checked, new)
    at = new.requested_at or datetime.now(UTC)
    _serialise_intake(session, checked.service_type)
    match = _match_at(session, checked.service_type, place, reopen_within=reopen_within, at=at)
    request = _new_request(session, new, checked, place, at=at)
    joined, original = _join_or_reopen(session, request, match, actor=actor, at=at)
    work_order = joined or _new_work_order(session, request, actor=actor, at=at)
    _record_received(
        session, request, place, reopened=match.reopens, original=original, actor=actor, at=at
    )
    return IntakeResult(request=request, work_order=work_order, duplicate_of=original)


def pin_request(
    session: Session,
    request: ServiceRequest,
    lon: float,
    lat: float,
    *,
    actor: Actor,
    area: AreaConfig | None = None,
    allow_outside_area: bool = False,
) -> None:
    """Staff place a report that came without a usable location; its work order becomes routable.

    With `area`, a place outside the service area is refused unless `allow_outside_area`,
    and that override is audited."""
    if request.location is not None and request.location_source != "none":
        raise ValidationFailed(f"request {request.public_id} already has a location", field="lat")
    outside = area is not None and not inside_service_area(session, lon, lat, area=area)
    if outside and not allow_outside_area:
        raise outside_area_error(lon, lat)
    request.location = point(lon, lat)
    request.location_source = "pinned"
    request.district_id = district_at(session, lon, lat)
    request.updated_at = datetime.now(UTC)
    wo = request.work_order
    if wo is None:
        raise NotFound(f"request {request.public_id} has no work order")
    if wo.location is None:
        wo.location = request.location
        wo.district_id = request.district_id
        wo.updated_at = request.updated_at
    WorkOrderLifecycle.annotate(
        session, wo, actor=actor, note=f"request {request.public_id} pinned at {lat:.6f},{lon:.6f}"
    )
    ServiceRequestLifecycle.annotate(
        session,
        request,
        actor=actor,
        note="Placed on the map by staff.",
        public=True,
        location=request.location,
    )
    if outside:
        ServiceRequestLifecycle.annotate(
            session,
            request,
            actor=actor,
            location=request.location,
            note=f"placed outside the service area on purpose by {actor.label}",
        )
