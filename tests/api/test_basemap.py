"""The offline basemap: `basemap build` imports the city's OSM extract, /tiles/ cuts Mapbox
Vector Tiles from it, and /api/v1/app-config tells the maps where their tiles are."""

from __future__ import annotations

import dataclasses
import math

import mapbox_vector_tile
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import BasemapBuild, BasemapFeature
from core.settings import Settings
from geo.basemap import MAX_DATA_ZOOM, build_basemap
from tests.factories import ANDORRA_PBF

# A point on Carrer Doctor Nequí, a residential street of Andorra la Vella.
NEQUI = (1.5210114, 42.5077514)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return z, x, y


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data)


def names(layer: dict) -> set[str]:
    return {feat["properties"].get("name") for feat in layer["features"]} - {None}


@pytest.fixture
def built(db: Session) -> BasemapBuild:
    build_basemap(db, ANDORRA_PBF)
    db.commit()
    return db.get(BasemapBuild, 1)


def test_build_imports_streets_water_land_and_buildings_and_skips_the_same_file(
    db: Session,
) -> None:
    first = build_basemap(db, ANDORRA_PBF)
    assert not first.skipped and first.features > 1000
    layers = dict(
        db.execute(select(BasemapFeature.layer, func.count()).group_by(BasemapFeature.layer)).all()
    )
    assert {"roads", "water", "waterways", "landuse", "buildings", "places"} <= set(layers)
    assert (
        db.scalar(
            select(func.count()).where(
                BasemapFeature.layer == "roads", BasemapFeature.name == "Carrer Doctor Nequí"
            )
        )
        >= 1
    )
    build = db.get(BasemapBuild, 1)
    west, south, east, north = build.bounds
    assert west < NEQUI[0] < east and south < NEQUI[1] < north

    again = build_basemap(db, ANDORRA_PBF)
    assert again.skipped and again.version == first.version
    assert db.scalar(select(func.count()).select_from(BasemapFeature)) == first.features

    forced = build_basemap(db, ANDORRA_PBF, force=True)
    assert not forced.skipped and forced.version != first.version
    # Replaced, not appended to.
    assert db.scalar(select(func.count()).select_from(BasemapFeature)) == first.features


def test_a_tile_over_a_known_street_decodes_and_carries_its_name(
    client, built: BasemapBuild
) -> None:
    z, x, y = tile_of(*NEQUI, 16)
    r = client.get(f"/tiles/{z}/{x}/{y}.pbf")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/vnd.mapbox-vector-tile"
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    assert r.headers["ETag"] == f'"{built.version}"'
    tile = decode(r.data)
    assert "Carrer Doctor Nequí" in names(tile["roads"])
    assert {feat["properties"]["kind"] for feat in tile["roads"]["features"]} >= {"minor"}
    assert tile["buildings"]["features"]
    # Geometry is in tile units, 0..4096 plus the buffer.
    geometry = tile["roads"]["features"][0]["geometry"]
    assert geometry["type"] in ("LineString", "MultiLineString")


def test_low_zooms_drop_small_things(client, built: BasemapBuild) -> None:
    z, x, y = tile_of(*NEQUI, 12)
    tile = decode(client.get(f"/tiles/{z}/{x}/{y}.pbf").data)
    # Houses and footpaths are specks at zoom 12; the main roads are there.
    assert "buildings" not in tile
    assert {feat["properties"]["kind"] for feat in tile["roads"]["features"]}.isdisjoint(
        {"path", "service", "track"}
    )
    assert {"primary", "minor"} <= {
        feat["properties"]["kind"] for feat in tile["roads"]["features"]
    }
    assert "places" in tile


def test_an_empty_area_is_204_with_the_same_caching(client, built: BasemapBuild) -> None:
    r = client.get("/tiles/14/8192/8192.pbf")  # the Gulf of Guinea
    assert r.status_code == 204
    assert r.data == b""
    assert r.headers["ETag"] == f'"{built.version}"'


def test_a_known_tile_is_revalidated_with_304_until_a_rebuild(
    client, db: Session, built: BasemapBuild
) -> None:
    url = "/tiles/{}/{}/{}.pbf".format(*tile_of(*NEQUI, 15))
    etag = client.get(url).headers["ETag"]
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    build_basemap(db, ANDORRA_PBF, force=True)
    db.commit()
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] != etag


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tiles/3/8/0.pbf", 400),
        ("/tiles/3/0/8.pbf", 400),
        ("/tiles/31/0/0.pbf", 400),
        (f"/tiles/{MAX_DATA_ZOOM + 1}/0/0.pbf", 404),
        ("/tiles/3/a/0.pbf", 404),
        ("/tiles/3/-1/0.pbf", 404),
    ],
)
def test_tiles_outside_the_grid_or_the_zooms_are_refused_in_the_one_error_format(
    client, built: BasemapBuild, path: str, status: int
) -> None:
    r = client.get(path)
    assert r.status_code == status
    body = r.get_json()
    assert body["code"] == status and body["message"]


