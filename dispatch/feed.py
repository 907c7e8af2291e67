"""What a crew's phone shows: the day's route, and what changed since it last synced."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from core import crewfeed
from core.lifecycle.work_order import UNABLE_REASONS
from core.models import (
    Crew,
    CrewChange,
    CrewDay,
    Depot,
    MediaLink,
    Photo,
    PlanRoute,
    RequestComment,
    RouteStop,
    StatusEvent,
    WorkOrder,
)
from core.photos import public_url
from core.shifts import shift_on
from core.spatial import lon_lat
from core.status import COMPLETION_OUTCOMES, ON_A_ROUTE, SHOWN_ON_ROUTE
from core.timefmt import iso


def _place(depot: Depot | None) -> dict[str, Any] | None:
    if depot is None:
        return None
    lon, lat = lon_lat(depot.location)  # a depot's location is NOT NULL
    return {"code": depot.code, "name": depot.name, "lat": lat, "lon": lon}


def published_route(s: Session, crew: Crew, day: date) -> PlanRoute | None:
    """The crew's route in the published plan that holds its day (`crew_days`)."""
    return s.scalar(
        select(PlanRoute)
        .join(
            CrewDay, (CrewDay.plan_id == PlanRoute.plan_id) & (CrewDay.crew_id == PlanRoute.crew_id)
        )
        .where(PlanRoute.crew_id == crew.id, CrewDay.plan_date == day)
        .options(
            selectinload(PlanRoute.stops)
            .selectinload(RouteStop.work_order)
            .selectinload(WorkOrder.requests),
            selectinload(PlanRoute.stops)
            .selectinload(RouteStop.work_order)
            .selectinload(WorkOrder.service_type),
            selectinload(PlanRoute.plan),
        )
    )


class _Extras:
    """Photos, photo links, notes and comments for every stop of a route in four queries, not four per stop."""

    def __init__(self, s: Session, orders: list[WorkOrder]) -> None:
        req_ids = [r.id for wo in orders for r in wo.requests]
        self.photos: dict[int, list[tuple[str, str]]] = {}
        if req_ids:
            for rid, pub, thumb in s.execute(
                select(Photo.service_request_id, Photo.public_key, Photo.thumbnail_key)
                .where(Photo.service_request_id.in_(req_ids), Photo.state == "ready")
                .order_by(Photo.id)
            ):
                # A ready photo has both copies (`core.photos.process_photo` names them
                # together), and the request is one of ours: the query says so.
                if rid is not None and pub is not None and thumb is not None:
                    self.photos.setdefault(rid, []).append((pub, thumb))
        # Photos the report sent as links: shown as links until a copy of ours is ready
        # (then it is among the photos above), so the crew never sees one picture twice.
        self.links: dict[int, list[str]] = {}
        if req_ids:
            for rid, url in s.execute(
                select(MediaLink.service_request_id, MediaLink.url)
                .outerjoin(Photo, Photo.id == MediaLink.photo_id)
                .where(
                    MediaLink.service_request_id.in_(req_ids),
                    or_(Photo.id.is_(None), Photo.state != "ready"),
                )
                .order_by(MediaLink.service_request_id, MediaLink.position)
            ):
                self.links.setdefault(rid, []).append(url)
        self.notes: dict[int, list[tuple[datetime, str]]] = {}
        if orders:
            for wid, at, note in s.execute(
                select(StatusEvent.entity_id, StatusEvent.at, StatusEvent.note)
                .where(
                    StatusEvent.entity == "work_order",
                    StatusEvent.entity_id.in_([wo.id for wo in orders]),
                    StatusEvent.note.is_not(None),
                )
                .order_by(StatusEvent.at, StatusEvent.id)
            ):
                if note is not None:  # as the query asks
                    self.notes.setdefault(wid, []).append((at, note))
        # Residents' comments (`core.comments`): the text of their public events, as
        # redacted, never who wrote them.
        self.comments: dict[int, list[tuple[datetime, str | None]]] = {}
        if req_ids:
            for rid, at, note in s.execute(
                select(StatusEvent.entity_id, StatusEvent.at, StatusEvent.note)
                .join(RequestComment, RequestComment.status_event_id == StatusEvent.id)
                .where(RequestComment.service_request_id.in_(req_ids))
                .order_by(StatusEvent.at, StatusEvent.id)
            ):
                self.comments.setdefault(rid, []).append((at, note))


