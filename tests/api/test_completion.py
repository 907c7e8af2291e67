"""Completion with photo + GPS proof: each check passing and failing, idempotency, photo safety, access."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.field import Ping, ingest_positions
from core.models import Completion, IdempotencyKey, Photo, StatusEvent, WorkOrder
from core.workorders import change_status
from tests import factories as f
from tests.api.errors import error_body
from tests.factories.completions import NOW, submit
from tests.factories.photos import encode, phone_jpeg, photo, zero_png


def _checks(body: dict) -> dict[str, bool | None]:
    return {c["name"]: c["passed"] for c in body["checks"]}


def test_good_proof_is_auto_verified_and_closes_the_order_and_its_request(
    client, db: Session, job
) -> None:  # noqa: ANN001
    r = submit(client, job, before=[photo(2)])
    assert r.status_code == 201, r.data
    body = r.get_json()
    assert body["verdict"] == "auto_verified" and body["reasons"] == []
    assert _checks(body) == {
        "photo_present": True,
        "distance": True,
        "fix_age": True,
        "exif_location": True,
        "exif_time": True,
        "track": True,
        "teleport": True,
        "reuse": True,
    }
    # No numbers for the crew: thresholds stay with supervisors.
    assert set(body["checks"][0]) == {"name", "passed"}
    db.expire_all()
    wo = db.get(WorkOrder, job["wo"].id)
    assert wo.status == "verified"
    c = db.scalar(select(Completion))
    assert (c.verdict, c.auto_verdict, c.audit_sampled) == ("auto_verified", "auto_verified", False)
    (req,) = wo.requests
    assert (req.detailed_status, req.completion_id, req.closed_at is not None) == (
        "fixed",
        c.id,
        True,
    )
    assert req.status_notes == "Fixed. The crew's work was checked and confirmed."
    assert {d["name"]: d["limit"] for d in c.checks}["distance"] == 75
    assert [
        p.kind
        for p in db.scalars(select(Photo).where(Photo.completion_id == c.id).order_by(Photo.id))
    ] == ["after", "before"]
    events = db.scalars(
        select(StatusEvent.to_status)
        .where(StatusEvent.entity == "work_order", StatusEvent.entity_id == wo.id)
        .order_by(StatusEvent.id)
    ).all()
    assert events[-3:] == ["on_site", "completed", "verified"]
    # The visit is kept on the completion: the order's on_site and completed times.
    times = dict(
        db.execute(
            select(StatusEvent.to_status, StatusEvent.at).where(
                StatusEvent.entity == "work_order",
                StatusEvent.entity_id == wo.id,
                StatusEvent.to_status.in_(("on_site", "completed")),
            )
        ).all()
    )
    assert (c.arrived_at, c.completed_at) == (times["on_site"], times["completed"])
    assert all(
        e.actor == "user:pothole-1@test"
        for e in db.scalars(
            select(StatusEvent).where(
                StatusEvent.entity_id == wo.id, StatusEvent.to_status == "completed"
            )
        )
    )


@pytest.mark.parametrize(
    ("form", "photos_fn", "failed"),
    [
        ({"lon": str(f.LON + 0.003)}, None, "distance"),  # ~250 m east
        ({"accuracy_m": "400"}, None, "distance"),  # too vague to prove anything
        ({"fix_time": (NOW - timedelta(hours=2)).isoformat()}, None, "fix_age"),
        (
            {},
            lambda: [photo(3, lat=f.LAT + 0.05, lon=f.LON, taken=NOW - timedelta(minutes=1))],
            "exif_location",
        ),
        ({}, lambda: [photo(4, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(days=3))], "exif_time"),
    ],
)
def test_each_failing_check_sends_the_completion_to_review(
    client, db: Session, job, form, photos_fn, failed
) -> None:  # noqa: ANN001
    r = submit(client, job, photos=photos_fn() if photos_fn else None, **form)
    assert r.status_code == 201, r.data
    body = r.get_json()
    assert body["verdict"] == "needs_review" and f"{failed}_failed" in body["reasons"]
    assert _checks(body)[failed] is False


def test_reused_and_near_duplicate_photos_are_caught(client, db: Session, job) -> None:  # noqa: ANN001
    old = photo(7, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(minutes=1))
    wo2 = f.report(db, lon=f.offset(f.LON, f.LAT, 300)[0]).work_order
    change_status(db, wo2, "dispatched", actor=f.SYSTEM, crew_id=job["crew"].id)
    db.commit()
    assert submit(client, job, photos=[old], key="first").get_json()["verdict"] == "auto_verified"
    same = submit(client, job, photos=[old], key="second", wo_id=wo2.id).get_json()
    assert same["verdict"] == "needs_review" and "reuse_failed" in same["reasons"]
    wo3 = f.report(db, lon=f.offset(f.LON, f.LAT, 600)[0]).work_order
    change_status(db, wo3, "dispatched", actor=f.SYSTEM, crew_id=job["crew"].id)
    db.commit()
    # The same picture re-saved smaller and at a lower quality: different bytes, same scene.
    img = Image.open(io.BytesIO(old)).resize((320, 240))
    recompressed = encode(img, "JPEG", quality=40)
    near = submit(client, job, photos=[recompressed], key="third", wo_id=wo3.id).get_json()
    assert "reuse_failed" in near["reasons"]


def test_a_teleporting_track_is_flagged(client, db: Session, job) -> None:  # noqa: ANN001
    ingest_positions(
        db,
        job["crew"].id,
        [Ping(at=NOW - timedelta(seconds=90), lat=f.LAT + 0.1, lon=f.LON, accuracy_m=5)],
    )
    db.commit()
    body = submit(client, job).get_json()
    assert body["verdict"] == "needs_review" and "teleport_failed" in body["reasons"]


def test_missing_photo_when_required(client, db: Session, job) -> None:  # noqa: ANN001
    body = submit(client, job, photos=[]).get_json()
    assert body["verdict"] == "needs_review" and "photo_missing" in body["reasons"]


def test_idempotent_retry_and_key_misuse(client, db: Session, job) -> None:  # noqa: ANN001
    pic = [photo(9, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(minutes=1))]
    first = submit(client, job, photos=pic, key="retry-me")
    again = submit(client, job, photos=pic, key="retry-me")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    assert db.scalar(select(func.count()).select_from(Completion)) == 1
    assert db.scalar(select(func.count()).select_from(Photo)) == 1
    misuse = submit(client, job, photos=pic, key="retry-me", notes="something else")
    assert misuse.status_code == 422 and "Idempotency-Key" in misuse.get_json()["errors"]
    # The same key for another order is another submission, not a replay of the first.
    wo2 = f.report(db, lon=f.offset(f.LON, f.LAT, 300)[0]).work_order
    change_status(db, wo2, "dispatched", actor=f.SYSTEM, crew_id=job["crew"].id)
    db.commit()
    assert submit(client, job, photos=pic, key="retry-me", wo_id=wo2.id).status_code == 422
    missing = client.post(
        f"/api/v1/work-orders/{job['wo'].id}/completion",
        data={"outcome": "fixed"},
        content_type="multipart/form-data",
        headers=job["headers"],
    )
    assert missing.status_code == 422
    # A new key on an order already completed: the lifecycle says no.
    assert submit(client, job, photos=pic, key="another").status_code == 409
    assert db.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


def test_heic_photo_is_accepted(client, db: Session, job) -> None:  # noqa: ANN001
    import pillow_heif  # noqa: F401  (registered by geo.photos)

    r = submit(client, job, photos=[photo(11, fmt="HEIF")])
    assert r.status_code == 201, r.data
    assert db.scalar(select(Photo.content_type)) == "image/heic"


def test_bomb_and_non_image_are_refused_and_nothing_is_stored(client, db: Session, job) -> None:  # noqa: ANN001
    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG", optimize=True)
    bomb = submit(client, job, photos=[buf.getvalue()], key="bomb")
    assert bomb.status_code == 413
    pdf = submit(client, job, photos=[b"%PDF-1.4 not a photo"], key="pdf")
    assert pdf.status_code == 422 and "photo rejected" in pdf.get_json()["message"]
    assert db.scalar(select(func.count()).select_from(Completion)) == 0
    db.expire_all()
    assert db.get(WorkOrder, job["wo"].id).status == "dispatched"


def test_the_photos_of_one_completion_are_bounded_together(
    app, client, db: Session, engine, job
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_request_pixels=2 * 640 * 480
    )
    r = submit(
        client,
        job,
        photos=[photo(1, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(minutes=1))],
        before=[photo(2), photo(3)],
        key="three",
    )
    body = error_body(r, 413)
    assert "the 3 photos have 921,600 pixels together" in body["message"]
    assert "photos" in body["errors"]
    assert db.scalar(select(func.count()).select_from(Completion)) == 0
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    assert db.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 0
    db.expire_all()
    assert db.get(WorkOrder, job["wo"].id).status == "dispatched"
    # Two of them fit.
    ok = submit(
        client,
        job,
        photos=[photo(1, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(minutes=1))],
        before=[photo(2)],
        key="two",
    )
    assert ok.status_code == 201, ok.data


def test_a_png_bomb_in_a_completion_is_413(client, db: Session, job) -> None:  # noqa: ANN001
    r = submit(client, job, photos=[zero_png(7000, 7000)], key="png-bomb")
    assert r.status_code == 413, r.data
    assert "limit is 16,000,000 pixels for PNG" in r.get_json()["message"]
    assert db.scalar(select(func.count()).select_from(Completion)) == 0


def test_a_48_megapixel_phone_photo_is_proof(client, db: Session, job) -> None:  # noqa: ANN001
    # phone_jpeg's EXIF: shot at 42°30'29" N 71°03'36" W on 2026-03-14. Its location and time
    # are read from the original (the checks do not pass: it is not this job's site).
    r = submit(client, job, photos=[phone_jpeg()], key="48mp")
    assert r.status_code == 201, r.data
    checks = _checks(r.get_json())
    assert (
        checks["photo_present"] is True
        and checks["exif_location"] is False
        and checks["exif_time"] is False
    )
    assert db.scalar(select(Photo.width)) == 8000


def test_other_crews_order_is_404_and_bad_fields_are_422(client, db: Session, job) -> None:  # noqa: ANN001
    assert submit(client, job, headers=job["other"], key="x").status_code == 404
    assert submit(client, job, key="y", outcome="magic").status_code == 422
    assert submit(client, job, key="z", fix_time="2026-01-01T10:00:00").status_code == 422
    assert submit(client, job, key="w", accuracy_m=None).status_code == 422


def test_a_track_that_never_came_near_the_site_is_flagged(client, db: Session, job) -> None:  # noqa: ANN001
    from core.models import PositionPing

    db.query(PositionPing).delete()
    # Parked 2 km away the whole time, at a steady, believable position.
    ingest_positions(
        db,
        job["crew"].id,
        [
            Ping(at=NOW - timedelta(minutes=10 - k), lat=f.LAT + 0.018, lon=f.LON, accuracy_m=5)
            for k in range(10)
        ],
    )
    db.commit()
    body = submit(client, job).get_json()
    assert body["verdict"] == "needs_review" and "track_failed" in body["reasons"]
    assert (
        _checks(body)["teleport"] is False
    )  # and the fix 2 km from the last ping, 30 s later, is a jump
