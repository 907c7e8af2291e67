"""STREETLOOP_TILE_URL and friends: a city's own tile server, checked at start-up."""

from __future__ import annotations

import pytest

from core.settings import Settings

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def test_without_a_tile_server_the_maps_use_the_offline_basemap() -> None:
    s = Settings.from_env(BASE)
    assert s.tile_url is None
    assert s.tile_attribution == "© OpenStreetMap contributors"


@pytest.mark.parametrize(
    ("url", "max_zoom"),
    [
        ("https://tiles.city.example/{z}/{x}/{y}.png", 19),
        ("http://10.1.2.3:8080/osm/{z}/{x}/{y}.jpg?v=2", 19),
        ("https://tiles.city.example/streets/{z}/{x}/{y}.pbf", 14),
        ("/city-tiles/{z}/{x}/{y}.mvt", 14),
    ],
)
def test_a_tile_server_is_taken_with_its_kind_s_default_zoom(url: str, max_zoom: int) -> None:
    s = Settings.from_env(
        {**BASE, "STREETLOOP_TILE_URL": url, "STREETLOOP_TILE_ATTRIBUTION": "© City GIS"}
    )
    assert (s.tile_url, s.tile_attribution, s.tile_max_zoom) == (url, "© City GIS", max_zoom)


@pytest.mark.parametrize(
    "url",
    [
        "tiles.city.example/{z}/{x}/{y}.png",
        "ftp://tiles.city.example/{z}/{x}/{y}.png",
        "https://tiles.city.example/{z}/{x}.png",
        "https://tiles.city.example/{z}/{x}/{y}",
        "javascript:alert(1)//{z}{x}{y}.png",
        "https://tiles.city.example/{z}/{x}/{y}.html",
    ],
)
def test_a_bad_tile_url_stops_start_up_with_its_name(url: str) -> None:
    with pytest.raises(ValueError, match="STREETLOOP_TILE_URL"):
        Settings.from_env({**BASE, "STREETLOOP_TILE_URL": url})


def test_a_bad_max_zoom_stops_start_up_with_its_name() -> None:
    with pytest.raises(ValueError, match="STREETLOOP_TILE_MAX_ZOOM"):
        Settings.from_env({**BASE, "STREETLOOP_TILE_MAX_ZOOM": "40"})
