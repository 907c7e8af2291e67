"""The domain as SQLAlchemy 2 typed mappings.

Points are WGS84 `Geometry(POINT, 4326)`. Metre-distance queries go through the
geography expression indexes declared below (see `core.spatial`), so "within 50 m"
is an index scan, not a sequential scan over every request in the city.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Time,
    UniqueConstraint,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, bigint, created_at, intpk

# The status vocabulary lives in `core.status`; the CHECK constraints below are built from it.
from core.status import (
    API_KEY_STATUSES,
    COMPLETION_OUTCOMES,
    PLAN_PART_STATUSES,
    PLAN_STATUSES,
    REQUEST_STATUSES,
    UNPROVEN,
    USER_STATUSES,
    VERDICTS,
    WEBHOOK_STATUSES,
    WORK_ORDER_STATUSES,
    open311_status,
    sql_list,
)


def _check_in(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)


# -- sane client times (issue 11) ---------------------------------------------------
# Columns that hold a time a client's clock chose (directly, or copied from a crew's
# event) stay inside this window, so no stored value can make a read fail: PostgreSQL
# holds 4713 BC to 294276 AD, a Python datetime only years 1 to 9999. The API refuses
# such times first (`core.field.check_client_time`); migration 0010 repaired old rows.
CLIENT_TIME_FLOOR = datetime(2000, 1, 1, tzinfo=UTC)
CLIENT_TIME_CEILING = datetime(2200, 1, 1, tzinfo=UTC)


def _sane_time(column: str) -> CheckConstraint:
    return CheckConstraint(
        f"{column} >= '{CLIENT_TIME_FLOOR.isoformat()}' AND {column} < '{CLIENT_TIME_CEILING.isoformat()}'",
        name=f"{column}_sane",
    )


def _point(nullable: bool = False) -> Any:
    # spatial_index=False: indexes are declared explicitly so migrations and
    # models name them identically (no drift).
    return mapped_column(Geometry("POINT", srid=4326, spatial_index=False), nullable=nullable)


# call_taker: 311 agents who take residents' calls (record, look up; no planning, contacts or admin).
ROLES = ("crew", "dispatcher", "supervisor", "admin", "call_taker")
DATATYPES = ("string", "number", "datetime", "text", "singlevaluelist", "multivaluelist")
STOP_KINDS = ("job", "break")

# What the audit trail records changes of. Users, shifts, shift patterns and the service
# area are audited the same way as the work: who changed what, when.
STATUS_EVENT_ENTITIES = (
    "service_request",
    "work_order",
    "route_plan",
    "completion",
    "user",
    "shift",
    "shift_pattern",
    "service_area",
    # Privacy (retention): a crew's GPS fixes deleted after STREETLOOP_RETAIN_TRACKS_DAYS.
    "crew",
    # Open311 client apps' keys and webhooks (core.client_apps).
    "api_key",
    "webhook",
)


# -- organisation ------------------------------------------------------------


class District(Base):
    __tablename__ = "districts"
    __table_args__ = (Index("ix_districts_geom", "geom", postgresql_using="gist"),)

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str]
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )
    created_at: Mapped[created_at]


class Depot(Base):
    __tablename__ = "depots"
    __table_args__ = (Index("ix_depots_location", "location", postgresql_using="gist"),)

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str]
    agency: Mapped[str]
    address: Mapped[str | None]
    location: Mapped[WKBElement] = _point()
    created_at: Mapped[created_at]


class Crew(Base):
    __tablename__ = "crews"

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str]
    agency: Mapped[str]
    skills: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    # Capacity per dimension, e.g. {"bulk_items": 40, "asphalt_kg": 1500}.
    capacity: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    depot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("depots.id"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # The last sequence number handed out in this crew's change feed (`CrewChange.seq`);
    # bumped under the row's lock at commit, so the feed's numbers follow commit order.
    feed_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[created_at]

    depot: Mapped[Depot | None] = relationship()
    shifts: Mapped[list[Shift]] = relationship(back_populates="crew", order_by="Shift.starts_at")


class ShiftPattern(Base):
    """A crew's weekly rota in the city's local time, e.g. Monday-Friday 07:00-15:30 with
    30 minutes of lunch within 11:30-13:30. It makes the coming shifts (`core.shifts`);
    a shift it made can still be edited, ended early or cancelled one by one."""

    __tablename__ = "shift_patterns"
    __table_args__ = (
        # ISO weekdays: 1 is Monday, 7 is Sunday.
        CheckConstraint(
            "cardinality(weekdays) > 0 AND weekdays <@ ARRAY[1, 2, 3, 4, 5, 6, 7]", name="weekdays"
        ),
        # An end at or before the start is the next day's (a night shift).
        CheckConstraint("starts_local <> ends_local", name="window"),
        CheckConstraint("valid_until IS NULL OR valid_until >= valid_from", name="validity"),
    )

    id: Mapped[intpk]
    crew_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("crews.id", ondelete="CASCADE"), index=True
    )
    weekdays: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    starts_local: Mapped[time] = mapped_column(Time)
    ends_local: Mapped[time] = mapped_column(Time)
    # [{"earliest": "11:30", "latest": "13:30", "minutes": 30}], local times of the shift's day.
    breaks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    valid_from: Mapped[date]
    valid_until: Mapped[date | None]
    start_depot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("depots.id"))
    end_depot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("depots.id"))
    created_at: Mapped[created_at]

    crew: Mapped[Crew] = relationship()


class Shift(Base):
    __tablename__ = "shifts"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="window"),
        Index("ix_shifts_crew_id_starts_at", "crew_id", "starts_at"),
        # A pattern makes one shift per start; two materialisations racing cannot double it.
        UniqueConstraint("pattern_id", "starts_at", name="uq_shifts_pattern_starts_at"),
    )

    id: Mapped[intpk]
    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    start_depot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("depots.id"))
    end_depot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("depots.id"))
    # The weekly pattern that made it; NULL once edited by hand (the pattern no longer owns it).
    pattern_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("shift_patterns.id", ondelete="SET NULL")
    )
    # Ended early (a crew goes home sick): `ends_at` is then the new end.
    ended_early_at: Mapped[datetime | None]
    end_reason: Mapped[str | None]
    # A cancelled shift (a day off) stays as a row, so its pattern does not make it again.
    cancelled_at: Mapped[datetime | None]

    crew: Mapped[Crew] = relationship(back_populates="shifts")
    breaks: Mapped[list[ShiftBreak]] = relationship(
        back_populates="shift", cascade="all, delete-orphan", order_by="ShiftBreak.earliest_start"
    )


class ShiftBreak(Base):
    """A break of `minutes` that must start and end inside [earliest_start, latest_end]."""

    __tablename__ = "shift_breaks"
    __table_args__ = (
        CheckConstraint("latest_end > earliest_start", name="window"),
        CheckConstraint("minutes > 0", name="minutes"),
    )

    id: Mapped[intpk]
    shift_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("shifts.id", ondelete="CASCADE"), index=True
    )
    earliest_start: Mapped[datetime]
    latest_end: Mapped[datetime]
    minutes: Mapped[int] = mapped_column(Integer)

    shift: Mapped[Shift] = relationship(back_populates="breaks")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        _check_in("role", ROLES, "role"),
        CheckConstraint("role <> 'crew' OR crew_id IS NOT NULL", name="crew_has_crew"),
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str]
    password_hash: Mapped[str]
    role: Mapped[str] = mapped_column(String(16))
    crew_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("crews.id"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[created_at]

    crew: Mapped[Crew | None] = relationship()

    # The lifecycle (`core.lifecycle.user`) reads and writes states, like every other
    # entity's; the table keeps the boolean that sign-in and token checks already read.
    @property
    def status(self) -> str:
        return "active" if self.active else "inactive"

    @status.setter
    def status(self, value: str) -> None:
        if value not in USER_STATUSES:
            raise ValueError(f"a user is one of {USER_STATUSES}, not {value!r}")
        self.active = value == "active"


class AccessToken(Base):
    """Opaque bearer tokens; only their SHA-256 is stored, so a database leak is not a login."""

    __tablename__ = "access_tokens"

    id: Mapped[intpk]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime]
    created_at: Mapped[created_at]

    user: Mapped[User] = relationship()


class SignInFailure(Base):
    """One failed sign-in, for the limits per account and per client address (see
    core/sign_in.py). In the database, so every API process counts the same failures.
    `account` is a keyed hash of the e-mail typed (known or not), never the address itself;
    rows older than the longest window are pruned as new failures come in."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_account_at", "account", "at"),
        Index("ix_sign_in_failures_address_at", "address", "at"),
        Index("ix_sign_in_failures_at", "at"),
    )

    id: Mapped[intpk]
    account: Mapped[str] = mapped_column(String(64))
    # An IPv4 address, an IPv6 /64 network, or "unknown" (see api/client_address.py).
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(server_default=func.now())


