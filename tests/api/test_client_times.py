"""Times phones send are believed only inside a sane window: one bad clock must not
store a value that makes everybody's reads fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Completion, ServiceRequest
from tests import factories as f
from tests.api.errors import error_body
from tests.factories.completions import submit
from tests.factories.plans import DAY, crew_route


def _reads(client, db: Session, headers: dict, wo_id: int) -> dict[str, int]:  # noqa: ANN001
    req = db.scalars(select(ServiceRequest).where(ServiceRequest.work_order_id == wo_id)).first()
    staff = f.token_for(db, f.user(db, f"staff-{wo_id}@test", "dispatcher"))
    urls = {
        "open311 list json": ("/open311/v2/requests.json?extensions=true", {}),
        "open311 list xml": ("/open311/v2/requests.xml?extensions=true", {}),
        "open311 one": (f"/open311/v2/requests/{req.public_id}.json?extensions=true", {}),
        "status page": (f"/status/{req.public_id}", {}),
        "staff request": (f"/api/v1/requests/{req.id}", staff),
        "staff work order": (f"/api/v1/work-orders/{wo_id}", staff),
        "crew route": (f"/api/v1/crew/route?date={DAY.isoformat()}", headers),
        "crew changes": ("/api/v1/crew/changes", headers),
    }
    return {name: client.get(url, headers=h).status_code for name, (url, h) in urls.items()}


@pytest.mark.parametrize(
    "device_time",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: PostgreSQL stores a BC date
        "0001-01-01T10:00:00+00:00",  # year 1: the city's zone west of UTC cannot show it
        "1970-01-01T00:00:00+00:00",  # a phone whose clock was reset
    ],
)
def test_an_event_dated_before_the_order_is_refused_and_reads_keep_working(
    client, db: Session, published, device_time: str
) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    r = client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={"type": "en_route", "device_time": device_time},
        headers=headers,
    )
    body = error_body(r, 422)
    assert "device_time" in body["errors"]
    assert set(_reads(client, db, headers, wo_id).values()) == {200}


@pytest.mark.parametrize("name", ["fix_time", "captured_at"])
@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-14:00"]
)
def test_a_completion_timed_outside_the_window_is_refused_and_stores_nothing(
    client, db: Session, job, name: str, value: str
) -> None:  # noqa: ANN001
    r = submit(client, job, **{name: value})
    body = error_body(r, 422)
    assert name in body["errors"]
    assert db.scalar(select(func.count()).select_from(Completion)) == 0


def test_a_report_a_day_older_than_its_order_is_refused(client, db: Session, published) -> None:  # noqa: ANN001
    from core.models import WorkOrder

    headers = published["tokens"]["pothole-1"]
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    created = db.get(WorkOrder, wo_id).created_at
    url = f"/api/v1/work-orders/{wo_id}/events"
    too_early = client.post(
        url,
        json={"type": "en_route", "device_time": (created - timedelta(hours=25)).isoformat()},
        headers=headers,
    )
    assert "device_time" in error_body(too_early, 422)["errors"]
    # A late sync of a report from a few hours before the order was typed in still counts.
    ok = client.post(
        url,
        json={"type": "en_route", "device_time": (created - timedelta(hours=3)).isoformat()},
        headers=headers,
    )
    assert ok.status_code == 200, ok.get_data(as_text=True)


def test_pings_dated_before_the_floor_are_dropped_not_stored(
    client, db: Session, published
) -> None:  # noqa: ANN001
    from core.models import PositionPing

    headers = published["tokens"]["pothole-1"]
    now = datetime.now(UTC)
    pings = [
        {"time": t, "lat": f.LAT, "lon": f.LON}
        for t in ("0001-01-01T00:00:00+14:00", "1970-01-01T00:00:00Z")
    ]
    pings.append({"time": now.isoformat(), "lat": f.LAT, "lon": f.LON})
    r = client.post("/api/v1/crew/positions", json={"pings": pings}, headers=headers)
    assert r.status_code == 201 and r.get_json() == {"stored": 1, "duplicates": 0, "rejected": 2}
    assert db.scalars(select(PositionPing.at)).all() == [now]
    staff = f.token_for(db, f.user(db, "disp-pings@test", "dispatcher"))
    assert client.get("/api/v1/crews/positions", headers=staff).status_code == 200
