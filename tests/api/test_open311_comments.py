"""Residents' comments pushed in by FixMyStreet (`POST servicerequestupdates`, issue 13 §2),
replayed in the exact shape mysociety/fixmystreet's perllib/Open311.pm sends them: a form
body with its own update id, answered with ours in the XML its XML::Simple reads."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.closing import close_verified, close_work_order
from core.comments import NewComment, add_comment
from core.intake import Contact
from core.lifecycle import Actor
from core.models import (
    CrewChange,
    Notification,
    RequestComment,
    ServiceRequest,
    StatusEvent,
    WorkOrder,
)
from core.retention import purge_contact_batch
from core.workorders import change_status
from tests import factories as f

BASE = "/open311/v2"
FMS_KEY = "fixmystreet-key"
COMMENTER = {
    "first_name": "Marta",
    "last_name": "Comellas",
    "email": "marta.comellas@example.org",
    "phone": "+376 555 0199",
}
TEXT = "Still there this morning, and deeper after the rain."


def fms_comment(
    public_id: str,
    *,
    update_id: str = "4711",
    status: str = "OPEN",
    description: str = TEXT,
    **extra: str,
) -> dict[str, str]:
    """The form FixMyStreet posts for a comment (`_populate_service_request_update_params`)."""
    return {
        "api_key": FMS_KEY,
        "updated_datetime": "2026-12-01T10:15:00+01:00",
        "service_request_id": public_id,
        "status": status,
        "description": description,
        "update_id": update_id,
        **COMMENTER,
        # Older FixMyStreet versions and some cobrands add these; they mean nothing to us.
        "title": "MS",
        "email_alerts_requested": "FALSE",
        "service_request_id_ext": "99",
        "update_id_ext": "4711",
        "public_anonymity_required": "FALSE",
        **extra,
    }


def post(client: Any, form: dict[str, str], fmt: str = "xml") -> Any:
    path = f"{BASE}/servicerequestupdates.{fmt}" if fmt else f"{BASE}/servicerequestupdates"
    return client.post(path, data=form)


def answered_id(r: Any) -> str:
    """What FixMyStreet reads: `$obj->{request_update}->[0]->{update_id}` of the XML."""
    assert r.data.startswith(
        b'<?xml version="1.0" encoding="utf-8"?>\n<service_request_updates><request_update>'
    ), r.data
    root = ET.fromstring(r.data)
    assert root.tag == "service_request_updates"
    (update,) = root.findall("request_update")
    assert [child.tag for child in update] == ["update_id"]
    assert update.findtext("update_id")
    return update.findtext("update_id") or ""


@pytest.fixture
def fms(db: Session) -> Any:
    f.service_type(db)
    return f.api_key(db, FMS_KEY, name="FixMyStreet")


@pytest.fixture
def reported(client: Any, db: Session, fms: Any) -> ServiceRequest:
    """A report FixMyStreet sent, open (received)."""
    db.commit()
    r = client.post(
        f"{BASE}/requests.xml",
        data={
            "api_key": FMS_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "description": "Pothole",
            "email": "rep@example.org",
        },
    )
    assert r.status_code == 201, r.data
    public_id = ET.fromstring(r.data).findtext("request/service_request_id")
    return db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))


def counts(db: Session) -> tuple[int, int, int]:
    db.expire_all()
    return (
        db.scalar(select(func.count()).select_from(StatusEvent)),
        db.scalar(select(func.count()).select_from(RequestComment)),
        db.scalar(select(func.count()).select_from(CrewChange)),
    )


def fixed(db: Session, *, days_ago: float, contact: Contact | None = None) -> ServiceRequest:
    """A request fixed by a crew's verified work `days_ago` days ago."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    req = f.report(db, at=at - timedelta(hours=3), contact=contact or Contact()).request
    wo = req.work_order
    crew = f.crew(db, f"crew-{req.id}")
    user = f.user(db, f"crew-{req.id}@example.org", "crew", crew=crew)
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=at - timedelta(hours=2))
    change_status(db, wo, "on_site", actor=f.SYSTEM, at=at - timedelta(hours=1))
    change_status(db, wo, "completed", actor=f.SYSTEM, at=at)
    done = f.completion(db, wo, crew, user, verdict="auto_verified", at=at)
    close_verified(db, done, actor=f.SYSTEM, at=at)
    db.commit()
    assert (req.detailed_status, wo.status) == ("fixed", "verified")
    return req


