"""The demo city: Andorra on real OpenStreetMap roads (ODbL, © OpenStreetMap contributors).

Seeded only by `streetloop seed demo`; none of these users, keys or passwords
exist in a database that was not seeded on purpose."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.auth import create_api_key, hash_password
from core.intake import Contact, NewRequest, submit_request
from core.lifecycle import Actor
from core.models import ApiKey, Crew, Depot, District, ServiceAttribute, ServiceType, User
from core.shifts import BreakRule, PatternSpec, create_pattern, materialize
from core.spatial import point
from core.storage import Storage
from demo.history import seed_history
from geo.geocode import build_address_index, geocode
from geo.osm import read_districts, street_points

DEMO_PASSWORD = "demo"
DEMO_API_KEY = "demo-open311-key"
DEMO_TZ = ZoneInfo("Europe/Andorra")
SEED = Actor(label="seed:demo")

_LIST = "singlevaluelist"
# Keyword arguments of ServiceType (its "attributes" those of ServiceAttribute), as written.
SERVICE_TYPES: list[dict[str, Any]] = [
    {
        "code": "pothole",
        "name": "Pothole",
        "group": "streets",
        "agency": "Roads and Streets",
        "description": "A hole or broken asphalt in the roadway.",
        "keywords": ["road", "asphalt", "hole"],
        "sla_hours": 72,
        "skill": "asphalt",
        "minutes_on_site": 30,
        "base_priority": 3,
        "duplicate_radius_m": 50,
        "demands": {"asphalt_kg": 40},
        "attributes": [
            {
                "code": "size",
                "datatype": _LIST,
                "required": True,
                "order": 1,
                "description": "How big is it?",
                "values": [
                    {"key": "small", "name": "Smaller than a plate"},
                    {"key": "medium", "name": "Up to a car tyre"},
                    {"key": "large", "name": "Larger than a car tyre"},
                ],
            },
            {
                "code": "depth_cm",
                "datatype": "number",
                "order": 2,
                "description": "Approximate depth in cm",
            },
            {
                "code": "where",
                "datatype": _LIST,
                "order": 3,
                "description": "Where in the street?",
                "values": [
                    {"key": "lane", "name": "Traffic lane"},
                    {"key": "crosswalk", "name": "Crosswalk"},
                    {"key": "shoulder", "name": "Shoulder or parking"},
                    {"key": "bike_lane", "name": "Bike lane"},
                ],
            },
        ],
    },
    {
        "code": "bulk_trash",
        "name": "Missed bulk-trash pickup",
        "group": "sanitation",
        "agency": "Sanitation",
        "description": "Bulk items set out for a scheduled pickup were not collected.",
        "keywords": ["trash", "furniture", "mattress", "collection"],
        "sla_hours": 48,
        "skill": "bulk_pickup",
        "minutes_on_site": 15,
        "base_priority": 3,
        "duplicate_radius_m": 30,
        "demands": {"bulk_items": "attribute:item_count"},
        "attributes": [
            {
                "code": "items",
                "datatype": "multivaluelist",
                "required": True,
                "order": 1,
                "description": "What was left?",
                "values": [
                    {"key": "furniture", "name": "Furniture"},
                    {"key": "appliance", "name": "Appliance"},
                    {"key": "mattress", "name": "Mattress"},
                    {"key": "electronics", "name": "Electronics"},
                    {"key": "other", "name": "Other"},
                ],
            },
            {
                "code": "item_count",
                "datatype": "number",
                "required": True,
                "order": 2,
                "description": "How many items?",
            },
            {
                "code": "access_notes",
                "datatype": "text",
                "order": 3,
                "description": "Where exactly are the items? (gate, yard...)",
            },
        ],
    },
    {
        "code": "graffiti",
        "name": "Graffiti",
        "group": "sanitation",
        "agency": "Sanitation",
        "description": "Graffiti on public property.",
        "keywords": ["tag", "paint", "vandalism"],
        "sla_hours": 120,
        "skill": "graffiti",
        "minutes_on_site": 45,
        "base_priority": 2,
        "duplicate_radius_m": 25,
        "attributes": [
            {
                "code": "offensive",
                "datatype": _LIST,
                "required": True,
                "order": 1,
                "description": "Is it offensive or hateful?",
                "values": [{"key": "yes", "name": "Yes"}, {"key": "no", "name": "No"}],
            },
            {
                "code": "surface",
                "datatype": _LIST,
                "order": 2,
                "description": "On what surface?",
                "values": [
                    {"key": "wall", "name": "Wall"},
                    {"key": "sign", "name": "Sign or pole"},
                    {"key": "bench", "name": "Bench or bin"},
                    {"key": "other", "name": "Other"},
                ],
            },
            {
                "code": "size_m2",
                "datatype": "number",
                "order": 3,
                "description": "Approximate area in square metres",
            },
        ],
    },
    {
        "code": "streetlight",
        "name": "Street light out",
        "group": "streets",
        "agency": "Public Lighting",
        "description": "A street lamp that is dark, flickering or damaged.",
        "keywords": ["lamp", "light", "dark"],
        "sla_hours": 96,
        "skill": "electrical",
        "minutes_on_site": 40,
        "base_priority": 3,
        "duplicate_radius_m": 40,
        "attributes": [
            {
                "code": "issue",
                "datatype": _LIST,
                "required": True,
                "order": 1,
                "description": "What is wrong?",
                "values": [
                    {"key": "out", "name": "Light is out"},
                    {"key": "flickering", "name": "Flickering"},
                    {"key": "day_burning", "name": "On during the day"},
                    {"key": "damaged", "name": "Pole damaged"},
                ],
            },
            {
                "code": "pole_id",
                "datatype": "string",
                "order": 2,
                "description": "Number on the pole, if visible",
            },
            {
                "code": "noticed_at",
                "datatype": "datetime",
                "order": 3,
                "description": "When did you notice it?",
            },
        ],
    },
]


class DepotSpec(TypedDict):
    code: str
    name: str
    agency: str
    lon: float
    lat: float


class CrewSpec(TypedDict):
    code: str
    name: str
    agency: str
    skills: list[str]
    capacity: dict[str, int]
    depot: str  # a DEPOTS code


DEPOTS: list[DepotSpec] = [
    {
        "code": "yard-alv",
        "name": "Andorra la Vella yard",
        "agency": "Public Works",
        "lon": 1.5205,
        "lat": 42.5045,
    },
    {
        "code": "yard-enc",
        "name": "Encamp yard",
        "agency": "Public Works",
        "lon": 1.5805,
        "lat": 42.5335,
    },
]

CREWS: list[CrewSpec] = [
    {
        "code": "pothole-1",
        "name": "Pothole crew 1",
        "agency": "Roads and Streets",
        "skills": ["asphalt"],
        "capacity": {"asphalt_kg": 1500},
        "depot": "yard-alv",
    },
    {
        "code": "pothole-2",
        "name": "Pothole crew 2",
        "agency": "Roads and Streets",
        "skills": ["asphalt"],
        "capacity": {"asphalt_kg": 1500},
        "depot": "yard-enc",
    },
    {
        "code": "sanitation-1",
        "name": "Bulk-trash truck 1",
        "agency": "Sanitation",
        "skills": ["bulk_pickup"],
        "capacity": {"bulk_items": 40},
        "depot": "yard-alv",
    },
    {
        "code": "sanitation-2",
        "name": "Bulk-trash truck 2",
        "agency": "Sanitation",
        "skills": ["bulk_pickup", "graffiti"],
        "capacity": {"bulk_items": 40},
        "depot": "yard-enc",
    },
    {
        "code": "graffiti-1",
        "name": "Graffiti crew",
        "agency": "Sanitation",
        "skills": ["graffiti"],
        "capacity": {},
        "depot": "yard-alv",
    },
    {
        "code": "streetlight-1",
        "name": "Lighting crew",
        "agency": "Public Lighting",
        "skills": ["electrical"],
        "capacity": {},
        "depot": "yard-alv",
    },
]

STAFF = [
    ("dispatcher@demo", "Dana Dispatcher", "dispatcher"),
    ("supervisor@demo", "Sam Supervisor", "supervisor"),
    ("admin@demo", "Alex Admin", "admin"),
    ("calltaker@demo", "Casey Call-taker", "call_taker"),
]

_DESCRIPTIONS = {
    "pothole": [
        "Deep pothole, cars swerve around it",
        "Broken asphalt near the curb",
        "Hole keeps getting bigger after the rain",
    ],
    "bulk_trash": [
        "Sofa left after pickup day",
        "Old fridge still on the sidewalk",
        "Mattress and boxes not collected",
    ],
    "graffiti": [
        "Tags on the wall by the bus stop",
        "Spray paint on the traffic sign",
        "Graffiti on the bench",
    ],
    "streetlight": [
        "Lamp out, street very dark at night",
        "Light flickers all evening",
        "Lamp is on all day",
    ],
}


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_text).split())


def _attributes(code: str, rng: random.Random) -> dict[str, str | list[str]]:
    if code == "pothole":
        return {
            "size": rng.choice(["small", "medium", "large"]),
            "depth_cm": str(rng.randint(2, 15)),
            "where": rng.choice(["lane", "crosswalk", "shoulder"]),
        }
    if code == "bulk_trash":
        return {
            "items": rng.sample(
                ["furniture", "appliance", "mattress", "electronics", "other"], rng.randint(1, 2)
            ),
            "item_count": str(rng.randint(1, 6)),
        }
    if code == "graffiti":
        return {
            "offensive": rng.choice(["no", "no", "no", "yes"]),
            "surface": rng.choice(["wall", "sign", "bench"]),
        }
    return {"issue": rng.choice(["out", "out", "flickering", "day_burning"])}


# Every crew works every day in the demo, so that the demo shows plans and crews at work
# on whatever day it is started (a city's own patterns come from the shifts API).
DEMO_ROTA = PatternSpec(
    weekdays=(1, 2, 3, 4, 5, 6, 7),
    starts=time(7),
    ends=time(15, 30),
    breaks=(BreakRule(time(11, 30), time(13, 30), 30),),
)
HISTORY_DAYS = 14


def seed_demo_city(
    session: Session,
    *,
    pbf: Path,
    n_requests: int = 300,
    rng_seed: int = 311,
    now: datetime | None = None,
    storage: Storage | None = None,
    horizon_days: int = 28,
) -> str:
    """Create the demo city; returns a one-line summary. Run again, it makes the crews'
    shifts for the coming `horizon_days` from their weekly patterns and returns.

    With a photo `storage`, older reports also get two weeks of past work (see
    `demo.history`): completions with proof, closed requests, a review queue."""
    now = now or datetime.now(UTC)
    if session.scalar(select(User.id).where(User.email == "admin@demo")) is not None:
        made = materialize(
            session, tz=DEMO_TZ, start=now.astimezone(DEMO_TZ).date(), days=horizon_days, now=now
        )
        return f"demo city already seeded; {made} shifts made for the coming {horizon_days} days"
    rng = random.Random(rng_seed)

    for rec in read_districts(pbf, close_gaps_m=5000):
        session.add(
            District(code=_slug(rec.name), name=rec.name, geom=f"SRID=4326;{rec.geometry.wkt}")
        )
    types: dict[str, ServiceType] = {}
    for type_spec in SERVICE_TYPES:
        columns = dict(type_spec)
        attrs = [ServiceAttribute(**a) for a in columns.pop("attributes")]
        st = ServiceType(**columns, attributes=attrs)
        session.add(st)
        types[st.code] = st
    depots: dict[str, Depot] = {}
    for d in DEPOTS:
        depots[d["code"]] = Depot(
            code=d["code"], name=d["name"], agency=d["agency"], location=point(d["lon"], d["lat"])
        )
        session.add(depots[d["code"]])
    session.flush()

    password = hash_password(DEMO_PASSWORD)
    today = now.astimezone(DEMO_TZ).date()
    for spec in CREWS:
        crew = Crew(
            code=spec["code"],
            name=spec["name"],
            agency=spec["agency"],
            skills=spec["skills"],
            capacity=spec["capacity"],
            depot_id=depots[spec["depot"]].id,
        )
        session.add(crew)
        session.flush()
        session.add(
            User(
                email=f"{crew.code}@demo",
                name=crew.name,
                password_hash=password,
                role="crew",
                crew_id=crew.id,
            )
        )
        rota = replace(DEMO_ROTA, valid_from=today - timedelta(days=HISTORY_DAYS))
        create_pattern(
            session, crew=crew, spec=rota, actor=SEED, tz=DEMO_TZ, horizon_days=0, now=now
        )
    # The past two weeks too (their history needs the shifts), then the coming days.
    start = today - timedelta(days=HISTORY_DAYS)
    n_shifts = materialize(
        session,
        tz=DEMO_TZ,
        start=start,
        days=HISTORY_DAYS + horizon_days,
        now=datetime.combine(start, time(0), DEMO_TZ),
        actor=SEED,
    )
    for email, name, role in STAFF:
        session.add(User(email=email, name=name, password_hash=password, role=role))
    create_api_key(session, "Demo resident app", DEMO_API_KEY, actor=SEED)
    session.flush()
    n_addresses = build_address_index(session, pbf)

    client = session.scalar(select(ApiKey).where(ApiKey.name == "Demo resident app"))
    actor = Actor.client("Demo resident app")
    codes = list(types)
    weights = [0.4, 0.25, 0.2, 0.15]
    points = street_points(pbf, n_requests, seed=rng_seed)
    joined = 0
    for i, (lon, lat, street) in enumerate(points):
        code = rng.choices(codes, weights)[0]
        at = now - timedelta(minutes=rng.randint(10, 14 * 24 * 60))
        # One report in eight is a neighbour reporting a problem already on file.
        if i > 10 and rng.random() < 0.125:
            lon, lat, _ = points[rng.randrange(i)]
            lon += rng.uniform(-0.0002, 0.0002)
            lat += rng.uniform(-0.0001, 0.0001)
        result = submit_request(
            session,
            NewRequest(
                service_code=code,
                lat=lat,
                lon=lon,
                address_string=f"{street}, Andorra",
                description=rng.choice(_DESCRIPTIONS[code]),
                attributes=_attributes(code, rng),
                contact=Contact(email=f"resident{i}@example.org")
                if rng.random() < 0.5
                else Contact(),
                channel="open311",
                api_key_id=client.id if client else None,
                requested_at=at,
            ),
            actor=actor,
        )
        joined += result.duplicate_of is not None
    # A few reports with only an address: some geocode to a street, some need a pin.
    for address in (
        "Avinguda Meritxell 11",
        "Carretera General",
        "Carrer de la Font que no existeix 7",
        "Behind the old church",
    ):
        submit_request(
            session,
            NewRequest(
                service_code="graffiti",
                address_string=address,
                description="Reported by phone",
                attributes={"offensive": "no"},
                channel="phone",
                requested_at=now - timedelta(hours=3),
            ),
            actor=actor,
            geocode=geocode,
        )
    history = ""
    if storage is not None:
        session.flush()
        history = "; " + str(seed_history(session, storage, rng=rng, now=now, tz=DEMO_TZ))
    return (
        f"seeded demo city: {len(DEPOTS)} depots, {len(CREWS)} crews ({n_shifts} shifts), "
        f"{len(SERVICE_TYPES)} service types, {n_addresses} address points, "
        f"{len(points) + 4} requests ({joined} joined an earlier report){history}"
    )
