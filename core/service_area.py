"""The city's service area: where StreetLoop takes reports.

The area in force is the first of:
1. the `STREETLOOP_SERVICE_AREA` file. Whoever deploys owns it, so it is authoritative
   and the admin API cannot change it;
2. the polygon an admin set through the API (the one `service_area` row);
3. the union of the districts;
4. nothing: every location is accepted, as on a new install before its districts exist.

A point within the tolerance of the area counts as inside: a resident standing on the
border road is reporting the city's road. Distances are on the geography, in metres."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import shapely
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon
from sqlalchemy import ColumnElement, LargeBinary, bindparam, case, exists, func, select, text, true
from sqlalchemy.orm import Session

from core.errors import OutsideServiceArea, ServiceAreaFromSetting
from core.lifecycle.base import Actor
from core.locks import AdvisoryLock
from core.models import District, ServiceArea, StatusEvent
from core.spatial import multipolygon_from_geojson, within_metres

if TYPE_CHECKING:
    from core.settings import Settings

Source = Literal["setting", "admin", "districts", "none"]
SETTING = "STREETLOOP_SERVICE_AREA"
ENTITY = "service_area"
# status_events.entity_id of the area's audit trail: the single row's id.
ROW_ID = 1
# Serialises admins' writes, so each audit event's from_status is what was really replaced.
_WRITE_LOCK = (AdvisoryLock.SERVICE_AREA, ROW_ID)


@dataclass(frozen=True)
class AreaConfig:
    """What the process knows of the area before asking the database: the tolerance and
    the setting's polygon, read once at start-up."""

    tolerance_m: float = 100.0
    polygon: MultiPolygon | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance_m) and self.tolerance_m >= 0):
            raise ValueError(
                f"the service area tolerance must be a non-negative number of metres, got {self.tolerance_m}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AreaConfig:
        polygon = (
            read_area_file(settings.service_area_file)
            if settings.service_area_file is not None
            else None
        )
        return cls(tolerance_m=settings.service_area_tolerance_m, polygon=polygon)

    @cached_property
    def _polygon_wkb(self) -> bytes:
        assert self.polygon is not None
        return shapely.to_wkb(self.polygon)


@dataclass(frozen=True)
class AreaInForce:
    source: Source
    tolerance_m: float
    # GeoJSON MultiPolygon (lon, lat); None when nothing is checked.
    geometry: dict[str, Any] | None


def read_area_file(path: Path) -> MultiPolygon:
    """The polygon of a GeoJSON file: a Polygon or MultiPolygon, bare or as the one
    geometry of a Feature or FeatureCollection. ValueError says what is wrong."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        return multipolygon_from_geojson(_only_geometry(document), what="the service area")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _only_geometry(document: Any) -> Any:
    """Unwrap a Feature or a one-feature FeatureCollection, as GIS tools export them."""
    if not isinstance(document, dict):
        return document
    if document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list) or len(features) != 1:
            count = len(features) if isinstance(features, list) else "no"
            raise ValueError(
                f"the FeatureCollection holds {count} features; the service area is one Polygon or "
                "MultiPolygon (merge the shapes into one first)"
            )
        document = features[0]
    if isinstance(document, dict) and document.get("type") == "Feature":
        return document.get("geometry")
    return document


def outside_area_error(lon: float, lat: float) -> OutsideServiceArea:
    return OutsideServiceArea(
        f"the location {lat:.6f}, {lon:.6f} is outside the city's service area",
        field="lat",
        lat=lat,
        lon=lon,
    )


def inside_service_area(session: Session, lon: float, lat: float, *, area: AreaConfig) -> bool:
    """Whether (lon, lat) is within the tolerance of the area in force; True when no
    area is in force. One query."""
    tol = area.tolerance_m
    if area.polygon is not None:
        here = func.geography(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326))
        polygon = func.ST_GeogFromWKB(
            bindparam("service_area", area._polygon_wkb, type_=LargeBinary)
        )
        return bool(session.scalar(select(func.ST_DWithin(polygon, here, tol))))
    admin_near = exists(
        select(ServiceArea.id).where(within_metres(ServiceArea.geom, lon, lat, tol))
    )
    # Each district is tested on its own: the same answer as against their union,
    # without building the union for every report.
    district_near = exists(select(District.id).where(within_metres(District.geom, lon, lat, tol)))
    verdict = case(
        (exists(select(ServiceArea.id)), admin_near),
        (exists(select(District.id)), district_near),
        else_=true(),
    )
    return bool(session.scalar(select(verdict)))


def check_location(session: Session, lon: float, lat: float, *, area: AreaConfig) -> None:
    """Raise OutsideServiceArea unless (lon, lat) is in the area in force."""
    if not inside_service_area(session, lon, lat, area=area):
        raise outside_area_error(lon, lat)


def area_source(session: Session, area: AreaConfig) -> Source:
    if area.polygon is not None:
        return "setting"
    has_admin, has_districts = session.execute(
        select(exists(select(ServiceArea.id)), exists(select(District.id)))
    ).one()
    return "admin" if has_admin else "districts" if has_districts else "none"


def _geojson(session: Session, expression: ColumnElement[str]) -> dict[str, Any] | None:
    document = session.scalar(select(expression))
    # None: the area was deleted after area_source looked (another transaction's commit).
    return json.loads(document) if document is not None else None


def area_in_force(session: Session, area: AreaConfig) -> AreaInForce:
    source = area_source(session, area)
    geometry: dict[str, Any] | None = None
    if source == "setting":
        assert area.polygon is not None
        geometry = json.loads(shapely.to_geojson(area.polygon))
    elif source == "admin":
        geometry = _geojson(session, func.ST_AsGeoJSON(ServiceArea.geom, 6))
    elif source == "districts":
        geometry = _geojson(
            session, func.ST_AsGeoJSON(func.ST_Multi(func.ST_Union(District.geom)), 6)
        )
    return AreaInForce(source=source, tolerance_m=area.tolerance_m, geometry=geometry)


def _refuse_when_set_by_setting(area: AreaConfig) -> None:
    if area.polygon is not None:
        raise ServiceAreaFromSetting(
            f"the service area comes from the {SETTING} setting; change that file (or unset it) instead",
            setting=SETTING,
        )


def _audit(
    session: Session, *, before: Source, after: Source, actor: Actor, note: str
) -> StatusEvent:
    event = StatusEvent(
        entity=ENTITY,
        entity_id=ROW_ID,
        from_status=before,
        to_status=after,
        actor=actor.label,
        actor_user_id=actor.user_id,
        at=datetime.now(UTC),
        note=note,
    )
    session.add(event)
    return event


def set_admin_area(
    session: Session, polygon: MultiPolygon, *, area: AreaConfig, actor: Actor
) -> StatusEvent:
    """Make `polygon` the service area (it replaces the districts' union); audited, the
    caller commits. Refused with ServiceAreaFromSetting while the setting governs."""
    _refuse_when_set_by_setting(area)
    session.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _WRITE_LOCK[0], "b": _WRITE_LOCK[1]}
    )
    before = area_source(session, area)
    row = session.get(ServiceArea, ROW_ID)
    if row is None:
        row = ServiceArea(id=ROW_ID)
        session.add(row)
    row.geom = from_shape(polygon, srid=4326)
    row.updated_at = datetime.now(UTC)
    row.updated_by_id = actor.user_id
    session.flush()
    km2 = session.scalar(
        select(func.ST_Area(func.geography(ServiceArea.geom)) / 1e6).where(ServiceArea.id == ROW_ID)
    )
    parts = len(polygon.geoms)
    return _audit(
        session,
        before=before,
        after="admin",
        actor=actor,
        note=f"service area set: {parts} polygon{'s' if parts != 1 else ''}, {km2:.2f} km²",
    )


def clear_admin_area(session: Session, *, area: AreaConfig, actor: Actor) -> StatusEvent | None:
    """Drop the admin's polygon, so the districts' union governs again; None when there
    was none (nothing changed, nothing audited). The caller commits."""
    _refuse_when_set_by_setting(area)
    session.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _WRITE_LOCK[0], "b": _WRITE_LOCK[1]}
    )
    row = session.get(ServiceArea, ROW_ID)
    if row is None:
        return None
    session.delete(row)
    session.flush()
    after = area_source(session, area)
    note = (
        "service area removed; the union of the districts governs again"
        if after == "districts"
        else "service area removed; with no districts, reports are accepted from anywhere"
    )
    return _audit(session, before="admin", after=after, actor=actor, note=note)
