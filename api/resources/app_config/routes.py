"""What the screens need to know of the city before anyone signs in."""

from __future__ import annotations

from typing import Any

import shapely
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.db import service_area, session, settings
from core.service_area import area_in_force

blp = Blueprint("app_config", __name__, url_prefix="/app-config",
                description="The city's settings the screens need: its time zone, where the map opens.")


class AppConfigSchema(Schema):
    time_zone = fields.String(metadata={"description": "IANA name; every time on the screens is shown in it"})
    bounds = fields.List(fields.Float(), allow_none=True, metadata={
        "description": "min_lon, min_lat, max_lon, max_lat of the service area; null when none is set"})


@blp.route("")
@blp.response(200, AppConfigSchema)
def app_config() -> dict[str, Any]:
    """Public: the sign-in screens show times and the map before a token exists. Nothing
    here is more than the service area, which Open311 publishes too."""
    area = area_in_force(session(), service_area())
    bounds = list(shapely.bounds(shapely.geometry.shape(area.geometry))) if area.geometry else None
    return {"time_zone": settings().timezone, "bounds": bounds}
