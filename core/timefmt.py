"""Times as the city's clients read them: ISO 8601 in the city's zone, to the second.

Open311, the crews' feed and the status page print a time this way, so one request's
times read the same wherever they are shown."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import overload


@overload
def iso(value: datetime, tz: tzinfo) -> str: ...
@overload
def iso(value: datetime | None, tz: tzinfo) -> str | None: ...
def iso(value: datetime | None, tz: tzinfo) -> str | None:
    """`value` in zone `tz` as ISO 8601 to the second ("2026-03-02T09:00:00+01:00"), or
    None for no time. The caller looks the zone up once (`Settings.tz`), not per value:
    a page of 1,000 requests prints 3,000 times."""
    return None if value is None else value.astimezone(tz).isoformat(timespec="seconds")