class SignInAddress(Base):
    """Where an account last signed in successfully, and when (see core/sign_in.py): an
    address the account used lately is exempt from the account's lock, which failures
    from anywhere else set, and has a tight limit of its own. Keyed like the failures;
    rows older than the setting's days no longer count and are pruned."""

    __tablename__ = "sign_in_addresses"
    __table_args__ = (Index("ix_sign_in_addresses_last_at", "last_at"),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKey(Base):
    """An Open311 client application (a resident app, FixMyStreet, a kiosk)."""

    __tablename__ = "api_keys"

    id: Mapped[intpk]
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str]
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[created_at]

    # States for the lifecycle (core.lifecycle.client_app); the table keeps the boolean
    # that every Open311 write and the outbox already read.
    @property
    def status(self) -> str:
        return "active" if self.active else "revoked"

    @status.setter
    def status(self, value: str) -> None:
        if value not in API_KEY_STATUSES:
            raise ValueError(f"an api key is one of {API_KEY_STATUSES}, not {value!r}")
        self.active = value == "active"


# -- what residents can report -------------------------------------------------


class ServiceType(Base):
    __tablename__ = "service_types"
    __table_args__ = (
        CheckConstraint("sla_hours > 0", name="sla_hours"),
        CheckConstraint("minutes_on_site > 0", name="minutes_on_site"),
        CheckConstraint("duplicate_radius_m >= 0", name="duplicate_radius_m"),
        CheckConstraint("base_priority BETWEEN 1 AND 5", name="base_priority"),
    )

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str]
    description: Mapped[str] = mapped_column(server_default="")
    agency: Mapped[str]
    group: Mapped[str] = mapped_column(server_default="")
    keywords: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    sla_hours: Mapped[int] = mapped_column(Integer)
    skill: Mapped[str]
    minutes_on_site: Mapped[int] = mapped_column(Integer)
    base_priority: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    duplicate_radius_m: Mapped[int] = mapped_column(Integer, server_default=text("50"))
    # Proof policy for completions (used by the crew proof checks).
    photo_required: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    proof_max_distance_m: Mapped[int] = mapped_column(Integer, server_default=text("75"))
    auto_verify: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # What one job uses of a crew's capacity, per dimension: a fixed number, or
    # "attribute:<code>" to take it from the report (e.g. how many bulk items).
    demands: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[created_at]

    attributes: Mapped[list[ServiceAttribute]] = relationship(
        back_populates="service_type",
        cascade="all, delete-orphan",
        order_by="ServiceAttribute.order",
    )


