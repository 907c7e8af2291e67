"""The maps' basemap in a real browser: createMap draws StreetLoop's own vector tiles of the
city (built from the Andorra extract, the seeded city's streets) with the OpenStreetMap
credit, asks nothing of any other server, and without a basemap shows a plain
background and a note instead of errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from core.models import BasemapBuild, BasemapFeature
from geo.basemap import build_basemap
from tests.browser.pages import DESKTOP, LiveServer, accessible, shot, sign_in
from tests.factories import ANDORRA_PBF

# A map over the whole window, added to the signed-in console by the page's own modules
# (the same ones every desk imports), as a desk would make one.
MOUNT = """async () => {
  const { createMap } = await import("/assets/shared/map.js");
  const { loadConfig } = await import("/assets/shared/api.js");
  const { translator } = await import("/assets/shared/i18n.js");
  const strings = (await import("/console/strings.js")).default;
  const config = await loadConfig();
  const el = document.createElement("div");
  el.id = "test-map";
  Object.assign(el.style, { position: "fixed", inset: "0", zIndex: "1000" });
  document.body.append(el);
  window.testMap = createMap(el, config, { label: "Map of the city", t: translator(strings) });
  return config.basemap;
}"""

# How many different colours the tile canvases of the map's current zoom drew (a blank
# canvas has one). Leaflet puts the current zoom's tiles in the level of highest z-index.
COLOURS = """() => {
  const levels = [...document.querySelectorAll("#test-map .leaflet-tile-container")];
  const current = levels.sort((a, b) => Number(b.style.zIndex) - Number(a.style.zIndex))[0];
  const seen = new Set();
  for (const canvas of current ? current.querySelectorAll("canvas.leaflet-tile") : []) {
    if (!canvas.width) continue;
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4 * 7) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return seen.size;
}"""

# Carrer Doctor Nequí, Andorra la Vella: inside the seeded district.
STREET = (42.5077, 1.5210)


def _drop_basemap(live: LiveServer) -> None:
    with live.sessions.begin() as s:
        s.execute(delete(BasemapFeature))
        s.execute(delete(BasemapBuild))


@pytest.fixture
def basemap(live: LiveServer) -> Iterator[None]:
    """The Andorra basemap on the live server for this test only: the other tests of the
    stage share the server and expect no basemap (their maps have none unless they build one)."""
    with live.sessions.begin() as s:
        build_basemap(s, ANDORRA_PBF, force=True)
    try:
        yield
    finally:
        _drop_basemap(live)


def _console_with_a_map(browser_context: Any, live: LiveServer) -> tuple[Any, Any, dict[str, Any]]:
    context, watch = browser_context(DESKTOP)
    page = context.new_page()
    page.goto("/console/")
    sign_in(page, live.city["users"]["dispatcher"])
    page.get_by_text("(dispatcher)").wait_for()
    return page, watch, page.evaluate(MOUNT)


def test_the_map_draws_the_citys_streets_from_our_own_tiles(
    browser_context, live: LiveServer, basemap: None
) -> None:  # noqa: ANN001
    before = len(live.received("GET", "/tiles/"))
    page, watch, config = _console_with_a_map(browser_context, live)
    assert config["available"] is True and config["url"].startswith("/tiles/{z}/{x}/{y}.pbf?v=")
    page.evaluate("([lat, lon]) => window.testMap.setView([lat, lon], 17)", list(STREET))
    # The map asked the live server for its tiles, and nothing of any other server (the
    # browser_context fixture fails the test on that). protomaps-leaflet draws a tile of
    # zoom z over 512 pixels, so a map at zoom 17 asks for the tiles of zoom 16.
    for _ in range(100):  # the page's waits, not time.sleep: they let Playwright route its requests
        if any(p.startswith("/tiles/16/") for p in live.received("GET", "/tiles/")[before:]):
            break
        page.wait_for_timeout(200)
    else:
        raise AssertionError(
            f"no tile of zoom 16 was asked for: {live.received('GET', '/tiles/')[before:]}"
        )
    page.wait_for_function(f"() => ({COLOURS})() > 12", timeout=20_000)
    credit = page.locator("#test-map").get_by_role("link", name="OpenStreetMap contributors")
    assert credit.is_visible()
    assert credit.get_attribute("href") == "https://www.openstreetmap.org/copyright"
    assert page.locator("#test-map").get_by_text("© OpenStreetMap contributors").is_visible()
    # The street names are drawn after the shapes; give the labels their frame.
    page.wait_for_timeout(500)
    accessible(page, "map with the basemap")
    shot(page, "basemap-desktop")

    page.evaluate("([lat, lon]) => window.testMap.setView([lat, lon], 13)", list(STREET))
    page.wait_for_timeout(300)
    page.wait_for_function(f"() => ({COLOURS})() > 12", timeout=20_000)
    page.wait_for_timeout(800)
    shot(page, "basemap-town-desktop")
    watch.check()


def test_without_a_basemap_the_map_is_plain_and_says_so(browser_context, live: LiveServer) -> None:  # noqa: ANN001
    _drop_basemap(live)
    before = len(live.received("GET", "/tiles/"))
    page, watch, config = _console_with_a_map(browser_context, live)
    assert config["available"] is False and config["url"] is None
    page.locator("#test-map").get_by_text(
        "No street map: the basemap has not been built."
    ).wait_for()
    assert page.locator("#test-map canvas.leaflet-tile").count() == 0
    assert live.received("GET", "/tiles/")[before:] == []
    accessible(page, "map without a basemap")
    shot(page, "basemap-none-desktop")
    watch.check()
