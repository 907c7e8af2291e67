"""The S3 storage through boto3 against moto's S3 server on loopback (no network)."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Photo, ServiceRequest
from core.photos import process_photo
from core.storage import S3Storage, storage_from_settings
from tests import factories as f


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import boto3

    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    name = f"photos-{id(monkeypatch)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


def test_put_get_exists_and_prefix(s3_endpoint: str, bucket: str) -> None:
    store = S3Storage(bucket, prefix="city/", endpoint_url=s3_endpoint)
    assert not store.exists("private/a.jpg")
    store.put("private/a.jpg", b"\xff\xd8 jpeg bytes")
    assert store.exists("private/a.jpg") and store.get("private/a.jpg") == b"\xff\xd8 jpeg bytes"
    assert store.path("private/a.jpg") is None
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["city/private/a.jpg"]
    with pytest.raises(ValueError):
        store.put("../escape.jpg", b"x")


def test_a_report_photo_round_trip_through_s3(
    client, app, db: Session, settings, s3_endpoint: str, bucket: str
) -> None:  # noqa: ANN001
    s3_settings = replace(settings, storage="s3", s3_bucket=bucket, s3_endpoint_url=s3_endpoint)
    app.extensions["streetloop.settings"] = s3_settings
    f.service_type(db)
    f.api_key(db)
    db.commit()
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "purple").save(buf, "JPEG")
    r = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "media": (io.BytesIO(buf.getvalue()), "x.jpg"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 201, r.data
    photo = db.scalar(select(Photo).join(ServiceRequest))
    store = storage_from_settings(s3_settings)
    assert isinstance(store, S3Storage) and store.get(photo.original_key) == buf.getvalue()
    assert not (settings.media_dir / photo.original_key).exists()  # nothing on local disk
    process_photo(db, store, photo.id)
    db.commit()
    served = client.get(f"/media/{photo.public_key}")
    assert served.status_code == 200 and served.content_type == "image/jpeg"
    assert served.data == store.get(photo.public_key)
    assert client.get("/media/public/photos/nope.jpg").status_code == 404


def test_files_delete_and_the_orphan_sweep_on_s3(
    db: Session, sessions, s3_endpoint: str, bucket: str
) -> None:  # noqa: ANN001
    from datetime import UTC, datetime, timedelta

    from core.photos import sweep_orphan_files
    from tests.factories.photos import jpeg, named_photo, original_key

    store = S3Storage(bucket, prefix="city", endpoint_url=s3_endpoint)
    photo = named_photo(db, store, "green")
    orphan = original_key(jpeg("red"))
    store.put(orphan, b"x")
    store.put("exports/x.csv", b"x")
    listed = {f.key for f in store.files("private/photos")}
    assert listed == {photo.original_key, orphan}
    assert all(f.modified.tzinfo is not None for f in store.files("private/photos"))

    grace = timedelta(hours=1)
    assert (
        sweep_orphan_files(sessions, store, grace=grace).removed == []
    )  # S3 dates them now: all young
    later = datetime.now(UTC) + grace + timedelta(minutes=1)
    done = sweep_orphan_files(sessions, store, grace=grace, now=later)
    assert done.removed == [orphan] and done.kept == 3
    assert (
        not store.exists(orphan)
        and store.exists(photo.original_key)
        and store.exists("exports/x.csv")
    )
    store.delete(orphan)  # already gone: no error
