"""What a crew's phone shows: the day's route, and what changed since it last synced."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from core.models import (
    Completion,
    Crew,
    Depot,
    Photo,
    PlanRoute,
    RoutePlan,
    RouteStop,
    Shift,
    StatusEvent,
    WorkOrder,
)
from core.spatial import lon_lat

ACTIVE = ("dispatched", "en_route", "on_site")


def _iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    return None if value is None else value.astimezone(tz).isoformat(timespec="seconds")


def _place(depot: Depot | None) -> dict[str, Any] | None:
    if depot is None:
        return None
    lon, lat = lon_lat(depot.location)
    return {"code": depot.code, "name": depot.name, "lat": lat, "lon": lon}


def published_route(s: Session, crew: Crew, day: date) -> PlanRoute | None:
    return s.scalar(
        select(PlanRoute)
        .join(RoutePlan, RoutePlan.id == PlanRoute.plan_id)
        .where(PlanRoute.crew_id == crew.id, RoutePlan.plan_date == day, RoutePlan.status == "published")
        .options(
            selectinload(PlanRoute.stops).selectinload(RouteStop.work_order).selectinload(WorkOrder.requests),
            selectinload(PlanRoute.stops).selectinload(RouteStop.work_order).selectinload(WorkOrder.service_type),
            selectinload(PlanRoute.plan),
        )
        .order_by(RoutePlan.version.desc())
        .limit(1)
    )


class _Extras:
    """Photos and notes for every stop of a route in two queries, not two per stop."""

    def __init__(self, s: Session, orders: list[WorkOrder]) -> None:
        req_ids = [r.id for wo in orders for r in wo.requests]
        self.photos: dict[int, list[tuple[str, str]]] = {}
        if req_ids:
            for rid, pub, thumb in s.execute(
                select(Photo.service_request_id, Photo.public_key, Photo.thumbnail_key)
                .where(Photo.service_request_id.in_(req_ids), Photo.state == "ready").order_by(Photo.id)
            ):
                self.photos.setdefault(rid, []).append((pub, thumb))
        self.notes: dict[int, list[tuple[datetime, str]]] = {}
        if orders:
            for wid, at, note in s.execute(
                select(StatusEvent.entity_id, StatusEvent.at, StatusEvent.note)
                .where(StatusEvent.entity == "work_order", StatusEvent.entity_id.in_([wo.id for wo in orders]),
                       StatusEvent.note.is_not(None))
                .order_by(StatusEvent.at, StatusEvent.id)
            ):
                self.notes.setdefault(wid, []).append((at, note))


def _stop(extras: _Extras, wo: WorkOrder, seq: int, tz: ZoneInfo, base_url: str, *, eta: datetime | None = None,
          arrival: datetime | None = None, locked: bool = False) -> dict[str, Any]:
    requests = sorted(wo.requests, key=lambda r: r.id)
    first = requests[0] if requests else None
    ll = lon_lat(wo.location)
    photos = [p for r in requests for p in extras.photos.get(r.id, [])]
    return {
        "sequence": seq,
        "work_order_id": wo.id,
        "status": wo.status,
        "eta": _iso(eta, tz),
        "arrival": _iso(arrival, tz),
        "locked": locked,
        "time_windows": wo.time_windows or [],
        "lat": ll[1] if ll else None,
        "lon": ll[0] if ll else None,
        "address": wo.address,
        "service_code": wo.service_type.code,
        "service_name": wo.service_type.name,
        "priority": wo.priority,
        "due_at": _iso(wo.due_at, tz),
        "minutes_on_site": wo.minutes_on_site,
        "demand": wo.demand or {},
        "reports": len(requests),
        "description": first.description if first else "",
        "descriptions": [r.description for r in requests if r.description],
        "attributes": first.attributes if first else {},
        "notes": [{"at": _iso(at, tz), "note": note} for at, note in extras.notes.get(wo.id, [])],
        # Residents' photos, public copies only; reporters themselves are never named.
        "photos": [{"url": f"{base_url}/media/{p}", "thumbnail_url": f"{base_url}/media/{t}"} for p, t in photos],
    }


def route_feed(s: Session, crew: Crew, day: date, tz: ZoneInfo, base_url: str) -> dict[str, Any]:
    """The crew's route for a day: the published plan's, else the work assigned to it directly."""
    route = published_route(s, crew, day)
    midnight = datetime.combine(day, time(0), tz)
    shift = s.scalar(
        select(Shift).where(Shift.crew_id == crew.id, Shift.starts_at >= midnight, Shift.starts_at < midnight + timedelta(days=1))
        .options(selectinload(Shift.breaks))
    )
    depot_start = s.get(Depot, shift.start_depot_id) if shift and shift.start_depot_id else crew.depot
    depot_end = s.get(Depot, shift.end_depot_id) if shift and shift.end_depot_id else crew.depot
    stops: list[dict[str, Any]] = []
    breaks: list[dict[str, Any]] = []
    geometry = None
    load = (selectinload(WorkOrder.requests), selectinload(WorkOrder.service_type))
    if route is not None:
        # Reassigned or cancelled since the plan was published: not this crew's stop any more.
        kept = [st for st in route.stops if st.kind == "job" and st.work_order.crew_id == crew.id
                and st.work_order.status in ACTIVE + ("completed", "verified", "unable")]
        planned = {st.work_order_id for st in kept}
        extra = s.scalars(
            select(WorkOrder).where(WorkOrder.crew_id == crew.id, WorkOrder.status.in_(ACTIVE), WorkOrder.id.notin_(planned or {0}))
            .options(*load).order_by(WorkOrder.priority.desc(), WorkOrder.due_at)
        ).all()
        extras = _Extras(s, [st.work_order for st in kept] + list(extra))
        breaks = [{"start": _iso(st.start_at, tz), "end": _iso(st.end_at, tz)} for st in route.stops if st.kind == "break"]
        for seq, st in enumerate(kept, start=1):
            stops.append(_stop(extras, st.work_order, seq, tz, base_url, eta=st.start_at, arrival=st.arrival_at, locked=st.locked))
        for wo in extra:  # dispatched by hand after the plan: at the end, no ETA
            stops.append(_stop(extras, wo, len(stops) + 1, tz, base_url))
        geom = s.scalar(select(func.ST_AsGeoJSON(PlanRoute.geometry, 6)).where(PlanRoute.id == route.id))
        geometry = json.loads(geom) if geom else None
    else:
        direct = s.scalars(
            select(WorkOrder).where(WorkOrder.crew_id == crew.id, WorkOrder.status.in_(ACTIVE))
            .options(*load).order_by(WorkOrder.priority.desc(), WorkOrder.due_at, WorkOrder.id)
        ).all()
        extras = _Extras(s, list(direct))
        stops = [_stop(extras, wo, k, tz, base_url) for k, wo in enumerate(direct, start=1)]
    if not breaks and shift is not None:
        breaks = [{"window_start": _iso(b.earliest_start, tz), "window_end": _iso(b.latest_end, tz), "minutes": b.minutes}
                  for b in shift.breaks]
    return {
        "date": day.isoformat(),
        "crew": {"code": crew.code, "name": crew.name},
        "plan_id": route.plan_id if route else None,
        "plan_version": route.plan.version if route else None,
        "shift": {"start": _iso(shift.starts_at, tz), "end": _iso(shift.ends_at, tz)} if shift else None,
        "depot_start": _place(depot_start),
        "depot_end": _place(depot_end),
        "breaks": breaks,
        "stops": stops,
        "geometry": geometry,
    }


def etag_of(body: dict[str, Any]) -> str:
    """Strong validator: any change to the route's content (a new plan version, a work
    order's status, a note) changes it; the same content always gives the same tag."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f'"{digest[:32]}"'


