"""Open311 refuses reports from outside the city's service area, and stores nothing."""

from __future__ import annotations

import io
import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.lifecycle import Actor
from core.models import AddressPoint, Photo, ServiceRequest, StatusEvent, WorkOrder
from core.service_area import AreaConfig, set_admin_area
from core.settings import Settings
from core.spatial import point
from geo.address import normalize_street
from tests import factories as f
from tests.factories.photos import jpeg_with_exif

BASE = "/open311/v2"
MADRID_LAT, MADRID_LON = 40.4168, -3.7038
MADRID_REFUSED = "the location 40.416800, -3.703800 is outside the city's service area"
# f.district's default square is (1.50, 42.49) to (1.55, 42.52); a point on its east edge.
EDGE_LON, EDGE_LAT = 1.55, 42.505


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    f.district(db, "centre")  # covers central Andorra la Vella, and with it f.LON, f.LAT
    db.commit()


def _post(client: Any, fmt: str = "json", **form: Any) -> Any:
    data = {"api_key": f.API_KEY, "service_code": "pothole", "lat": str(f.LAT), "long": str(f.LON)}
    data.update(form)
    return client.post(
        f"{BASE}/requests.{fmt}",
        data=data,
        content_type="multipart/form-data" if "media" in form else None,
    )


def _stored(db: Session, engine: Engine) -> dict[str, int]:
    counts = {
        t.__tablename__: db.scalar(select(func.count()).select_from(t))
        for t in (ServiceRequest, WorkOrder, Photo)
    }
    # Every event but the set-up's own (creating the client app's key is audited too).
    counts["status_events"] = db.scalar(
        select(func.count()).select_from(StatusEvent).where(StatusEvent.entity != "api_key")
    )
    with engine.connect() as conn:
        counts["jobs"] = conn.scalar(text("SELECT count(*) FROM procrastinate_jobs"))
    return counts


NOTHING = {"service_requests": 0, "work_orders": 0, "status_events": 0, "photos": 0, "jobs": 0}


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_report_from_madrid_is_refused(
    client: Any, db: Session, engine: Engine, city: None
) -> None:
    resp = _post(
        client, lat=str(MADRID_LAT), long=str(MADRID_LON), description="Hole in the Puerta del Sol"
    )
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.content_type.startswith("application/json")
    assert resp.get_json() == [{"code": 400, "description": MADRID_REFUSED}]
    assert _stored(db, engine) == NOTHING


def test_a_report_from_madrid_is_refused_in_xml(
    client: Any, db: Session, engine: Engine, city: None
) -> None:
    resp = _post(client, "xml", lat=str(MADRID_LAT), long=str(MADRID_LON))
    assert resp.status_code == 400
    assert resp.content_type.startswith("text/xml")
    root = ET.fromstring(resp.data)
    assert root.tag == "errors"
    assert [(e.findtext("code"), e.findtext("description")) for e in root.findall("error")] == [
        ("400", MADRID_REFUSED)
    ]
    assert _stored(db, engine) == NOTHING


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_photo_sent_from_madrid_is_not_kept(
    client: Any, db: Session, engine: Engine, settings: Settings, city: None, fmt: str
) -> None:
    photo = (io.BytesIO(jpeg_with_exif()), "photo.jpg", "image/jpeg")
    resp = _post(client, fmt, lat=str(MADRID_LAT), long=str(MADRID_LON), media=photo)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert _stored(db, engine) == NOTHING
    assert _files(settings.media_dir) == []
    # The same photo from inside the city is kept: the check above can fail.
    inside = _post(client, fmt, media=(io.BytesIO(jpeg_with_exif()), "photo.jpg", "image/jpeg"))
    assert inside.status_code == 201, inside.get_data(as_text=True)
    assert len(_files(settings.media_dir)) == 1


@pytest.mark.parametrize(("metres", "status"), [(0, 201), (90, 201), (110, 400), (5_000, 400)])
def test_border_tolerance(client: Any, db: Session, city: None, metres: float, status: int) -> None:
    lon, lat = f.offset(EDGE_LON, EDGE_LAT, metres)
    resp = _post(client, lat=f"{lat:.7f}", long=f"{lon:.7f}")
    assert resp.status_code == status, resp.get_data(as_text=True)