class ServiceAttribute(Base):
    """An Open311 service-definition attribute."""

    __tablename__ = "service_attributes"
    __table_args__ = (
        UniqueConstraint("service_type_id", "code", name="uq_service_attributes_type_code"),
        _check_in("datatype", DATATYPES, "datatype"),
    )

    id: Mapped[intpk]
    service_type_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_types.id", ondelete="CASCADE")
    )
    code: Mapped[str] = mapped_column(String(64))
    datatype: Mapped[str] = mapped_column(String(32))
    description: Mapped[str]
    datatype_description: Mapped[str] = mapped_column(server_default="")
    required: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # variable=false attributes are informational text shown to the resident.
    variable: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    order: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # [{"key": "...", "name": "..."}] for the list datatypes.
    values: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))

    service_type: Mapped[ServiceType] = relationship(back_populates="attributes")


# -- the request and the work ----------------------------------------------------


class WorkOrder(Base):
    """One problem on the street for one crew visit; several reports may point at it."""

    __tablename__ = "work_orders"
    __table_args__ = (
        _check_in("status", WORK_ORDER_STATUSES, "status"),
        CheckConstraint("priority BETWEEN 1 AND 5", name="priority"),
        Index("ix_work_orders_location", "location", postgresql_using="gist"),
        Index(
            "ix_work_orders_location_geog",
            func.geography(text("location")),
            postgresql_using="gist",
        ),
        Index("ix_work_orders_status_due_at", "status", "due_at"),
        _sane_time("updated_at"),
    )

    id: Mapped[intpk]
    service_type_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_types.id"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), server_default="new")
    priority: Mapped[int] = mapped_column(Integer)
    report_count: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    due_at: Mapped[datetime]
    skill: Mapped[str]
    minutes_on_site: Mapped[int] = mapped_column(Integer)
    # NULL until the request behind it has a location: such orders are never routed.
    location: Mapped[WKBElement | None] = _point(nullable=True)
    address: Mapped[str | None]
    district_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("districts.id"), index=True
    )
    crew_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("crews.id"), index=True)
    reopen_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    unable_reason: Mapped[str | None]
    # Capacity used per dimension ({"bulk_items": 3}), from the service type's demands.
    demand: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # When the crew may start work: [{"start": iso, "end": iso}, ...]; empty = any time.
    time_windows: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # A dispatcher's "this must be done on that day" (optionally by that crew): plans of
    # the day then include it, dropping lower-value work if they must.
    must_do_on: Mapped[date | None]
    must_do_crew_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("crews.id"))
    created_at: Mapped[created_at]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    service_type: Mapped[ServiceType] = relationship()
    crew: Mapped[Crew | None] = relationship(foreign_keys=[crew_id])
    must_do_crew: Mapped[Crew | None] = relationship(foreign_keys=[must_do_crew_id])
    district: Mapped[District | None] = relationship()
    requests: Mapped[list[ServiceRequest]] = relationship(
        back_populates="work_order", order_by="ServiceRequest.id"
    )


