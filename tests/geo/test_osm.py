"""Facts about the committed Andorra extract (2013-05-28) as read by geo.osm."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import osmium
import pytest
import shapely
from shapely.geometry import LineString, Point

from geo.osm import AddressRecord, read_addresses, read_districts, street_points

PBF = Path(__file__).resolve().parents[2] / "data/osm/andorra.osm.pbf"

PARISHES = {
    "Andorra la Vella",
    "Canillo",
    "Encamp",
    "Escaldes-Engordany",
    "La Massana",
    "Ordino",
    "Sant Julià de Lòria",
}


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    k = math.cos(math.radians((a[1] + b[1]) / 2))
    return math.hypot((a[0] - b[0]) * k, a[1] - b[1]) * 111_320.0


def km2(geom: shapely.Geometry) -> float:
    k = math.cos(math.radians(42.5))
    return shapely.transform(geom, lambda xy: xy * [k * 111.32, 110.57]).area


@pytest.fixture(scope="module")
def addresses() -> list[AddressRecord]:
    return read_addresses(PBF)


@pytest.fixture(scope="module")
def named_highways() -> dict[str, list[LineString]]:
    out: dict[str, list[LineString]] = {}
    for way in osmium.FileProcessor(PBF, osmium.osm.NODE | osmium.osm.WAY).with_locations():
        if way.is_way() and "highway" in way.tags and "name" in way.tags:
            pts = [(n.lon, n.lat) for n in way.nodes if n.location.valid()]
            if len(pts) >= 2:
                out.setdefault(way.tags["name"], []).append(LineString(pts))
    return out


@pytest.fixture(scope="module")
def parishes() -> dict[str, shapely.Geometry]:
    return {d.name: d.geometry for d in read_districts(PBF, close_gaps_m=5000)}


# --------------------------------------------------------------------------- addresses


def test_house_addresses_are_the_three_tagged_nodes(addresses: list[AddressRecord]) -> None:
    # The 2013 extract has very few addr:* tags; if this changes the extract changed.
    houses = sorted((r.street, r.housenumber, r.osm_id) for r in addresses if r.housenumber)
    assert houses == [
        ("Avinguda Carlemany", "93", 1397132076),
        ("Avinguda Meritxell", "11", 1578367368),
        ("Plaça Major", "4", 1407150629),
    ]


def test_known_address_has_location_postcode_and_city(addresses: list[AddressRecord]) -> None:
    rec = next(r for r in addresses if r.osm_id == 1578367368)
    assert rec == AddressRecord(
        street="Avinguda Meritxell",
        housenumber="11",
        lon=pytest.approx(1.5243707),
        lat=pytest.approx(42.5080426),
        osm_type="node",
        osm_id=1578367368,
        postcode="AD500",
        city="Andorra la Vella",
    )


def test_known_address_falls_in_its_parish(
    addresses: list[AddressRecord], parishes: dict[str, shapely.Geometry]
) -> None:
    rec = next(r for r in addresses if r.osm_id == 1578367368)
    inside = [name for name, g in parishes.items() if g.contains(Point(rec.lon, rec.lat))]
    assert inside == ["Andorra la Vella"]


def test_street_records_lie_on_a_way_of_that_name(
    addresses: list[AddressRecord], named_highways: dict[str, list[LineString]]
) -> None:
    streets = [r for r in addresses if r.housenumber is None]
    assert len(streets) > 200
    for r in streets:
        d = min(line.distance(Point(r.lon, r.lat)) for line in named_highways[r.street])
        assert d < 1e-7, r


def test_touching_ways_merge_into_one_street_record(addresses: list[AddressRecord]) -> None:
    per_name = Counter(r.street for r in addresses if r.housenumber is None)
    # 23 connected ways form the main road; it must geocode to one point.
    assert per_name["Carretera General"] == 1
    assert per_name["Avinguda Meritxell"] == 1


def test_same_name_in_different_villages_stays_separate(addresses: list[AddressRecord]) -> None:
    majors = [r for r in addresses if r.street == "Carrer Major" and r.housenumber is None]
    assert len(majors) == 3
    for a, b in itertools.combinations(majors, 2):
        assert metres((a.lon, a.lat), (b.lon, b.lat)) > 1000


def test_street_record_is_near_the_house_on_that_square(addresses: list[AddressRecord]) -> None:
    square = next(r for r in addresses if r.street == "Plaça Major" and r.housenumber is None)
    house = next(r for r in addresses if r.street == "Plaça Major" and r.housenumber == "4")
    assert metres((square.lon, square.lat), (house.lon, house.lat)) < 50


# --------------------------------------------------------------------------- districts


def test_auto_level_is_parishes_but_canillo_cannot_be_assembled_exactly() -> None:
    # Canillo's relation references two border ways missing from the extract.
    districts = read_districts(PBF)
    assert {d.admin_level for d in districts} == {7}
    assert {d.name for d in districts} == PARISHES - {"Canillo"}


def test_gap_closing_yields_all_seven_parishes(parishes: dict[str, shapely.Geometry]) -> None:
    assert set(parishes) == PARISHES
    for name, geom in parishes.items():
        assert geom.geom_type == "MultiPolygon" and geom.is_valid, name
    # Official total is 468 km2; Canillo loses a sliver to the straight closure.
    assert 440 < sum(km2(g) for g in parishes.values()) < 480
    assert 95 < km2(parishes["Canillo"]) < 125


def test_parishes_do_not_overlap(parishes: dict[str, shapely.Geometry]) -> None:
    for (a, ga), (b, gb) in itertools.combinations(parishes.items(), 2):
        assert km2(ga.intersection(gb)) < 0.01, (a, b)


def test_admin_centres_fall_in_their_parish(parishes: dict[str, shapely.Geometry]) -> None:
    # admin_centre nodes of the Canillo and Andorra la Vella relations.
    assert parishes["Canillo"].contains(Point(1.5980302, 42.5667074))
    assert parishes["Andorra la Vella"].contains(Point(1.5212467, 42.5069391))
    assert not parishes["Canillo"].contains(Point(1.5212467, 42.5069391))


def test_gap_closing_respects_threshold() -> None:
    names = {d.name for d in read_districts(PBF, 7, close_gaps_m=1000)}
    assert "Canillo" not in names
    assert "Foix" not in {d.name for d in read_districts(PBF, 7, close_gaps_m=5000)}


# --------------------------------------------------------------------------- street points


def test_street_points_lie_on_named_drivable_streets(
    named_highways: dict[str, list[LineString]],
) -> None:
    pts = street_points(PBF, 200, seed=7)
    assert len(pts) == 200
    for lon, lat, name in pts:
        lines = named_highways[name]
        nearest = min(lines, key=lambda line: line.distance(Point(lon, lat)))
        snapped = nearest.interpolate(nearest.project(Point(lon, lat)))
        assert metres((lon, lat), (snapped.x, snapped.y)) < 15, name


def test_street_points_deterministic_per_seed() -> None:
    assert street_points(PBF, 25, seed=1) == street_points(PBF, 25, seed=1)
    assert street_points(PBF, 25, seed=1) != street_points(PBF, 25, seed=2)


def test_street_points_spread_over_the_country(parishes: dict[str, shapely.Geometry]) -> None:
    pts = street_points(PBF, 300, seed=3)
    hit = {
        name for lon, lat, _ in pts for name, g in parishes.items() if g.contains(Point(lon, lat))
    }
    assert len(hit) >= 6
    assert len({name for _, _, name in pts}) > 50


def test_street_points_respect_highway_types() -> None:
    only_primary = {
        name for _, _, name in street_points(PBF, 100, seed=1, highway_types=("primary",))
    }
    residential = {
        name for _, _, name in street_points(PBF, 100, seed=1, highway_types=("residential",))
    }
    assert "Carretera General" in only_primary
    assert not only_primary & residential