def timeline(db: Session, req: ServiceRequest) -> list[tuple[str, str | None, bool, str]]:
    return [
        (e.to_status, e.note, e.public, e.actor)
        for e in db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == "service_request", StatusEvent.entity_id == req.id)
            .order_by(StatusEvent.at, StatusEvent.id)
        )
    ]


# -- a comment becomes a public note ---------------------------------------------------------------------


def test_a_fixmystreet_comment_is_a_public_note_answered_with_our_update_id(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    r = post(client, fms_comment(reported.public_id))
    assert r.status_code == 201 and r.content_type == "text/xml; charset=utf-8"
    update_id = answered_id(r)
    db.expire_all()
    event = db.get(StatusEvent, int(update_id))
    assert (event.entity, event.entity_id, event.note, event.public) == (
        "service_request",
        reported.id,
        TEXT,
        True,
    )
    assert (
        event.actor == "open311:FixMyStreet" and event.from_status == event.to_status == "received"
    )
    comment = db.scalar(select(RequestComment))
    assert (comment.status_event_id, comment.client_update_id, comment.client_status) == (
        event.id,
        "4711",
        "OPEN",
    )
    assert (comment.first_name, comment.last_name, comment.email, comment.phone) == tuple(
        COMMENTER.values()
    )
    assert comment.client_time == datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
    # News on the public timeline is an update: Open311 pollers of requests see it too.
    assert db.get(ServiceRequest, reported.id).updated_at == event.at


@pytest.mark.parametrize("fmt", ["json", ""])
def test_json_and_the_extension_less_path_take_the_same_comment(
    client: Any, db: Session, reported: ServiceRequest, fmt: str
) -> None:
    r = post(client, fms_comment(reported.public_id), fmt)
    assert r.status_code == 201 and r.content_type == "application/json; charset=utf-8"
    (body,) = r.get_json()
    assert list(body) == ["update_id"]
    assert db.get(StatusEvent, int(body["update_id"])).note == TEXT


def test_the_comment_is_listed_in_updates_under_the_id_fixmystreet_was_answered(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    """FixMyStreet skips the updates whose update_id is one of its comments' external_id
    (the id we answered): the same id here, or it shows the resident's comment twice."""
    update_id = answered_id(
        post(
            client,
            fms_comment(reported.public_id, media_url="https://fms.example.org/c/4711.0.full.jpeg"),
        )
    )
    # When it reached us, in the city's time (FixMyStreet's own time is kept for staff).
    at = (
        db.get(StatusEvent, int(update_id))
        .at.astimezone(ZoneInfo("Europe/Andorra"))
        .isoformat(timespec="seconds")
    )
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for fmt in ("json", "xml"):
        r = client.get(f"{BASE}/servicerequestupdates.{fmt}", query_string={"start_date": start})
        if fmt == "json":
            updates = r.get_json()
        else:
            updates = [
                {c.tag: c.text or "" for c in u}
                for u in ET.fromstring(r.data).findall("request_update")
            ]
        (mine,) = [u for u in updates if u["update_id"] == update_id]
        assert mine == {
            "update_id": update_id,
            "service_request_id": reported.public_id,
            "status": "OPEN",
            "updated_datetime": at,
            "description": TEXT,
            "media_url": "https://fms.example.org/c/4711.0.full.jpeg",
            "external_status_code": "received",
        }


def test_the_commenter_is_never_published(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    assert post(client, fms_comment(reported.public_id)).status_code == 201
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    pages = [
        client.get(f"{BASE}/servicerequestupdates.json", query_string={"start_date": start}),
        client.get(f"{BASE}/servicerequestupdates.xml", query_string={"start_date": start}),
        client.get(f"{BASE}/requests/{reported.public_id}.json?extensions=true"),
        client.get(f"{BASE}/requests/{reported.public_id}.xml?extensions=true"),
        client.get(f"/status/{reported.public_id}"),
    ]
    blob = ""
    for page in pages:
        assert page.status_code == 200
        blob += page.get_data(as_text=True)
    assert TEXT in blob
    for secret in (*COMMENTER.values(), "Marta", "Comellas"):
        assert secret not in blob, secret


def test_the_status_page_shows_the_comment_as_a_residents(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    assert (
        post(client, fms_comment(reported.public_id, description="<b>deeper</b> now")).status_code
        == 201
    )
    page = client.get(f"/status/{reported.public_id}").get_data(as_text=True)
    assert "A resident commented" in page
    assert "<blockquote>&lt;b&gt;deeper&lt;/b&gt; now</blockquote>" in page  # text, never markup


# -- idempotent -------------------------------------------------------------------------------------------


def test_a_resent_comment_changes_nothing_and_gets_the_same_id(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    first = answered_id(post(client, fms_comment(reported.public_id)))
    before = counts(db)
    again = post(client, fms_comment(reported.public_id))
    assert again.status_code == 200 and answered_id(again) == first
    again = post(client, fms_comment(reported.public_id), "json")
    assert again.get_json() == [{"update_id": first}]
    assert counts(db) == before
    # Another client's comment 4711 is another comment.
    f.api_key(db, "other-key", name="Other app")
    db.commit()
    other = post(client, {**fms_comment(reported.public_id), "api_key": "other-key"})
    assert other.status_code == 201 and answered_id(other) != first


def test_an_update_id_reused_for_another_request_is_a_409(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    assert post(client, fms_comment(reported.public_id)).status_code == 201
    other = f.report(db, lon=f.offset(f.LON, f.LAT, 500)[0]).request
    db.commit()
    before = counts(db)
    r = post(client, fms_comment(other.public_id))
    assert r.status_code == 409 and "update_id" in ET.fromstring(r.data).findtext(
        "error/description"
    )
    assert counts(db) == before


def test_two_copies_at_once_store_one_comment(
    engine: Engine, committed: sessionmaker[Session]
) -> None:
    """The second copy waits for the first (the lock on the client's update id) and then
    finds it: one comment, one note, both answered with the same id."""
    with committed() as s:
        f.service_type(s)
        key = f.api_key(s, FMS_KEY, name="FixMyStreet")
        req = f.report(s).request
        s.commit()
        key_id, public_id = key.id, req.public_id
    new = NewComment(
        service_request_id=public_id, client_update_id="4711", text=TEXT, status="OPEN"
    )
    actor = Actor.client("FixMyStreet")
    first = Session(engine)
    answers: list[str] = []
    errors: list[BaseException] = []

    def second_copy() -> None:
        try:
            with Session(engine) as other:
                answers.append(
                    add_comment(
                        other, new, api_key_id=key_id, actor=actor, reopen_within=timedelta(days=30)
                    ).update_id
                )
                other.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        mine = add_comment(
            first, new, api_key_id=key_id, actor=actor, reopen_within=timedelta(days=30)
        )
        worker = threading.Thread(target=second_copy)
        worker.start()
        with engine.connect() as watch:
            for _ in range(100):
                if errors or not worker.is_alive():
                    pytest.fail(f"the second copy did not wait for the first: {errors or answers}")
                waiting = watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar()
                watch.rollback()
                if waiting:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the second copy did not wait for the first")
        first.commit()
        worker.join(10)
        assert not worker.is_alive() and not errors, errors
        assert answers == [mine.update_id]
    finally:
        first.close()
    with committed() as s:
        assert s.scalar(select(func.count()).select_from(RequestComment)) == 1
        notes = s.scalars(select(StatusEvent.note).where(StatusEvent.note == TEXT)).all()
        assert notes == [TEXT]


# -- errors store nothing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"api_key": ""}, 403, "api_key is required"),
        ({"api_key": "not-a-key"}, 403, "api_key is not valid"),
        ({"service_request_id": "987654321"}, 404, "service_request_id '987654321' not found"),
        ({"service_request_id": ""}, 400, "service_request_id is required"),
        ({"description": ""}, 400, "description is required"),
        ({"description": "   "}, 400, "description is required"),
        ({"update_id": ""}, 400, "update_id is required"),
        ({"update_id": "9" * 256}, 400, "update_id is 256 characters"),
        ({"email": "not-an-address"}, 400, "is not an e-mail address"),
        ({"updated_datetime": "yesterday"}, 400, "updated_datetime must be an ISO 8601 date-time"),
        ({"updated_datetime": "2999-01-01T00:00:00Z"}, 400, "updated_datetime"),
        ({"media_url": "javascript:alert(1)"}, 400, "media_url must be an http(s) URL"),
        (
            {"media_url": "https://fms.example.org/a photo.jpg"},
            400,
            "media_url must be an http(s) URL",
        ),
        (
            {"media_url": "https://fms.example.org\\@evil.example/p.jpg"},
            400,
            "media_url must be an http(s) URL",
        ),
        (
            {"media_url": "https://fms.example.org/p.jpg\x01"},
            400,
            "media_url must be an http(s) URL",
        ),
        (
            {"media_url": "https://fms.example.org:99999/p.jpg"},
            400,
            "media_url must be an http(s) URL",
        ),
        ({"media_url": "https:///p.jpg"}, 400, "media_url must be an http(s) URL"),
        (
            {"media_url": "https://fms.example.org/" + "p" * 2030},
            400,
            "media_url is longer than 2048 characters",
        ),
        ({"status": "S" * 33}, 400, "status is longer than 32 characters"),
        ({"description": "a\x00b"}, 400, "NUL character"),
    ],
)
def test_bad_comments_are_refused_in_the_open311_shape_and_store_nothing(
    client: Any,
    db: Session,
    reported: ServiceRequest,
    change: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    before = counts(db)
    form = {k: v for k, v in {**fms_comment(reported.public_id), **change}.items() if v != ""}
    r = post(client, form)
    assert r.status_code == status, r.data
    root = ET.fromstring(r.data)
    assert root.tag == "errors" and root.findtext("error/code") == str(status)
    assert fragment in root.findtext("error/description"), root.findtext("error/description")
    (error,) = post(client, form, "json").get_json()
    assert error["code"] == status and fragment in error["description"]
    assert counts(db) == before


def test_a_comment_longer_than_the_limit_is_kept_shortened_with_an_ellipsis(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    """FixMyStreet retries a comment it could not send, without end: a 400 for a long
    comment would never get it through. The first 3,999 characters are kept, and the
    ellipsis shows every reader that there was more (on the resident's FixMyStreet page)."""
    long = "word " * 1000  # 5,000 characters
    r = post(client, fms_comment(reported.public_id, description=long))
    assert r.status_code == 201
    note = db.get(StatusEvent, int(answered_id(r))).note
    assert len(note) == 4000 and note.endswith("…")
    assert note[:-1] == long[:3999].rstrip()
    # A comment at the limit is kept whole.
    exact = "y" * 4000
    r = post(client, fms_comment(reported.public_id, update_id="4712", description=exact))
    assert db.get(StatusEvent, int(answered_id(r))).note == exact


def test_a_comment_in_json_or_in_the_url_is_refused_before_anything(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    before = counts(db)
    r = client.post(f"{BASE}/servicerequestupdates.xml", json=fms_comment(reported.public_id))
    assert r.status_code == 400 and "form" in ET.fromstring(r.data).findtext("error/description")
    r = client.post(
        f"{BASE}/servicerequestupdates.xml?email=marta@example.org",
        data=fms_comment(reported.public_id),
    )
    assert r.status_code == 400 and "email" in ET.fromstring(r.data).findtext("error/description")
    assert counts(db) == before


def test_the_jurisdiction_is_checked(
    app: Any, client: Any, db: Session, reported: ServiceRequest
) -> None:
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], jurisdiction_id="andorra.ad"
    )
    before = counts(db)
    r = post(client, fms_comment(reported.public_id, jurisdiction_id="paris.fr"))
    assert r.status_code == 404 and "jurisdiction_id" in ET.fromstring(r.data).findtext(
        "error/description"
    )
    assert counts(db) == before
    assert (
        post(client, fms_comment(reported.public_id, jurisdiction_id="andorra.ad")).status_code
        == 201
    )


def test_get_and_post_are_what_the_updates_route_allows(client: Any) -> None:
    r = client.delete(f"{BASE}/servicerequestupdates.xml")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "HEAD", "OPTIONS", "POST"}


# -- what the comment says of the problem ---------------------------------------------------------------


def test_a_comment_that_the_fix_did_not_hold_reopens_recent_work(
    client: Any, db: Session, fms: Any
) -> None:
    """REOPEN (FixMyStreet's extended statuses with mark_reopen, sent when a resident says
    it is not fixed): the rules of a new report at a recently fixed place."""
    req = fixed(db, days_ago=3, contact=Contact(email="reporter@example.org"))
    wo_id = req.work_order_id
    update_id = answered_id(
        post(client, fms_comment(req.public_id, status="REOPEN", description="Not fixed at all"))
    )
    db.expire_all()
    req, wo = db.get(ServiceRequest, req.id), db.get(WorkOrder, wo_id)
    assert (req.detailed_status, req.reopen_count, req.completion_id, req.closed_at) == (
        "reopened",
        1,
        None,
        None,
    )
    assert (wo.status, wo.reopen_count, wo.crew_id) == ("new", 1, None)
    assert wo.due_at > datetime.now(UTC) + timedelta(hours=71)  # a new SLA clock
    *_, comment, reopen = timeline(db, req)
    assert comment == ("fixed", "Not fixed at all", True, "open311:FixMyStreet")
    assert reopen[0] == "reopened" and reopen[2] and "resident's comment" in reopen[1]
    assert db.scalar(select(StatusEvent.id).where(StatusEvent.note == "Not fixed at all")) == int(
        update_id
    )
    wo_note = db.scalars(
        select(StatusEvent.note)
        .where(StatusEvent.entity == "work_order", StatusEvent.entity_id == wo_id)
        .order_by(StatusEvent.id.desc())
    ).first()
    assert wo_note == f"reopened by a resident's comment (update {update_id})"
    # The reporter hears of the reopening as after any reopening (the outbox).
    assert (
        db.scalar(
            select(Notification.kind)
            .where(Notification.service_request_id == req.id)
            .order_by(Notification.id.desc())
            .limit(1)
        )
        == "reopened"
    )


@pytest.mark.parametrize("days_ago", [1, 40])
def test_a_plain_open_comment_on_fixed_work_is_only_a_note(
    client: Any, db: Session, fms: Any, days_ago: int
) -> None:
    """FixMyStreet starts every comment at OPEN and, in plain mode, sends OPEN while its own
    copy of the report is open: it learns of our fix only when it next reads our updates.
    A thank-you in that window arrives as OPEN on a fixed request; it must not reopen the
    work, restart its SLA or tell the reporter, nor get a "make a new report" answer."""
    req = fixed(db, days_ago=days_ago, contact=Contact(email="reporter@example.org"))
    wo = db.get(WorkOrder, req.work_order_id)
    work_before = (wo.status, wo.reopen_count, wo.crew_id, wo.due_at, wo.updated_at)
    fixed_before = (req.completion_id, req.closed_at, req.reopen_count, req.status_notes)
    notifications = db.scalar(select(func.count()).select_from(Notification))
    events = timeline(db, req)
    r = post(client, fms_comment(req.public_id, status="OPEN", description="Thanks, crew came by!"))
    assert r.status_code == 201
    db.expire_all()
    req, wo = db.get(ServiceRequest, req.id), db.get(WorkOrder, req.work_order_id)
    assert req.detailed_status == "fixed"
    assert (req.completion_id, req.closed_at, req.reopen_count, req.status_notes) == fixed_before
    assert (wo.status, wo.reopen_count, wo.crew_id, wo.due_at, wo.updated_at) == work_before
    assert db.scalar(select(func.count()).select_from(Notification)) == notifications
    assert timeline(db, req) == [
        *events,
        ("fixed", "Thanks, crew came by!", True, "open311:FixMyStreet"),
    ]
    assert db.scalar(select(RequestComment.client_status)) == "OPEN"  # kept for staff


def test_a_comment_on_work_fixed_before_the_window_keeps_it_closed_and_says_so(
    client: Any, db: Session, fms: Any
) -> None:
    req = fixed(db, days_ago=40)  # the window is 30 days (STREETLOOP_REOPEN_WINDOW_DAYS)
    r = post(client, fms_comment(req.public_id, status="REOPEN", description="It is back"))
    assert r.status_code == 201
    db.expire_all()
    assert db.get(ServiceRequest, req.id).detailed_status == "fixed"
    assert db.get(WorkOrder, req.work_order_id).status == "verified"
    *_, comment, answer = timeline(db, req)
    assert comment == ("fixed", "It is back", True, "open311:FixMyStreet")
    assert answer[0] == "fixed" and answer[2]
    assert "fixed more than 30 days ago" in answer[1] and "make a new report" in answer[1]


def test_no_reopen_window_means_no_comment_reopens(
    app: Any, client: Any, db: Session, fms: Any
) -> None:
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], reopen_window_days=0
    )
    req = fixed(db, days_ago=0.1)
    assert post(client, fms_comment(req.public_id, status="REOPEN")).status_code == 201
    db.expire_all()
    assert db.get(ServiceRequest, req.id).detailed_status == "fixed"
    assert (
        timeline(db, req)[-1][1]
        == "This request stays closed. If the problem is back, please make a new report."
    )


def test_a_comment_on_work_closed_with_another_outcome_keeps_it_closed(
    client: Any, db: Session, fms: Any
) -> None:
    req = f.report(db).request
    close_work_order(db, req.work_order, actor=f.SYSTEM, outcome="no_action_needed")
    db.commit()
    assert post(client, fms_comment(req.public_id, status="REOPEN")).status_code == 201
    db.expire_all()
    assert db.get(ServiceRequest, req.id).detailed_status == "no_action_needed"
    assert "not closed as fixed" in timeline(db, req)[-1][1]


def test_a_comment_on_a_duplicate_fixed_with_its_original_reopens_their_work(
    client: Any, db: Session, fms: Any
) -> None:
    """FixMyStreet knows its own report, which may have joined an earlier one's work order
    here (a duplicate). It was fixed by the same verified work, so the resident's REOPEN on
    it reopens that work, with the original and every request fixed with it, as a new
    report at the place would (which reopens through the original)."""
    at = datetime.now(UTC) - timedelta(days=2)
    original = f.report(db, at=at - timedelta(hours=4)).request
    duplicate = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0], at=at - timedelta(hours=3)).request
    wo = original.work_order
    assert duplicate.duplicate_of_id == original.id and duplicate.work_order_id == wo.id
    crew = f.crew(db, "dup-crew")
    user = f.user(db, "dup-crew@example.org", "crew", crew=crew)
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=at - timedelta(hours=2))
    change_status(db, wo, "on_site", actor=f.SYSTEM, at=at - timedelta(hours=1))
    change_status(db, wo, "completed", actor=f.SYSTEM, at=at)
    close_verified(
        db, f.completion(db, wo, crew, user, verdict="auto_verified", at=at), actor=f.SYSTEM, at=at
    )
    db.commit()
    assert (original.detailed_status, duplicate.detailed_status) == ("fixed", "fixed")
    assert (
        post(
            client, fms_comment(duplicate.public_id, status="REOPEN", description="Still broken")
        ).status_code
        == 201
    )
    db.expire_all()
    assert db.get(WorkOrder, wo.id).status == "new"
    assert [db.get(ServiceRequest, r.id).detailed_status for r in (original, duplicate)] == [
        "reopened",
        "reopened",
    ]


