"""The public read model of a request (`core.public_requests`), read directly rather than
through Open311 or the status page: what it holds, what it leaves out, and that its
details are read for a whole page at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from core import public_requests
from core.comments import NewComment, add_comment
from core.intake import Contact
from core.lifecycle import Actor
from core.lifecycle.service_request import ServiceRequestLifecycle as Lifecycle
from core.models import Completion, MediaLink, Photo, ServiceRequest
from core.public_requests import PublicRequest, RequestFilter, late_since
from core.workorders import change_status
from tests import factories as f

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PRIVATE = "internal triage: the caller was rude"
LINKS = ("https://example.org/one.jpg", "https://example.org/two.jpg")


@dataclass
class City:
    a: ServiceRequest  # reported with a photo, fixed by a verified completion with photos
    b: ServiceRequest  # a duplicate of a, fixed with it
    c: ServiceRequest  # graffiti, closed without a visit, with a resident's comment
    d: ServiceRequest  # open, sent with two photo links, the first copied by us
    copy: Photo  # our copy of d's first link


def _photo(db: Session, n: int, kind: str, state: str = "ready", **owner: Any) -> Photo:
    ready = state == "ready"
    p = Photo(
        kind=kind,
        state=state,
        sha256=f"{n:064x}",
        content_type="image/jpeg",
        byte_size=1000,
        width=640,
        height=480,
        original_key=f"private/photos/{n:02x}/{n:064x}.jpg",
        public_key=f"public/photos/{n}-{kind}.jpg" if ready else None,
        thumbnail_key=f"public/photos/{n}-{kind}-thumb.jpg" if ready else None,
        **owner,
    )
    db.add(p)
    db.flush()
    return p


@pytest.fixture
def city(db: Session) -> City:
    f.service_type(db)
    f.service_type(db, "graffiti", name="Graffiti", agency="Sanitation", skill="graffiti")
    key = f.api_key(db)
    a = f.report(
        db, at=T0, contact=Contact(email="jane@example.org"), description="Deep hole"
    ).request
    b = f.report(db, lon=f.offset(f.LON, f.LAT, 20)[0], at=T0 + timedelta(minutes=30)).request
    assert b.duplicate_of_id == a.id
    Lifecycle.annotate(db, a, actor=f.SYSTEM, at=T0 + timedelta(minutes=40), note=PRIVATE)
    crew = f.crew(db)
    user = f.user(db, "crew@test", "crew", crew=crew)
    wo = a.work_order
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=T0 + timedelta(hours=1))
    change_status(db, wo, "on_site", actor=f.SYSTEM, at=T0 + timedelta(hours=2))
    rejected, done = (
        Completion(
            work_order_id=wo.id,
            crew_id=crew.id,
            user_id=user.id,
            outcome="fixed",
            verdict=verdict,
            submitted_at=T0 + timedelta(hours=2),
        )
        for verdict in ("rejected", "auto_verified")
    )
    db.add_all([rejected, done])
    db.flush()
    _photo(db, 1, "report", service_request_id=a.id)
    _photo(db, 2, "report", "pending", service_request_id=a.id)
    _photo(db, 3, "after", completion_id=rejected.id)
    _photo(db, 4, "before", completion_id=done.id)
    _photo(db, 5, "after", completion_id=done.id)
    _photo(db, 6, "after", "pending", completion_id=done.id)
    for req in (a, b):
        Lifecycle.transition(
            db,
            req,
            "fixed",
            actor=f.SYSTEM,
            at=T0 + timedelta(hours=3),
            note="Pothole filled.",
            public=True,
            verified_completion_id=done.id,
        )
    c = f.report(
        db, "graffiti", lon=f.offset(f.LON, f.LAT, 800)[0], at=T0 + timedelta(hours=4)
    ).request
    Lifecycle.transition(
        db, c, "no_action_needed", actor=f.SYSTEM, at=T0 + timedelta(hours=5), public=True
    )
    add_comment(
        db,
        NewComment(service_request_id=c.public_id, client_update_id="9", text="Still there"),
        api_key_id=key.id,
        actor=Actor.client(key.name),
        reopen_within=timedelta(days=30),
    )
    d = f.report(
        db,
        "graffiti",
        lon=f.offset(f.LON, f.LAT, 1600)[0],
        at=T0 + timedelta(hours=6),
        media_urls=LINKS,
        max_media_links=5,
    ).request
    copy = _photo(db, 7, "report", service_request_id=d.id)
    _photo(db, 8, "report", service_request_id=d.id)
    first = db.scalar(select(MediaLink).where(MediaLink.url == LINKS[0]))
    assert first is not None
    first.photo_id = copy.id
    db.flush()
    return City(a, b, c, d, copy)


def _details(found: PublicRequest | None) -> public_requests.PublicDetails:
    assert found is not None and found.details is not None
    return found.details


def test_a_fixed_request_shows_its_public_timeline_and_the_proof_of_the_work(
    db: Session, city: City
) -> None:
    found = public_requests.by_public_id(db, city.a.public_id, details=True)
    details = _details(found)
    assert found is not None
    assert (found.detailed_status, found.closed, found.completion_id) == (
        "fixed",
        True,
        city.a.completion_id,
    )
    assert (found.service_code, found.service_name, found.description) == (
        "pothole",
        "Pothole",
        "Deep hole",
    )
    # Public events only, oldest first: the private triage note is not among them.
    assert [e.to_status for e in details.timeline] == [
        "received",
        "scheduled",
        "in_progress",
        "fixed",
    ]
    assert PRIVATE not in {e.note for e in details.timeline}
    assert [e.changes_status for e in details.timeline] == [True, True, True, True]
    # The resident's processed photo (not the one still pending), and of the crew's only
    # the processed after photo of the verified completion: not the rejected try's, not
    # the before photo, not a pending one.
    assert details.photos == (
        public_requests.PublicPhoto(
            "report",
            "/media/public/photos/1-report.jpg",
            "/media/public/photos/1-report-thumb.jpg",
            False,
        ),
    )
    assert [p.url for p in details.after_photos] == ["/media/public/photos/5-after.jpg"]
    assert (details.duplicate_of, details.links) == (None, ())


def test_a_duplicate_names_its_original_and_shares_its_proof(db: Session, city: City) -> None:
    details = _details(public_requests.by_id(db, city.b.id, details=True))
    assert details.duplicate_of == city.a.public_id
    assert [p.url for p in details.after_photos] == ["/media/public/photos/5-after.jpg"]
    assert details.photos == ()


def test_a_residents_comment_is_marked_as_one(db: Session, city: City) -> None:
    details = _details(public_requests.by_public_id(db, city.c.public_id, details=True))
    assert [(e.note, e.resident_comment, e.changes_status) for e in details.timeline][-1] == (
        "Still there",
        True,
        False,
    )
    assert not any(e.resident_comment for e in details.timeline[:-1])


def test_photo_links_come_in_order_and_our_copy_of_one_is_marked(db: Session, city: City) -> None:
    details = _details(public_requests.by_id(db, city.d.id, details=True))
    assert details.links == LINKS
    assert [(p.url, p.copy_of_link) for p in details.photos] == [
        ("/media/public/photos/7-report.jpg", True),
        ("/media/public/photos/8-report.jpg", False),
    ]
    assert details.after_photos == ()


def test_details_are_loaded_only_when_asked_for(db: Session, city: City) -> None:
    found = public_requests.by_id(db, city.a.id)
    assert found is not None and found.details is None
    assert public_requests.by_public_id(db, "no-such-number") is None
    assert public_requests.by_id(db, -1, details=True) is None


def test_a_page_is_filtered_and_newest_first(db: Session, city: City) -> None:
    def ids(**wanted: Any) -> list[str]:
        found = public_requests.page(db, RequestFilter(start=T0, **wanted))
        return [r.public_id for r in found]

    a, b, c, d = (r.public_id for r in (city.a, city.b, city.c, city.d))
    assert ids() == [d, c, b, a]
    assert ids(status="open") == [d]
    assert ids(status="closed") == [c, b, a]
    assert ids(service_codes=("graffiti",)) == [d, c]
    assert ids(end=T0 + timedelta(minutes=30)) == [b, a]
    assert ids(page=2, page_size=3) == [a]
    assert public_requests.page(db, RequestFilter(start=T0 + timedelta(days=1))) == []


def test_by_public_ids_leaves_unknown_numbers_out(db: Session, city: City) -> None:
    found = public_requests.by_public_ids(db, [city.a.public_id, "nope", city.c.public_id])
    assert [r.public_id for r in found] == [city.c.public_id, city.a.public_id]


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_the_details_of_a_page_are_six_queries_however_many_requests_it_has(
    db: Session, city: City, statements: list[str]
) -> None:
    # The request rows, then their timelines, links, photos, after photos and originals:
    # one query each for the whole page, never one per request.
    two = public_requests.page(db, RequestFilter(start=T0, page_size=2, page=2), details=True)
    assert [r.public_id for r in two] == [city.b.public_id, city.a.public_id]
    assert len(statements) == 6
    statements.clear()
    four = public_requests.page(db, RequestFilter(start=T0), details=True)
    assert len(four) == 4
    assert len(statements) == 6


def test_updates_carry_the_after_photo_of_the_fix_and_a_comments_link(
    db: Session, city: City
) -> None:
    comment_link = "https://example.org/comment.jpg"
    add_comment(
        db,
        NewComment(
            service_request_id=city.c.public_id,
            client_update_id="10",
            text="Here is a photo",
            media_url=comment_link,
        ),
        api_key_id=f.api_key(db, "second-key", name="Second").id,
        actor=Actor.client("Second"),
        reopen_within=timedelta(days=30),
    )
    found = public_requests.updates(db, T0, datetime.now(UTC) + timedelta(minutes=1))
    by_request: dict[str, list[tuple[str, str | None]]] = {}
    for u in found:
        by_request.setdefault(u.public_id, []).append((u.to_status, u.media_url))
    assert by_request[city.a.public_id][-1] == ("fixed", "/media/public/photos/5-after.jpg")
    assert by_request[city.b.public_id][-1] == ("fixed", "/media/public/photos/5-after.jpg")
    assert by_request[city.c.public_id][-1] == ("no_action_needed", comment_link)
    assert all(media is None for _, media in by_request[city.d.public_id])
    assert [u.at for u in found] == sorted(u.at for u in found)


def test_late_since_is_the_due_time_of_open_work_with_no_visit_planned() -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert late_since("acknowledged", None, past) == past
    assert late_since("acknowledged", None, future) is None
    assert late_since("scheduled", future, past) is None
    assert late_since("fixed", None, past) is None
    assert late_since("received", None, None) is None