def changes_since(s: Session, crew: Crew, since: int, tz: ZoneInfo, *, limit: int = 500) -> dict[str, Any]:
    """Events on this crew's work after cursor `since` (a status-event id), classified for the phone."""
    recent = datetime.now(tz) - timedelta(days=2)
    in_routes = (
        select(RouteStop.work_order_id)
        .join(PlanRoute, PlanRoute.id == RouteStop.route_id)
        .join(RoutePlan, RoutePlan.id == PlanRoute.plan_id)
        .where(PlanRoute.crew_id == crew.id, RoutePlan.created_at >= recent, RouteStop.work_order_id.is_not(None),
               RoutePlan.status.in_(("published", "superseded")))
    )
    # A job the crew completed stays its news: a supervisor may reject the proof.
    completed_by_crew = select(Completion.work_order_id).where(Completion.crew_id == crew.id, Completion.submitted_at >= recent)
    rows = s.execute(
        select(StatusEvent, WorkOrder)
        .join(WorkOrder, WorkOrder.id == StatusEvent.entity_id)
        .where(StatusEvent.entity == "work_order", StatusEvent.id > since,
               or_(WorkOrder.crew_id == crew.id, WorkOrder.id.in_(in_routes), WorkOrder.id.in_(completed_by_crew)))
        .order_by(StatusEvent.id)
        .limit(limit)
    ).all()
    changes = []
    # No longer this crew's: say so once, at its latest event, and nothing of what others
    # do with it. A rejected completion is said as such: the crew may have to go back.
    # The order's birth and draft plans are office business, not news for the crew.
    news = [(ev, wo) for ev, wo in rows
            if not (ev.from_status is None or (ev.to_status == "planned" and ev.from_status != "planned"))]
    last_event = {wo.id: ev.id for ev, wo in news}
    rejected = {wo.id for ev, wo in news if ev.to_status == "rejected"}
    for ev, wo in news:
        if wo.crew_id != crew.id:
            if ev.id != last_event[wo.id]:
                continue
            kind = "cancelled" if wo.status == "cancelled" else "rejected" if wo.id in rejected else "removed"
        elif ev.to_status == "dispatched" and ev.from_status != "dispatched":
            kind = "urgent_stop" if wo.priority >= 4 else "assigned"
        elif ev.to_status in ("cancelled", "closed"):
            # Closed by a supervisor while still on the route: for the crew, as good as cancelled.
            kind = "cancelled"
        else:
            kind = "updated"
        changes.append({"cursor": ev.id, "work_order_id": wo.id, "change": kind, "status": wo.status,
                        "event": ev.to_status, "at": _iso(ev.at, tz)})
    last = rows[-1][0].id if rows else max(since, s.scalar(select(func.coalesce(func.max(StatusEvent.id), 0))) if since == 0 else since)
    return {"changes": changes, "cursor": last, "more": len(rows) == limit}