def test_a_comment_on_a_duplicate_closed_as_one_keeps_it_closed(
    client: Any, db: Session, fms: Any
) -> None:
    """A request a supervisor closed as a duplicate was not fixed: its comment cannot
    reopen anything (the original's work goes on, or was fixed, on its own)."""
    req = f.report(db).request
    close_work_order(db, req.work_order, actor=f.SYSTEM, outcome="duplicate")
    db.commit()
    assert post(client, fms_comment(req.public_id, status="REOPEN")).status_code == 201
    db.expire_all()
    assert db.get(ServiceRequest, req.id).detailed_status == "duplicate"
    assert "not closed as fixed" in timeline(db, req)[-1][1]


@pytest.mark.parametrize(
    "status", ["FIXED", "CLOSED", "NO_FURTHER_ACTION", "OPEN", "REOPEN", "SOMETHING_NEW", ""]
)
def test_a_resident_never_closes_our_request(
    client: Any, db: Session, reported: ServiceRequest, status: str
) -> None:
    """Closed Means Closed: only a crew's verified work closes a request; whatever the
    comment says, an open request stays as it is and only gains the note."""
    form = fms_comment(reported.public_id, status=status)
    if not status:
        del form["status"]
    events = len(timeline(db, reported))
    assert post(client, form).status_code == 201
    db.expire_all()
    assert db.get(ServiceRequest, reported.id).detailed_status == "received"
    assert len(timeline(db, reported)) == events + 1


