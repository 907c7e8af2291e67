"""The offline basemap's vector tiles, at /tiles/{z}/{x}/{y}.pbf (see geo/basemap.py).

Public, like the service area: they are OpenStreetMap's data about the city's streets,
which any map of a resident's may show too. Outside /api/v1 because they are not the
API's resources but files a map library fetches by URL template, as it would from a tile
server; errors still come in the one error format."""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Blueprint, Response, request

from api.db import session
from api.errors import error_response
from geo.basemap import MAX_DATA_ZOOM, MEDIA_TYPE, current_build, cut_tile, tile_in_range

blp = Blueprint("tiles", __name__)

# A rebuilt basemap reaches the browsers within the hour; until then a map panning back
# and forth asks for nothing. Revalidation after that costs a 304 without any cutting.
# (The screens ask for ?v=<build version>, so a rebuild changes their URLs at once, and a
# crew's phone, which keeps tiles for offline use, drops the old build's.)
CACHE_CONTROL = "public, max-age=3600"
# Tiles cut in this process, by (build version, z, x, y): the tiles are public, so anyone
# may ask for the same costly low-zoom tile over and over; it is cut once per build.
CACHE_BYTES = 64 * 1024 * 1024


class TileCache:
    """A least-recently-used cache of cut tiles, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int, int]) -> bytes | None:
        with self._lock:
            data = self._tiles.get(key)
            if data is not None:
                self._tiles.move_to_end(key)
            return data

    def put(self, key: tuple[str, int, int, int], data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._tiles.pop(key, None)
            self._bytes -= len(old) if old is not None else 0
            self._tiles[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._tiles.popitem(last=False)
                self._bytes -= len(dropped)


_cache = TileCache(CACHE_BYTES)


@blp.route("/tiles/<int:z>/<int:x>/<int:y>.pbf")
def tile(z: int, x: int, y: int) -> Response:
    """One Mapbox Vector Tile of the basemap: layers water, landuse, buildings, waterways,
    railways, roads and places, each feature with `kind` and, where it has one, `name`.
    204 where there is nothing to draw; 400 for an address outside the tile grid; 404
    above zoom 17 (maps draw the z17 tiles larger) or when no basemap has been built."""
    if not tile_in_range(z, x, y):
        return error_response(
            400,
            f"{z}/{x}/{y} is not a tile: z goes from 0 to 30, x and y from 0 to 2^z - 1",
            {"tile": [f"{z}/{x}/{y}"]},
        )
    if z > MAX_DATA_ZOOM:
        return error_response(
            404, f"the basemap's tiles go up to zoom {MAX_DATA_ZOOM}; maps draw those larger"
        )
    build = current_build(session())
    if build is None:
        return error_response(
            404, "no basemap has been built: run `streetloop basemap build --pbf CITY.osm.pbf`"
        )
    # The tile is a function of the build and its address only: its ETag is known before
    # it is cut, so a revalidation costs one primary-key read.
    etag = f'"{build.version}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    # Weak comparison, as RFC 9110 asks of If-None-Match (a proxy may have compressed it).
    if request.if_none_match.contains_weak(build.version):
        return Response(status=304, headers=headers)
    key = (build.version, z, x, y)
    data = _cache.get(key)
    if data is None:
        data = cut_tile(session(), z, x, y)
        _cache.put(key, data)
    if not data:
        return Response(status=204, headers=headers)
    return Response(data, status=200, headers={**headers, "Content-Type": MEDIA_TYPE})
