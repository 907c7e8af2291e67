"""The offline basemap: the city's own streets, water, parks and buildings, imported from
its OSM extract into PostGIS once (`streetloop basemap build`) and cut into Mapbox Vector
Tiles by PostGIS (`ST_AsMVT`) when a map asks for them (`/tiles/{z}/{x}/{y}.pbf`).

Cities run closed networks: the maps of the screens must show real streets with no
tile server on the internet. A vector tile carries only geometry and a few attributes;
the browser paints it (protomaps-leaflet, on canvas), so one import serves every zoom.

Tiles are cut on demand, not pre-cut into a table at build time. Measured with
bench/basemap.py (2 cores shared with other jobs, through the Flask app): a tile of zooms
12-17 over Andorra is cut and served in 11 ms at p50 and 27 ms at p95 (Helsinki's dense
centre: 8.5 and 32 ms), where a 304 answered from one primary-key read, about what
serving a pre-cut tile from a table would cost, takes 4-14 ms. Pre-cutting zooms 0-17
over Andorra's bounds is 37,000 tiles (at 5-10 ms of cutting each, 3-6 minutes of build
instead of 2 s), four times more for each further zoom, most of them mountainside nobody
opens. A tile is a pure function
of the build and its z/x/y, so its ETag is known before it is cut: a browser revalidating
a tile it has gets its 304 without any cutting.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import osmium
import shapely
from osmium.geom import WKBFactory
from shapely.geometry import LineString, MultiLineString, Point
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from core.models import BASEMAP_LAYERS, BasemapBuild, BasemapFeature
from geo.osm import _way_coords

log = logging.getLogger(__name__)

# Tiles are cut up to this zoom; a map zoomed further in draws the z17 tiles larger
# (protomaps-leaflet's maxDataZoom), which is still sharp: a z17 tile's 4096-unit grid
# is about 4 cm at the equator.
MAX_DATA_ZOOM = 17
# Zoom levels and coordinates a tile address may have at all (beyond, a 400).
MAX_TILE_ZOOM = 30
EXTENT = 4096
# Geometry reaching this many tile units past the edge is kept, so lines and polygon
# outlines do not stop short of the edge where the next tile's start.
BUFFER = 64
MEDIA_TYPE = "application/vnd.mapbox-vector-tile"

# protomaps-leaflet draws a tile of zoom z over 512 screen pixels (a map at zoom 17 asks
# for the tiles of zoom 16): simplification and the dropping of specks are sized to that.
TILE_PIXELS = 512

_EARTH_RADIUS = 6378137.0
_WORLD = 2 * math.pi * _EARTH_RADIUS
_MAX_LAT = 85.0511287798

# highway=* -> (kind, first zoom drawn). Kinds are what the paint rules style.
_ROADS: dict[str, tuple[str, int]] = {
    "motorway": ("motorway", 5),
    "motorway_link": ("motorway", 10),
    "trunk": ("trunk", 6),
    "trunk_link": ("trunk", 10),
    "primary": ("primary", 8),
    "primary_link": ("primary", 11),
    "secondary": ("secondary", 9),
    "secondary_link": ("secondary", 12),
    "tertiary": ("tertiary", 11),
    "tertiary_link": ("tertiary", 12),
    "unclassified": ("minor", 12),
    "residential": ("minor", 12),
    "living_street": ("minor", 13),
    "road": ("minor", 13),
    "pedestrian": ("pedestrian", 13),
    "service": ("service", 14),
    "track": ("track", 14),
    "footway": ("path", 15),
    "path": ("path", 14),
    "cycleway": ("path", 14),
    "bridleway": ("path", 15),
    "steps": ("path", 15),
}
_RAILWAYS: dict[str, tuple[str, int]] = {
    "rail": ("rail", 9),
    "narrow_gauge": ("rail", 11),
    "light_rail": ("tram", 12),
    "tram": ("tram", 13),
    "funicular": ("rail", 13),
    "monorail": ("tram", 13),
}
_WATERWAYS: dict[str, tuple[str, int]] = {
    "river": ("river", 8),
    "canal": ("canal", 10),
    "stream": ("stream", 13),
    "ditch": ("stream", 15),
    "drain": ("stream", 15),
}
# place=* -> (kind, first zoom) for the names of towns and neighbourhoods.
_PLACES: dict[str, tuple[str, int]] = {
    "city": ("city", 6),
    "town": ("town", 9),
    "village": ("village", 11),
    "suburb": ("suburb", 12),
    "hamlet": ("hamlet", 13),
    "quarter": ("suburb", 13),
    "neighbourhood": ("neighbourhood", 14),
}
# (key, value) of an area -> landuse kind. Earlier keys win (a park on residential land).
_LANDUSE: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "leisure",
        {
            "park": "park",
            "garden": "park",
            "playground": "park",
            "nature_reserve": "park",
            "pitch": "pitch",
            "golf_course": "grass",
            "dog_park": "park",
            "recreation_ground": "grass",
        },
    ),
    (
        "landuse",
        {
            "forest": "wood",
            "grass": "grass",
            "meadow": "grass",
            "village_green": "grass",
            "recreation_ground": "grass",
            "cemetery": "cemetery",
            "residential": "residential",
            "commercial": "commercial",
            "retail": "commercial",
            "industrial": "industrial",
            "railway": "industrial",
            "farmland": "farmland",
            "allotments": "grass",
            "orchard": "farmland",
            "vineyard": "farmland",
        },
    ),
    (
        "natural",
        {
            "wood": "wood",
            "grassland": "grass",
            "heath": "grass",
            "scrub": "scrub",
            "bare_rock": "rock",
            "scree": "rock",
            "glacier": "glacier",
            "beach": "sand",
            "sand": "sand",
            "wetland": "wetland",
        },
    ),
    ("amenity", {"grave_yard": "cemetery"}),
)
_WATER_AREAS = {
    ("natural", "water"),
    ("waterway", "riverbank"),
    ("landuse", "reservoir"),
    ("landuse", "basin"),
    ("natural", "bay"),
    ("waterway", "dock"),
}
_NOT_BUILT = frozenset({"proposed", "abandoned", "razed", "disused", "construction", "planned"})
# Landuse and water polygons are drawn from zoom 6 on, as long as they are big enough
# to see (see _min_area); buildings only from zoom 14, where a house is a few pixels.
_AREA_MIN_ZOOM = 6
_BUILDING_MIN_ZOOM = 14


class BasemapError(RuntimeError):
    """The basemap could not be built."""


@dataclass(frozen=True)
class BuildSummary:
    features: int
    seconds: float
    skipped: bool
    version: str

    def __str__(self) -> str:
        if self.skipped:
            return f"basemap is up to date ({self.features} features, version {self.version}); build skipped"
        return f"built the basemap: {self.features} features in {self.seconds:.1f} s (version {self.version})"


@dataclass(frozen=True)
class _Row:
    layer: str
    kind: str
    name: str | None
    min_zoom: int
    geom: shapely.Geometry  # lon/lat


# --------------------------------------------------------------------------- reading OSM


def _mercator(xy: np.ndarray) -> np.ndarray:
    lon = np.radians(xy[:, 0])
    lat = np.radians(np.clip(xy[:, 1], -_MAX_LAT, _MAX_LAT))
    return np.column_stack(
        (_EARTH_RADIUS * lon, _EARTH_RADIUS * np.log(np.tan(np.pi / 4 + lat / 2)))
    )


def _line(runs: list[list[tuple[float, float]]]) -> shapely.Geometry | None:
    if not runs:
        return None
    return LineString(runs[0]) if len(runs) == 1 else MultiLineString(runs)


def _landuse_kind(tags: osmium.osm.TagList) -> str | None:
    for key, kinds in _LANDUSE:
        kind = kinds.get(tags[key]) if key in tags else None
        if kind:
            return kind
    return None


def _area_rows(area: osmium.osm.Area, wkb: WKBFactory) -> Iterator[_Row]:
    tags = area.tags
    building = tags.get("building", "no")
    is_water = any((k, tags.get(k)) in _WATER_AREAS for k in ("natural", "waterway", "landuse"))
    landuse = None if is_water else _landuse_kind(tags)
    is_building = building not in ("no", *_NOT_BUILT)
    if not (is_water or landuse or is_building):
        return
    try:
        geom = shapely.from_wkb(wkb.create_multipolygon(area))
    except RuntimeError:  # osmium could not assemble it (members outside the extract)
        return
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    geom = shapely.get_parts(geom)
    polys = [g for g in geom if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    if not polys:
        return
    shape = shapely.union_all(polys) if len(polys) > 1 else polys[0]
    name = tags.get("name")
    if is_water:
        yield _Row("water", "water", name, _AREA_MIN_ZOOM, shape)
    elif landuse:
        yield _Row("landuse", landuse, name, _AREA_MIN_ZOOM, shape)
    if is_building:
        yield _Row("buildings", "building", None, _BUILDING_MIN_ZOOM, shape)


def _way_rows(way: osmium.osm.Way) -> Iterator[_Row]:
    tags = way.tags
    found: list[tuple[str, str, int]] = []
    highway = tags.get("highway")
    if highway in _ROADS and tags.get("area") != "yes":
        found.append(("roads", *_ROADS[highway]))
    railway = tags.get("railway")
    # Underground rails (metros) are not where anyone stands.
    if railway in _RAILWAYS and tags.get("tunnel") in (None, "no"):
        found.append(("railways", *_RAILWAYS[railway]))
    waterway = tags.get("waterway")
    if waterway in _WATERWAYS and tags.get("tunnel") in (None, "no"):
        found.append(("waterways", *_WATERWAYS[waterway]))
    if tags.get("natural") == "coastline":
        found.append(("waterways", "coastline", 5))
    if not found:
        return
    geom = _line(_way_coords(way))
    if geom is None:
        return
    name = tags.get("name")
    for layer, kind, min_zoom in found:
        yield _Row(
            layer,
            kind,
            name if layer != "waterways" or kind != "coastline" else None,
            min_zoom,
            geom,
        )


def _node_rows(node: osmium.osm.Node) -> Iterator[_Row]:
    tags = node.tags
    place = tags.get("place")
    if place in _PLACES and tags.get("name") and node.location.valid():
        kind, min_zoom = _PLACES[place]
        yield _Row(
            "places", kind, tags["name"], min_zoom, Point(node.location.lon, node.location.lat)
        )


def read_basemap(pbf: str | Path) -> Iterator[_Row]:
    """What the basemap draws, from one OSM extract (lon/lat geometries)."""
    wkb = WKBFactory()
    # Only areas that can be drawn are assembled; assembling every closed way and
    # multipolygon (boundaries, routes' areas) would cost more than the whole import.
    wanted = osmium.filter.KeyFilter(
        "building", "landuse", "natural", "leisure", "waterway", "amenity"
    )
    for obj in osmium.FileProcessor(str(pbf)).with_areas(wanted):
        if isinstance(obj, osmium.osm.Area):
            yield from _area_rows(obj, wkb)
        elif isinstance(obj, osmium.osm.Way):
            yield from _way_rows(obj)
        elif isinstance(obj, osmium.osm.Node):
            yield from _node_rows(obj)


# --------------------------------------------------------------------------- building


def _source_stamp(pbf: Path) -> dict[str, Any]:
    st = pbf.stat()
    return {"pbf": str(pbf), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def current_build(session: Session) -> BasemapBuild | None:
    return session.get(BasemapBuild, 1)


def build_basemap(session: Session, pbf: str | Path, *, force: bool = False) -> BuildSummary:
    """Replace the basemap with what one OSM extract draws, in the caller's transaction
    (maps go on reading the old one until it commits). Skipped when the basemap was
    built from this same file (same path, size and mtime), unless ``force``."""
    pbf = Path(pbf).resolve()
    if not pbf.is_file():
        raise BasemapError(f"OSM extract not found: {pbf}")
    source = _source_stamp(pbf)
    # Locked so two builds at once do not interleave their deletes and copies.
    build = session.scalars(
        select(BasemapBuild).where(BasemapBuild.id == 1).with_for_update()
    ).first()
    if build is not None and build.source == source and not force:
        log.info("basemap of %s is up to date; build skipped", pbf.name)
        return BuildSummary(build.features, build.seconds, True, build.version)

    started = time.perf_counter()
    session.execute(delete(BasemapFeature))
    count = _copy_features(session, read_basemap(pbf))
    if count == 0:
        raise BasemapError(f"nothing to draw in {pbf}: no roads, water, land use or buildings")
    # Fresh statistics, so the planner uses the spatial index on the new rows.
    session.execute(text("ANALYZE basemap_features"))
    bounds = session.execute(
        text(
            "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
            "(SELECT ST_Transform(ST_SetSRID(ST_Extent(geom)::geometry, 3857), 4326) AS b FROM basemap_features) e"
        )
    ).one()
    seconds = time.perf_counter() - started
    version = uuid.uuid4().hex[:16]
    values = {
        "version": version,
        "source": source,
        "features": count,
        "seconds": round(seconds, 3),
        "bounds": [round(v, 6) for v in bounds],
    }
    if build is None:
        session.add(BasemapBuild(id=1, **values))
    else:
        for key, value in values.items():
            setattr(build, key, value)
        build.built_at = session.scalar(text("SELECT now()"))
    session.flush()
    log.info("built the basemap of %s: %d features in %.1f s", pbf.name, count, seconds)
    return BuildSummary(count, seconds, False, version)


def _copy_features(session: Session, rows: Iterator[_Row]) -> int:
    """COPY the rows in (an INSERT per feature is ten times slower on a city of buildings)."""
    raw = session.connection().connection.driver_connection
    # Only a connection returned to the pool has no driver connection; this one is checked
    # out, and its transaction has just run the DELETE.
    assert raw is not None
    count = 0
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY basemap_features (layer, kind, name, min_zoom, area, geom) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            geom = shapely.set_srid(shapely.transform(row.geom, _mercator), 3857)
            if geom.is_empty:
                continue
            copy.write_row(
                (
                    row.layer,
                    row.kind,
                    row.name,
                    row.min_zoom,
                    float(geom.area),
                    shapely.to_wkb(geom, hex=True, include_srid=True),
                )
            )
            count += 1
    return count


# --------------------------------------------------------------------------- cutting tiles


def tile_in_range(z: int, x: int, y: int) -> bool:
    """Whether z/x/y names a tile at all (x and y inside the z's grid)."""
    return 0 <= z <= MAX_TILE_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


def _min_area(z: int) -> float:
    # A polygon smaller than about 2 x 2 screen pixels at this zoom is a speck: dropped,
    # so low zooms do not carry a whole city of houses.
    pixel = _WORLD / (TILE_PIXELS * 2**z)
    return 4 * pixel * pixel


def _layer_sql(layer: str) -> str:
    return (
        f"(SELECT ST_AsMVT(t, '{layer}', {EXTENT}, 'geom') FROM ("
        "  SELECT f.kind, f.name,"
        f"    ST_AsMVTGeom(ST_Simplify(f.geom, :tolerance, true), e.box, {EXTENT}, {BUFFER}, true) AS geom"
        "  FROM basemap_features f, env e"
        f"  WHERE f.layer = '{layer}' AND f.min_zoom <= :z AND f.geom && e.wide"
        "    AND (f.area = 0 OR f.area >= :min_area)"
        ") t WHERE t.geom IS NOT NULL)"
    )


# One statement, one round trip: a tile is the concatenation of its layers' MVTs (an MVT
# is a list of layers, so concatenated tiles are one tile). A layer with nothing in the
# tile adds nothing (ST_AsMVT of no rows is empty).
_TILE_SQL = text(
    f"WITH env AS (SELECT ST_TileEnvelope(:z, :x, :y) AS box,"
    f"  ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}) AS wide) "
    "SELECT " + " || ".join(f"coalesce({_layer_sql(layer)}, ''::bytea)" for layer in BASEMAP_LAYERS)
)


def cut_tile(session: Session, z: int, x: int, y: int) -> bytes:
    """The vector tile z/x/y of the basemap; empty bytes where there is nothing to draw."""
    if z > MAX_DATA_ZOOM or not tile_in_range(z, x, y):
        raise ValueError(f"no basemap tile {z}/{x}/{y}")
    # Simplified to half a screen pixel: the shape is unchanged on screen, while a
    # district-sized polygon at zoom 10 keeps a few hundred of its thousands of points.
    tolerance = _WORLD / (TILE_PIXELS * 2**z) / 2
    data = session.scalar(
        _TILE_SQL, {"z": z, "x": x, "y": y, "tolerance": tolerance, "min_area": _min_area(z)}
    )
    return bytes(data or b"")
