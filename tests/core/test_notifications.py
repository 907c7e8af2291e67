"""The outbox: rows written with the status change, the messages' words, leases and backoff."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from core import notifications as outbox
from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import Completion, Notification, Photo, ServiceRequest, Webhook
from core.settings import Settings
from tests import factories as f

ACTOR = f.SYSTEM
AT = datetime(2025, 3, 12, 13, 5, tzinfo=UTC)  # 14:05 in Andorra (CET)


@pytest.fixture
def city(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        public_base_url="https://311.example.ad",
        mail_from="311@example.ad",
        contact_email="help@example.ad",
    )


def _webhook(
    db: Session, api_key_id: int, url: str = "https://app.example.org/hook", active: bool = True
) -> Webhook:
    hook = Webhook(api_key_id=api_key_id, url=url, secret="s3cret", active=active)
    db.add(hook)
    db.flush()
    return hook


def _request(
    db: Session,
    email: str | None = "ana@example.org",
    api_key_id: int | None = None,
    lon: float = f.LON,
) -> ServiceRequest:
    # Received before AT: the tests time their status changes at AT, and a request's public
    # record never goes back before its last change.
    return f.report(
        db,
        lon=lon,
        contact=Contact(email=email, first_name="Ana" if email else None),
        api_key_id=api_key_id,
        at=AT - timedelta(hours=1),
    ).request


def _rows(db: Session, request_id: int) -> list[tuple[str, str, str]]:
    return [
        (n.kind, n.channel, n.recipient)
        for n in db.scalars(
            select(Notification)
            .where(Notification.service_request_id == request_id)
            .order_by(Notification.id)
        )
    ]


def _completion(db: Session, req: ServiceRequest) -> Completion:
    crew = f.crew(db, f"crew-{req.id}")
    worker = f.user(db, f"crew{req.id}@example.org", "crew", crew=crew)
    completion = Completion(
        work_order_id=req.work_order_id,
        crew_id=crew.id,
        user_id=worker.id,
        outcome="fixed",
        verdict="verified",
    )
    db.add(completion)
    db.flush()
    return completion


def _after_photo(db: Session, completion: Completion) -> Photo:
    photo = Photo(
        kind="after",
        state="pending",
        completion_id=completion.id,
        sha256="ab" * 32,
        content_type="image/jpeg",
        byte_size=1000,
        width=40,
        height=30,
        original_key=f"private/photos/{completion.id}.jpg",
    )
    db.add(photo)
    db.flush()
    return photo


# -- enqueue -----------------------------------------------------------------------------


def test_rows_are_written_with_the_status_change_and_vanish_with_its_rollback(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s:
        f.service_type(s)
        key = f.api_key(s)
        hook = _webhook(s, key.id)
        req = _request(s, api_key_id=key.id)
        s.commit()
        event = ServiceRequestLifecycle.transition(
            s, req, "scheduled", actor=ACTOR, note="Scheduled.", public=True, at=AT
        )
        s.flush()
        rows = s.scalars(
            select(Notification)
            .where(Notification.service_request_id == req.id)
            .order_by(Notification.id)
        ).all()
        assert [
            (n.status_event_id, n.kind, n.channel, n.recipient, n.webhook_id, n.state, n.attempts)
            for n in rows
        ] == [
            (event.id, "scheduled", "email", "ana@example.org", None, "pending", 0),
            (
                event.id,
                "scheduled",
                "webhook",
                "https://app.example.org/hook",
                hook.id,
                "pending",
                0,
            ),
        ]
        assert rows[0].payload == {
            "to_status": "scheduled",
            "at": AT.isoformat(),
            "note": "Scheduled.",
        }
        s.rollback()
        assert _rows(s, req.id) == []
        assert (
            s.scalar(select(ServiceRequest.detailed_status).where(ServiceRequest.id == req.id))
            == "received"
        )


def test_no_rows_without_an_address_or_an_active_webhook_of_the_submitting_app(db: Session) -> None:
    f.service_type(db)
    mine = f.api_key(db)
    other = f.api_key(db, key="other-key", name="Other app")
    _webhook(db, mine.id, "https://mine.example.org/off", active=False)
    _webhook(db, other.id, "https://other.example.org/hook")
    anonymous = _request(db, email=None)
    from_my_app = _request(db, email=None, api_key_id=mine.id, lon=f.offset(f.LON, f.LAT, 500)[0])
    for req in (anonymous, from_my_app):
        for target in ("scheduled", "not_found", "reopened"):
            ServiceRequestLifecycle.transition(db, req, target, actor=ACTOR)
    db.flush()
    assert _rows(db, anonymous.id) == []
    assert _rows(db, from_my_app.id) == []


def test_a_revoked_keys_webhooks_are_not_queued(db: Session) -> None:
    f.service_type(db)
    key = f.api_key(db)
    _webhook(db, key.id)
    req = _request(db, api_key_id=key.id)
    # The app submitted the report while its key was valid; the city revoked it since.
    key.active = False
    ServiceRequestLifecycle.transition(db, req, "scheduled", actor=ACTOR, at=AT)
    db.flush()
    assert _rows(db, req.id) == [("scheduled", "email", "ana@example.org")]


def test_scheduled_is_told_once_per_opening_and_every_closing_and_reopening(db: Session) -> None:
    f.service_type(db)
    req = _request(db)
    for target in (
        "scheduled",
        "acknowledged",
        "scheduled",
        "in_progress",
        "scheduled",
        "not_found",
        "reopened",
        "scheduled",
        "acknowledged",
        "scheduled",
    ):
        ServiceRequestLifecycle.transition(db, req, target, actor=ACTOR)
    completion = _completion(db, req)
    ServiceRequestLifecycle.transition(
        db, req, "fixed", actor=ACTOR, verified_completion_id=completion.id
    )
    db.flush()
    assert [kind for kind, _, _ in _rows(db, req.id)] == [
        "scheduled",
        "closed",
        "reopened",
        "scheduled",
        "fixed",
    ]


def test_delivery_job_is_queued_once_per_committed_transaction(
    db: Session, engine: Engine, queue: object
) -> None:
    f.service_type(db)
    first = _request(db)
    second = _request(db, email="ben@example.org", lon=f.offset(f.LON, f.LAT, 500)[0])
    db.commit()
    db.info[outbox.JOB_QUEUE] = queue

    def jobs() -> list[tuple[str, dict]]:
        with engine.connect() as conn:
            return [
                (r.task_name, r.args)
                for r in conn.execute(
                    text("SELECT task_name, args FROM procrastinate_jobs ORDER BY id")
                )
            ]

    ServiceRequestLifecycle.transition(db, first, "not_found", actor=ACTOR)
    db.rollback()
    assert jobs() == []  # nothing committed, nothing to deliver
    first = db.get(ServiceRequest, first.id)
    ServiceRequestLifecycle.transition(db, first, "not_found", actor=ACTOR)
    ServiceRequestLifecycle.transition(db, second, "not_found", actor=ACTOR)
    assert jobs() == []  # not before the commit: the worker would not see the rows
    db.commit()
    assert jobs() == [("deliver_notifications", {})]
    ServiceRequestLifecycle.transition(db, first, "reopened", actor=ACTOR)
    db.commit()
    assert jobs() == [("deliver_notifications", {}), ("deliver_notifications", {})]


# -- what the messages say ----------------------------------------------------------------


def test_fixed_email_in_the_citys_words_gets_the_after_photo_once_processed(
    db: Session, city: Settings
) -> None:
    f.service_type(db, "pothole", name="Pothole")
    req = _request(db)
    completion = _completion(db, req)
    photo = _after_photo(db, completion)
    req.status_notes = "Fixed. The crew's work was checked and confirmed."
    ServiceRequestLifecycle.transition(
        db,
        req,
        "fixed",
        actor=ACTOR,
        note=req.status_notes,
        public=True,
        at=AT,
        verified_completion_id=completion.id,
    )
    db.flush()
    (row,) = db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all()
    sent_at = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)

    msg = outbox.email_message(db, row, city, now=sent_at)
    assert msg["Subject"] == f"Your report {req.public_id} (Pothole) has been fixed"
    assert (msg["From"], msg["To"], msg["Auto-Submitted"]) == (
        "311@example.ad",
        "ana@example.org",
        "auto-generated",
    )
    assert msg["Message-ID"] == f"<notification.{row.id}.{row.status_event_id}@example.ad>"
    assert msg["Date"] == "Wed, 12 Mar 2025 15:00:00 +0000"
    before = msg.get_content()
    assert before == (
        "Hello Ana,\n\n"
        f"Your report {req.public_id} (Pothole) has been fixed.\n\n"
        "Status: Fixed\n"
        "When: 12 March 2025, 14:05 (CET)\n"
        "Notes from the city: Fixed. The crew's work was checked and confirmed.\n"
        f"Follow your report: https://311.example.ad/status/{req.public_id}\n\n"
        f"Please quote your confirmation number {req.public_id} if you contact us at help@example.ad.\n"
        "You receive this message because you left this e-mail address with your report.\n"
    )

    # The photo is processed after the closing committed: the message, built at send
    # time, now shows it.
    photo.state, photo.public_key = "ready", "public/photos/after-1.jpg"
    db.flush()
    after = outbox.email_message(db, row, city, now=sent_at).get_content()
    assert after == before.replace(
        "Follow your report:",
        "Photo of the finished work: https://311.example.ad/media/public/photos/after-1.jpg\nFollow your report:",
    )
    assert outbox.email_message(db, row, city, now=sent_at)["Message-ID"] == msg["Message-ID"]


def test_a_message_tells_its_own_event_even_after_the_request_moved_on(
    db: Session, city: Settings
) -> None:
    f.service_type(db, "pothole", name="Pothole")
    req = _request(db, email="ben@example.org")
    req.contact.first_name = None
    ServiceRequestLifecycle.transition(
        db, req, "not_found", actor=ACTOR, note="A crew could not find it.", public=True, at=AT
    )
    req.status_notes = "Back in the queue."
    ServiceRequestLifecycle.transition(db, req, "reopened", actor=ACTOR, at=AT + timedelta(days=1))
    db.flush()
    closed, reopened = db.scalars(
        select(Notification)
        .where(Notification.service_request_id == req.id)
        .order_by(Notification.id)
    )
    no_links = dataclasses.replace(city, public_base_url="")

    body = outbox.email_message(db, closed, no_links, now=AT).get_content()
    assert body.splitlines()[:6] == [
        "Hello,",
        "",
        f"Your report {req.public_id} (Pothole) has been closed.",
        "",
        "Status: Closed: the crew could not find the problem",
        "When: 12 March 2025, 14:05 (CET)",
    ]
    assert "Notes from the city: A crew could not find it." in body
    assert "Follow your report" not in body  # no public URL configured: no dead link
    reopened_body = outbox.email_message(db, reopened, city, now=AT).get_content()
    assert f"Your report {req.public_id} (Pothole) has been reopened." in reopened_body
    assert (
        "Notes from the city: Back in the queue." in reopened_body
    )  # the event had no public note


def test_webhook_body_is_signed_with_the_hooks_secret(db: Session, city: Settings) -> None:
    f.service_type(db, "pothole", name="Pothole")
    key = f.api_key(db)
    hook = _webhook(db, key.id)
    req = _request(db, email=None, api_key_id=key.id)
    req.media_url = "/media/public/photos/report-1.jpg"
    ServiceRequestLifecycle.transition(
        db,
        req,
        "scheduled",
        actor=ACTOR,
        note="Scheduled: a crew has been assigned.",
        public=True,
        at=AT,
    )
    db.flush()
    (row,) = db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all()

    call = outbox.webhook_request(db, row, city)
    assert call.url == "https://app.example.org/hook"
    assert json.loads(call.body) == {
        "event": "scheduled",
        "service_request_id": req.public_id,
        "status": "open",
        "detailed_status": "scheduled",
        "updated_datetime": "2025-03-12T13:05:00+00:00",
        "status_notes": "Scheduled: a crew has been assigned.",
        "media_url": "https://311.example.ad/media/public/photos/report-1.jpg",
        "status_page": f"https://311.example.ad/status/{req.public_id}",
    }
    expected = "sha256=" + hmac.new(b"s3cret", call.body, hashlib.sha256).hexdigest()
    assert call.headers["X-StreetLoop-Signature"] == expected
    assert (call.headers["X-StreetLoop-Delivery"], call.headers["X-StreetLoop-Event"]) == (
        str(row.id),
        "scheduled",
    )

    hook.active = False
    with pytest.raises(outbox.Undeliverable, match=f"webhook {hook.id} was deactivated"):
        outbox.webhook_request(db, row, city)


def test_a_revoked_keys_waiting_webhook_calls_are_undeliverable(
    db: Session, city: Settings
) -> None:
    f.service_type(db)
    key = f.api_key(db)
    _webhook(db, key.id)
    req = _request(db, email=None, api_key_id=key.id)
    ServiceRequestLifecycle.transition(db, req, "scheduled", actor=ACTOR, at=AT)
    db.flush()
    (row,) = db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all()
    key.active = False
    with pytest.raises(outbox.Undeliverable, match=f"^api key {key.id} was revoked$"):
        outbox.webhook_request(db, row, city)


# -- leases and backoff ---------------------------------------------------------------------


def test_backoff_doubles_from_a_minute_up_to_four_hours() -> None:
    assert [outbox.backoff(n) / timedelta(minutes=1) for n in range(1, 11)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        240,
        240,
    ]


def _one_row(db: Session) -> Notification:
    f.service_type(db)
    req = _request(db)
    ServiceRequestLifecycle.transition(db, req, "not_found", actor=ACTOR)
    db.flush()
    (row,) = db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all()
    return row


def test_a_claim_is_a_lease_and_failures_back_off_until_given_up(db: Session) -> None:
    row = _one_row(db)
    t0 = outbox.db_now(db)
    claimed = outbox.claim(db, now=t0)
    assert (claimed.notification_id, claimed.channel, claimed.attempt, claimed.lease_until) == (
        row.id,
        "email",
        1,
        t0 + outbox.LEASE,
    )
    assert (row.state, row.attempts) == ("sending", 1)
    assert outbox.claim(db, now=t0 + timedelta(minutes=4)) is None  # leased
    assert outbox.claim(db, now=t0, channels=("webhook",)) is None

    assert outbox.record_failure(db, claimed, "SMTP 451: try later", now=t0) == "pending"
    db.refresh(row)
    assert (row.state, row.attempts, row.next_attempt_at, row.last_error) == (
        "pending",
        1,
        t0 + timedelta(minutes=1),
        "SMTP 451: try later",
    )
    assert outbox.claim(db, now=t0 + timedelta(seconds=59)) is None

    now = t0 + timedelta(minutes=1)
    for attempt in range(2, 4):
        claimed = outbox.claim(db, now=now, max_attempts=3)
        assert claimed.attempt == attempt
        state = outbox.record_failure(db, claimed, f"failure {attempt}", now=now, max_attempts=3)
        db.refresh(row)
        now = row.next_attempt_at
    assert (state, row.state, row.attempts, row.last_error) == ("failed", "failed", 3, "failure 3")
    assert outbox.claim(db, now=now + timedelta(days=1)) is None


def test_a_dead_workers_lease_runs_out_and_the_late_worker_cannot_overwrite(db: Session) -> None:
    row = _one_row(db)
    t0 = outbox.db_now(db)
    dead = outbox.claim(db, now=t0)
    later = t0 + outbox.LEASE
    alive = outbox.claim(db, now=later)
    assert (alive.notification_id, alive.attempt, alive.lease_until) == (
        row.id,
        2,
        later + outbox.LEASE,
    )
    assert outbox.record_sent(db, dead, now=later) is False
    assert outbox.record_failure(db, dead, "too late", now=later) is None
    assert outbox.record_sent(db, alive, now=later) is True
    db.refresh(row)
    assert (row.state, row.attempts, row.sent_at, row.last_error) == ("sent", 2, later, None)


def test_a_row_that_killed_its_worker_on_the_last_attempt_is_given_up(db: Session) -> None:
    row = _one_row(db)
    row.last_error = "SMTP 451: try later"
    t0 = outbox.db_now(db)
    outbox.claim(db, now=t0, max_attempts=1)
    assert outbox.claim(db, now=t0 + outbox.LEASE, max_attempts=1) is None
    db.refresh(row)
    assert (row.state, row.attempts, row.last_error) == (
        "failed",
        1,
        "the worker stopped during attempt 1; before that: SMTP 451: try later",
    )