class ServiceRequest(Base):
    """What the resident reported and sees; contact details live apart in `RequestContact`."""

    __tablename__ = "service_requests"
    __table_args__ = (
        _check_in("detailed_status", REQUEST_STATUSES, "detailed_status"),
        CheckConstraint("char_length(description) <= 4000", name="description_length"),
        Index("ix_service_requests_location", "location", postgresql_using="gist"),
        Index(
            "ix_service_requests_location_geog",
            func.geography(text("location")),
            postgresql_using="gist",
        ),
        Index("ix_service_requests_requested_at_id", "requested_at", "id"),
        Index("ix_service_requests_updated_at", "updated_at"),
        Index("ix_service_requests_type_status", "service_type_id", "detailed_status"),
        # Closed Means Closed, enforced by the database too: `fixed` carries its proof.
        CheckConstraint(
            "detailed_status <> 'fixed' OR completion_id IS NOT NULL", name="fixed_has_completion"
        ),
        CheckConstraint("reopen_count >= 0", name="reopen_count"),
        Index("ix_service_requests_closed_at", "closed_at"),
        _sane_time("updated_at"),
    )

    id: Mapped[intpk]
    # The confirmation number residents quote (Open311 service_request_id).
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    service_type_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("service_types.id"))
    description: Mapped[str] = mapped_column(server_default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Attributes a client sent that the service definition does not have (FixMyStreet
    # and others add their own): kept as text, never interpreted.
    extra_attributes: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    location: Mapped[WKBElement | None] = _point(nullable=True)
    # device (lat/long given), geocoded (from address_string), pinned (by staff), none.
    location_source: Mapped[str] = mapped_column(String(16), server_default="device")
    address: Mapped[str | None]
    address_id: Mapped[str | None]
    zipcode: Mapped[str | None]
    media_url: Mapped[str | None]
    channel: Mapped[str] = mapped_column(String(32), server_default="open311")
    api_key_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    detailed_status: Mapped[str] = mapped_column(String(32), server_default="received")
    status_notes: Mapped[str | None]
    service_notice: Mapped[str | None]
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expected_at: Mapped[datetime | None]
    # The time the resident was last given (publishing a plan, a slip told): a later
    # arrival is told again only once it slips by more than STREETLOOP_PROMISE_SLIP_MINUTES.
    promised_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    district_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("districts.id"), index=True
    )
    duplicate_of_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("service_requests.id"), index=True
    )
    work_order_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("work_orders.id"), index=True
    )
    # The verified completion whose proof closed this request (set while it is closed
    # by one; a reopen clears it and keeps the history in the audit trail).
    completion_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("completions.id"), index=True
    )
    # Times a resident (or a rejected completion) brought it back after it was closed.
    reopen_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    service_type: Mapped[ServiceType] = relationship()
    work_order: Mapped[WorkOrder | None] = relationship(back_populates="requests")
    completion: Mapped[Completion | None] = relationship(foreign_keys=[completion_id])
    duplicate_of: Mapped[ServiceRequest | None] = relationship(remote_side="ServiceRequest.id")
    district: Mapped[District | None] = relationship()
    contact: Mapped[RequestContact | None] = relationship(back_populates="request", uselist=False)
    photos: Mapped[list[Photo]] = relationship(
        back_populates="service_request", order_by="Photo.id"
    )
    media_links: Mapped[list[MediaLink]] = relationship(
        order_by="MediaLink.position", cascade="all, delete-orphan"
    )

    @property
    def status(self) -> str:
        """Open311's two-valued status."""
        return open311_status(self.detailed_status)

    @property
    def needs_pin(self) -> bool:
        return self.location is None


class RequestContact(Base):
    """Reporter contact details: private, never serialised into public output."""

    __tablename__ = "request_contacts"

    request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    phone: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None]
    account_id: Mapped[str | None]

    request: Mapped[ServiceRequest] = relationship(back_populates="contact")


class Photo(Base):
    """An uploaded image. The original stays private; the public copy has no EXIF."""

    __tablename__ = "photos"
    __table_args__ = (
        _check_in("kind", ("report", "before", "after"), "kind"),
        Index("ix_photos_completion_id", "completion_id"),
        _check_in("state", ("pending", "ready", "rejected"), "state"),
    )

    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    service_request_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    completion_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("completions.id", ondelete="CASCADE")
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # 64-bit perceptual hash (signed to fit bigint), for near-duplicate detection.
    phash: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_key: Mapped[str]
    public_key: Mapped[str | None]
    thumbnail_key: Mapped[str | None]
    created_at: Mapped[created_at]

    service_request: Mapped[ServiceRequest | None] = relationship(back_populates="photos")


# What became of a photo link (a report's media_url) in our own storage: `link` shown as a
# link only (its host is not one STREETLOOP_MEDIA_COPY_HOSTS allows), `pending` a copy job
# is queued, `copied` stored as `photo_id`, `failed` the one attempt did not get a photo.
MEDIA_LINK_COPY_STATES = ("link", "pending", "copied", "failed")


class MediaLink(Base):
    """One photo link a report came with (Open311's media_url, several with FixMyStreet's
    multi_photos), in the order sent. `ServiceRequest.media_url` stays GeoReport v2's one
    link: the first of these while the report is open."""

    __tablename__ = "media_links"
    __table_args__ = (
        UniqueConstraint("service_request_id", "position"),
        _check_in("copy_state", MEDIA_LINK_COPY_STATES, "copy_state"),
        CheckConstraint("char_length(url) <= 2048", name="url_length"),
    )

    id: Mapped[intpk]
    service_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(SmallInteger)
    url: Mapped[str]
    copy_state: Mapped[str] = mapped_column(String(16), server_default="link")
    # Why the copy failed, in our own words (never what the other host said).
    copy_error: Mapped[str | None] = mapped_column(String(200))
    # Indexed: deleting a photo looks its links up by photo_id (ON DELETE SET NULL).
    photo_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("photos.id", ondelete="SET NULL"), index=True
    )
    copied_at: Mapped[datetime | None]
    # Tries of the copy so far, each counted before its fetch, and when the last one
    # started (see workers.media_copy): a worker killed mid-fetch, or a copy that keeps
    # crashing, is tried a few times and then given up, never fetched forever.
    copy_attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    copy_claimed_at: Mapped[datetime | None]

    photo: Mapped[Photo | None] = relationship()


