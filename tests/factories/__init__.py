"""Rows for tests, built through the same code paths the product uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.auth import create_api_key, hash_password, issue_token
from core.intake import Contact, IntakeResult, NewRequest, submit_request
from core.lifecycle import Actor
from core.models import (
    ApiKey,
    Completion,
    Crew,
    Depot,
    District,
    ServiceAttribute,
    ServiceType,
    User,
    WorkOrder,
)
from core.spatial import point

# The demo city's OpenStreetMap extract, committed with the code.
ANDORRA_PBF = Path(__file__).resolve().parents[2] / "data" / "osm" / "andorra.osm.pbf"
# Central Andorra la Vella, on Avinguda Meritxell.
LON, LAT = 1.5243707, 42.5080426
API_KEY = "test-open311-key"
SYSTEM = Actor(label="test")
_fast_hash: str | None = None


def service_type(db: Session, code: str = "pothole", **overrides: Any) -> ServiceType:
    attrs = overrides.pop("attributes", None)
    values: dict[str, Any] = {
        "code": code,
        "name": code.replace("_", " ").title(),
        "agency": "Roads",
        "group": "streets",
        "description": f"{code} description",
        "keywords": ["road"],
        "sla_hours": 72,
        "skill": "asphalt",
        "minutes_on_site": 30,
        "base_priority": 3,
        "duplicate_radius_m": 50,
    }
    values.update(overrides)
    st = ServiceType(**values)
    st.attributes = [ServiceAttribute(**a) for a in (attrs if attrs is not None else [])]
    db.add(st)
    db.flush()
    return st


def full_attributes() -> list[dict[str, Any]]:
    """One attribute of every Open311 datatype."""
    return [
        {
            "code": "size",
            "datatype": "singlevaluelist",
            "description": "Size",
            "required": True,
            "order": 1,
            "values": [{"key": "small", "name": "Small"}, {"key": "large", "name": "Large"}],
        },
        {"code": "depth_cm", "datatype": "number", "description": "Depth", "order": 2},
        {"code": "seen_at", "datatype": "datetime", "description": "Seen at", "order": 3},
        {"code": "landmark", "datatype": "string", "description": "Landmark", "order": 4},
        {
            "code": "details",
            "datatype": "text",
            "description": "Details",
            "order": 5,
            "datatype_description": "free text",
        },
        {
            "code": "hazards",
            "datatype": "multivaluelist",
            "description": "Hazards",
            "order": 6,
            "values": [
                {"key": "water", "name": "Water"},
                {"key": "traffic", "name": "Traffic"},
                {"key": "dark", "name": "Dark"},
            ],
        },
        {
            "code": "note",
            "datatype": "text",
            "description": "Please do not put personal data here",
            "variable": False,
            "order": 7,
        },
    ]


def api_key(db: Session, key: str = API_KEY, name: str = "Test client") -> ApiKey:
    row, _ = create_api_key(db, name, key, actor=Actor.cli("tests"))
    db.flush()
    return row


def user(
    db: Session, email: str, role: str, crew: Crew | None = None, password: str = "secret-pass"
) -> User:
    global _fast_hash
    # Argon2 is deliberately slow; hash the common test password once.
    if password == "secret-pass":
        _fast_hash = _fast_hash or hash_password(password)
        pw_hash = _fast_hash
    else:
        pw_hash = hash_password(password)
    u = User(
        email=email,
        name=email.split("@")[0],
        password_hash=pw_hash,
        role=role,
        crew_id=crew.id if crew else None,
    )
    db.add(u)
    db.flush()
    return u


def token_for(db: Session, u: User) -> dict[str, str]:
    value, _ = issue_token(db, u, 3600)
    db.flush()
    return {"Authorization": f"Bearer {value}"}


def depot(db: Session, code: str = "yard-1") -> Depot:
    d = Depot(code=code, name=code, agency="Public Works", location=point(LON, LAT))
    db.add(d)
    db.flush()
    return d


def crew(db: Session, code: str = "pothole-1", skills: list[str] | None = None) -> Crew:
    c = Crew(
        code=code,
        name=code,
        agency="Roads",
        skills=skills if skills is not None else ["asphalt"],
        capacity={"asphalt_kg": 1000},
    )
    db.add(c)
    db.flush()
    return c


def district(
    db: Session,
    code: str = "centre",
    bbox: tuple[float, float, float, float] = (1.50, 42.49, 1.55, 42.52),
) -> District:
    x0, y0, x1, y1 = bbox
    d = District(
        code=code,
        name=code.title(),
        geom=f"SRID=4326;MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))",
    )
    db.add(d)
    db.flush()
    return d


def report(
    db: Session,
    code: str = "pothole",
    *,
    lon: float | None = LON,
    lat: float | None = LAT,
    at: datetime | None = None,
    **kwargs: Any,
) -> IntakeResult:
    contact = kwargs.pop("contact", Contact())
    geocode = kwargs.pop("geocode", None)
    result = submit_request(
        db,
        NewRequest(service_code=code, lon=lon, lat=lat, requested_at=at, contact=contact, **kwargs),
        actor=SYSTEM,
        geocode=geocode,
    )
    db.flush()
    return result


def offset(lon: float, lat: float, metres_east: float) -> tuple[float, float]:
    """A point `metres_east` metres east of (lon, lat)."""
    import math

    return lon + metres_east / (111_320 * math.cos(math.radians(lat))), lat


def days_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


def completion(
    db: Session,
    wo: WorkOrder,
    crew_row: Crew,
    by: User,
    *,
    verdict: str = "needs_review",
    outcome: str = "fixed",
    reasons: list[str] | None = None,
    at: datetime | None = None,
    **kwargs: Any,
) -> Completion:
    """A completion row as the crew endpoint stores it (checks left empty), without moving
    the work order: tests that need the order completed move it through the lifecycle."""
    c = Completion(
        work_order_id=wo.id,
        crew_id=crew_row.id,
        user_id=by.id,
        outcome=outcome,
        verdict=verdict,
        auto_verdict=kwargs.pop("auto_verdict", verdict),
        reasons=reasons or [],
        submitted_at=at or datetime.now(UTC),
        **kwargs,
    )
    db.add(c)
    db.flush()
    return c
