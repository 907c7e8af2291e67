"""The city's service area: where it comes from, its border tolerance, and intake's check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import OutsideServiceArea, ServiceAreaFromSetting
from core.intake import GeocodeMatch, NewRequest, pin_request, submit_request
from core.lifecycle import Actor
from core.models import ServiceArea, ServiceRequest, StatusEvent, WorkOrder
from core.service_area import (
    AreaConfig,
    area_in_force,
    area_source,
    check_location,
    clear_admin_area,
    inside_service_area,
    read_area_file,
    set_admin_area,
)
from core.settings import Settings
from core.spatial import lon_lat
from tests import factories as f

MADRID = (-3.7038, 40.4168)
# f.district's default square: (1.50, 42.49) to (1.55, 42.52); a point on its east edge.
EDGE_LON, EDGE_LAT = 1.55, 42.505
AREA = AreaConfig()  # the default 100 m tolerance, no setting


def square(x0: float, y0: float, x1: float, y1: float) -> MultiPolygon:
    return MultiPolygon([box(x0, y0, x1, y1)])


def east_of_edge(metres: float) -> tuple[float, float]:
    return f.offset(EDGE_LON, EDGE_LAT, metres)


def rows(db: Session) -> dict[str, int]:
    return {
        t.__tablename__: db.scalar(select(func.count()).select_from(t))
        for t in (ServiceRequest, WorkOrder, StatusEvent)
    }


# -- where the area comes from ----------------------------------------------------------


def test_no_districts_and_no_polygon_checks_nothing(db: Session) -> None:
    assert area_source(db, AREA) == "none"
    assert inside_service_area(db, *MADRID, area=AREA)
    assert area_in_force(db, AREA).geometry is None


def test_the_districts_union_is_the_area(db: Session) -> None:
    f.district(db, "west", bbox=(1.50, 42.49, 1.52, 42.52))
    f.district(db, "east", bbox=(1.52, 42.49, 1.55, 42.52))
    f.district(db, "island", bbox=(1.60, 42.49, 1.62, 42.52))
    assert area_source(db, AREA) == "districts"
    assert inside_service_area(db, 1.51, 42.50, area=AREA)
    assert inside_service_area(db, 1.61, 42.50, area=AREA)
    assert not inside_service_area(db, 1.575, 42.50, area=AREA)  # between them, 2 km from both
    assert not inside_service_area(db, *MADRID, area=AREA)
    union = area_in_force(db, AREA).geometry
    assert union is not None and union["type"] == "MultiPolygon"
    assert len(union["coordinates"]) == 2  # west and east touch and merge; the island stays apart


@pytest.mark.parametrize(
    ("tolerance", "metres", "inside"),
    [
        (100, 0, True),
        (100, 90, True),
        (100, 110, False),
        (0, 10, False),
        (500, 450, True),
        (500, 550, False),
    ],
)
def test_border_tolerance_in_metres(
    db: Session, tolerance: float, metres: float, inside: bool
) -> None:
    f.district(db)
    assert (
        inside_service_area(db, *east_of_edge(metres), area=AreaConfig(tolerance_m=tolerance))
        is inside
    )


def test_an_admin_polygon_replaces_the_districts(db: Session) -> None:
    f.district(db)  # central Andorra la Vella
    admin = f.user(db, "admin@example.org", "admin")
    actor = Actor.user(admin.id, admin.email)
    set_admin_area(
        db, square(1.40, 42.42, 1.80, 42.66), area=AREA, actor=actor
    )  # the whole country
    assert area_source(db, AREA) == "admin"
    assert inside_service_area(
        db, 1.70, 42.60, area=AREA
    )  # outside every district, inside the polygon
    assert not inside_service_area(db, *MADRID, area=AREA)
    set_admin_area(db, square(1.70, 42.55, 1.75, 42.60), area=AREA, actor=actor)
    assert not inside_service_area(
        db, f.LON, f.LAT, area=AREA
    )  # in a district, but the polygon governs

    event = clear_admin_area(db, area=AREA, actor=actor)
    assert event is not None and (event.from_status, event.to_status) == ("admin", "districts")
    assert inside_service_area(db, f.LON, f.LAT, area=AREA)
    assert (
        clear_admin_area(db, area=AREA, actor=actor) is None
    )  # nothing left to clear, nothing audited


def test_admin_changes_are_audited(db: Session) -> None:
    admin = f.user(db, "admin@example.org", "admin")
    actor = Actor.user(admin.id, admin.email)
    set_admin_area(db, square(1.50, 42.49, 1.55, 42.52), area=AREA, actor=actor)
    set_admin_area(
        db,
        MultiPolygon([box(1.50, 42.49, 1.55, 42.52), box(1.60, 42.49, 1.62, 42.52)]),
        area=AREA,
        actor=actor,
    )
    clear_admin_area(db, area=AREA, actor=actor)
    events = db.scalars(
        select(StatusEvent).where(StatusEvent.entity == "service_area").order_by(StatusEvent.id)
    ).all()
    assert [
        (e.entity_id, e.from_status, e.to_status, e.actor, e.actor_user_id, e.public)
        for e in events
    ] == [
        (1, "none", "admin", "user:admin@example.org", admin.id, False),
        (1, "admin", "admin", "user:admin@example.org", admin.id, False),
        (1, "admin", "none", "user:admin@example.org", admin.id, False),
    ]
    assert events[0].note.startswith("service area set: 1 polygon, ")
    km2 = float(events[0].note.split(", ")[1].removesuffix(" km²"))
    assert 13 < km2 < 14.5  # 0.05° by 0.03° at 42.5° N is about 4.1 km by 3.3 km
    assert events[1].note.startswith("service area set: 2 polygons, ")
    assert "accepted from anywhere" in events[2].note
    assert db.get(ServiceArea, 1) is None


def test_the_setting_overrides_the_admin_polygon_and_refuses_writes(db: Session) -> None:
    admin = f.user(db, "admin@example.org", "admin")
    actor = Actor.user(admin.id, admin.email)
    set_admin_area(db, square(1.40, 42.42, 1.80, 42.66), area=AREA, actor=actor)
    madrid_area = AreaConfig(polygon=square(-3.8, 40.3, -3.6, 40.5))
    assert area_source(db, madrid_area) == "setting"
    assert inside_service_area(db, *MADRID, area=madrid_area)
    assert not inside_service_area(db, f.LON, f.LAT, area=madrid_area)
    geometry = area_in_force(db, madrid_area).geometry
    assert geometry is not None and geometry["type"] == "MultiPolygon"
    with pytest.raises(ServiceAreaFromSetting, match="STREETLOOP_SERVICE_AREA"):
        set_admin_area(db, square(1.5, 42.4, 1.6, 42.5), area=madrid_area, actor=actor)
    with pytest.raises(ServiceAreaFromSetting):
        clear_admin_area(db, area=madrid_area, actor=actor)
    assert (
        db.scalar(
            select(func.count())
            .select_from(StatusEvent)
            .where(StatusEvent.entity == "service_area")
        )
        == 1
    )


def test_the_settings_tolerance_applies_to_its_polygon(db: Session) -> None:
    polygon = square(1.50, 42.49, EDGE_LON, 42.52)
    assert inside_service_area(
        db, *east_of_edge(90), area=AreaConfig(tolerance_m=100, polygon=polygon)
    )
    assert not inside_service_area(
        db, *east_of_edge(110), area=AreaConfig(tolerance_m=100, polygon=polygon)
    )


def test_check_location_names_the_place(db: Session) -> None:
    f.district(db)
    check_location(db, f.LON, f.LAT, area=AREA)
    with pytest.raises(OutsideServiceArea) as caught:
        check_location(db, *MADRID, area=AREA)
    assert (
        caught.value.message
        == "the location 40.416800, -3.703800 is outside the city's service area"
    )
    assert caught.value.field == "lat" and caught.value.code == "outside_service_area"


def test_tolerance_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        AreaConfig(tolerance_m=-1)


# -- settings ------------------------------------------------------------------------------

POLYGON = {
    "type": "Polygon",
    "coordinates": [[[1.50, 42.49], [1.55, 42.49], [1.55, 42.52], [1.50, 42.52], [1.50, 42.49]]],
}


def _env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://x@127.0.0.1/x", **extra}


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "area.geojson"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_settings_defaults() -> None:
    settings = Settings.from_env(_env())
    assert (settings.service_area_file, settings.service_area_tolerance_m) == (None, 100.0)
    assert (
        Settings.from_env(_env(STREETLOOP_SERVICE_AREA_TOLERANCE_M="250")).service_area_tolerance_m
        == 250.0
    )


@pytest.mark.parametrize("raw", ["-5", "nan", "inf", "wide"])
def test_bad_tolerance_stops_start_up(raw: str) -> None:
    with pytest.raises(ValueError, match="STREETLOOP_SERVICE_AREA_TOLERANCE_M"):
        Settings.from_env(_env(STREETLOOP_SERVICE_AREA_TOLERANCE_M=raw))


@pytest.mark.parametrize(
    "document",
    [
        POLYGON,
        {"type": "MultiPolygon", "coordinates": [POLYGON["coordinates"]]},
        {"type": "Feature", "properties": {"name": "Andorra la Vella"}, "geometry": POLYGON},
        {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {}, "geometry": POLYGON}],
        },
        # GPS tools export heights; they are dropped.
        {
            "type": "Polygon",
            "coordinates": [[[x, y, 1050.0] for x, y in POLYGON["coordinates"][0]]],
        },
    ],
    ids=["polygon", "multipolygon", "feature", "collection", "3d"],
)
def test_the_setting_file_is_read_at_start_up(tmp_path: Path, document: dict[str, Any]) -> None:
    path = _write(tmp_path, document)
    settings = Settings.from_env(_env(STREETLOOP_SERVICE_AREA=str(path)))
    assert settings.service_area_file == path
    area = AreaConfig.from_settings(settings)
    assert area.polygon is not None and area.polygon.bounds == (1.50, 42.49, 1.55, 42.52)
    assert not area.polygon.has_z


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("{not json", "is not JSON"),
        (
            {"type": "Point", "coordinates": [1.5, 42.5]},
            "the service area is a Polygon or MultiPolygon",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": POLYGON}] * 2,
            },
            "holds 2 features",
        ),
        ({"type": "Feature", "geometry": None}, "not a GeoJSON geometry"),
        # Seattle as (lat, lon): -122 is no latitude.
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[47.60, -122.35], [47.60, -122.30], [47.65, -122.30], [47.60, -122.35]]
                ],
            },
            "longitude, latitude",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[1.50, 42.49], [1.55, 42.52], [1.55, 42.49], [1.50, 42.52], [1.50, 42.49]]
                ],
            },
            "self-intersecting",
        ),
    ],
    ids=["json", "point", "two-features", "no-geometry", "lat-lon", "bow-tie"],
)
def test_a_bad_setting_file_stops_start_up(tmp_path: Path, document: Any, fragment: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(ValueError, match="^STREETLOOP_SERVICE_AREA: ") as caught:
        Settings.from_env(_env(STREETLOOP_SERVICE_AREA=str(path)))
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_a_missing_setting_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="STREETLOOP_SERVICE_AREA: cannot read .*nowhere.geojson"):
        Settings.from_env(_env(STREETLOOP_SERVICE_AREA=str(tmp_path / "nowhere.geojson")))
    with pytest.raises(ValueError, match="cannot read"):
        read_area_file(tmp_path)  # a directory


# -- intake --------------------------------------------------------------------------------


def _madrid_geocoder(session: Session, address: str) -> GeocodeMatch:
    return GeocodeMatch(
        lon=MADRID[0], lat=MADRID[1], label="Calle Mayor, Madrid", precision="street"
    )


def test_intake_refuses_a_device_location_outside_and_writes_nothing(db: Session) -> None:
    f.service_type(db)
    f.district(db)
    before = rows(db)
    with pytest.raises(OutsideServiceArea):
        submit_request(
            db,
            NewRequest(service_code="pothole", lon=MADRID[0], lat=MADRID[1]),
            actor=f.SYSTEM,
            area=AREA,
        )
    db.flush()
    assert rows(db) == before
    inside = submit_request(
        db, NewRequest(service_code="pothole", lon=f.LON, lat=f.LAT), actor=f.SYSTEM, area=AREA
    )
    assert inside.request.location_source == "device"


def test_intake_without_an_area_checks_nothing(db: Session) -> None:
    f.service_type(db)
    f.district(db)
    assert f.report(db, lon=MADRID[0], lat=MADRID[1]).request.location is not None


def test_an_address_geocoded_outside_waits_for_a_pin(db: Session) -> None:
    f.service_type(db)
    f.district(db)
    result = submit_request(
        db,
        NewRequest(service_code="pothole", address_string="Calle Mayor 1"),
        actor=f.SYSTEM,
        geocode=_madrid_geocoder,
        area=AREA,
    )
    req = result.request
    assert (req.location, req.location_source, req.address) == (None, "none", "Calle Mayor 1")
    assert result.work_order.location is None
    events = db.scalars(
        select(StatusEvent)
        .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == req.id)
        .order_by(StatusEvent.id)
    ).all()
    assert [(e.note, e.public) for e in events] == [
        ("Report received; staff will place it on the map from the address given.", True),
        (
            "the address matched 40.416800, -3.703800, outside the service area; left for staff to pin",
            False,
        ),
    ]


def test_staff_may_record_outside_on_purpose_and_it_is_audited(db: Session) -> None:
    f.service_type(db)
    f.district(db)
    staff = Actor(label="user:disp@example.org", user_id=None)
    result = submit_request(
        db,
        NewRequest(service_code="pothole", lon=MADRID[0], lat=MADRID[1], channel="phone"),
        actor=staff,
        area=AREA,
        allow_outside_area=True,
    )
    assert lon_lat(result.request.location) == pytest.approx(MADRID)
    events = db.scalars(
        select(StatusEvent)
        .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == result.request.id)
        .order_by(StatusEvent.id)
    ).all()
    assert [(e.from_status, e.to_status, e.note, e.public, e.actor) for e in events] == [
        (None, "received", "Report received.", True, "user:disp@example.org"),
        (
            "received",
            "received",
            "recorded outside the service area on purpose by user:disp@example.org",
            False,
            "user:disp@example.org",
        ),
    ]
    # Inside the area the flag overrides nothing, so nothing is recorded about it.
    inside = submit_request(
        db,
        NewRequest(service_code="pothole", lon=f.LON, lat=f.LAT),
        actor=staff,
        area=AREA,
        allow_outside_area=True,
    )
    assert (
        db.scalar(
            select(func.count())
            .select_from(StatusEvent)
            .where(
                StatusEvent.entity_id == inside.request.id, StatusEvent.entity == "service_request"
            )
        )
        == 1
    )


def test_pin_outside_the_area(db: Session) -> None:
    f.service_type(db)
    f.district(db)
    req = f.report(db, lon=None, lat=None, address_string="Carrer Major 1").request
    with pytest.raises(OutsideServiceArea):
        pin_request(db, req, *MADRID, actor=f.SYSTEM, area=AREA)
    assert req.location is None
    pin_request(db, req, *MADRID, actor=f.SYSTEM, area=AREA, allow_outside_area=True)
    db.flush()
    notes = db.scalars(
        select(StatusEvent.note).where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == req.id,
            StatusEvent.public.is_(False),
        )
    ).all()
    assert notes == ["placed outside the service area on purpose by test"]
