"""The address index, searched by people: the intake desk finds the place a caller names."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.auth import require
from api.db import session
from api.resources.common import Blueprint
from geo.geocode import MAX_SEARCH_RESULTS, NEAREST_WITHIN_M, nearest_addresses, search_addresses

blp = Blueprint(
    "addresses",
    __name__,
    url_prefix="/addresses",
    description="Search the city's address index (built from its OSM extract) by text or by a point on the map.",
)

# Longer than any address a caller could say; a bound, so nobody sends megabytes to parse.
MAX_QUERY = 200


class LatLon(fields.String):
    """ "lat,lon" in decimal degrees, as a (lat, lon) pair."""

    # A string on the wire (so the OpenAPI document says so), a pair once read: the override
    # returns another type than String's on purpose.
    def _deserialize(  # type: ignore[override]
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[float, float]:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            lat, lon = (float(p) for p in raw.split(","))
        except ValueError:
            raise ValidationError("lat,lon in decimal degrees, e.g. 42.5078,1.5211") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # also refuses nan and inf
            raise ValidationError("lat must be within -90..90 and lon within -180..180")
        return lat, lon


class AddressArgs(Schema):
    # Two characters at least: one letter matches most of a city (and the desk asks from two).
    q = fields.String(
        validate=validate.Length(min=2, max=MAX_QUERY),
        metadata={
            "description": "what the caller says, as typed so far: the street's words (or their start) and a house "
            "number, e.g. 'carrer maj', 'Av. Meritxell 12', 'major 3'; abbreviations and accents as "
            "the geocoder takes them"
        },
    )
    near = LatLon(
        metadata={
            "description": "lat,lon of a point clicked on the map: the nearest house numbers "
            f"within {NEAREST_WITHIN_M} m, nearest first"
        }
    )
    limit = fields.Integer(load_default=10, validate=validate.Range(1, MAX_SEARCH_RESULTS))

    @validates_schema
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("q" in data) == ("near" in data):
            raise ValidationError(
                "give either q (text) or near (lat,lon), not both",
                "q" if "q" not in data else "near",
            )


class AddressSchema(Schema):
    label = fields.String(
        metadata={"description": "as read back to the caller: street, number, postcode, city"}
    )
    street = fields.String()
    housenumber = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    lat = fields.Float()
    lon = fields.Float()
    precision = fields.String(
        metadata={
            "description": "address: a house number; street: a point somewhere on the street, to be placed exactly "
            "on the map"
        }
    )
    distance_m = fields.Float(
        allow_none=True, metadata={"description": "from the point given in near; null for q"}
    )


@blp.route("")
@require("call_taker", "dispatcher", "supervisor")
@blp.arguments(AddressArgs, location="query")
@blp.response(200, AddressSchema(many=True))
@blp.doc(operationId="searchAddresses")
def search(args: dict[str, Any]) -> Any:
    """Addresses matching the text, ranked (the exact street first, then streets starting
    so, then streets with a word starting so; the exact number, the whole street, then
    numbers in order), or the nearest ones to a point. An empty list when nothing matches:
    the geocoder's index has only what OSM mapped."""
    if "near" in args:
        lat, lon = args["near"]
        return nearest_addresses(session(), lon, lat, limit=args["limit"])
    return search_addresses(session(), args["q"], limit=args["limit"])