class StatusEvent(Base):
    """The audit trail: every state change, who made it, when, and where."""

    __tablename__ = "status_events"
    __table_args__ = (
        _check_in("entity", STATUS_EVENT_ENTITIES, "entity"),
        Index("ix_status_events_entity_entity_id_at", "entity", "entity_id", "at"),
        # Open311 servicerequestupdates and the notification outbox read the public
        # request timeline by time range.
        Index(
            "ix_status_events_public_request_at",
            "at",
            "id",
            postgresql_where=text("entity = 'service_request' AND public"),
        ),
        _sane_time("at"),
    )

    id: Mapped[intpk]
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[bigint]
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    # Who, readable without a join: "user:12", "open311:FixMyStreet", "system".
    actor: Mapped[str]
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    note: Mapped[str | None]
    # Public notes form the resident-facing timeline (Open311 extensions).
    public: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    location: Mapped[WKBElement | None] = _point(nullable=True)


class AddressPoint(Base):
    """The geocoder's index: OSM addresses and named streets, keyed by normalized text."""

    __tablename__ = "address_points"
    __table_args__ = (
        Index("ix_address_points_street_key_housenumber", "street_key", "housenumber"),
        Index("ix_address_points_location", "location", postgresql_using="gist"),
    )

    id: Mapped[intpk]
    street: Mapped[str]
    street_key: Mapped[str]
    housenumber: Mapped[str | None] = mapped_column(String(32))
    postcode: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None]
    location: Mapped[WKBElement] = _point()
    osm_type: Mapped[str] = mapped_column(String(8))
    osm_id: Mapped[bigint]


# -- dispatch plans ----------------------------------------------------------------


class RoutePlan(Base):
    """One solver run for one day and scope; re-plans are new versions of the same day."""

    __tablename__ = "route_plans"
    __table_args__ = (
        _check_in("status", PLAN_STATUSES, "status"),
        UniqueConstraint(
            "plan_date", "scope_key", "version", name="uq_route_plans_day_scope_version"
        ),
        Index("ix_route_plans_plan_date_status", "plan_date", "status"),
    )

    id: Mapped[intpk]
    plan_date: Mapped[date]
    # {"agency": ..., "depot": ..., "district": ...}; scope_key is its canonical text.
    scope: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    scope_key: Mapped[str] = mapped_column(server_default="")
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("route_plans.id"))
    # Re-plans start "now": the instant the routes were re-timed from.
    replan_from: Mapped[datetime | None]
    time_limit_s: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str | None]
    stats: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    unassigned: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # Crews of the scope the plan left out, with why: [{"crew": code, "reason": ..., "message": ...}].
    excluded_crews: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # A plan built during its day starts here (now plus the lead time): nothing before it.
    planned_from: Mapped[datetime | None]
    # While it solves: {"phase", "elapsed_s", "time_limit_s", "best": {"scheduled", "unassigned",
    # "drive_s", "distance_m"} | null, "updated_at"}, rewritten every second by the job.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    requested_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    created_at: Mapped[created_at]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]

    routes: Mapped[list[PlanRoute]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanRoute.id"
    )


class PlanInput(Base):
    """A split plan's whole problem, as the job that built it left it, so that whichever
    worker finishes the last part can assemble the plan (`dispatch.parts`; deleted once it
    is assembled): the problem
    in `dispatch.wire`'s versioned form (JSON plus the travel matrix as bytes, never a
    pickle), and what turns its answer back into rows (`context`)."""

    __tablename__ = "plan_inputs"

    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("route_plans.id", ondelete="CASCADE"), primary_key=True
    )
    problem: Mapped[dict[str, Any]]
    matrix: Mapped[bytes]
    context: Mapped[dict[str, Any]]
    created_at: Mapped[created_at]


class PlanPart(Base):
    """One independent part of a split plan (crews and the work only they can do), solved
    by a `solve_plan_part` job on any worker. Its input is its own sub-problem; its
    result, the routes in the part's own location indices. `attempts` counts the runs
    started (a run whose worker was killed counts too); `worker` and `pid` say where the
    last one ran, `started_at` and `finished_at` when."""

    __tablename__ = "plan_parts"
    __table_args__ = (
        _check_in("status", PLAN_PART_STATUSES, "status"),
        UniqueConstraint("plan_id", "position", name="uq_plan_parts_plan_position"),
    )

    id: Mapped[intpk]
    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("route_plans.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(SmallInteger)
    # What it holds, for people: its crews' skills, and how many crews and jobs.
    label: Mapped[str]
    crews: Mapped[int] = mapped_column(Integer)
    jobs: Mapped[int] = mapped_column(Integer)
    time_limit_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    # Its input, until the plan is assembled (then emptied: the plan's rows hold the day).
    problem: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    matrix: Mapped[bytes | None]
    # Sub-matrix index -> index in the whole problem's matrix.
    places: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    worker: Mapped[str | None]
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[created_at]


class PlanRoute(Base):
    """One crew's day inside a plan: its timing totals and road geometry."""

    __tablename__ = "plan_routes"
    __table_args__ = (UniqueConstraint("plan_id", "crew_id", name="uq_plan_routes_plan_crew"),)

    id: Mapped[intpk]
    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("route_plans.id", ondelete="CASCADE")
    )
    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id"), index=True)
    shift_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("shifts.id", ondelete="SET NULL")
    )
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    drive_s: Mapped[int] = mapped_column(Integer)
    distance_m: Mapped[int] = mapped_column(Integer)
    geometry: Mapped[WKBElement | None] = mapped_column(
        Geometry("LINESTRING", srid=4326, spatial_index=False), nullable=True
    )

    plan: Mapped[RoutePlan] = relationship(back_populates="routes")
    crew: Mapped[Crew] = relationship()
    stops: Mapped[list[RouteStop]] = relationship(
        back_populates="route", cascade="all, delete-orphan", order_by="RouteStop.sequence"
    )