def _stop(
    extras: _Extras,
    wo: WorkOrder,
    seq: int,
    tz: ZoneInfo,
    base_url: str,
    *,
    eta: datetime | None = None,
    arrival: datetime | None = None,
    locked: bool = False,
) -> dict[str, Any]:
    requests = sorted(wo.requests, key=lambda r: r.id)
    first = requests[0] if requests else None
    ll = lon_lat(wo.location)
    photos = [p for r in requests for p in extras.photos.get(r.id, [])]
    comments = sorted(
        (c for r in requests for c in extras.comments.get(r.id, [])), key=lambda c: c[0]
    )
    return {
        "sequence": seq,
        "work_order_id": wo.id,
        "status": wo.status,
        "eta": iso(eta, tz),
        "arrival": iso(arrival, tz),
        "locked": locked,
        "time_windows": wo.time_windows or [],
        "lat": ll[1] if ll else None,
        "lon": ll[0] if ll else None,
        "address": wo.address,
        "service_code": wo.service_type.code,
        "service_name": wo.service_type.name,
        "priority": wo.priority,
        "due_at": iso(wo.due_at, tz),
        "minutes_on_site": wo.minutes_on_site,
        "demand": wo.demand or {},
        "reports": len(requests),
        "description": first.description if first else "",
        "descriptions": [r.description for r in requests if r.description],
        "attributes": first.attributes if first else {},
        "notes": [{"at": iso(at, tz), "note": note} for at, note in extras.notes.get(wo.id, [])],
        # What residents said since they reported, on any of the stop's requests, oldest first.
        "comments": [{"at": iso(at, tz), "text": text} for at, text in comments],
        # Residents' photos, public copies only; reporters themselves are never named.
        "photos": [
            {"url": base_url + public_url(p), "thumbnail_url": base_url + public_url(t)}
            for p, t in photos
        ],
        # Residents' photos that are links to another site (FixMyStreet's): opened from
        # there, so only with network.
        "photo_links": [
            {"url": url}
            for url in dict.fromkeys(u for r in requests for u in extras.links.get(r.id, []))
        ],
    }


