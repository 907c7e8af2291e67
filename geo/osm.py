"""Read addresses, streets and administrative districts from an OSM PBF extract.

Pure functions over a file path: no database, no network. Coordinates are
lon/lat (EPSG:4326) throughout.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike

import osmium
import shapely
from osmium.geom import WKBFactory
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon
from shapely.ops import linemerge, unary_union

log = logging.getLogger(__name__)

PathArg = str | PathLike[str]

# Not physical streets (yet, or any more) or not places a resident stands on.
_NOT_STREETS = frozenset(
    {"proposed", "abandoned", "razed", "disused", "platform", "elevator", "corridor", "bus_stop"}
)

DRIVABLE_HIGHWAYS: tuple[str, ...] = (
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "living_street",
)

_OSM_TYPES = {"n": "node", "w": "way", "r": "relation"}


@dataclass(frozen=True)
class AddressRecord:
    """One geocodable thing: a house address, or a whole street (housenumber None)."""

    street: str
    housenumber: str | None
    lon: float
    lat: float
    osm_type: str
    osm_id: int
    postcode: str | None
    city: str | None


@dataclass(frozen=True)
class DistrictRecord:
    """An administrative boundary relation assembled into a valid multipolygon."""

    name: str
    osm_id: int
    admin_level: int
    geometry: MultiPolygon


# --------------------------------------------------------------------------- helpers


def _way_coords(way: osmium.osm.Way) -> list[list[tuple[float, float]]]:
    """Coordinate runs of a way, split where a node lies outside the extract."""
    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    for node in way.nodes:
        loc = node.location
        if loc.valid():
            run.append((loc.lon, loc.lat))
        else:
            # Extracts clipped at the bbox leave dangling refs; bridging them
            # would draw a straight line that is not a street.
            if len(run) >= 2:
                runs.append(run)
            run = []
    if len(run) >= 2:
        runs.append(run)
    return runs


def _to_local(geom: shapely.Geometry, lat0: float) -> shapely.Geometry:
    # Equirectangular scaling so lengths are proportional to metres; it is
    # linear, so points interpolated here still lie on the lon/lat segments.
    k = math.cos(math.radians(lat0))
    return shapely.transform(geom, lambda xy: xy * [k, 1.0])


def _from_local(geom: shapely.Geometry, lat0: float) -> shapely.Geometry:
    k = math.cos(math.radians(lat0))
    return shapely.transform(geom, lambda xy: xy / [k, 1.0])


def _address_point(runs: list[list[tuple[float, float]]], closed: bool) -> Point | None:
    if not runs:
        return None
    if closed and len(runs) == 1 and len(runs[0]) >= 4:
        poly = Polygon(runs[0])
        if not poly.is_valid:
            poly = shapely.make_valid(poly)
        if not poly.is_empty and poly.area > 0:
            return poly.centroid
    return MultiLineString(runs).centroid


def _street_name_of(tags: osmium.osm.TagList) -> str | None:
    # addr:place is the Nordic/rural convention for addresses without a street.
    return tags.get("addr:street") or tags.get("addr:place")


def _record(tags: osmium.osm.TagList, pt: Point, osm_type: str, osm_id: int) -> AddressRecord:
    return AddressRecord(
        street=_street_name_of(tags) or "",
        housenumber=tags.get("addr:housenumber"),
        lon=pt.x,
        lat=pt.y,
        osm_type=osm_type,
        osm_id=osm_id,
        postcode=tags.get("addr:postcode"),
        city=tags.get("addr:city"),
    )


# --------------------------------------------------------------------------- addresses


def read_addresses(pbf: PathArg) -> list[AddressRecord]:
    """All house addresses plus one record per connected named street.

    House addresses come from nodes (their location), ways (polygon centroid
    when closed, line centroid otherwise) and multipolygon relations (area
    centroid). Street records have housenumber None and sit at the midpoint of
    each connected group of same-named highway ways.
    """
    wkb = WKBFactory()
    records: list[AddressRecord] = []
    # name -> list of (way id, node ids, coordinate runs)
    streets: dict[str, list[tuple[int, list[int], list[list[tuple[float, float]]]]]] = defaultdict(
        list
    )

    # Only relations with an address need assembling; closed ways are handled
    # from their own node list so a broken way polygon cannot drop an address.
    proc = osmium.FileProcessor(pbf).with_areas(osmium.filter.KeyFilter("addr:housenumber"))
    for obj in proc:
        tags = obj.tags
        has_addr = "addr:housenumber" in tags and _street_name_of(tags) is not None
        if isinstance(obj, osmium.osm.Area):
            if obj.from_way() or not has_addr:
                continue
            try:
                geom = shapely.from_wkb(wkb.create_multipolygon(obj))
            except RuntimeError:
                continue
            if not geom.is_valid:
                geom = shapely.make_valid(geom)
            records.append(_record(tags, geom.centroid, "relation", obj.orig_id()))
        elif isinstance(obj, osmium.osm.Node):
            if has_addr and obj.location.valid():
                loc = obj.location
                records.append(_record(tags, Point(loc.lon, loc.lat), "node", obj.id))
        elif isinstance(obj, osmium.osm.Way):
            is_street = "name" in tags and tags.get("highway", "") not in ("", *_NOT_STREETS)
            if not (has_addr or is_street):
                continue
            runs = _way_coords(obj)
            if has_addr:
                pt = _address_point(runs, obj.is_closed())
                if pt is not None:
                    records.append(_record(tags, pt, "way", obj.id))
            if is_street and runs:
                streets[tags["name"]].append((obj.id, [n.ref for n in obj.nodes], runs))

    for name in sorted(streets):
        for group in _connected_groups(streets[name]):
            records.append(_street_record(name, group))
    return records


def _connected_groups(
    ways: list[tuple[int, list[int], list[list[tuple[float, float]]]]],
) -> list[list[tuple[int, list[int], list[list[tuple[float, float]]]]]]:
    """Group same-named ways that share any node (union-find)."""
    parent = list(range(len(ways)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_way_at: dict[int, int] = {}
    for i, (_, node_ids, _) in enumerate(ways):
        for ref in node_ids:
            j = first_way_at.setdefault(ref, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(ways)):
        groups[find(i)].append(i)
    return [[ways[i] for i in sorted(idx)] for _, idx in sorted(groups.items())]


def _street_record(
    name: str, group: list[tuple[int, list[int], list[list[tuple[float, float]]]]]
) -> AddressRecord:
    parts = [(way_id, LineString(run)) for way_id, _, runs in group for run in runs]
    lat0 = parts[0][1].coords[0][1]
    merged = linemerge(MultiLineString([_to_local(line, lat0) for _, line in parts]))
    mid = _from_local(merged.interpolate(0.5, normalized=True), lat0)
    # Attribute the record to the way the midpoint actually lies on.
    way_id = min(parts, key=lambda p: p[1].distance(mid))[0]
    return AddressRecord(
        street=name,
        housenumber=None,
        lon=mid.x,
        lat=mid.y,
        osm_type="way",
        osm_id=way_id,
        postcode=None,
        city=None,
    )


# --------------------------------------------------------------------------- districts


def read_districts(
    pbf: PathArg, admin_level: int | None = None, *, close_gaps_m: float = 0.0
) -> list[DistrictRecord]:
    """Named administrative boundaries at one level as valid lon/lat multipolygons.

    With ``admin_level`` None, pick the most detailed level (> 2) at which
    osmium assembles between 2 and 50 districts. Boundaries osmium cannot
    assemble (member ways outside the extract) are skipped unless
    ``close_gaps_m`` > 0: then, at the chosen level only, their rings are
    closed with straight segments if the total gap is at most that many
    metres (logged at WARNING, since the shape is then approximate).
    """
    wkb = WKBFactory()
    by_level: dict[int, list[DistrictRecord]] = defaultdict(list)

    proc = osmium.FileProcessor(pbf).with_areas(
        osmium.filter.TagFilter(("boundary", "administrative"))
    )
    for obj in proc:
        if not isinstance(obj, osmium.osm.Area) or obj.from_way():
            continue
        level = _admin_level(obj.tags)
        if level is None:
            continue
        try:
            geom = _as_multipolygon(shapely.from_wkb(wkb.create_multipolygon(obj)))
        except RuntimeError:  # osmium geometry_error: ring not closed etc.
            continue
        if geom is not None:
            by_level[level].append(DistrictRecord(obj.tags["name"], obj.orig_id(), level, geom))

    level = admin_level
    if level is None:
        # Level choice uses exact assemblies only: gap-closing would let
        # half-clipped neighbouring-country units (French communes around
        # Andorra) win the "most detailed" contest.
        candidates = [lv for lv, recs in by_level.items() if lv > 2 and 2 <= len(recs) <= 50]
        if not candidates:
            return []
        level = max(candidates)
    found = list(by_level.get(level, []))
    if close_gaps_m > 0:
        done = {r.osm_id for r in found}
        found.extend(_gap_closed_boundaries(pbf, level, done, close_gaps_m))
    return sorted(found, key=lambda r: r.osm_id)


def _admin_level(tags: osmium.osm.TagList) -> int | None:
    if tags.get("boundary") != "administrative" or not tags.get("name"):
        return None
    try:
        return int(tags["admin_level"])
    except (KeyError, ValueError):  # no admin_level, or one that is not a number
        return None


def _as_multipolygon(geom: shapely.Geometry) -> MultiPolygon | None:
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    # make_valid may return a collection with stray lines; only areas count.
    polys = [
        p
        for part in shapely.get_parts(geom)
        for p in shapely.get_parts(part)
        if isinstance(p, Polygon) and not p.is_empty
    ]
    return MultiPolygon(polys) if polys else None


def _gap_closed_boundaries(
    pbf: PathArg, level: int, skip: set[int], max_gap_m: float
) -> Iterable[DistrictRecord]:
    """Rebuild boundaries with missing member ways by bridging chain ends."""
    relations: dict[int, tuple[str, int, list[tuple[int, str]]]] = {}
    for rel in osmium.FileProcessor(pbf, osmium.osm.RELATION):
        if (
            not isinstance(rel, osmium.osm.Relation)
            or _admin_level(rel.tags) != level
            or rel.id in skip
        ):
            continue
        members = [(m.ref, m.role) for m in rel.members if m.type == "w"]
        relations[rel.id] = (rel.tags["name"], level, members)
    if not relations:
        return
    wanted = {ref for _, _, ms in relations.values() for ref, _ in ms}
    lines: dict[int, list[tuple[float, float]]] = {}
    for way in osmium.FileProcessor(pbf, osmium.osm.NODE | osmium.osm.WAY).with_locations():
        if isinstance(way, osmium.osm.Way) and way.id in wanted:
            runs = _way_coords(way)
            if len(runs) == 1:
                lines[way.id] = runs[0]

    for rel_id, (name, level, members) in sorted(relations.items()):
        outer = [lines[ref] for ref, role in members if ref in lines and role != "inner"]
        inner = [lines[ref] for ref, role in members if ref in lines and role == "inner"]
        if not outer:
            continue
        lat0 = outer[0][0][1]
        outer_rings, gap_o = _close_chains(outer, lat0)
        inner_rings, gap_i = _close_chains(inner, lat0)
        gap = gap_o + gap_i
        if gap > max_gap_m or not outer_rings:
            continue
        area = unary_union([shapely.make_valid(Polygon(r)) for r in outer_rings])
        if inner_rings:
            area = area.difference(
                unary_union([shapely.make_valid(Polygon(r)) for r in inner_rings])
            )
        geom = _as_multipolygon(area)
        if geom is None:
            continue
        log.warning("boundary %s (r%d) closed across %.0f m of missing ways", name, rel_id, gap)
        yield DistrictRecord(name, rel_id, level, geom)


def _close_chains(
    lines: Sequence[list[tuple[float, float]]], lat0: float
) -> tuple[list[list[tuple[float, float]]], float]:
    """Merge lines into rings, bridging open ends greedily; return rings and metres bridged."""
    if not lines:
        return [], 0.0
    merged = linemerge(MultiLineString(lines))
    chains = [list(g.coords) for g in getattr(merged, "geoms", [merged])]
    rings = [c for c in chains if c[0] == c[-1] and len(c) >= 4]
    open_chains = [c for c in chains if c[0] != c[-1]]
    k = math.cos(math.radians(lat0))

    def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
        return math.hypot((a[0] - b[0]) * k, a[1] - b[1]) * 111_320.0

    gap = 0.0
    while open_chains:
        chain = open_chains.pop(0)
        while True:
            end = chain[-1]
            best, best_d, flip = None, metres(end, chain[0]), False
            for i, other in enumerate(open_chains):
                for rev in (False, True):
                    d = metres(end, other[-1] if rev else other[0])
                    if d < best_d:
                        best, best_d, flip = i, d, rev
            gap += best_d
            if best is None:
                rings.append(chain + [chain[0]])
                break
            nxt = open_chains.pop(best)
            chain = chain + (nxt[::-1] if flip else nxt)
    return rings, gap


# --------------------------------------------------------------------------- street sampling


def street_points(
    pbf: PathArg, n: int, seed: int, highway_types: Sequence[str] = DRIVABLE_HIGHWAYS
) -> list[tuple[float, float, str]]:
    """``n`` points (lon, lat, street name) on named streets of the given types.

    Sampling is uniform over street length, so long avenues get more points
    than cul-de-sacs, and it is fully determined by ``seed``.
    """
    wanted = frozenset(highway_types)
    ways: list[tuple[int, str, list[list[tuple[float, float]]]]] = []
    for way in osmium.FileProcessor(pbf, osmium.osm.NODE | osmium.osm.WAY).with_locations():
        if (
            isinstance(way, osmium.osm.Way)
            and way.tags.get("highway") in wanted
            and way.tags.get("name")
        ):
            runs = _way_coords(way)
            if runs:
                ways.append((way.id, way.tags["name"], runs))
    if not ways or n <= 0:
        return []
    # Sorted ids make the sample independent of file block order.
    ways.sort(key=lambda w: w[0])
    lat0 = ways[0][2][0][0][1]
    segs: list[tuple[LineString, str]] = []
    cum: list[float] = []
    total = 0.0
    for _, name, runs in ways:
        for run in runs:
            line = _to_local(LineString(run), lat0)
            if line.length > 0:
                total += line.length
                segs.append((line, name))
                cum.append(total)
    rng = random.Random(seed)
    out: list[tuple[float, float, str]] = []
    for _ in range(n):
        u = rng.random() * total
        i = min(bisect.bisect_right(cum, u), len(segs) - 1)
        line, name = segs[i]
        start = cum[i] - line.length
        pt = _from_local(line.interpolate(u - start), lat0)
        out.append((pt.x, pt.y, name))
    return out