class RouteStop(Base):
    __tablename__ = "route_stops"
    __table_args__ = (
        _check_in("kind", STOP_KINDS, "kind"),
        UniqueConstraint("route_id", "sequence", name="uq_route_stops_route_sequence"),
        CheckConstraint("(kind = 'job') = (work_order_id IS NOT NULL)", name="job_has_work_order"),
    )

    id: Mapped[intpk]
    route_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("plan_routes.id", ondelete="CASCADE")
    )
    sequence: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    work_order_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("work_orders.id"), index=True
    )
    arrival_at: Mapped[datetime]
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    locked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # During the day: when the crew now looks like starting this stop, from its progress
    # and position (`dispatch.promises`), and when that was worked out.
    projected_start_at: Mapped[datetime | None]
    projected_at: Mapped[datetime | None]

    route: Mapped[PlanRoute] = relationship(back_populates="stops")
    work_order: Mapped[WorkOrder | None] = relationship()

    @property
    def job_order_id(self) -> int:
        """A job stop's work order: `job_has_work_order` gives every job one, a break none."""
        if self.work_order_id is None:
            raise ValueError(f"stop {self.id} is a {self.kind}, not a job: it has no work order")
        return self.work_order_id

    @property
    def job_order(self) -> WorkOrder:
        """A job stop's work order (see `job_order_id`)."""
        if self.work_order is None:
            raise ValueError(f"stop {self.id} is a {self.kind}, not a job: it has no work order")
        return self.work_order


class CrewDay(Base):
    """The published plan a crew drives on a day. The primary key allows one: however two
    publishes race, the database refuses to put a crew on two published plans of a day."""

    __tablename__ = "crew_days"

    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id"), primary_key=True)
    plan_date: Mapped[date] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("route_plans.id", ondelete="CASCADE"), index=True
    )


CREW_CHANGE_KINDS = (
    "assigned",
    "urgent_stop",
    "updated",
    "cancelled",
    "removed",
    "rejected",
    "route",
)


class CrewChange(Base):
    """One entry of a crew's change feed (`GET /crew/changes`), written in the transaction
    of the change. `seq` is handed out at commit under the crew row's lock, so within a
    crew it follows commit order: a phone that has seen `seq` n has seen every change
    before it (see `dispatch.crewfeed`)."""

    __tablename__ = "crew_changes"
    __table_args__ = (
        _check_in("change", CREW_CHANGE_KINDS, "change"),
        UniqueConstraint("crew_id", "seq", name="uq_crew_changes_crew_seq"),
        # Rows of transactions not yet committed: the commit hook numbers them.
        Index("ix_crew_changes_pending", "id", postgresql_where=text("seq IS NULL")),
        _sane_time("at"),
    )

    id: Mapped[intpk]
    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id", ondelete="CASCADE"))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    change: Mapped[str] = mapped_column(String(16))
    work_order_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("work_orders.id", ondelete="CASCADE")
    )
    plan_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("route_plans.id", ondelete="SET NULL")
    )
    # The order's status after the change, and the status event's target.
    status: Mapped[str | None] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime]
    created_at: Mapped[created_at]


# -- crews in the field -------------------------------------------------------------


