"""Geocoding `address_string` against the OSM address index (table address_points).

Exact matching on normalised keys: a wrong pin sends a crew to the wrong street,
so an ambiguous or unknown address stays unplaced for a dispatcher to pin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Integer, Row, case, delete, func, insert, select
from sqlalchemy.orm import Session

from core.models import AddressPoint
from core.spatial import GeocodeMatch, distance_metres, within_metres
from geo.address import normalize_housenumber, normalize_street, parse_address
from geo.osm import read_addresses


def build_address_index(session: Session, pbf: str | Path) -> int:
    """Replace the index with the addresses and named streets of one OSM extract."""
    records = read_addresses(pbf)
    session.execute(delete(AddressPoint))
    rows = [
        {
            "street": r.street,
            "street_key": normalize_street(r.street),
            "housenumber": normalize_housenumber(r.housenumber) if r.housenumber else None,
            "postcode": r.postcode,
            "city": r.city,
            "location": f"SRID=4326;POINT({r.lon} {r.lat})",
            "osm_type": r.osm_type,
            "osm_id": r.osm_id,
        }
        for r in records
    ]
    for start in range(0, len(rows), 5000):
        session.execute(insert(AddressPoint), rows[start : start + 5000])
    return len(rows)


def _point_match(rows: Sequence[Row[Any]], label: str, precision: str) -> GeocodeMatch | None:
    if not rows:
        return None
    # Several records with one key: accept only if they are one place (the same
    # building mapped twice), not "Carrer Major" in three different villages.
    spread = (
        max((abs(a.x - b.x) + abs(a.y - b.y)) for a in rows for b in rows) if len(rows) > 1 else 0.0
    )
    if spread > 0.002:  # ~150-200 m
        return None
    return GeocodeMatch(lon=rows[0].x, lat=rows[0].y, label=label, precision=precision)


def geocode(session: Session, address_string: str) -> GeocodeMatch | None:
    parsed = parse_address(address_string)
    if not parsed.street_key:
        return None
    base = select(
        AddressPoint.street,
        AddressPoint.housenumber,
        func.ST_X(AddressPoint.location).label("x"),
        func.ST_Y(AddressPoint.location).label("y"),
    ).where(AddressPoint.street_key == parsed.street_key)
    if parsed.postcode:
        base = base.where(
            (AddressPoint.postcode.is_(None)) | (AddressPoint.postcode == parsed.postcode)
        )
    for candidate in parsed.housenumber_candidates:
        rows = session.execute(base.where(AddressPoint.housenumber == candidate)).all()
        if rows:
            return _point_match(rows, f"{rows[0].street} {candidate}", "address")
    rows = session.execute(base.where(AddressPoint.housenumber.is_(None))).all()
    if rows:
        return _point_match(rows, rows[0].street, "street")
    return None


# -- the intake desk's search: many candidates for a person to choose from -------------------
# Unlike `geocode`, which must pick one place or none (nobody checks its answer), these
# list what matches, ranked, for a call-taker who reads them back to the caller.

MAX_SEARCH_RESULTS = 25
# A click on the map names the nearest address only if one is this close: further away
# it would be a different building, and the desk says "no address here" instead.
NEAREST_WITHIN_M = 150


@dataclass(frozen=True)
class AddressHit:
    street: str
    housenumber: str | None
    postcode: str | None
    city: str | None
    lon: float
    lat: float
    precision: str  # "address" (a house number) or "street" (somewhere on the street)
    distance_m: float | None = None

    @property
    def label(self) -> str:
        place = f"{self.street} {self.housenumber}" if self.housenumber else self.street
        return ", ".join(p for p in (place, self.postcode, self.city) if p)


def search_addresses(session: Session, text_: str, *, limit: int = 10) -> list[AddressHit]:
    """Addresses matching what a caller says, as they say it: the street's words typed so
    far ("carrer maj", "av meritxell 1", "major 12") and, if given, the start of a house
    number. Ranked: the exact street before streets that start so, before streets with a
    word that starts so; then the exact number, then the whole street, then numbers in
    order. A number the street does not have lists the street instead (the caller may
    have it wrong; the call-taker sees what there is). Nothing for text with no street."""
    parsed = parse_address(text_)
    if not parsed.street_key:
        return []
    hits = _search(session, parsed.street_key, parsed.housenumber, limit)
    if not hits and parsed.housenumber:
        hits = _search(session, parsed.street_key, None, limit)
    return hits


def _search(session: Session, key: str, housenumber: str | None, limit: int) -> list[AddressHit]:
    exact = AddressPoint.street_key == key
    starts = AddressPoint.street_key.startswith(key, autoescape=True)
    word = AddressPoint.street_key.contains(f" {key}", autoescape=True)
    conditions: list[ColumnElement[bool]] = [starts | word]
    number_rank: Any = case((AddressPoint.housenumber.is_(None), 0), else_=1)
    if housenumber:
        hn = housenumber
        conditions.append(AddressPoint.housenumber.startswith(hn, autoescape=True))
        number_rank = case((AddressPoint.housenumber == hn, 0), else_=1)
    street_rank = case((exact, 0), (starts, 1), else_=2)
    # Numbers in numeric order ("2" before "10"); the leading digits, then the text.
    leading = func.coalesce(
        func.nullif(func.substring(AddressPoint.housenumber, r"^\d+"), "").cast(Integer), 0
    )
    ranks = {
        "rank_1_street": street_rank,
        "rank_2_number": number_rank,
        "rank_3_name": AddressPoint.street,
        "rank_4_leading": leading,
        "rank_5_housenumber": AddressPoint.housenumber,
        # A namesake in another village comes after, in the order of the place names.
        "rank_6_city": AddressPoint.city,
    }
    return _ranked(session, conditions, ranks, limit)


# The geocoder's "one place" (see _point_match): records of one address this close are one
# building mapped twice (a node and a way, one with the postcode and one without); farther
# apart they are namesakes in different villages.
_SAME_PLACE_DEGREES = 0.002


def _ranked(
    session: Session, conditions: list[Any], ranks: dict[str, Any], limit: int
) -> list[AddressHit]:
    """The matching records as one line per place as a person reads it, ranked (each rank
    the best of the place's records), at the place's first-mapped point.

    A house number's records within ~200 m of each other are one line (DBSCAN over the
    matches of each street and number), named with whatever postcode and city they have. A
    street is one line per name and city: its ways are many records, and a point on any of
    them is only "on the street"."""
    house = AddressPoint.housenumber.is_not(None)
    matches = (
        select(
            AddressPoint.id,
            AddressPoint.street,
            AddressPoint.housenumber,
            AddressPoint.postcode,
            AddressPoint.city,
            case(
                (
                    house,
                    func.ST_ClusterDBSCAN(AddressPoint.location, _SAME_PLACE_DEGREES, 1).over(
                        partition_by=(AddressPoint.street, AddressPoint.housenumber)
                    ),
                )
            ).label("cluster"),
            case((~house, AddressPoint.city)).label("street_city"),
            *(expr.label(name) for name, expr in ranks.items()),
        )
        .where(*conditions)
        .subquery()
    )
    m = matches.c
    grouped = (
        select(
            m.street,
            m.housenumber,
            func.max(m.postcode).label("postcode"),
            func.max(m.city).label("city"),
            func.min(m.id).label("first_id"),
            *(func.min(m[name]).label(name) for name in ranks),
        )
        .group_by(m.street, m.housenumber, m.cluster, m.street_city)
        .subquery()
    )
    rows = session.execute(
        select(
            grouped,
            func.ST_X(AddressPoint.location).label("x"),
            func.ST_Y(AddressPoint.location).label("y"),
        )
        .join(AddressPoint, AddressPoint.id == grouped.c.first_id)
        .order_by(*(grouped.c[name] for name in ranks), grouped.c.first_id)
        .limit(limit)
    ).all()
    return [
        AddressHit(
            street=r.street,
            housenumber=r.housenumber,
            postcode=r.postcode,
            city=r.city,
            lon=r.x,
            lat=r.y,
            precision="address" if r.housenumber else "street",
            distance_m=round(r.rank_distance, 1) if "rank_distance" in r._fields else None,
        )
        for r in rows
    ]


def nearest_addresses(
    session: Session, lon: float, lat: float, *, limit: int = 5, within_m: float = NEAREST_WITHIN_M
) -> list[AddressHit]:
    """The addresses nearest a point clicked on the map, nearest first, within `within_m`:
    house numbers only (a street's point is wherever its way was mapped, not near the click)."""
    conditions = [
        AddressPoint.housenumber.is_not(None),
        within_metres(AddressPoint.location, lon, lat, within_m),
    ]
    return _ranked(
        session,
        conditions,
        {"rank_distance": distance_metres(AddressPoint.location, lon, lat)},
        limit,
    )