def test_without_a_basemap_tiles_are_404_and_app_config_says_unavailable(client) -> None:
    r = client.get("/tiles/12/2065/1512.pbf")
    assert r.status_code == 404
    assert "basemap build" in r.get_json()["message"]
    basemap = client.get("/api/v1/app-config").get_json()["basemap"]
    assert basemap == {
        "url": None,
        "kind": "vector",
        "attribution": "© OpenStreetMap contributors",
        "max_zoom": MAX_DATA_ZOOM,
        "available": False,
        "bounds": None,
    }


def test_app_config_points_the_maps_at_the_built_basemap(client, built: BasemapBuild) -> None:
    basemap = client.get("/api/v1/app-config").get_json()["basemap"]
    # The build's version is in the URL, so a rebuild is new URLs for every cache.
    assert basemap["url"] == f"/tiles/{{z}}/{{x}}/{{y}}.pbf?v={built.version}"
    assert basemap["available"] is True and basemap["kind"] == "vector"
    assert basemap["max_zoom"] == MAX_DATA_ZOOM
    assert basemap["bounds"] == built.bounds


def test_app_config_prefers_the_citys_tile_server(
    settings: Settings, sessions, queue, built: BasemapBuild
) -> None:
    from api import create_app

    own = dataclasses.replace(
        settings,
        tile_url="https://tiles.city.example/osm/{z}/{x}/{y}.png",
        tile_attribution="© City of Example, © OpenStreetMap contributors",
        tile_max_zoom=20,
    )
    client = create_app(own, sessions=sessions, queue=queue).test_client()
    basemap = client.get("/api/v1/app-config").get_json()["basemap"]
    assert basemap == {
        "url": "https://tiles.city.example/osm/{z}/{x}/{y}.png",
        "kind": "raster",
        "attribution": "© City of Example, © OpenStreetMap contributors",
        "max_zoom": 20,
        "available": True,
        "bounds": None,
    }
    # The screens may load from that server and nowhere else.
    with client.get("/console/") as page:
        csp = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob: https://tiles.city.example;" in csp


def test_app_config_is_documented_with_its_basemap(client) -> None:
    spec = client.get("/openapi.json").get_json()
    schema = spec["components"]["schemas"]["Basemap"]
    assert set(schema["properties"]) == {
        "url",
        "kind",
        "attribution",
        "max_zoom",
        "available",
        "bounds",
    }
    assert schema["properties"]["kind"]["enum"] == ["vector", "raster"]


def test_a_tile_is_cut_once_per_build_however_often_it_is_asked_for(
    client, db: Session, built: BasemapBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiles are public: asking for one costly tile over and over must not keep the
    database cutting it (a rebuild is a new version, and cut afresh)."""
    import api.tiles

    cuts: list[tuple[int, int, int]] = []
    real_cut = api.tiles.cut_tile

    def counting(session, z, x, y):  # noqa: ANN001, ANN202
        cuts.append((z, x, y))
        return real_cut(session, z, x, y)

    monkeypatch.setattr(api.tiles, "cut_tile", counting)
    z, x, y = tile_of(*NEQUI, 12)
    first = client.get(f"/tiles/{z}/{x}/{y}.pbf")
    assert [client.get(f"/tiles/{z}/{x}/{y}.pbf").data for _ in range(3)] == [first.data] * 3
    assert cuts == [(z, x, y)]
    build_basemap(db, ANDORRA_PBF, force=True)
    assert client.get(f"/tiles/{z}/{x}/{y}.pbf").status_code == 200
    assert cuts == [(z, x, y)] * 2


def test_the_tile_cache_keeps_the_recent_tiles_within_its_size() -> None:
    from api.tiles import TileCache

    cache = TileCache(max_bytes=10)
    cache.put(("v", 1, 0, 0), b"aaaa")
    cache.put(("v", 1, 0, 1), b"bbbb")
    assert cache.get(("v", 1, 0, 0)) == b"aaaa"  # now the most recent
    cache.put(("v", 1, 1, 1), b"cccc")  # 12 bytes: the least recent (0, 1) goes
    assert cache.get(("v", 1, 0, 1)) is None
    assert cache.get(("v", 1, 0, 0)) == b"aaaa" and cache.get(("v", 1, 1, 1)) == b"cccc"
    cache.put(("v", 2, 0, 0), b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get(("v", 2, 0, 0)) is None