class PositionPing(Base):
    """A crew phone's GPS fix. (crew, at) is unique, so a resent batch stores nothing twice."""

    __tablename__ = "position_pings"
    __table_args__ = (
        UniqueConstraint("crew_id", "at", name="uq_position_pings_crew_at"),
        _sane_time("at"),
        # Privacy: the retention purge reads the oldest fixes of every crew by time.
        Index("ix_position_pings_at", "at"),
    )

    id: Mapped[intpk]
    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id"))
    at: Mapped[datetime]
    location: Mapped[WKBElement] = _point()
    accuracy_m: Mapped[float | None]
    speed_mps: Mapped[float | None]
    heading_deg: Mapped[float | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CrewPosition(Base):
    """The latest fix per crew, kept current by ingest so dispatchers never scan the track."""

    __tablename__ = "crew_positions"
    __table_args__ = (_sane_time("at"),)

    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id"), primary_key=True)
    at: Mapped[datetime]
    location: Mapped[WKBElement] = _point()
    accuracy_m: Mapped[float | None]
    speed_mps: Mapped[float | None]
    heading_deg: Mapped[float | None]


class Completion(Base):
    """A crew's claim that the work is done, with the proof and what the checks made of it."""

    __tablename__ = "completions"
    __table_args__ = (
        _check_in("outcome", COMPLETION_OUTCOMES, "outcome"),
        _check_in("verdict", VERDICTS, "verdict"),
        # The few completions that are not proof (waiting, or rejected): CitiStat checks
        # every `fixed` request against them, the review queue reads them.
        Index(
            "ix_completions_unproven",
            "id",
            postgresql_where=text(f"verdict IN ({sql_list(UNPROVEN)})"),
        ),
        _sane_time("fix_time"),
        _sane_time("captured_at"),
    )

    id: Mapped[intpk]
    work_order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("work_orders.id"), index=True)
    # The work order's type and district when the work was done, copied at insert (see
    # `_completion_work_order_facts`): reports over a year of completions then need no
    # join to a million work orders.
    service_type_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("service_types.id"))
    district_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("districts.id"))
    crew_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("crews.id"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str | None]
    location: Mapped[WKBElement | None] = _point(nullable=True)
    accuracy_m: Mapped[float | None]
    fix_time: Mapped[datetime | None]
    captured_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime] = mapped_column(server_default=func.now())
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    # Every check with its number, limit and result (supervisors see these, crews do not).
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # Drawn at random from the auto-verifiable ones into the review queue, so a human
    # keeps checking that automatic verification deserves its trust.
    audit_sampled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The visit behind it: when the crew was on site, and when it finished (the work
    # order's on_site and completed times), kept here so reports need not pair events.
    arrived_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # What the checks said before a supervisor decided (auto_verified or needs_review).
    auto_verdict: Mapped[str | None] = mapped_column(String(16))
    decided_at: Mapped[datetime | None]

    work_order: Mapped[WorkOrder] = relationship()
    crew: Mapped[Crew] = relationship()
    photos: Mapped[list[Photo]] = relationship(
        order_by="Photo.id", foreign_keys="Photo.completion_id"
    )
    reviews: Mapped[list[Review]] = relationship(back_populates="completion", order_by="Review.id")


@event.listens_for(Completion, "before_insert")
def _completion_work_order_facts(mapper: Any, connection: Any, target: Completion) -> None:
    if target.service_type_id is None:
        target.service_type_id, target.district_id = connection.execute(
            select(WorkOrder.service_type_id, WorkOrder.district_id).where(
                WorkOrder.id == target.work_order_id
            )
        ).one()


REVIEW_DECISIONS = ("verify", "reject", "close")


class Review(Base):
    """A supervisor's decision on a completion: verify it, reject it (the work reopens),
    or close the work with another outcome."""

    __tablename__ = "reviews"
    __table_args__ = (
        _check_in("decision", REVIEW_DECISIONS, "decision"),
        CheckConstraint("(decision = 'close') = (outcome IS NOT NULL)", name="close_has_outcome"),
        CheckConstraint("decision <> 'reject' OR reason IS NOT NULL", name="reject_has_reason"),
    )

    id: Mapped[intpk]
    completion_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("completions.id", ondelete="CASCADE"), index=True
    )
    reviewer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None]
    note: Mapped[str | None]
    at: Mapped[datetime] = mapped_column(server_default=func.now())

    completion: Mapped[Completion] = relationship(back_populates="reviews")
    reviewer: Mapped[User] = relationship()


# -- telling residents ------------------------------------------------------------------

NOTIFICATION_KINDS = ("scheduled", "fixed", "closed", "reopened", "delayed")
NOTIFICATION_CHANNELS = ("email", "webhook")
NOTIFICATION_STATES = ("pending", "sending", "sent", "failed")


class Webhook(Base):
    """An Open311 client app's endpoint for status changes of the requests it submitted."""

    __tablename__ = "webhooks"
    __table_args__ = (UniqueConstraint("api_key_id", "url", name="uq_webhooks_api_key_url"),)

    id: Mapped[intpk]
    api_key_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    # HMAC-SHA256 key for the signature header; the client app verifies deliveries with it.
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[created_at]

    api_key: Mapped[ApiKey] = relationship()

    @property
    def status(self) -> str:
        return "active" if self.active else "inactive"

    @status.setter
    def status(self, value: str) -> None:
        if value not in WEBHOOK_STATUSES:
            raise ValueError(f"a webhook is one of {WEBHOOK_STATUSES}, not {value!r}")
        self.active = value == "active"


