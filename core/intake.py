"""Turning a resident's report into a ServiceRequest and a WorkOrder.

A report near an open one of the same type joins it: the resident keeps a
confirmation number of their own, the original's work order gains a report
and, with it, priority."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
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
from core.spatial import distance_metres, parse_coordinate, point, within_metres
from core.status import JOINABLE

MAX_DESCRIPTION = 4000
MAX_SHORT_TEXT = 255
MAX_PRIORITY = 5
# Work orders still waiting for, or in, a crew visit: a new report joins these.
JOINABLE_WORK_ORDER_STATUSES = JOINABLE

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


@dataclass(frozen=True)
class GeocodeMatch:
    lon: float
    lat: float
    label: str
    precision: str  # "address" or "street"


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
        values = [v.strip() for v in values if v is not None and v.strip()]
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


def _joinable(service_type: ServiceType, lon: float, lat: float) -> Select[tuple[WorkOrder]]:
    """Open work orders of this type within the type's duplicate radius, nearest first."""
    return (
        select(WorkOrder)
        .where(
            WorkOrder.service_type_id == service_type.id,
            WorkOrder.status.in_(JOINABLE_WORK_ORDER_STATUSES),
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
    `area` nothing is checked (the demo seed, tests)."""
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
    address_string = _clean(new.address_string, field="address_string", limit=1000)
    attributes = validate_attributes(service_type, new.attributes)
    extra_attributes = split_extra_attributes(service_type, new.attributes)
    contact = validate_contact(new.contact)
    links = clean_media_links([new.media_url, *new.media_urls], limit=new.max_media_links)

    has_lat = new.lat is not None and str(new.lat).strip() != ""
    has_lon = new.lon is not None and str(new.lon).strip() != ""
    if has_lat != has_lon:
        raise ValidationFailed(
            "lat and long must be given together", field="lat" if not has_lat else "long"
        )
    lon = lat = None
    source = "none"
    address_label = address_string
    if has_lat:
        lat = parse_coordinate(new.lat, field="lat", low=-90, high=90)
        lon = parse_coordinate(new.lon, field="long", low=-180, high=180)
        source = "device"
    elif address_string:
        match = geocode(session, address_string) if geocode else None
        if match is not None:
            lon, lat, source = match.lon, match.lat, "geocoded"
    elif not _address_id(new.address_id):
        raise ValidationFailed(
            "a location is required: lat and long, or address_string", field="lat"
        )

    outside_on_purpose = False
    geocoded_outside: tuple[float, float] | None = None
    if (
        area is not None
        and lon is not None
        and lat is not None
        and not inside_service_area(session, lon, lat, area=area)
    ):
        if allow_outside_area:
            outside_on_purpose = True
        elif source == "geocoded":
            # The resident gave an address, not coordinates: a match beyond the city is a
            # namesake elsewhere or a gap in the index, so the report waits for a pin.
            geocoded_outside = (lon, lat)
            lon = lat = None
            source = "none"
        else:
            raise outside_area_error(lon, lat)

    requested_at = new.requested_at or datetime.now(UTC)
    # Serialise reports of one type so two people reporting the same pothole at the
    # same moment cannot both open a work order for it.
    session.execute(
        text("SELECT pg_advisory_xact_lock(:c, :k)"),
        {"c": AdvisoryLock.INTAKE, "k": int(service_type.id % 2**31)},
    )

    joined: WorkOrder | None = None
    reopened: ServiceRequest | None = None
    if lon is not None and lat is not None:
        joined = find_joinable(session, service_type, lon, lat)
        if joined is None and reopen_within is not None:
            reopened = find_reopenable(
                session, service_type, lon, lat, within=reopen_within, now=requested_at
            )
    district_id = district_at(session, lon, lat) if lon is not None and lat is not None else None

    request = ServiceRequest(
        public_id=secrets.token_hex(8),  # replaced by the confirmation number after flush
        token=secrets.token_urlsafe(16),
        service_type=service_type,
        description=description,
        attributes=attributes,
        extra_attributes=extra_attributes,
        location=point(lon, lat) if lon is not None and lat is not None else None,
        location_source=source,
        address=address_label,
        address_id=_address_id(new.address_id),
        zipcode=_clean(new.zipcode, field="zipcode", limit=32),
        # GeoReport v2's one media_url: the first link (every link is in media_links).
        media_url=links[0] if links else None,
        channel=new.channel,
        api_key_id=new.api_key_id,
        detailed_status="received",
        requested_at=requested_at,
        updated_at=requested_at,
        district_id=district_id,
    )
    request.media_links = [MediaLink(position=k, url=url) for k, url in enumerate(links)]
    session.add(request)
    if any(getattr(contact, f) for f in contact.__dataclass_fields__):
        request.contact = RequestContact(
            **{f: getattr(contact, f) for f in contact.__dataclass_fields__}
        )
    session.flush()
    request.public_id = str(request.id)

    original: ServiceRequest | None = None
    if reopened is not None:
        # The fix did not hold (or the problem is back): the same work order comes back
        # to the pool instead of a second one starting from scratch.
        joined = reopen_fixed(
            session, reopened, actor=actor, at=requested_at, by_report=request.public_id
        )
    if joined is not None:
        original = session.scalar(
            select(ServiceRequest)
            .where(
                ServiceRequest.work_order_id == joined.id, ServiceRequest.duplicate_of_id.is_(None)
            )
            .order_by(ServiceRequest.id)
            .limit(1)
        )
        request.work_order = joined
        request.duplicate_of = original
        if original is not None:
            request.service_notice = (
                f"This problem was already reported as request {original.public_id}. "
                "Your report has been added to it and you will be kept informed."
            )
        before = joined.priority
        joined.report_count += 1
        joined.priority = max(
            joined.priority, priority_for(service_type.base_priority, joined.report_count)
        )
        joined.updated_at = requested_at
        WorkOrderLifecycle.annotate(
            session,
            joined,
            actor=actor,
            at=requested_at,
            note=(
                f"report {request.public_id} joined ({joined.report_count} reports); "
                f"priority {before} -> {joined.priority}"
            ),
        )
        work_order = joined
    else:
        work_order = WorkOrder(
            service_type=service_type,
            status="new",
            priority=priority_for(service_type.base_priority, 1),
            report_count=1,
            due_at=requested_at + timedelta(hours=service_type.sla_hours),
            skill=service_type.skill,
            minutes_on_site=service_type.minutes_on_site,
            demand=demand_for(service_type, attributes),
            location=request.location,
            address=address_label,
            district_id=district_id,
            created_at=requested_at,
            updated_at=requested_at,
        )
        session.add(work_order)
        request.work_order = work_order
        session.flush()
        WorkOrderLifecycle.record_creation(
            session,
            work_order,
            actor=actor,
            at=requested_at,
            note=f"created for request {request.public_id}",
        )

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
        note = f"Report received; the same problem was already reported as request {original.public_id}."
    elif request.location is None:
        note = "Report received; staff will place it on the map from the address given."
    ServiceRequestLifecycle.record_creation(
        session, request, actor=actor, at=requested_at, note=note, public=True
    )
    if outside_on_purpose:
        ServiceRequestLifecycle.annotate(
            session,
            request,
            actor=actor,
            at=requested_at,
            location=request.location,
            note=f"recorded outside the service area on purpose by {actor.label}",
        )
    elif geocoded_outside is not None:
        ServiceRequestLifecycle.annotate(
            session,
            request,
            actor=actor,
            at=requested_at,
            note=(
                f"the address matched {geocoded_outside[1]:.6f}, {geocoded_outside[0]:.6f}, outside the service area; "
                "left for staff to pin"
            ),
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
