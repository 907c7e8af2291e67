"""Closing the loop through the API: auto-verified proof closes the work and every request on
it; doubtful or audit-sampled proof waits for a supervisor, who verifies, rejects or closes."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.closing import initial_verdict
from core.intake import Contact
from core.models import (
    Completion,
    Notification,
    Photo,
    Review,
    ServiceRequest,
    StatusEvent,
    WorkOrder,
)
from core.photos import process_photo
from core.storage import LocalStorage
from tests import factories as f
from tests.factories.completions import NOW, submit
from tests.factories.photos import photo

FAR = {"lon": str(f.LON + 0.003)}  # ~250 m from the site: the distance check fails


@pytest.fixture
def supervisor(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "sup@test", "supervisor"))


def _requests(db: Session, wo_id: int) -> list[tuple[str, str, int | None]]:
    db.expire_all()
    return [
        (r.public_id, r.detailed_status, r.completion_id)
        for r in db.scalars(
            select(ServiceRequest)
            .where(ServiceRequest.work_order_id == wo_id)
            .order_by(ServiceRequest.id)
        )
    ]


def _events(db: Session, entity: str, entity_id: int) -> list[str]:
    return list(
        db.scalars(
            select(StatusEvent.to_status)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.id)
        )
    )


def test_auto_verified_completion_closes_every_request_including_duplicates(
    client, db: Session, job, tmp_path
) -> None:  # noqa: ANN001
    wo = job["wo"]
    # Two more residents report the same pothole; one leaves an e-mail address.
    dup1 = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0]).request
    dup2 = f.report(
        db, lon=f.offset(f.LON, f.LAT, 20)[0], contact=Contact(email="neighbour@example.org")
    ).request
    db.commit()
    assert dup1.work_order_id == dup2.work_order_id == wo.id and dup1.detailed_status == "received"

    r = submit(client, job)
    assert r.status_code == 201, r.data
    c = db.scalar(select(Completion))
    rows = _requests(db, wo.id)
    assert [s for _, s, _ in rows] == ["fixed", "fixed", "fixed"]
    assert {cid for _, _, cid in rows} == {c.id}
    assert db.get(WorkOrder, wo.id).status == "verified"
    for req in db.scalars(select(ServiceRequest).where(ServiceRequest.work_order_id == wo.id)):
        assert req.closed_at is not None and req.status_notes.startswith("Fixed.")
        assert _events(db, "service_request", req.id)[-1] == "fixed"
    # Only the reporter with an address is told; one outbox row for the fix.
    assert [(n.recipient, n.kind) for n in db.scalars(select(Notification))] == [
        ("neighbour@example.org", "fixed")
    ]

    # The after photo becomes each request's media_url once its public copy exists.
    after = db.scalar(select(Photo).where(Photo.completion_id == c.id, Photo.kind == "after"))
    process_photo(db, LocalStorage(tmp_path / "media"), after.id)
    db.flush()
    db.expire_all()
    urls = {
        r.media_url
        for r in db.scalars(select(ServiceRequest).where(ServiceRequest.work_order_id == wo.id))
    }
    assert urls == {f"/media/{after.public_key}"}


def test_audit_sample_holds_an_auto_verifiable_completion_for_review(
    app, client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = dataclasses.replace(
        app.extensions["streetloop.settings"], audit_sample_rate=1.0
    )
    r = submit(client, job)
    assert r.status_code == 201, r.data
    assert (r.get_json()["verdict"], r.get_json()["reasons"]) == ("needs_review", ["audit_sample"])
    c = db.scalar(select(Completion))
    assert (c.auto_verdict, c.audit_sampled) == ("auto_verified", True)
    assert [s for _, s, _ in _requests(db, job["wo"].id)] == ["in_progress"]
    assert db.get(WorkOrder, job["wo"].id).status == "completed"

    queue = client.get("/api/v1/reviews?reason=audit_sample", headers=supervisor).get_json()
    assert [i["id"] for i in queue["items"]] == [c.id] and queue["items"][0][
        "audit_sampled"
    ] is True
    assert (
        client.get("/api/v1/reviews?reason=distance_failed", headers=supervisor).get_json()["total"]
        == 0
    )


def test_sampling_draws_about_the_configured_share_and_never_doubtful_ones() -> None:
    rng = random.Random(20261125)
    drawn = sum(
        initial_verdict(
            "auto_verified", [], "fixed", sample_rate=0.05, draw=rng.random
        ).audit_sampled
        for _ in range(20_000)
    )
    assert 900 <= drawn <= 1100  # 5 % of 20,000 = 1,000; sd about 31
    assert (
        initial_verdict("auto_verified", [], "fixed", sample_rate=0.0, draw=lambda: 0.0).verdict
        == "auto_verified"
    )
    doubtful = initial_verdict(
        "needs_review", ["distance_failed"], "fixed", sample_rate=1.0, draw=lambda: 0.0
    )
    assert (doubtful.verdict, doubtful.reasons, doubtful.audit_sampled) == (
        "needs_review",
        ["distance_failed"],
        False,
    )
    other = initial_verdict("auto_verified", [], "needs_other_crew", sample_rate=0.0)
    assert (other.verdict, other.reasons) == ("needs_review", ["needs_other_crew"])


def test_review_queue_shows_the_evidence_oldest_first_and_filters(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    r = submit(client, job, before=[photo(7)], **FAR)
    assert r.status_code == 201 and r.get_json()["verdict"] == "needs_review"
    body = client.get("/api/v1/reviews", headers=supervisor).get_json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert (
        item["reasons"] == ["distance_failed"]
        and item["crew"] == "pothole-1"
        and item["outcome"] == "fixed"
    )
    distance = next(ch for ch in item["checks"] if ch["name"] == "distance")
    assert distance["passed"] is False and distance["limit"] == 75 and 230 < distance["value"] < 260
    assert [p["kind"] for p in item["photos"]] == ["after", "before"]
    assert item["photos"][0]["original_url"] == f"/api/v1/photos/{item['photos'][0]['id']}/original"
    roles = {
        ft["properties"]["role"]: ft["geometry"]["coordinates"]
        for ft in item["geojson"]["features"]
    }
    assert roles["site"] == pytest.approx([f.LON, f.LAT]) and roles["fix"] == pytest.approx(
        [f.LON + 0.003, f.LAT]
    )
    # (The fixture dispatched it "an hour ago", before the report's own creation time.)
    assert sorted(e["to_status"] for e in item["timeline"]) == [
        "completed",
        "dispatched",
        "new",
        "on_site",
    ]
    assert item["work_order"]["status"] == "completed"
    # Filters: nothing for another crew, district or type.
    for q in ("crew=pothole-2", "district=nowhere", "service_code=graffiti"):
        assert client.get(f"/api/v1/reviews?{q}", headers=supervisor).get_json()["total"] == 0, q
    assert client.get("/api/v1/reviews?crew=pothole-1", headers=supervisor).get_json()["total"] == 1
    # The original photo, with its metadata, for supervisors only.
    orig = client.get(item["photos"][0]["original_url"], headers=supervisor)
    assert (
        orig.status_code == 200
        and orig.headers["Cache-Control"] == "private, no-store"
        and orig.data[:2] == b"\xff\xd8"
    )
    assert client.get(item["photos"][0]["original_url"], headers=job["headers"]).status_code == 403


def test_supervisor_verifies_and_the_request_closes_with_its_proof(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    submit(client, job, **FAR)
    c = db.scalar(select(Completion))
    r = client.post(
        f"/api/v1/completions/{c.id}/review",
        json={"decision": "verify", "note": "photo shows the patch"},
        headers=supervisor,
    )
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["work_order_status"] == "verified"
    assert [(x["status"], x["detailed_status"]) for x in body["requests"]] == [("closed", "fixed")]
    assert (
        body["completion"]["verdict"] == "verified"
        and body["completion"]["auto_verdict"] == "needs_review"
    )
    assert [(rv["decision"], rv["reviewer"]) for rv in body["completion"]["reviews"]] == [
        ("verify", "sup@test")
    ]
    assert [cid for _, _, cid in _requests(db, job["wo"].id)] == [c.id]
    assert _events(db, "completion", c.id) == ["needs_review", "verified"]
    # Decided once: a second decision is a conflict, and changes nothing.
    again = client.post(
        f"/api/v1/completions/{c.id}/review",
        json={"decision": "reject", "reason": "x"},
        headers=supervisor,
    )
    assert again.status_code == 409 and again.get_json()["errors"]["error_code"] == "conflict"
    assert db.scalar(select(func.count()).select_from(Review)) == 1
    assert client.get("/api/v1/reviews", headers=supervisor).get_json()["total"] == 0


def test_rejection_sends_the_work_back_to_the_pool_and_off_the_crews_route(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    submit(client, job, **FAR)
    c = db.scalar(select(Completion))
    missing = client.post(
        f"/api/v1/completions/{c.id}/review", json={"decision": "reject"}, headers=supervisor
    )
    assert missing.status_code == 422
    assert missing.get_json()["errors"] == {
        "reason": ["a rejection needs a reason the crew can act on"]
    }
    r = client.post(
        f"/api/v1/completions/{c.id}/review",
        json={"decision": "reject", "reason": "photo is of another street"},
        headers=supervisor,
    )
    assert r.status_code == 200, r.data
    db.expire_all()
    wo = db.get(WorkOrder, job["wo"].id)
    assert (wo.status, wo.reopen_count, wo.crew_id) == ("new", 1, None)
    assert _events(db, "work_order", wo.id)[-2:] == ["rejected", "new"]
    assert [s for _, s, _ in _requests(db, wo.id)] == ["acknowledged"]
    assert db.get(Completion, c.id).verdict == "rejected"
    assert db.scalar(select(Review.reason)) == "photo is of another street"
    # The crew's next sync says the job left its list, and progress on it is refused.
    changes = client.get("/api/v1/crew/changes?since=0", headers=job["headers"]).get_json()[
        "changes"
    ]
    assert [
        (c["work_order_id"], c["change"])
        for c in changes
        if c["change"] not in ("updated", "assigned")
    ] == [(wo.id, "rejected")]
    ev = client.post(
        f"/api/v1/work-orders/{wo.id}/events",
        json={"type": "en_route", "device_time": NOW.isoformat()},
        headers=job["headers"],
    )
    assert ev.status_code in (404, 409)


def test_close_with_another_outcome(client, db: Session, job, supervisor) -> None:  # noqa: ANN001
    submit(client, job, **FAR)
    c = db.scalar(select(Completion))
    bad = client.post(
        f"/api/v1/completions/{c.id}/review",
        json={"decision": "close", "outcome": "fixed"},
        headers=supervisor,
    )
    assert bad.status_code == 422
    r = client.post(
        f"/api/v1/completions/{c.id}/review",
        json={
            "decision": "close",
            "outcome": "referred",
            "status_notes": "This road belongs to the national government.",
        },
        headers=supervisor,
    )
    assert r.status_code == 200, r.data
    assert r.get_json()["work_order_status"] == "closed"
    (req,) = db.scalars(select(ServiceRequest).where(ServiceRequest.work_order_id == job["wo"].id))
    db.refresh(req)
    assert (req.detailed_status, req.completion_id, req.status_notes) == (
        "referred",
        c.id,
        "This road belongs to the national government.",
    )


def test_needs_other_crew_cannot_be_verified(client, db: Session, job, supervisor) -> None:  # noqa: ANN001
    r = submit(client, job, outcome="needs_other_crew")
    assert r.status_code == 201 and r.get_json()["verdict"] == "needs_review"
    c = db.scalar(select(Completion))
    resp = client.post(
        f"/api/v1/completions/{c.id}/review", json={"decision": "verify"}, headers=supervisor
    )
    assert resp.status_code == 409
    assert [s for _, s, _ in _requests(db, job["wo"].id)] == ["in_progress"]


def test_only_supervisors_review(client, db: Session, job) -> None:  # noqa: ANN001
    submit(client, job, **FAR)
    c = db.scalar(select(Completion))
    dispatcher = f.token_for(db, f.user(db, "disp@test", "dispatcher"))
    for headers in (dispatcher, job["headers"]):
        assert client.get("/api/v1/reviews", headers=headers).status_code == 403
        assert (
            client.post(
                f"/api/v1/completions/{c.id}/review", json={"decision": "verify"}, headers=headers
            ).status_code
            == 403
        )
    assert (
        client.post(
            "/api/v1/completions/999999/review",
            json={"decision": "verify"},
            headers=f.token_for(db, f.user(db, "s2@test", "supervisor")),
        ).status_code
        == 404
    )


def test_supervisor_closes_uncompleted_work_with_an_explicit_outcome(
    client, db: Session, supervisor
) -> None:
    f.service_type(db)
    result = f.report(db)
    dup = f.report(db, lon=f.offset(f.LON, f.LAT, 5)[0]).request
    db.commit()
    wo = result.work_order
    fixed = client.post(
        f"/api/v1/work-orders/{wo.id}/close", json={"outcome": "fixed"}, headers=supervisor
    )
    assert fixed.status_code == 422  # fixed needs a crew's verified completion
    r = client.post(
        f"/api/v1/work-orders/{wo.id}/close",
        json={"outcome": "duplicate", "note": "same as #88 across the road"},
        headers=supervisor,
    )
    assert r.status_code == 200, r.data
    assert r.get_json()["status"] == "closed"
    assert [(s, cid) for _, s, cid in _requests(db, wo.id)] == [
        ("duplicate", None),
        ("duplicate", None),
    ]
    assert dup.id in {
        r.id
        for r in db.scalars(
            select(ServiceRequest).where(ServiceRequest.detailed_status == "duplicate")
        )
    }
    # Closed is final for staff: no status change reopens it behind the residents' back.
    again = client.post(
        f"/api/v1/work-orders/{wo.id}/transitions", json={"to": "new"}, headers=supervisor
    )
    assert again.status_code == 409
    dispatcher = f.token_for(db, f.user(db, "disp@test", "dispatcher"))
    assert (
        client.post(
            f"/api/v1/work-orders/{wo.id}/close", json={"outcome": "referred"}, headers=dispatcher
        ).status_code
        == 403
    )


def test_completed_work_is_reviewed_not_closed_directly(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    submit(client, job, **FAR)
    r = client.post(
        f"/api/v1/work-orders/{job['wo'].id}/close",
        json={"outcome": "not_found"},
        headers=supervisor,
    )
    assert r.status_code == 409 and "review" in r.get_json()["message"]
    for target in ("verified", "closed", "completed"):
        resp = client.post(
            f"/api/v1/work-orders/{job['wo'].id}/transitions",
            json={"to": target},
            headers=supervisor,
        )
        assert resp.status_code == 409, target
    assert [s for _, s, _ in _requests(db, job["wo"].id)] == ["in_progress"]


def test_a_new_report_on_recently_fixed_work_reopens_it(client, db: Session, job) -> None:  # noqa: ANN001
    from core.intake import NewRequest, submit_request

    submit(client, job)
    wo_id = job["wo"].id
    (original_id, status, _) = _requests(db, wo_id)[0]
    assert status == "fixed"
    again = submit_request(
        db,
        NewRequest(
            service_code="pothole",
            lon=f.offset(f.LON, f.LAT, 15)[0],
            lat=f.LAT,
            contact=Contact(email="again@example.org"),
        ),
        actor=f.SYSTEM,
        reopen_within=timedelta(days=30),
    )
    db.flush()
    wo = db.get(WorkOrder, wo_id)
    assert again.work_order.id == wo_id and again.request.duplicate_of.public_id == original_id
    assert (wo.status, wo.reopen_count) == ("new", 1)
    assert wo.due_at > NOW + timedelta(hours=71)  # a new SLA clock from the reopening report
    original = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == original_id))
    assert (
        original.detailed_status,
        original.reopen_count,
        original.completion_id,
        original.closed_at,
    ) == ("reopened", 1, None, None)
    assert "reopened" in again.request.service_notice
    assert _events(db, "work_order", wo_id)[-1] == "new"


@pytest.mark.parametrize(("within", "metres"), [(timedelta(0), 15), (timedelta(days=30), 400)])
def test_reports_outside_the_window_or_place_start_new_work(
    client, db: Session, job, within, metres
) -> None:  # noqa: ANN001
    from core.intake import NewRequest, submit_request

    assert submit(client, job).status_code == 201
    new = submit_request(
        db,
        NewRequest(service_code="pothole", lon=f.offset(f.LON, f.LAT, metres)[0], lat=f.LAT),
        actor=f.SYSTEM,
        reopen_within=within,
    )
    db.flush()
    db.expire_all()
    assert new.work_order.id != job["wo"].id and new.request.duplicate_of is None
    assert db.get(WorkOrder, job["wo"].id).status == "verified"


def test_open311_report_on_recently_fixed_work_reopens_it(client, db: Session, job) -> None:  # noqa: ANN001
    assert submit(client, job).status_code == 201
    f.api_key(db)
    db.commit()
    fixed_id = _requests(db, job["wo"].id)[0][0]
    lon = f.offset(f.LON, f.LAT, 10)[0]
    r = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(lon),
            "email": "back@example.org",
        },
    )
    assert r.status_code == 201, r.data
    (body,) = r.get_json()
    assert f"reported as request {fixed_id} and closed as fixed" in body["service_notice"]
    assert [s for _, s, _ in _requests(db, job["wo"].id)] == ["reopened", "received"]
    assert db.get(WorkOrder, job["wo"].id).status == "new"


def test_crew_is_told_when_a_supervisor_closes_its_dispatched_work(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    r = client.post(
        f"/api/v1/work-orders/{job['wo'].id}/close",
        json={"outcome": "referred"},
        headers=supervisor,
    )
    assert r.status_code == 200, r.data
    changes = client.get("/api/v1/crew/changes?since=0", headers=job["headers"]).get_json()[
        "changes"
    ]
    assert [(c["work_order_id"], c["change"]) for c in changes if c["event"] == "closed"] == [
        (job["wo"].id, "cancelled")
    ]


def test_completion_shows_the_track_the_residents_photos_and_each_checks_unit(
    client, db: Session, job, supervisor
) -> None:  # noqa: ANN001
    from core.field import Ping, ingest_positions

    # A fix two hours before the visit is outside the track check's window: not drawn.
    ingest_positions(
        db,
        job["crew"].id,
        [Ping(at=NOW - timedelta(hours=2), lat=f.LAT - 0.01, lon=f.LON, accuracy_m=5)],
    )
    (req,) = job["wo"].requests
    req.description = "Deep hole <b>by</b> the bakery"
    db.add(
        Photo(
            kind="report",
            service_request_id=req.id,
            sha256="ab" * 32,
            content_type="image/jpeg",
            byte_size=10,
            width=4,
            height=3,
            original_key="private/photos/ab/report.jpg",
            public_key="public/photos/r.jpg",
            thumbnail_key="public/photos/r-thumb.jpg",
            state="ready",
        )
    )
    db.commit()
    assert submit(client, job, **FAR).status_code == 201
    c = db.scalar(select(Completion))

    item = client.get(f"/api/v1/completions/{c.id}", headers=supervisor).get_json()
    # The 20 fixes of the drive up to the site (the fixture's), oldest first, not the one from two hours before.
    assert len(item["track"]) == 20 and item["track"][0]["lat"] == pytest.approx(f.LAT - 0.004)
    assert [p["at"] for p in item["track"]] == sorted(p["at"] for p in item["track"])
    (line,) = [ft for ft in item["geojson"]["features"] if ft["properties"]["role"] == "track"]
    assert line["geometry"]["type"] == "LineString" and len(line["geometry"]["coordinates"]) == 20
    # Every check says what its number measures and which side of the limit passes.
    checks = {ch["name"]: ch for ch in item["checks"]}
    assert (
        checks["distance"]["unit"],
        checks["distance"]["pass_when"],
        checks["distance"]["limit"],
    ) == ("m", "at_most", 75)
    assert (checks["fix_age"]["unit"], checks["teleport"]["unit"]) == ("s", "km/h")
    assert (checks["reuse"]["unit"], checks["reuse"]["pass_when"]) == ("bits", "above")
    assert checks["photo_present"]["unit"] is None and checks["photo_present"]["pass_when"] is None
    # The resident's words (as stored, untrusted text) and photo beside the crew's.
    (report,) = item["reports"]
    assert (
        report["service_request_id"] == req.public_id
        and report["description"] == "Deep hole <b>by</b> the bakery"
    )
    (rp,) = report["photos"]
    assert (rp["kind"], rp["url"], rp["original_url"]) == (
        "report",
        "/media/public/photos/r.jpg",
        f"/api/v1/photos/{rp['id']}/original",
    )
    assert item["work_order"]["service_name"] == "Pothole"

    # The queue carries the same evidence but the track, which is read one completion at a time.
    (queued,) = client.get("/api/v1/reviews", headers=supervisor).get_json()["items"]
    assert "track" not in queued and queued["reports"] == item["reports"]
    assert [ch["unit"] for ch in queued["checks"]] == [ch["unit"] for ch in item["checks"]]
    assert {ft["properties"]["role"] for ft in queued["geojson"]["features"]} == {"site", "fix"}
