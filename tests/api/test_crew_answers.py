"""The crew API's answers through their schemas: the same JSON as built, the route's 304
with its headers, and the completion form read by its schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from dispatch.feed import route_feed
from tests import factories as f
from tests.factories.completions import NOW, submit
from tests.factories.plans import DAY, TZ, crew_route


def test_the_route_answer_is_the_feed_as_built(client, db: Session, published) -> None:  # noqa: ANN001
    """The schema documents the answer without changing it: not a key, not a value."""
    body = crew_route(client, published["tokens"]["pothole-1"]).get_json()
    built = route_feed(db, published["crews"]["pothole-1"], DAY, TZ, "http://localhost")
    assert built["stops"] and all({"comments", "photo_links"} <= set(s) for s in built["stops"])
    assert body == built


def test_a_304_keeps_the_etag_and_cache_control_and_has_no_body(client, published) -> None:  # noqa: ANN001
    headers = published["tokens"]["pothole-1"]
    first = crew_route(client, headers)
    tag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    for sent in (tag, f'"other", {tag}', "*"):
        again = crew_route(client, {**headers, "If-None-Match": sent})
        assert again.status_code == 304 and again.data == b"", sent
        assert (
            again.headers["ETag"] == tag and again.headers["Cache-Control"] == "private, no-cache"
        )
        assert "Content-Type" not in again.headers
    assert crew_route(client, {**headers, "If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lat", "north"),
        ("lon", "nan"),
        ("accuracy_m", "-1"),
        ("fix_time", "2026-01-01T10:00:00"),
        ("captured_at", "yesterday"),
        ("outcome", "magic"),
    ],
)
def test_a_bad_completion_part_is_a_422_that_names_it_and_stores_nothing(
    client, db: Session, job, field: str, value: str
) -> None:  # noqa: ANN001
    from sqlalchemy import func, select

    from core.models import Completion, IdempotencyKey

    r = submit(client, job, key=f"bad-{field}", **{field: value})
    assert r.status_code == 422, r.data
    assert list(r.get_json()["errors"]) == [field]
    assert db.scalar(select(func.count()).select_from(Completion)) == 0
    assert db.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_blank_completion_parts_count_as_not_sent(client, db: Session, job) -> None:  # noqa: ANN001
    from core.models import Completion

    # A phone's form sends every field; without a GPS fix they arrive empty.
    r = submit(client, job, key="blank", lat="", lon=" ", accuracy_m="", fix_time="", notes="  ")
    assert r.status_code == 201, r.data
    stored = db.get(Completion, r.get_json()["id"])
    assert (
        stored.location is None
        and stored.fix_time is None
        and stored.notes is None
        and stored.captured_at is not None
    )


def test_a_utc_z_time_is_accepted(client, job) -> None:  # noqa: ANN001
    fix = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = submit(client, job, key="zulu", fix_time=fix, lat=str(f.LAT))
    assert r.status_code == 201, r.data


@pytest.mark.parametrize(
    "part",
    [
        b"Content-Disposition: form-data\r\n\r\nx",
        b'Content-Disposition: form-data; filename="a.jpg"\r\n\r\nx',
    ],
)
def test_a_form_part_without_a_name_is_a_422(client, db: Session, job, part: bytes) -> None:  # noqa: ANN001
    from sqlalchemy import func, select

    from core.models import Completion

    body = (
        b"--b\r\n"
        + part
        + b'\r\n--b\r\nContent-Disposition: form-data; name="outcome"\r\n\r\nfixed\r\n--b--\r\n'
    )
    r = client.post(
        f"/api/v1/work-orders/{job['wo'].id}/completion",
        data=body,
        content_type="multipart/form-data; boundary=b",
        headers={**job["headers"], "Idempotency-Key": "nameless"},
    )
    assert r.status_code == 422, r.data
    assert r.get_json()["errors"] == {"(no name)": ["is a form part without a name"]}
    assert db.scalar(select(func.count()).select_from(Completion)) == 0