class Notification(Base):
    """The outbox: one message per (status event, channel, recipient), written in the
    transaction that changed the request, delivered by a job, retried with backoff."""

    __tablename__ = "notifications"
    __table_args__ = (
        _check_in("kind", NOTIFICATION_KINDS, "kind"),
        _check_in("channel", NOTIFICATION_CHANNELS, "channel"),
        _check_in("state", NOTIFICATION_STATES, "state"),
        UniqueConstraint(
            "status_event_id",
            "channel",
            "recipient",
            name="uq_notifications_event_channel_recipient",
        ),
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("state IN ('pending', 'sending')"),
        ),
    )

    id: Mapped[intpk]
    status_event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("status_events.id"))
    service_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    # An email address, or the webhook's URL (webhook_id says which registration).
    recipient: Mapped[str] = mapped_column(String(2048))
    webhook_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("webhooks.id", ondelete="SET NULL")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_error: Mapped[str | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[created_at]


class IdempotencyKey(Base):
    """A phone's retry with the same key gets the first answer back; nothing is stored twice."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[created_at]


class ServiceArea(Base):
    """The city's own service area, set by an admin (one row at most). The
    `STREETLOOP_SERVICE_AREA` setting overrides it; without either, the area is the
    union of the districts (see core/service_area.py)."""

    __tablename__ = "service_area"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        Index("ix_service_area_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default=text("1"))
    geom: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_by_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))


# -- privacy: retention and redaction (see core/retention.py, core/redaction.py) ---------


class CrewTrackDay(Base):
    """What CitiStat's gps_km needs of a crew's day once its GPS fixes are deleted by the
    retention purge: distances, no positions. `metres` sums the legs between consecutive
    fixes of that (city-local) day; `first_leg_m` is the leg into the day's first fix from
    the crew's previous fix, on day `first_leg_from` (a period counts it when it starts on
    or before that day, as it would with the fixes)."""

    __tablename__ = "crew_track_days"

    crew_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("crews.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    metres: Mapped[float]
    fixes: Mapped[int] = mapped_column(Integer)
    first_leg_m: Mapped[float | None]
    first_leg_from: Mapped[date | None]


REDACTABLE_FIELDS = ("description", "status_notes", "note")


class Redaction(Base):
    """A supervisor's redaction of a request's public text (its description, its status
    notes, or the note of one public timeline event). The public column then holds the
    redacted text; the original is kept here, for staff only, until the request's contact
    details are purged (`core.retention`), when it goes too (`original` NULL)."""

    __tablename__ = "redactions"
    __table_args__ = (
        _check_in("field", REDACTABLE_FIELDS, "field"),
        CheckConstraint("(field = 'note') = (status_event_id IS NOT NULL)", name="note_has_event"),
    )

    id: Mapped[intpk]
    service_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    field: Mapped[str] = mapped_column(String(16))
    status_event_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("status_events.id", ondelete="CASCADE")
    )
    original: Mapped[str | None]
    redacted: Mapped[str]
    reason: Mapped[str]
    redacted_by_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(server_default=func.now())


class RequestComment(Base):
    """A resident's comment on a request that a client app pushed in (FixMyStreet's
    `POST servicerequestupdates`). Its text is the note of the public status event
    `status_event_id` (so the timeline, Open311's updates, the status page and the crew
    read it, and a supervisor redacts it, like any public note); the commenter's details
    here are private like a reporter's (`RequestContact`): never published, and deleted
    with the request's contact details by retention (`core.retention`).

    `client_update_id` is the client's own id of the comment: one comment per client and
    id, so a resent comment is recognised and answered with the id it was given the
    first time, the status event's id, which is its `update_id` in Open311's updates."""

    __tablename__ = "request_comments"
    __table_args__ = (
        UniqueConstraint(
            "api_key_id", "client_update_id", name="uq_request_comments_api_key_update"
        ),
        # Retention's candidates: the comments whose commenter's details are still kept.
        Index(
            "ix_request_comments_with_contact",
            "service_request_id",
            postgresql_where=text(
                "email IS NOT NULL OR first_name IS NOT NULL OR last_name IS NOT NULL "
                "OR phone IS NOT NULL"
            ),
        ),
        _sane_time("client_time"),
    )

    id: Mapped[intpk]
    service_request_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("service_requests.id", ondelete="CASCADE"), index=True
    )
    status_event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("status_events.id"), unique=True
    )
    api_key_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("api_keys.id"))
    client_update_id: Mapped[str] = mapped_column(String(255))
    # What the client said of the problem (FixMyStreet: OPEN, CLOSED, FIXED, REOPEN...)
    # and when the comment was made, as it said: kept for staff, never obeyed blindly.
    client_status: Mapped[str | None] = mapped_column(String(32))
    client_time: Mapped[datetime | None]
    media_url: Mapped[str | None]
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    phone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[created_at]


# -- the offline basemap (see geo/basemap.py) ------------------------------------------

BASEMAP_LAYERS = ("water", "landuse", "buildings", "waterways", "railways", "roads", "places")


class BasemapFeature(Base):
    """One thing drawn on the offline basemap, imported from the city's OSM extract by
    `streetloop basemap build` and cut into vector tiles by `/tiles/{z}/{x}/{y}.pbf`.
    Stored in Web Mercator (EPSG:3857), the tiles' own projection, so cutting a tile
    transforms nothing. `min_zoom` is the first zoom it is drawn at; `area` (square
    mercator metres, 0 for lines and points) lets low zooms drop small polygons."""

    __tablename__ = "basemap_features"
    __table_args__ = (
        _check_in("layer", BASEMAP_LAYERS, "layer"),
        Index("ix_basemap_features_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[intpk]
    layer: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None]
    min_zoom: Mapped[int] = mapped_column(SmallInteger)
    area: Mapped[float] = mapped_column(Float)
    geom: Mapped[WKBElement] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=False))


class BasemapBuild(Base):
    """What the basemap was built from (one row at most; none: no basemap). `version`
    changes with every build and is part of every tile's ETag."""

    __tablename__ = "basemap_build"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, server_default=text("1"))
    version: Mapped[str] = mapped_column(String(32))
    source: Mapped[dict[str, Any]]
    features: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    # min_lon, min_lat, max_lon, max_lat of what was imported: the tiles are asked for
    # inside it only.
    bounds: Mapped[list[float]] = mapped_column(JSONB)
    built_at: Mapped[datetime] = mapped_column(server_default=func.now())