def route_feed(s: Session, crew: Crew, day: date, tz: ZoneInfo, base_url: str) -> dict[str, Any]:
    """The crew's route for a day: the published plan's, else the work assigned to it directly.

    `unable_reasons` and `outcomes` are the choices the phone offers for "unable" and for a
    completion, so a phone that read its route offline still offers exactly what the API
    accepts (and a city that adds a reason reaches the phones with their next route).

    `changes_cursor` is read before the route: a change committed in between is then both
    in the route and in the feed after the cursor (told twice, never lost)."""
    cursor = crewfeed.head(s, crew.id)
    route = published_route(s, crew, day)
    shift = shift_on(s, crew.id, day, tz)
    depot_start = (
        s.get(Depot, shift.start_depot_id) if shift and shift.start_depot_id else crew.depot
    )
    depot_end = s.get(Depot, shift.end_depot_id) if shift and shift.end_depot_id else crew.depot
    stops: list[dict[str, Any]] = []
    breaks: list[dict[str, Any]] = []
    geometry = None
    load = (selectinload(WorkOrder.requests), selectinload(WorkOrder.service_type))
    if route is not None:
        # Reassigned or cancelled since the plan was published: not this crew's stop any more.
        # (A job stop always has its work order: the job_has_work_order constraint.)
        kept = [
            (st, wo)
            for st in route.stops
            if st.kind == "job"
            and (wo := st.work_order) is not None
            and wo.crew_id == crew.id
            and wo.status in SHOWN_ON_ROUTE
        ]
        planned = {wo.id for _, wo in kept}
        extra = s.scalars(
            select(WorkOrder)
            .where(
                WorkOrder.crew_id == crew.id,
                WorkOrder.status.in_(ON_A_ROUTE),
                WorkOrder.id.notin_(planned or {0}),
            )
            .options(*load)
            .order_by(WorkOrder.priority.desc(), WorkOrder.due_at)
        ).all()
        extras = _Extras(s, [wo for _, wo in kept] + list(extra))
        breaks = [
            {"start": iso(st.start_at, tz), "end": iso(st.end_at, tz)}
            for st in route.stops
            if st.kind == "break"
        ]
        for seq, (st, wo) in enumerate(kept, start=1):
            stops.append(
                _stop(
                    extras,
                    wo,
                    seq,
                    tz,
                    base_url,
                    eta=st.start_at,
                    arrival=st.arrival_at,
                    locked=st.locked,
                )
            )
        for wo in extra:  # dispatched by hand after the plan: at the end, no ETA
            stops.append(_stop(extras, wo, len(stops) + 1, tz, base_url))
        geom = s.scalar(
            select(func.ST_AsGeoJSON(PlanRoute.geometry, 6)).where(PlanRoute.id == route.id)
        )
        geometry = json.loads(geom) if geom else None
    else:
        direct = s.scalars(
            select(WorkOrder)
            .where(WorkOrder.crew_id == crew.id, WorkOrder.status.in_(ON_A_ROUTE))
            .options(*load)
            .order_by(WorkOrder.priority.desc(), WorkOrder.due_at, WorkOrder.id)
        ).all()
        extras = _Extras(s, list(direct))
        stops = [_stop(extras, wo, k, tz, base_url) for k, wo in enumerate(direct, start=1)]
    if not breaks and shift is not None:
        breaks = [
            {
                "window_start": iso(b.earliest_start, tz),
                "window_end": iso(b.latest_end, tz),
                "minutes": b.minutes,
            }
            for b in shift.breaks
        ]
    return {
        "date": day.isoformat(),
        "crew": {"code": crew.code, "name": crew.name},
        "plan_id": route.plan_id if route else None,
        "plan_version": route.plan.version if route else None,
        "shift": {"start": iso(shift.starts_at, tz), "end": iso(shift.ends_at, tz)}
        if shift
        else None,
        "depot_start": _place(depot_start),
        "depot_end": _place(depot_end),
        "breaks": breaks,
        "stops": stops,
        "geometry": geometry,
        "changes_cursor": cursor,
        "unable_reasons": sorted(UNABLE_REASONS),
        "outcomes": list(COMPLETION_OUTCOMES),
    }


def changes_since(
    s: Session, crew: Crew, since: int, tz: ZoneInfo, *, limit: int = 500
) -> dict[str, Any]:
    """The crew's changes after cursor `since`, oldest first, at most `limit` (then `more`).

    The cursor is the crew's feed sequence number (`core.crewfeed`), which follows commit
    order: asking again from the returned cursor never skips a change. A cursor beyond the
    feed's head (a phone restored from another database) answers `reset`: the phone reads
    its route again and continues from the returned cursor."""
    top = crewfeed.head(s, crew.id)
    if since > top:
        return {"changes": [], "cursor": top, "more": False, "reset": True}
    rows = s.scalars(
        select(CrewChange)
        .where(CrewChange.crew_id == crew.id, CrewChange.seq > since, CrewChange.seq <= top)
        .order_by(CrewChange.seq)
        .limit(limit)
    ).all()
    changes = [
        {
            "cursor": c.seq,
            "work_order_id": c.work_order_id,
            "plan_id": c.plan_id,
            "change": c.change,
            "status": c.status,
            "event": c.event,
            "at": iso(c.at, tz),
        }
        for c in rows
    ]
    return {
        "changes": changes,
        "cursor": rows[-1].seq if rows else since,
        "more": len(rows) == limit,
        "reset": False,
    }
