"""The crew phone API on real PostGIS: route feed and ETag, changes, events (incl. 409s), GPS pings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.models import CrewPosition, PositionPing, StatusEvent, WorkOrder
from tests import factories as f
from tests.factories.plans import DAY, crew_route


def test_route_feed_content_and_privacy(client, db: Session, published) -> None:  # noqa: ANN001
    r = crew_route(client, published["tokens"]["pothole-1"])
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["crew"]["code"] == "pothole-1" and body["plan_version"] == 1
    assert body["depot_start"]["code"] == "yard-1" and body["geometry"]["type"] == "LineString"
    assert len(body["breaks"]) == 1
    stops = body["stops"]
    assert [s["sequence"] for s in stops] == list(range(1, len(stops) + 1)) and len(stops) == 3
    assert all(s["service_code"] == "pothole" and s["eta"] and s["lat"] for s in stops)
    etas = [datetime.fromisoformat(s["eta"]) for s in stops]
    assert etas == sorted(etas)
    # Only this crew's work, and nobody's contact details.
    assert all(db.get(WorkOrder, s["work_order_id"]).crew.code == "pothole-1" for s in stops)
    assert "example.org" not in r.get_data(as_text=True)


def test_route_carries_the_choices_the_phone_offers(client, db: Session, published) -> None:  # noqa: ANN001
    # A phone offline all day offers the reasons and outcomes the API will accept on replay.
    from core.lifecycle.work_order import UNABLE_REASONS
    from core.models import COMPLETION_OUTCOMES

    body = crew_route(client, published["tokens"]["pothole-1"]).get_json()
    assert (
        body["unable_reasons"] == sorted(UNABLE_REASONS)
        and "blocked_by_vehicle" in body["unable_reasons"]
    )
    assert body["outcomes"] == list(COMPLETION_OUTCOMES) and body["outcomes"][0] == "fixed"


def test_etag_and_304_and_change_on_update(client, db: Session, published) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    first = crew_route(client, headers)
    tag = first.headers["ETag"]
    assert tag.startswith('"') and crew_route(client, headers).headers["ETag"] == tag
    not_modified = client.get(
        "/api/v1/crew/route",
        query_string={"date": DAY.isoformat()},
        headers={**headers, "If-None-Match": tag},
    )
    assert not_modified.status_code == 304 and not_modified.data == b""
    wo_id = first.get_json()["stops"][0]["work_order_id"]
    client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={"type": "en_route", "device_time": datetime.now(UTC).isoformat()},
        headers=headers,
    )
    changed = client.get(
        "/api/v1/crew/route",
        query_string={"date": DAY.isoformat()},
        headers={**headers, "If-None-Match": tag},
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != tag


def test_other_crews_route_is_404_and_staff_can_read_any(client, db: Session, published) -> None:  # noqa: ANN001
    assert (
        crew_route(client, published["tokens"]["pothole-1"], crew="graffiti-1").status_code == 404
    )
    staff = f.token_for(db, f.user(db, "disp@test", "dispatcher"))
    assert crew_route(client, staff, crew="graffiti-1").get_json()["crew"]["code"] == "graffiti-1"
    assert crew_route(client, staff).status_code == 422


def test_events_apply_by_device_time_and_409_when_not_possible(
    client, db: Session, published
) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    url = f"/api/v1/work-orders/{wo_id}/events"
    ok = client.post(
        url,
        json={
            "type": "en_route",
            "device_time": t0.isoformat(),
            "lat": f.LAT,
            "lon": f.LON,
            "accuracy_m": 8,
        },
        headers=headers,
    )
    assert ok.status_code == 200 and ok.get_json() == {
        "work_order_id": wo_id,
        "status": "en_route",
        "applied": True,
    }
    again = client.post(
        url, json={"type": "en_route", "device_time": t0.isoformat()}, headers=headers
    )
    assert again.status_code == 200 and again.get_json()["applied"] is False  # a resend
    site = client.post(
        url,
        json={"type": "on_site", "device_time": (t0 + timedelta(minutes=10)).isoformat()},
        headers=headers,
    )
    assert site.get_json()["status"] == "on_site"
    ev = db.scalars(
        select(StatusEvent).where(
            StatusEvent.entity == "work_order",
            StatusEvent.entity_id == wo_id,
            StatusEvent.to_status == "en_route",
        )
    ).one()
    assert ev.at == t0 and ev.location is not None and ev.actor == "user:pothole-1@test"
    # An older event arriving late cannot move the order backwards.
    late = client.post(
        url,
        json={"type": "en_route", "device_time": (t0 + timedelta(minutes=5)).isoformat()},
        headers=headers,
    )
    assert late.status_code == 409 and late.get_json()["errors"]["detail"]["current"] == "on_site"
    no_reason = client.post(
        url, json={"type": "unable", "device_time": datetime.now(UTC).isoformat()}, headers=headers
    )
    assert no_reason.status_code == 422
    unable = client.post(
        url,
        json={
            "type": "unable",
            "device_time": datetime.now(UTC).isoformat(),
            "reason": "blocked_by_vehicle",
        },
        headers=headers,
    )
    db.expire_all()
    assert (
        unable.status_code == 200 and db.get(WorkOrder, wo_id).unable_reason == "blocked_by_vehicle"
    )
    future = client.post(
        url,
        json={
            "type": "en_route",
            "device_time": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
        },
        headers=headers,
    )
    assert future.status_code == 422


def test_reassigned_order_is_404_to_the_old_crew_and_shows_in_changes(
    client, db: Session, published
) -> None:  # noqa: ANN001
    from core.workorders import change_status

    headers = published["tokens"]["pothole-1"]
    start = client.get("/api/v1/crew/changes", headers=headers).get_json()
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    wo = db.get(WorkOrder, wo_id)
    other = f.crew(db, "pothole-9")
    change_status(db, wo, "new", actor=f.SYSTEM)
    change_status(db, wo, "planned", actor=f.SYSTEM)
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=other.id)
    db.commit()
    r = client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={"type": "en_route", "device_time": datetime.now(UTC).isoformat()},
        headers=headers,
    )
    assert r.status_code == 404
    changes = client.get(
        "/api/v1/crew/changes", query_string={"since": start["cursor"]}, headers=headers
    ).get_json()
    assert {c["work_order_id"] for c in changes["changes"]} == {wo_id}
    assert changes["changes"][-1]["change"] == "removed"
    assert changes["cursor"] > start["cursor"]
    assert (
        client.get(
            "/api/v1/crew/changes", query_string={"since": changes["cursor"]}, headers=headers
        ).get_json()["changes"]
        == []
    )
    assert wo_id not in [
        s["work_order_id"] for s in crew_route(client, headers).get_json()["stops"]
    ]


def test_urgent_stop_assigned_directly_appears_in_changes_and_route(
    client, db: Session, published
) -> None:  # noqa: ANN001
    from core.workorders import change_status

    headers = published["tokens"]["pothole-1"]
    cursor = client.get("/api/v1/crew/changes", headers=headers).get_json()["cursor"]
    urgent = f.report(
        db, lon=f.offset(f.LON, f.LAT, 5000)[0], contact=Contact(email="x@example.org")
    ).work_order
    urgent.priority = 5
    change_status(
        db, urgent, "dispatched", actor=f.SYSTEM, crew_id=published["crews"]["pothole-1"].id
    )
    db.commit()
    changes = client.get(
        "/api/v1/crew/changes", query_string={"since": cursor}, headers=headers
    ).get_json()["changes"]
    assert [(c["work_order_id"], c["change"]) for c in changes] == [(urgent.id, "urgent_stop")]
    stops = crew_route(client, headers).get_json()["stops"]
    assert stops[-1]["work_order_id"] == urgent.id and stops[-1]["eta"] is None


def test_positions_bulk_ingest_idempotent_and_latest(client, db: Session, published) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    t0 = datetime.now(UTC) - timedelta(hours=1)
    pings = [
        {
            "time": (t0 + timedelta(seconds=3 * k)).isoformat(),
            "lat": f.LAT + k * 1e-5,
            "lon": f.LON,
            "accuracy": 5,
            "speed": 3.2,
            "heading": 90,
        }
        for k in range(1000)
    ]
    r = client.post("/api/v1/crew/positions", json={"pings": pings}, headers=headers)
    assert r.status_code == 201 and r.get_json() == {"stored": 1000, "duplicates": 0, "rejected": 0}
    r = client.post(
        "/api/v1/crew/positions",
        json={
            "pings": pings[-10:]
            + [{"time": datetime.now(UTC).isoformat(), "lat": 42.51, "lon": 1.53}]
        },
        headers=headers,
    )
    assert r.get_json() == {"stored": 1, "duplicates": 10, "rejected": 0}
    # A phone whose clock runs an hour fast: its bad pings are dropped, the rest kept.
    future = [
        {"time": (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "lat": 42.52, "lon": 1.53}
    ]
    ok = [
        {"time": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(), "lat": 42.51, "lon": 1.53}
    ]
    assert client.post(
        "/api/v1/crew/positions", json={"pings": future + ok}, headers=headers
    ).get_json() == {"stored": 1, "duplicates": 0, "rejected": 1}
    assert db.scalar(select(func.count()).select_from(PositionPing)) == 1002
    staff = f.token_for(db, f.user(db, "disp2@test", "dispatcher"))
    latest = client.get("/api/v1/crews/positions", headers=staff).get_json()
    assert [(p["crew"], p["lat"]) for p in latest] == [("pothole-1", 42.51)]
    # An older batch arriving late does not move the crew back in time.
    client.post(
        "/api/v1/crew/positions",
        json={"pings": [{"time": t0.isoformat(), "lat": 0, "lon": 0}]},
        headers=headers,
    )
    assert db.scalar(select(CrewPosition.at)) > t0
    for bad in (
        {"pings": []},
        {"pings": [{"time": "yesterday", "lat": 1, "lon": 1}]},
        {"pings": [{"time": t0.isoformat(), "lat": 91, "lon": 1}]},
        {"pings": [{"time": "2026-01-01T00:00:00", "lat": 1, "lon": 1}]},
        # Stored, a negative accuracy would break every later check of the track.
        {"pings": [{"time": t0.isoformat(), "lat": 1, "lon": 1, "accuracy": -1}]},
        {"nope": 1},
    ):
        assert client.post("/api/v1/crew/positions", json=bad, headers=headers).status_code == 422
    assert (
        client.post("/api/v1/crew/positions", json={"pings": pings[:1]}, headers=staff).status_code
        == 403
    )


def test_device_time_stays_in_the_audit_but_the_public_record_never_goes_back(
    client, db: Session, published
) -> None:  # noqa: ANN001
    from core.models import ServiceRequest

    headers = published["tokens"]["pothole-1"]
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    req = db.scalars(select(ServiceRequest).where(ServiceRequest.work_order_id == wo_id)).first()
    before = client.get(f"/open311/v2/requests/{req.public_id}.json").get_json()[0][
        "updated_datetime"
    ]
    scheduled_at = db.scalar(
        select(StatusEvent.at).where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == req.id,
            StatusEvent.to_status == "scheduled",
        )
    )
    # The phone was offline: it says it set off 40 minutes before the office dispatched it.
    device = scheduled_at - timedelta(minutes=40)
    r = client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={"type": "en_route", "device_time": device.isoformat()},
        headers=headers,
    )
    assert r.status_code == 200 and r.get_json()["applied"] is True
    audit = db.scalar(
        select(StatusEvent.at).where(
            StatusEvent.entity == "work_order",
            StatusEvent.entity_id == wo_id,
            StatusEvent.to_status == "en_route",
        )
    )
    assert audit == device
    public = db.execute(
        select(StatusEvent.to_status, StatusEvent.at)
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == req.id,
            StatusEvent.public,
        )
        .order_by(StatusEvent.at, StatusEvent.id)
    ).all()
    assert [s for s, _ in public][-2:] == ["scheduled", "in_progress"]
    assert public[-1].at == scheduled_at
    after = client.get(f"/open311/v2/requests/{req.public_id}.json?extensions=true").get_json()[0]
    assert datetime.fromisoformat(after["updated_datetime"]) >= datetime.fromisoformat(before)
    assert [n["status"] for n in after["notes"]][-2:] == ["scheduled", "in_progress"]
    page = client.get(f"/status/{req.public_id}").get_data(as_text=True)
    timeline = page[page.index("<ol") :]
    assert timeline.index("<strong>Scheduled</strong>") < timeline.index(
        "<strong>In progress</strong>"
    )


def test_a_progress_event_with_a_fix_is_the_crews_latest_position(
    client, db: Session, published
) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    crew_id = published["crews"]["pothole-1"].id
    wo_id = crew_route(client, headers).get_json()["stops"][0]["work_order_id"]
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    r = client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={
            "type": "en_route",
            "device_time": t0.isoformat(),
            "lat": 42.51,
            "lon": 1.53,
            "accuracy_m": 6,
        },
        headers=headers,
    )
    assert r.status_code == 200
    fix = db.get(CrewPosition, crew_id)
    assert (fix.at, round(fix.accuracy_m)) == (t0, 6)
    # A later ping stays the latest; an older event's fix does not move the crew back.
    client.post(
        "/api/v1/crew/positions",
        json={
            "pings": [{"time": (t0 + timedelta(minutes=5)).isoformat(), "lat": 42.52, "lon": 1.54}]
        },
        headers=headers,
    )
    client.post(
        f"/api/v1/work-orders/{wo_id}/events",
        json={
            "type": "on_site",
            "device_time": (t0 + timedelta(minutes=1)).isoformat(),
            "lat": 42.50,
            "lon": 1.52,
        },
        headers=headers,
    )
    db.expire_all()
    assert db.get(CrewPosition, crew_id).at == t0 + timedelta(minutes=5)


def test_a_batch_with_one_malformed_ping_is_refused_whole(client, db: Session, published) -> None:  # noqa: ANN001
    """Unlike an implausible time (dropped and counted), a ping that is not a fix at all
    refuses the batch: the phone is told which one, and nothing of it is stored."""
    headers = published["tokens"]["pothole-1"]
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    pings = [
        {"time": (t0 + timedelta(seconds=k)).isoformat(), "lat": f.LAT, "lon": f.LON}
        for k in range(50)
    ]
    pings[37] = {"time": (t0 + timedelta(seconds=37)).isoformat(), "lat": f.LAT, "lon": 181}
    r = client.post("/api/v1/crew/positions", json={"pings": pings}, headers=headers)
    assert r.status_code == 422 and r.get_json()["errors"] == {"pings.37": ["invalid"]}
    assert db.scalar(select(func.count()).select_from(PositionPing)) == 0
    assert db.scalar(select(func.count()).select_from(CrewPosition)) == 0
