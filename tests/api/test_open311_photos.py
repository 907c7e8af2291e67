"""Every photo of a report is kept (issue 13 §3): several `media` parts, FixMyStreet's
upload mode (photo1, photo2, ...) and its multi_photos mode (media_url repeated), within
the upload limits; all of them published, and shown to the crew, links as links."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from core.models import MediaLink, Photo, ServiceRequest, WorkOrder
from core.photos import process_photo
from core.storage import LocalStorage
from tests import factories as f
from tests.api.uploads import multipart
from tests.factories.photos import jpeg

BASE = "/open311/v2"
FMS = "https://fixmystreet.example.ad/photo"


RED, GREEN, BLUE = jpeg((200, 0, 0)), jpeg((0, 200, 0)), jpeg((0, 0, 200))


def _fields(**extra: Any) -> dict[str, Any]:
    return {
        "api_key": f.API_KEY,
        "service_code": "pothole",
        "lat": str(f.LAT),
        "long": str(f.LON),
        "description": "Hole by the bakery",
        **extra,
    }


def _file(data: bytes, name: str = "photo.jpg") -> tuple[io.BytesIO, str, str]:
    return (io.BytesIO(data), name, "image/jpeg")


def _post(client, fmt: str = "json", **fields: Any):  # noqa: ANN001, ANN202
    return client.post(f"{BASE}/requests.{fmt}", **multipart(_fields(**fields)))


def _public_id(resp: Any, fmt: str) -> str:
    assert resp.status_code == 201, resp.data
    if fmt == "xml":
        return ET.fromstring(resp.data).findtext("request/service_request_id")
    return resp.get_json()[0]["service_request_id"]


def _photos(db: Session, public_id: str) -> list[Photo]:
    return db.scalars(
        select(Photo)
        .join(ServiceRequest)
        .where(ServiceRequest.public_id == public_id)
        .order_by(Photo.id)
    ).all()


def _jobs(engine: Engine) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        return [
            (r.task_name, r.args)
            for r in conn.execute(
                text("SELECT task_name, args FROM procrastinate_jobs ORDER BY id")
            )
        ]


def _nothing_stored(db: Session, engine: Engine) -> None:
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    assert db.scalar(select(func.count()).select_from(MediaLink)) == 0
    assert _jobs(engine) == []


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    db.commit()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# -- several files ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_three_media_parts_are_three_photos_in_the_order_sent(
    client, db: Session, engine: Engine, city, fmt
) -> None:  # noqa: ANN001
    public_id = _public_id(_post(client, fmt, media=[_file(RED), _file(GREEN), _file(BLUE)]), fmt)
    photos = _photos(db, public_id)
    assert [p.sha256 for p in photos] == [_sha(RED), _sha(GREEN), _sha(BLUE)]
    assert {(p.kind, p.state) for p in photos} == {("report", "pending")}
    assert _jobs(engine) == [("process_photo", {"photo_id": p.id}) for p in photos]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_fixmystreet_upload_mode_photo1_to_photo3_is_kept_in_number_order(
    client, db: Session, city, fmt
) -> None:  # noqa: ANN001
    # Sent out of order, and past 9 (photo10 sorts after photo2 as a number, not as text).
    parts = {
        "photo2": _file(GREEN, "2.jpg"),
        "photo10": _file(BLUE, "10.jpg"),
        "photo1": _file(RED, "1.jpg"),
    }
    public_id = _public_id(_post(client, fmt, **parts), fmt)
    assert [p.sha256 for p in _photos(db, public_id)] == [_sha(RED), _sha(GREEN), _sha(BLUE)]


def test_an_identical_file_sent_twice_is_stored_once(
    client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    public_id = _public_id(
        _post(client, media=[_file(RED), _file(GREEN)], photo1=_file(RED, "again.jpg")), "json"
    )
    photos = _photos(db, public_id)
    assert [p.sha256 for p in photos] == [_sha(RED), _sha(GREEN)]
    assert len(_jobs(engine)) == 2


def test_an_empty_file_part_is_no_photo(client, db: Session, city) -> None:  # noqa: ANN001
    public_id = _public_id(_post(client, media=[_file(b"", ""), _file(RED)]), "json")
    assert [p.sha256 for p in _photos(db, public_id)] == [_sha(RED)]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_more_photos_than_a_report_may_have_is_413_and_stores_nothing(
    app, client, db: Session, engine: Engine, city, fmt
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_report_photos=2
    )
    resp = _post(client, fmt, media=[_file(RED), _file(GREEN)], photo1=_file(BLUE))
    assert resp.status_code == 413, resp.data
    description = (
        ET.fromstring(resp.data).findtext("error/description")
        if fmt == "xml"
        else resp.get_json()[0]["description"]
    )
    assert description == "media: 3 photos sent; a report may have at most 2"
    _nothing_stored(db, engine)


def test_one_photo_too_large_refuses_the_report_with_413(
    app, client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    big = jpeg((10, 10, 10), (400, 400))
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_upload_bytes=len(RED) + 10
    )
    resp = _post(client, media=[_file(RED), _file(big)])
    assert resp.status_code == 413, resp.data
    assert f"the limit is {len(RED) + 10}" in resp.get_json()[0]["description"]
    _nothing_stored(db, engine)


def test_photos_with_too_many_pixels_together_are_413(
    app, client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_request_pixels=2000
    )
    resp = _post(client, photo1=_file(RED), photo2=_file(GREEN))  # 1,200 pixels each
    assert resp.status_code == 413, resp.data
    assert "the 2 photos have 2,400 pixels together" in resp.get_json()[0]["description"]
    _nothing_stored(db, engine)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_body_over_the_limit_is_413_in_open311s_format(
    app, client, db: Session, engine: Engine, city, fmt
) -> None:  # noqa: ANN001
    # All the photos of a report together are bounded by the body's limit.
    app.config["MAX_CONTENT_LENGTH"] = len(RED) * 2
    resp = _post(client, fmt, media=[_file(RED), _file(GREEN), _file(BLUE)])
    assert resp.status_code == 413
    if fmt == "xml":
        assert ET.fromstring(resp.data).findtext("error/code") == "413"
    else:
        assert resp.get_json()[0]["code"] == 413
    _nothing_stored(db, engine)


def test_one_bad_file_among_good_ones_is_400_and_stores_nothing(
    client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    resp = _post(client, photo1=_file(RED), photo2=_file(b"%PDF-1.4\n", "x.pdf"))
    assert resp.status_code == 400
    assert "not a readable image" in resp.get_json()[0]["description"]
    _nothing_stored(db, engine)


# -- several links ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_fixmystreet_multi_photos_keeps_every_media_url_in_order(
    client, db: Session, engine: Engine, city, fmt
) -> None:  # noqa: ANN001
    # As FixMyStreet's multi_photos sends them: the field repeated, in a urlencoded form.
    urls = [
        f"{FMS}/1.full.jpeg",
        f"{FMS}/2.full.jpeg",
        f"{FMS}/1.full.jpeg",
        "",
        f"{FMS}/3.full.jpeg",
    ]
    resp = client.post(f"{BASE}/requests.{fmt}", data={**_fields(), "media_url": urls})
    public_id = _public_id(resp, fmt)
    req = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    assert [(link.position, link.url, link.copy_state) for link in req.media_links] == [
        (0, f"{FMS}/1.full.jpeg", "link"),
        (1, f"{FMS}/2.full.jpeg", "link"),
        (2, f"{FMS}/3.full.jpeg", "link"),
    ]
    assert req.media_url == f"{FMS}/1.full.jpeg"  # GeoReport v2's one: the first
    # No host is allowed to be copied from by default: nothing is queued, nothing fetched.
    assert _jobs(engine) == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("javascript:alert(1)", "media_url must be an http"),
        ("/photo.jpg", "media_url must be an http"),
        ("https:///no-host.jpg", "media_url must be an http"),
        ("https://example.org/a b.jpg", "without spaces"),
        ("https://example.org:99999/p.jpg", "media_url must be an http"),
        ("https://example.org/" + "p" * 2040, "media_url is longer than 2048 characters"),
    ],
)
def test_a_bad_media_url_among_good_ones_is_400_naming_it(
    client, db: Session, engine: Engine, city, value: str, fragment: str
) -> None:
    resp = client.post(
        f"{BASE}/requests.json", data={**_fields(), "media_url": [f"{FMS}/1.jpeg", value]}
    )
    assert resp.status_code == 400, resp.data
    assert fragment in resp.get_json()[0]["description"]
    _nothing_stored(db, engine)


def test_more_links_than_a_report_may_have_is_400(
    app, client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], max_report_photos=2
    )
    resp = client.post(
        f"{BASE}/requests.json",
        data={**_fields(), "media_url": [f"{FMS}/{k}.jpeg" for k in range(3)]},
    )
    assert resp.status_code == 400
    assert resp.get_json()[0]["description"] == "at most 2 media_url values per report, got 3"
    _nothing_stored(db, engine)


def test_links_from_an_allowed_host_are_queued_for_copying_after_commit(
    app, client, db: Session, engine: Engine, city
) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], media_copy_hosts=("fixmystreet.example.ad",)
    )
    urls = [
        f"{FMS}/1.jpeg",
        "https://elsewhere.example.org/2.jpeg",
        "http://fixmystreet.example.ad/3.jpeg",
    ]
    public_id = _public_id(
        client.post(f"{BASE}/requests.json", data={**_fields(), "media_url": urls}), "json"
    )
    links = db.scalar(
        select(ServiceRequest).where(ServiceRequest.public_id == public_id)
    ).media_links
    # Plain http is not fetched unless the settings say so for the host.
    assert [link.copy_state for link in links] == ["pending", "link", "link"]
    assert _jobs(engine) == [("copy_media_link", {"link_id": links[0].id})]


# -- published ----------------------------------------------------------------------------------


def _processed(db: Session, settings, public_id: str) -> list[Photo]:  # noqa: ANN001
    storage = LocalStorage(settings.media_dir)
    photos = _photos(db, public_id)
    for p in reversed(photos):  # the last sent is processed first: media_url is still the first
        process_photo(db, storage, p.id)
    db.commit()
    return photos


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_open311_publishes_the_first_as_media_url_and_all_with_extensions(
    client, db: Session, settings, city, fmt
) -> None:  # noqa: ANN001
    public_id = _public_id(
        _post(client, media=[_file(RED), _file(GREEN)], photo1=_file(BLUE)), "json"
    )
    photos = _processed(db, settings, public_id)
    urls = [f"http://localhost/media/{p.public_key}" for p in photos]

    plain = client.get(f"{BASE}/requests/{public_id}.{fmt}")
    with_ext = client.get(f"{BASE}/requests/{public_id}.{fmt}?extensions=true")
    if fmt == "json":
        assert (
            plain.get_json()[0]["media_url"] == urls[0] and "media_urls" not in plain.get_json()[0]
        )
        body = with_ext.get_json()[0]
        assert body["media_url"] == urls[0] and body["media_urls"] == urls
        assert [p["url"] for p in body["photos"]] == urls
        assert all(p["thumbnail_url"].endswith("-thumb.jpg") for p in body["photos"])
    else:
        assert ET.fromstring(plain.data).findtext("request/media_url") == urls[0]
        request = ET.fromstring(with_ext.data).find("request")
        assert [e.text for e in request.findall("media_urls/media_url")] == urls
        assert [e.findtext("url") for e in request.findall("photos/photo")] == urls


def test_links_come_first_in_media_urls_then_uploads(client, db: Session, settings, city) -> None:  # noqa: ANN001
    public_id = _public_id(_post(client, media_url=f"{FMS}/1.jpeg", photo1=_file(RED)), "json")
    (photo,) = _processed(db, settings, public_id)
    body = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()[0]
    # The resident's link stays GeoReport's media_url, as before.
    assert body["media_url"] == f"{FMS}/1.jpeg"
    assert body["media_urls"] == [f"{FMS}/1.jpeg", f"http://localhost/media/{photo.public_key}"]


def test_the_staff_detail_lists_photos_and_links(client, db: Session, settings, city) -> None:  # noqa: ANN001
    public_id = _public_id(
        _post(
            client, media_url=[f"{FMS}/1.jpeg", f"{FMS}/2.jpeg"], media=[_file(RED), _file(GREEN)]
        ),
        "json",
    )
    first, second = _photos(db, public_id)
    process_photo(db, LocalStorage(settings.media_dir), first.id)
    db.commit()
    headers = f.token_for(db, f.user(db, "disp@test", "dispatcher"))
    db.commit()
    body = client.get(f"/api/v1/requests/{public_id}", headers=headers).get_json()
    assert body["media_links"] == [
        {"url": f"{FMS}/1.jpeg", "copy_state": "link", "copy_error": None},
        {"url": f"{FMS}/2.jpeg", "copy_state": "link", "copy_error": None},
    ]
    assert body["photos"] == [
        {
            "kind": "report",
            "state": "ready",
            "url": f"http://localhost/media/{first.public_key}",
            "thumbnail_url": f"http://localhost/media/{first.thumbnail_key}",
        },
        {"kind": "report", "state": "pending", "url": None, "thumbnail_url": None},
    ]


# -- the crew --------------------------------------------------------------------------------------


def _on_crews_route(db: Session, public_id: str) -> dict[str, str]:
    crew = f.crew(db)
    wo = db.scalar(
        select(WorkOrder).join(ServiceRequest).where(ServiceRequest.public_id == public_id)
    )
    wo.crew_id, wo.status = crew.id, "dispatched"
    headers = f.token_for(db, f.user(db, "crew@test", "crew", crew=crew))
    db.commit()
    return headers


def _stop(client, headers: dict[str, str]) -> dict[str, Any]:  # noqa: ANN001
    resp = client.get(
        "/api/v1/crew/route", query_string={"date": date.today().isoformat()}, headers=headers
    )
    assert resp.status_code == 200, resp.data
    (stop,) = resp.get_json()["stops"]
    return stop


def test_the_crew_sees_every_photo_and_the_links_as_links(
    client, db: Session, settings, city
) -> None:  # noqa: ANN001
    public_id = _public_id(
        _post(
            client, media_url=[f"{FMS}/1.jpeg", f"{FMS}/2.jpeg"], media=[_file(RED), _file(GREEN)]
        ),
        "json",
    )
    photos = _processed(db, settings, public_id)
    # A second report joins the same work order with a link of its own, and one the first had.
    joined = client.post(
        f"{BASE}/requests.json", data={**_fields(), "media_url": [f"{FMS}/2.jpeg", f"{FMS}/9.jpeg"]}
    )
    assert joined.status_code == 201
    stop = _stop(client, _on_crews_route(db, public_id))
    assert stop["reports"] == 2
    assert [p["url"] for p in stop["photos"]] == [
        f"http://localhost/media/{p.public_key}" for p in photos
    ]
    assert stop["photo_links"] == [
        {"url": f"{FMS}/1.jpeg"},
        {"url": f"{FMS}/2.jpeg"},
        {"url": f"{FMS}/9.jpeg"},
    ]


def test_a_link_copied_into_our_storage_is_shown_as_a_photo_not_a_link(
    client, db: Session, settings, city
) -> None:  # noqa: ANN001
    public_id = _public_id(
        client.post(
            f"{BASE}/requests.json",
            data={**_fields(), "media_url": [f"{FMS}/1.jpeg", f"{FMS}/2.jpeg"]},
        ),
        "json",
    )
    req = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    # What the copy job leaves behind (tests/workers/test_media_copy.py fetches for real).
    copy = Photo(
        kind="report",
        service_request_id=req.id,
        sha256=_sha(RED),
        content_type="image/jpeg",
        byte_size=len(RED),
        width=40,
        height=30,
        original_key=f"private/photos/{_sha(RED)[:2]}/{_sha(RED)}.jpg",
    )
    LocalStorage(settings.media_dir).put(copy.original_key, RED)
    db.add(copy)
    db.flush()
    req.media_links[0].photo_id, req.media_links[0].copy_state = copy.id, "copied"
    db.commit()
    headers = _on_crews_route(db, public_id)
    # Until the copy is processed, the crew still has the link.
    assert _stop(client, headers)["photo_links"] == [
        {"url": f"{FMS}/1.jpeg"},
        {"url": f"{FMS}/2.jpeg"},
    ]
    process_photo(db, LocalStorage(settings.media_dir), copy.id)
    db.commit()
    stop = _stop(client, headers)
    assert stop["photos"] == [
        {
            "url": f"http://localhost/media/{copy.public_key}",
            "thumbnail_url": f"http://localhost/media/{copy.thumbnail_key}",
        }
    ]
    assert stop["photo_links"] == [{"url": f"{FMS}/2.jpeg"}]
    # Open311 keeps the link as media_url (what the resident sent) and lists the copy once.
    body = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()[0]
    assert body["media_url"] == f"{FMS}/1.jpeg"
    assert body["media_urls"] == [f"{FMS}/1.jpeg", f"{FMS}/2.jpeg"]
    assert [p["url"] for p in body["photos"]] == [f"http://localhost/media/{copy.public_key}"]
