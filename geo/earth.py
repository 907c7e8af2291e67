"""The Earth as StreetLoop measures it: one radius for every great-circle distance, so the
proof checks (geo.proof) and the straight-line travel times (geo.travel) agree on a metre."""

from __future__ import annotations

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius (R1)
