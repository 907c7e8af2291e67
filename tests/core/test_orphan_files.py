"""Photo files a process wrote but never committed a row for are swept after a grace
period; files a row names, young files and names StreetLoop does not write stay; an
upload in flight holds the sweep off. (S3: tests/core/test_storage_s3.py.)"""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.models import Photo
from core.photos import hold_media_write_lock, sweep_orphan_files
from core.storage import LocalStorage
from tests import factories as f
from tests.factories.photos import jpeg, named_photo, original_key

GRACE = timedelta(hours=1)


def age(storage: LocalStorage, key: str, by: timedelta) -> None:
    then = time.time() - by.total_seconds()
    os.utime(storage.path(key), (then, then))


def test_old_files_no_row_names_are_removed_and_the_rest_stays(
    db: Session, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "media")
    photo = named_photo(db, storage, "green")
    orphan = original_key(jpeg("red"))  # the upload's transaction never committed
    orphan_copy = "public/photos/987654321-0123456789abcdef-thumb.jpg"  # its photo row is gone
    leftover = "private/photos/ab/.tmp-k2j4h1"  # a write killed half-way (LocalStorage.put)
    unknown = "private/photos/README.txt"  # not a name StreetLoop writes
    elsewhere = "exports/citistat.csv"  # outside the photo folders
    young = original_key(jpeg("blue"))  # perhaps still being committed
    for key in (orphan, orphan_copy, leftover, unknown, elsewhere, young):
        storage.put(key, b"x")
    for key in (
        photo.original_key,
        photo.public_key,
        photo.thumbnail_key,
        orphan,
        orphan_copy,
        leftover,
        unknown,
        elsewhere,
    ):
        age(storage, key, timedelta(hours=2))
    age(storage, young, timedelta(minutes=30))

    done = sweep_orphan_files(sessions, storage, grace=GRACE)

    assert sorted(done.removed) == sorted([orphan, orphan_copy, leftover])
    for key in (orphan, orphan_copy, leftover):
        assert not storage.exists(key)
    for key in (
        photo.original_key,
        photo.public_key,
        photo.thumbnail_key,
        unknown,
        elsewhere,
        young,
    ):
        assert storage.exists(key), key
    assert (done.kept, done.young, done.unknown, done.busy) == (3, 1, 1, False)


def test_an_upload_that_fails_after_writing_leaves_a_file_the_sweep_removes(
    client,
    db: Session,  # noqa: ANN001
    sessions: sessionmaker[Session],
    settings,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect: the original is written before the row commits; a process that dies
    (here: fails) in between left the file for ever."""
    import api.open311.routes

    f.service_type(db)
    f.api_key(db)
    db.commit()

    def dies(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(api.open311.routes, "defer_after_commit", dies)
    data = jpeg("orange")
    r = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "media": (io.BytesIO(data), "x.jpg"),
        },
        content_type="multipart/form-data",
    )
    assert r.status_code == 500
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    storage = LocalStorage(settings.media_dir)
    assert storage.exists(original_key(data))  # written, and no row names it

    assert sweep_orphan_files(sessions, storage, grace=GRACE).removed == []  # too young yet
    later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
    assert sweep_orphan_files(sessions, storage, grace=GRACE, now=later).removed == [
        original_key(data)
    ]
    assert not storage.exists(original_key(data))


def test_an_upload_in_flight_holds_the_sweep_off(
    committed: sessionmaker[Session], tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "media")
    key = original_key(jpeg("yellow"))
    storage.put(key, b"x")
    later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
    with committed() as upload:
        hold_media_write_lock(upload)  # as an upload does before writing its file
        done = sweep_orphan_files(committed, storage, grace=GRACE, now=later, lock_timeout_ms=200)
        assert done.busy and done.removed == []
        assert storage.exists(key)
        upload.rollback()
    assert sweep_orphan_files(committed, storage, grace=GRACE, now=later).removed == [key]
