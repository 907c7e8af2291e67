"""What the screens need to know of the city before anyone signs in."""

from __future__ import annotations

from typing import Any

import shapely
from marshmallow import Schema, fields, validate

from api.db import service_area, session, settings
from api.resources.common import Blueprint
from core.service_area import area_in_force
from core.settings import tile_kind
from geo.basemap import MAX_DATA_ZOOM, current_build

blp = Blueprint(
    "app_config",
    __name__,
    url_prefix="/app-config",
    description="The city's settings the screens need: its time zone, where the map opens, its basemap.",
)

# StreetLoop's own vector tiles (api/tiles.py), when a basemap has been built.
OWN_TILES = "/tiles/{z}/{x}/{y}.pbf"


class BasemapSchema(Schema):
    url = fields.String(
        allow_none=True,
        metadata={
            "description": "{z}/{x}/{y} URL template of the tiles: the city's own tile server (STREETLOOP_TILE_URL) "
            "or StreetLoop's offline basemap; null when there is neither"
        },
    )
    kind = fields.String(
        validate=validate.OneOf(["vector", "raster"]),
        metadata={
            "description": "vector: Mapbox Vector Tiles (drawn by the browser); raster: images"
        },
    )
    attribution = fields.String(
        metadata={"description": "the credit every map shows, as plain text"}
    )
    max_zoom = fields.Integer(
        metadata={"description": "deepest zoom the tiles have; maps draw them larger beyond"}
    )
    available = fields.Boolean(
        metadata={
            "description": "false when no basemap was built and no tile server is set: maps show a plain background"
        }
    )
    bounds = fields.List(
        fields.Float(),
        allow_none=True,
        metadata={
            "description": "min_lon, min_lat, max_lon, max_lat the offline basemap covers (no tiles are asked for "
            "outside); null for a city's tile server or when there is no basemap"
        },
    )


class AppConfigSchema(Schema):
    time_zone = fields.String(
        metadata={"description": "IANA name; every time on the screens is shown in it"}
    )
    locale = fields.String(
        metadata={
            "description": "BCP 47 tag the screens format dates and numbers in (STREETLOOP_LOCALE)"
        }
    )
    bounds = fields.List(
        fields.Float(),
        allow_none=True,
        metadata={
            "description": "min_lon, min_lat, max_lon, max_lat of the service area; null when none is set"
        },
    )
    basemap = fields.Nested(BasemapSchema)


def basemap() -> dict[str, Any]:
    config = settings()
    if config.tile_url:
        return {
            "url": config.tile_url,
            "kind": tile_kind(config.tile_url),
            "attribution": config.tile_attribution,
            "max_zoom": config.tile_max_zoom,
            "available": True,
            "bounds": None,
        }
    build = current_build(session())
    # The build's version in the URL: a rebuilt basemap is new URLs, never a mix of old
    # tiles cached by a browser or a phone (which keeps them offline) and new ones.
    return {
        "url": f"{OWN_TILES}?v={build.version}" if build else None,
        "kind": "vector",
        "attribution": config.tile_attribution,
        "max_zoom": MAX_DATA_ZOOM,
        "available": build is not None,
        "bounds": build.bounds if build else None,
    }


@blp.route("")
@blp.response(200, AppConfigSchema)
@blp.doc(operationId="getAppConfig")
def app_config() -> dict[str, Any]:
    """Public: the sign-in screens show times and the map before a token exists. Nothing
    here is more than the service area, which Open311 publishes too, and where the map's
    tiles come from."""
    area = area_in_force(session(), service_area())
    bounds = list(shapely.bounds(shapely.geometry.shape(area.geometry))) if area.geometry else None
    return {
        "time_zone": settings().timezone,
        "locale": settings().locale,
        "bounds": bounds,
        "basemap": basemap(),
    }
