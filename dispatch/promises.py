"""Promises kept during the day: from each crew's progress events and GPS fixes, when it
will really reach its remaining stops; the residents' expected times follow, and those
whose promise slips by more than the allowed slip are told once (`core.promises`).

Run every few minutes by the worker. Each stop's projection is kept on the stop, so
dispatchers see which stops are late and by how much."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from geoalchemy2.shape import to_shape
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.field import last_event_at
from core.models import CrewDay, PlanRoute, RouteStop, WorkOrder
from core.promises import keep_promise
from core.spatial import lon_lat
from core.status import NOT_REACHED, VISITED
from dispatch.build import TravelTimes, fresh_fix
from dispatch.plans import lock_day


@dataclass(frozen=True)
class Refreshed:
    routes: int
    stops: int
    late: int  # stops projected later than planned by more than the slip
    told: int  # residents told their promise slipped


def _minute_up(t: datetime) -> datetime:
    """Projections to the minute, rounded up: a promise is not made of seconds."""
    return (
        t
        if t.second == 0 and t.microsecond == 0
        else t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    )


def _window_start(wo: WorkOrder, arrival: datetime) -> datetime:
    for w in sorted(wo.time_windows or [], key=lambda w: w["start"]):
        start, end = datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"])
        if end >= arrival:
            return max(arrival, start)
    return arrival


def _site(wo: WorkOrder) -> tuple[float, float]:
    """Where routed work is: work with no place on the map is never routed (dispatch.build)."""
    site = lon_lat(wo.location)
    if site is None:
        raise ValueError(f"work order {wo.id} is on a route but has no location")
    return site


def _where_and_when(
    s: Session, pr: PlanRoute, mine: list[RouteStop], now: datetime, fix_max_age: timedelta
) -> tuple[tuple[float, float], datetime]:
    """Where the crew is and when it is free to drive on: at the job it is on, else at a
    fresh fix, else where it last finished, else where its route starts."""
    on_site = next((st.job_order for st in mine if st.job_order.status == "on_site"), None)
    if on_site is not None:
        arrived = last_event_at(s, on_site, ("on_site",)) or now
        return _site(on_site), max(now, arrived + timedelta(minutes=on_site.minutes_on_site))
    here = fresh_fix(s, pr.crew_id, now, fix_max_age)
    if here is not None:
        return here, now
    finished = [st.job_order for st in mine if st.job_order.status in VISITED]
    done = [(at, wo) for wo in finished if (at := last_event_at(s, wo, ("completed",))) is not None]
    if done:
        at, last = max(done, key=lambda d: d[0])
        return _site(last), max(now, at)
    if pr.geometry is not None:
        x, y = to_shape(pr.geometry).coords[0][:2]
        return (x, y), max(now, pr.start_at)
    return _site(mine[0].job_order), max(now, pr.start_at)


def _project(
    s: Session, pr: PlanRoute, *, travel: TravelTimes, now: datetime, fix_max_age: timedelta
) -> list[tuple[RouteStop, datetime]]:
    """The stops still ahead of the crew, in route order (the one it is driving to
    first), with when it will now start each."""
    stops = sorted(pr.stops, key=lambda st: st.sequence)
    mine = [st for st in stops if st.kind == "job" and st.job_order.crew_id == pr.crew_id]
    ahead = sorted(
        (st for st in mine if st.job_order.status in NOT_REACHED),
        key=lambda st: (st.job_order.status != "en_route", st.sequence),
    )
    if not ahead:
        return []
    here, free = _where_and_when(s, pr, mine, now, fix_max_age)
    durations = travel.matrix([here] + [_site(st.job_order) for st in ahead]).durations
    out: list[tuple[RouteStop, datetime]] = []
    breaks = [st for st in stops if st.kind == "break" and st.end_at > now]
    position = 0
    for k, st in enumerate(ahead):
        # Breaks planned before this stop are still to be taken, as long as they lie ahead.
        for b in [b for b in breaks if b.sequence < st.sequence]:
            free = max(free, b.start_at) + (b.end_at - b.start_at)
            breaks.remove(b)
        arrival = free + timedelta(seconds=int(durations[position][k + 1]))
        start = _minute_up(_window_start(st.job_order, arrival))
        out.append((st, start))
        free, position = start + timedelta(minutes=st.job_order.minutes_on_site), k + 1
    return out


def refresh_promises(
    s: Session,
    *,
    travel: TravelTimes,
    tz: ZoneInfo,
    slip: timedelta,
    fix_max_age: timedelta = timedelta(minutes=15),
    now: datetime | None = None,
    day: date | None = None,
) -> Refreshed:
    """Project every published route of the day from where its crew is, keep the
    projection on the stops, and move the residents' expected times; the caller commits.

    The projections (travel times included) are worked out first; the day's lock is
    taken only to write them, for the routes and stops that are still as they were."""
    now = now or datetime.now(UTC)
    day = day or now.astimezone(tz).date()
    routes = _day_routes(s, day)
    projected = [
        (
            pr.plan_id,
            pr.crew_id,
            [
                (st.id, start)
                for st, start in _project(s, pr, travel=travel, now=now, fix_max_age=fix_max_age)
            ],
        )
        for pr in routes
    ]
    lock_day(s, day)
    s.expire_all()
    live = {(pr.plan_id, pr.crew_id): {st.id: st for st in pr.stops} for pr in _day_routes(s, day)}
    stops = late = told = 0
    for plan_id, crew_id, starts in projected:
        now_there = live.get((plan_id, crew_id))
        if now_there is None:
            continue  # another version took the crew's day meanwhile: its own projection comes next time
        for stop_id, start in starts:
            # Projected stops are jobs: a stop of that id is one still.
            st = now_there.get(stop_id)
            if (
                st is None
                or st.job_order.crew_id != crew_id
                or st.job_order.status not in NOT_REACHED
            ):
                continue
            st.projected_start_at, st.projected_at = start, now
            stops += 1
            late += start - st.start_at > slip
            for req in st.job_order.requests:
                if req.status == "open":
                    told += keep_promise(s, req, start, slip=slip, tz=tz, now=now)
    return Refreshed(routes=len(routes), stops=stops, late=late, told=told)


def _day_routes(s: Session, day: date) -> list[PlanRoute]:
    return list(
        s.scalars(
            select(PlanRoute)
            .join(
                CrewDay,
                (CrewDay.plan_id == PlanRoute.plan_id) & (CrewDay.crew_id == PlanRoute.crew_id),
            )
            .where(CrewDay.plan_date == day)
            .options(
                selectinload(PlanRoute.stops)
                .selectinload(RouteStop.work_order)
                .selectinload(WorkOrder.requests)
            )
            .order_by(PlanRoute.crew_id)
        )
    )


def late_minutes(stop: RouteStop) -> int | None:
    if stop.projected_start_at is None:
        return None
    return max(0, math.ceil((stop.projected_start_at - stop.start_at).total_seconds() / 60))
