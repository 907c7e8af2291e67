"""Photos sent with a report: content checks, bomb safety, EXIF-free public copies, jobs after commit."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from core.models import Photo, ServiceRequest
from core.photos import process_photo
from core.storage import LocalStorage
from tests import factories as f
from tests.api.uploads import multipart
from tests.factories.photos import jpeg_with_exif, phone_jpeg, zero_png

BASE = "/open311/v2"


def _post(client, media: bytes, name: str = "photo.jpg", fmt: str = "json"):  # noqa: ANN001, ANN202
    return client.post(
        f"{BASE}/requests.{fmt}",
        **multipart(
            {
                "api_key": f.API_KEY,
                "service_code": "pothole",
                "lat": str(f.LAT),
                "long": str(f.LON),
                "media": (io.BytesIO(media), name, "image/jpeg"),
            }
        ),
    )


def _jobs(engine: Engine) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        return [
            (r.task_name, r.args)
            for r in conn.execute(
                text("SELECT task_name, args FROM procrastinate_jobs ORDER BY id")
            )
        ]


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    db.commit()


def test_photo_upload_is_stored_privately_and_processed_after_commit(
    client, db: Session, engine: Engine, settings, city
) -> None:  # noqa: ANN001
    data = jpeg_with_exif()
    resp = _post(client, data)
    assert resp.status_code == 201, resp.data
    public_id = resp.get_json()[0]["service_request_id"]
    photo = db.scalar(
        select(Photo).join(ServiceRequest).where(ServiceRequest.public_id == public_id)
    )
    assert (photo.kind, photo.state, photo.content_type, photo.width, photo.height) == (
        "report",
        "pending",
        "image/jpeg",
        64,
        32,
    )
    storage = LocalStorage(settings.media_dir)
    assert storage.get(photo.original_key) == data  # the original, untouched, kept private
    assert photo.original_key.startswith("private/")
    # The job was queued once the request committed, pointing at this photo.
    assert _jobs(engine) == [("process_photo", {"photo_id": photo.id})]

    # Until processed, nothing is public.
    body = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()[0]
    assert body["photos"] == [] and body["media_url"] is None

    process_photo(db, storage, photo.id)
    db.commit()
    body = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()[0]
    (listed,) = body["photos"]
    assert body["media_url"] == listed["url"]
    public = client.get(listed["url"].replace("http://localhost", ""))
    public_bytes = public.get_data()
    public.close()  # file responses stream from disk
    assert public.status_code == 200 and public.content_type == "image/jpeg"
    with Image.open(io.BytesIO(public_bytes)) as img:
        assert img.size == (32, 64)  # orientation applied
        assert len(img.getexif()) == 0 and "exif" not in img.info
    assert b"PhoneMaker" not in public_bytes and b"secret-app" not in public_bytes
    thumb = client.get(listed["thumbnail_url"].replace("http://localhost", ""))
    thumb.close()
    assert thumb.status_code == 200 and thumb.content_type == "image/jpeg"
    # Originals are never reachable through the media route.
    assert client.get(f"/media/{photo.original_key}").status_code == 404
    assert (
        client.get("/media/public/../private/" + photo.original_key.split("/", 1)[1]).status_code
        == 404
    )


def test_processing_is_idempotent(db: Session, client, settings, city) -> None:  # noqa: ANN001
    public_id = _post(client, jpeg_with_exif()).get_json()[0]["service_request_id"]
    photo = db.scalar(
        select(Photo).join(ServiceRequest).where(ServiceRequest.public_id == public_id)
    )
    storage = LocalStorage(settings.media_dir)
    process_photo(db, storage, photo.id)
    first = photo.public_key
    process_photo(db, storage, photo.id)
    assert photo.public_key == first and photo.state == "ready"


def test_png_and_webp_are_accepted(client, city) -> None:  # noqa: ANN001
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (20, 20), "blue").save(buf, fmt)
        assert _post(client, buf.getvalue(), name="x.bin").status_code == 201


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", 400, "not a readable image"),
        (b"GIF89a" + b"\x00" * 40, 400, "image"),
        (jpeg_with_exif()[:200], 400, "not a readable image"),
    ],
)
def test_non_images_are_rejected_and_nothing_stored(
    client, db: Session, engine: Engine, city, payload, status, fragment
) -> None:  # noqa: ANN001
    resp = _post(client, payload)
    assert resp.status_code == status, resp.data
    assert fragment in resp.get_json()[0]["description"]
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    assert _jobs(engine) == []


def test_decompression_bomb_is_413_not_a_crash(client, db: Session, city) -> None:  # noqa: ANN001
    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000  # tiny file, 144 megapixels
    resp = _post(client, buf.getvalue(), name="bomb.png")
    assert resp.status_code == 413
    assert "pixels" in resp.get_json()[0]["description"]
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0


def test_a_png_bomb_under_the_camera_cap_is_413_and_stores_nothing(
    client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    bomb = zero_png(7000, 7000)  # 143 kB, 49 MP: under the 50 MP a phone photo may have
    resp = _post(client, bomb, name="bomb.png")
    assert resp.status_code == 413, resp.data
    assert (
        "7000x7000 pixels; the limit is 16,000,000 pixels for PNG"
        in resp.get_json()[0]["description"]
    )
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    assert _jobs(engine) == []


def test_a_48_megapixel_phone_photo_is_accepted(client, db: Session, settings, city) -> None:  # noqa: ANN001
    resp = _post(client, phone_jpeg())
    assert resp.status_code == 201, resp.data
    photo = db.scalar(select(Photo))
    assert (photo.width, photo.height, photo.content_type) == (8000, 6000, "image/jpeg")
    process_photo(db, LocalStorage(settings.media_dir), photo.id)
    public = LocalStorage(settings.media_dir).get(photo.public_key)
    with Image.open(io.BytesIO(public)) as img:
        assert img.size == (1536, 2048) and len(img.getexif()) == 0


def test_oversized_upload_is_413(app, client, city) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_upload_bytes=1000
    )
    resp = _post(client, jpeg_with_exif((400, 400)))
    assert resp.status_code == 413
    assert "limit is 1000" in resp.get_json()[0]["description"]


def test_no_job_is_queued_when_the_transaction_rolls_back(
    client, db: Session, engine: Engine, monkeypatch, city
) -> None:  # noqa: ANN001
    def broken_commit(self) -> None:  # noqa: ANN001
        self.rollback()
        raise RuntimeError("database went away at commit")

    # The view's session fails to commit: the request is lost, and so must the job be.
    monkeypatch.setattr("sqlalchemy.orm.Session.commit", broken_commit)
    resp = _post(client, jpeg_with_exif())
    assert resp.status_code == 500
    assert _jobs(engine) == []
