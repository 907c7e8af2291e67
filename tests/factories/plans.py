"""Tomorrow's plan on real rows: crews on shift from one depot, work to route, and the
crew phone's view of the published plan."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.models import Shift, ShiftBreak
from geo.travel import StraightLineProvider
from tests import factories as f

TZ = ZoneInfo("Europe/Andorra")
DAY = date.today() + timedelta(days=1)
TRAVEL = StraightLineProvider(detour_factor=1.3, speed_kmh=30)


def day_at(h: int, m: int = 0) -> datetime:
    return datetime.combine(DAY, time(h, m), TZ)


def crew_on_shift(db: Session, code: str, skills: list[str], depot, agency: str = "Roads") -> None:  # noqa: ANN001
    crew = f.crew(db, code, skills=skills)
    crew.depot_id = depot.id
    crew.agency = agency
    db.add(
        Shift(
            crew_id=crew.id,
            starts_at=day_at(7),
            ends_at=day_at(15, 30),
            start_depot_id=depot.id,
            end_depot_id=depot.id,
            breaks=[
                ShiftBreak(earliest_start=day_at(11, 30), latest_end=day_at(13, 30), minutes=30)
            ],
        )
    )
    db.flush()


def crew_route(client, headers, **q):  # noqa: ANN001, ANN003, ANN202
    return client.get(
        "/api/v1/crew/route", query_string={"date": DAY.isoformat(), **q}, headers=headers
    )