def test_fixmystreet_s_unknown_name_is_no_name(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    assert (
        post(client, fms_comment(reported.public_id, first_name="-", last_name="-")).status_code
        == 201
    )
    comment = db.scalar(select(RequestComment))
    assert (comment.first_name, comment.last_name) == (None, None)


# -- the crew, redaction and retention -------------------------------------------------------------------


def test_the_crew_reads_comments_on_its_stop_oldest_first_and_its_phone_hears_of_them(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    crew = f.crew(db, "comment-crew")
    headers = f.token_for(db, f.user(db, "crew@example.org", "crew", crew=crew))
    joined = f.report(
        db, lon=f.offset(f.LON, f.LAT, 10)[0]
    ).request  # a second report of the same pothole
    assert joined.work_order_id == reported.work_order_id
    change_status(db, reported.work_order, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
    db.commit()
    cursor = client.get("/api/v1/crew/route", headers=headers).get_json()["changes_cursor"]
    assert (
        post(
            client, fms_comment(reported.public_id, update_id="1", description="first")
        ).status_code
        == 201
    )
    assert (
        post(client, fms_comment(joined.public_id, update_id="2", description="second")).status_code
        == 201
    )
    assert (
        post(
            client, fms_comment(reported.public_id, update_id="3", description="third")
        ).status_code
        == 201
    )
    (stop,) = client.get("/api/v1/crew/route", headers=headers).get_json()["stops"]
    assert [c["text"] for c in stop["comments"]] == ["first", "second", "third"]
    assert all(set(c) == {"at", "text"} for c in stop["comments"])
    assert "Marta" not in str(stop) and COMMENTER["email"] not in str(stop)
    changes = client.get(f"/api/v1/crew/changes?since={cursor}", headers=headers).get_json()[
        "changes"
    ]
    assert [(c["work_order_id"], c["change"]) for c in changes] == [
        (reported.work_order_id, "updated")
    ] * 3


def test_a_supervisor_redacts_a_comment_like_any_public_note(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    named = "Old Mr Pujol fell in it"
    update_id = answered_id(post(client, fms_comment(reported.public_id, description=named)))
    sup = f.user(db, "supervisor@example.org", "supervisor")
    headers = f.token_for(db, sup)
    db.commit()
    r = client.post(
        f"/api/v1/requests/{reported.public_id}/redactions",
        headers=headers,
        json={"field": "note", "event_id": int(update_id), "reason": "names a person"},
    )
    assert r.status_code == 201, r.data
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    updates = client.get(
        f"{BASE}/servicerequestupdates.json", query_string={"start_date": start}
    ).get_json()
    assert {u["update_id"]: u["description"] for u in updates}[update_id] == "[redacted]"
    assert named not in client.get(f"/status/{reported.public_id}").get_data(as_text=True)


def test_redacting_a_comment_also_unpublishes_its_photo_link(
    client: Any, db: Session, reported: ServiceRequest
) -> None:
    """The photo may show what the text named (a face, a number plate): a redacted comment
    is published without its link."""
    link = "https://fms.example.org/c/4711.0.full.jpeg"
    update_id = answered_id(
        post(client, fms_comment(reported.public_id, description="Mr Pujol's car", media_url=link))
    )
    other_id = answered_id(
        post(
            client,
            fms_comment(reported.public_id, update_id="4712", description="deeper", media_url=link),
        )
    )
    headers = f.token_for(db, f.user(db, "supervisor@example.org", "supervisor"))
    db.commit()
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    def published() -> dict[str, str]:
        updates = client.get(
            f"{BASE}/servicerequestupdates.json", query_string={"start_date": start}
        ).get_json()
        return {
            u["update_id"]: u["media_url"]
            for u in updates
            if u["update_id"] in (update_id, other_id)
        }

    assert published() == {update_id: link, other_id: link}
    r = client.post(
        f"/api/v1/requests/{reported.public_id}/redactions",
        headers=headers,
        json={"field": "note", "event_id": int(update_id), "reason": "names a person"},
    )
    assert r.status_code == 201, r.data
    assert published() == {update_id: "", other_id: link}  # the other comment keeps its photo
    xml = client.get(
        f"{BASE}/servicerequestupdates.xml", query_string={"start_date": start}
    ).get_data(as_text=True)
    assert xml.count(link) == 1


def test_retention_erases_the_commenters_details_with_the_reporters(
    client: Any, db: Session, fms: Any
) -> None:
    req = fixed(db, days_ago=3, contact=Contact(email="reporter@example.org"))
    anonymous = fixed(
        db, days_ago=3
    )  # reported without contact details: only its commenter's to erase
    assert anonymous.contact is None
    for n, r in enumerate((req, anonymous)):
        assert (
            post(
                client,
                fms_comment(r.public_id, update_id=str(n), status="CLOSED", description="Thanks!"),
            ).status_code
            == 201
        )
    kept = purge_contact_batch(db, days=365, now=datetime.now(UTC))
    assert kept == []
    purged = purge_contact_batch(db, days=1, now=datetime.now(UTC))
    assert sorted(purged) == sorted([req.id, anonymous.id])
    db.expire_all()
    for comment in db.scalars(select(RequestComment)):
        assert (comment.email, comment.first_name, comment.last_name, comment.phone) == (
            None,
            None,
            None,
            None,
        )
        assert (
            db.get(StatusEvent, comment.status_event_id).note == "Thanks!"
        )  # the public text stays
    # A resend is still recognised after the purge.
    before = counts(db)
    assert (
        post(
            client,
            fms_comment(req.public_id, update_id="0", status="CLOSED", description="Thanks!"),
        ).status_code
        == 200
    )
    assert counts(db) == before
    assert purge_contact_batch(db, days=1, now=datetime.now(UTC)) == []


def test_contact_is_not_needed_to_comment(db: Session, fms: Any) -> None:
    req = f.report(db).request
    result = add_comment(
        db,
        NewComment(
            service_request_id=req.public_id,
            client_update_id="a",
            text="hello",
            commenter=Contact(),
        ),
        api_key_id=fms.id,
        actor=Actor.client("FixMyStreet"),
        reopen_within=timedelta(days=30),
    )
    assert result.created and not result.reopened
    assert db.get(StatusEvent, int(result.update_id)).note == "hello"