def test_tolerance_comes_from_the_setting(
    settings: Settings, sessions: sessionmaker[Session], queue: object, db: Session, city: None
) -> None:
    from api import create_app

    lon, lat = f.offset(EDGE_LON, EDGE_LAT, 400)
    narrow = create_app(settings, sessions=sessions, queue=queue).test_client()
    assert _post(narrow, lat=f"{lat:.7f}", long=f"{lon:.7f}").status_code == 400
    wide = create_app(
        replace(settings, service_area_tolerance_m=500), sessions=sessions, queue=queue
    ).test_client()
    assert _post(wide, lat=f"{lat:.7f}", long=f"{lon:.7f}").status_code == 201


def test_with_no_area_anything_is_accepted(client: Any, db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    db.commit()
    assert _post(client, lat=str(MADRID_LAT), long=str(MADRID_LON)).status_code == 201


def test_an_address_geocoded_outside_is_accepted_without_a_location(
    client: Any, db: Session, city: None
) -> None:
    # The index has a Calle Mayor only in Madrid: a namesake, not a place in this city.
    db.add(
        AddressPoint(
            street="Calle Mayor",
            street_key=normalize_street("Calle Mayor"),
            housenumber="1",
            location=point(MADRID_LON, MADRID_LAT),
            osm_type="node",
            osm_id=1,
        )
    )
    db.commit()
    resp = _post(client, lat="", long="", address_string="Calle Mayor, 1")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    public_id = resp.get_json()[0]["service_request_id"]
    got = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()[0]
    assert (got["lat"], got["long"], got["address"]) == (None, None, "Calle Mayor, 1")
    assert [n["description"] for n in got["notes"]] == [
        "Report received; staff will place it on the map from the address given."
    ]
    req = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    assert req.location_source == "none" and req.work_order.location is None


def test_the_admin_polygon_governs_open311(client: Any, db: Session, city: None) -> None:
    admin = f.user(db, "admin@example.org", "admin")
    # Only Canillo, up the valley: Andorra la Vella's district no longer counts.
    set_admin_area(
        db,
        MultiPolygon([box(1.58, 42.55, 1.62, 42.58)]),
        area=AreaConfig(),
        actor=Actor.user(admin.id, admin.email),
    )
    db.commit()
    assert _post(client).status_code == 400
    assert _post(client, lat="42.567", long="1.60").status_code == 201


def test_the_setting_file_governs_open311(
    settings: Settings,
    sessions: sessionmaker[Session],
    queue: object,
    db: Session,
    tmp_path: Path,
    city: None,
) -> None:
    from api import create_app

    path = tmp_path / "madrid.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "Feature",
                "properties": {},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[-3.8, 40.3], [-3.6, 40.3], [-3.6, 40.5], [-3.8, 40.5], [-3.8, 40.3]]
                    ],
                },
            }
        )
    )
    client = create_app(
        replace(settings, service_area_file=path), sessions=sessions, queue=queue
    ).test_client()
    assert _post(client).status_code == 400  # Andorra la Vella's district does not count
    assert _post(client, lat=str(MADRID_LAT), long=str(MADRID_LON)).status_code == 201


# -- the warning at start ------------------------------------------------------------------

WARNING = "no service area: reports are accepted from anywhere; add districts or set STREETLOOP_SERVICE_AREA"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "api" and r.levelno == logging.WARNING
    ]


def test_start_up_warns_when_reports_are_accepted_from_anywhere(
    settings: Settings,
    sessions: sessionmaker[Session],
    queue: object,
    db: Session,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from api import create_app

    with caplog.at_level(logging.WARNING, logger="api"):
        create_app(settings, sessions=sessions, queue=queue)
    assert _warnings(caplog) == [WARNING]

    caplog.clear()
    f.district(db)
    db.commit()
    with caplog.at_level(logging.WARNING, logger="api"):
        create_app(settings, sessions=sessions, queue=queue)
    assert _warnings(caplog) == []


def test_start_up_survives_a_database_that_is_down(
    settings: Settings, queue: object, caplog: pytest.LogCaptureFixture
) -> None:
    from api import create_app

    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        with caplog.at_level(logging.INFO, logger="api"):
            app = create_app(settings, sessions=make_sessionmaker(engine), queue=queue)
    finally:
        engine.dispose()
    assert app is not None
    assert _warnings(caplog) == []
    assert any("service area not checked at start" in r.getMessage() for r in caplog.records)
