"""Geocoding `address_string` against the OSM address index (table address_points).

Exact matching on normalised keys: a wrong pin sends a crew to the wrong street,
so an ambiguous or unknown address stays unplaced for a dispatcher to pin."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from core.intake import GeocodeMatch
from core.models import AddressPoint
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


def _point_match(rows: list[AddressPoint], label: str, precision: str) -> GeocodeMatch | None:
    if not rows:
        return None
    # Several records with one key: accept only if they are one place (the same
    # building mapped twice), not "Carrer Major" in three different villages.
    spread = max(
        (abs(a.x - b.x) + abs(a.y - b.y)) for a in rows for b in rows
    ) if len(rows) > 1 else 0.0
    if spread > 0.002:  # ~150-200 m
        return None
    return GeocodeMatch(lon=rows[0].x, lat=rows[0].y, label=label, precision=precision)


def geocode(session: Session, address_string: str) -> GeocodeMatch | None:
    parsed = parse_address(address_string)
    if not parsed.street_key:
        return None
    base = select(
        AddressPoint.street, AddressPoint.housenumber,
        func.ST_X(AddressPoint.location).label("x"), func.ST_Y(AddressPoint.location).label("y"),
    ).where(AddressPoint.street_key == parsed.street_key)
    if parsed.postcode:
        base = base.where((AddressPoint.postcode.is_(None)) | (AddressPoint.postcode == parsed.postcode))
    for candidate in parsed.housenumber_candidates:
        rows = session.execute(base.where(AddressPoint.housenumber == candidate)).all()
        if rows:
            return _point_match(rows, f"{rows[0].street} {candidate}", "address")
    rows = session.execute(base.where(AddressPoint.housenumber.is_(None))).all()
    if rows:
        return _point_match(rows, rows[0].street, "street")
    return None
