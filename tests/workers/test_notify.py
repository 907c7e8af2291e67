"""Delivering the outbox to a real SMTP server and a real HTTP endpoint on localhost:
exactly one message per event, retries with backoff, giving up, and the worker's jobs."""

from __future__ import annotations

import dataclasses
import email
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session, sessionmaker

from core import notifications as outbox
from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import (
    AccessToken,
    ApiKey,
    Crew,
    Notification,
    ServiceRequest,
    ServiceType,
    StatusEvent,
    User,
    Webhook,
    WorkOrder,
)
from core.settings import Settings
from tests import factories as f
from workers.delivery import deliver_due

ACTOR = f.SYSTEM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """A real SMTP server; `reply` makes it refuse the DATA (e.g. a 451 greylisting)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reply: str | None = None
        self.refused_rcpt: str | None = None
        self.tries = 0
        self.port = _free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if self.refused_rcpt:
            return self.refused_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        if self.reply:
            return self.reply
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


class HookSink:
    """A client app's endpoint: answers with the next status of `statuses` (the last one repeats)."""

    def __init__(self) -> None:
        # Headers as received (case-insensitive lookups, as HTTP has them).
        self.calls: list[tuple[str, Message, bytes]] = []
        self.statuses = [204]
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.calls.append((self.path, self.headers, body))
                status = sink.statuses.pop(0) if len(sink.statuses) > 1 else sink.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "5")
                self.end_headers()
                self.wfile.write(b"oops!")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/streetloop"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture
def hooks() -> Iterator[HookSink]:
    sink = HookSink()
    yield sink
    sink.close()


@pytest.fixture
def city(settings: Settings, smtp: SmtpSink) -> Settings:
    return dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=smtp.port, mail_from="311@example.ad",
                               public_base_url="https://311.example.ad")


def _report(db: Session, email_to: str | None = "ana@example.org", *, api_key_id: int | None = None,
            east_m: float = 0) -> ServiceRequest:
    lon, lat = f.offset(f.LON, f.LAT, east_m)
    return f.report(db, lon=lon, lat=lat, contact=Contact(email=email_to), api_key_id=api_key_id).request


def _row(db: Session, request_id: int) -> Notification:
    (row,) = db.scalars(select(Notification).where(Notification.service_request_id == request_id)).all()
    db.refresh(row)
    return row


def _closed_report(sessions: sessionmaker[Session], **kwargs: Any) -> tuple[int, datetime]:
    """A report whose closing is committed; returns its id and the database's clock."""
    with sessions.begin() as s:
        if s.scalar(select(ServiceType.id).where(ServiceType.code == "pothole")) is None:
            f.service_type(s, "pothole", name="Pothole")
        req = _report(s, **kwargs)
        ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR, note="Nothing there.", public=True)
        return req.id, outbox.db_now(s)


# -- e-mail ----------------------------------------------------------------------------------


def test_one_email_per_event_even_when_delivery_runs_twice(sessions: sessionmaker[Session], db: Session, city: Settings,
                                                           smtp: SmtpSink) -> None:
    request_id, t0 = _closed_report(sessions)
    first = deliver_due(sessions, city, now=t0)
    second = deliver_due(sessions, city, now=t0 + timedelta(hours=1))
    row = _row(db, request_id)
    assert (first.sent, second.sent, second.retrying) == ([row.id], [], [])
    assert (row.state, row.attempts, row.sent_at, row.last_error) == ("sent", 1, t0, None)
    assert smtp.envelopes == [("311@example.ad", ["ana@example.org"])]
    (msg,) = smtp.messages
    assert msg["Subject"] == f"Your report {request_id} (Pothole) has been closed"
    assert msg["Message-ID"] == f"<notification.{row.id}.{row.status_event_id}@example.ad>"
    assert f"Follow your report: https://311.example.ad/status/{request_id}" in msg.get_payload(decode=True).decode()


def test_a_451_is_retried_with_backoff_and_delivered_when_the_server_recovers(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.reply = "451 4.3.0 Greylisted, try again later"
    run = deliver_due(sessions, city, now=t0)
    row = _row(db, request_id)
    assert (run.sent, run.retrying) == ([], [row.id])
    assert (row.state, row.attempts, row.next_attempt_at, row.sent_at) == ("pending", 1, t0 + timedelta(minutes=1), None)
    assert row.last_error == "SMTP 451: 4.3.0 Greylisted, try again later"

    smtp.reply = None
    assert deliver_due(sessions, city, now=t0 + timedelta(seconds=59)).sent == []  # backing off
    assert smtp.tries == 1
    later = t0 + timedelta(minutes=1)
    assert deliver_due(sessions, city, now=later).sent == [row.id]
    db.refresh(row)
    assert (row.state, row.attempts, row.sent_at) == ("sent", 2, later)
    assert row.last_error == "SMTP 451: 4.3.0 Greylisted, try again later"  # why it was late
    assert len(smtp.messages) == 1 and smtp.tries == 2


def test_a_server_that_refuses_connections_is_retried(sessions: sessionmaker[Session], db: Session, city: Settings,
                                                      smtp: SmtpSink) -> None:
    request_id, t0 = _closed_report(sessions)
    down = dataclasses.replace(city, smtp_port=_free_port())
    deliver_due(sessions, down, now=t0)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, t0 + timedelta(minutes=1))
    assert row.last_error.startswith(f"SMTP 127.0.0.1:{down.smtp_port}: ConnectionRefusedError(")
    deliver_due(sessions, down, now=t0 + timedelta(minutes=1))
    db.refresh(row)
    assert (row.attempts, row.next_attempt_at) == (2, t0 + timedelta(minutes=3))
    assert deliver_due(sessions, city, now=t0 + timedelta(minutes=3)).sent == [row.id]
    assert len(smtp.messages) == 1


def test_delivery_gives_up_after_the_last_attempt(sessions: sessionmaker[Session], db: Session, city: Settings,
                                                  smtp: SmtpSink) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.reply = "451 4.3.0 Still busy"
    now, waits = t0, []
    for _ in range(outbox.MAX_ATTEMPTS):
        deliver_due(sessions, city, now=now)
        row = _row(db, request_id)
        waits.append((row.next_attempt_at - now) / timedelta(minutes=1))
        now = row.next_attempt_at
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 240, 0]
    assert (row.state, row.attempts, row.last_error) == ("failed", outbox.MAX_ATTEMPTS, "SMTP 451: 4.3.0 Still busy")
    assert deliver_due(sessions, city, now=now + timedelta(days=1)).failed == []
    assert smtp.tries == outbox.MAX_ATTEMPTS and smtp.messages == []


def test_an_unknown_mailbox_is_given_up_at_once(sessions: sessionmaker[Session], db: Session, city: Settings,
                                                smtp: SmtpSink) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.refused_rcpt = "550 5.1.1 No such mailbox"
    run = deliver_due(sessions, city, now=t0)
    row = _row(db, request_id)
    assert run.failed == [row.id]
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error == "recipient refused: 550 5.1.1 No such mailbox"


def test_without_a_mail_server_emails_wait_and_webhooks_still_go(
    sessions: sessionmaker[Session], db: Session, settings: Settings, hooks: HookSink, caplog: pytest.LogCaptureFixture
) -> None:
    import workers.delivery

    with sessions.begin() as s:
        key = f.api_key(s)
        s.add(Webhook(api_key_id=key.id, url=hooks.url, secret="k"))
    request_id, t0 = _closed_report(sessions, api_key_id=key.id)
    workers.delivery._warned_no_smtp = False
    with caplog.at_level(logging.WARNING, logger="workers.delivery"):
        deliver_due(sessions, settings, now=t0)
        deliver_due(sessions, settings, now=t0 + timedelta(hours=1))
    rows = {n.channel: n for n in db.scalars(select(Notification).where(Notification.service_request_id == request_id))}
    assert (rows["email"].state, rows["email"].attempts, rows["email"].last_error) == ("pending", 0, None)
    assert (rows["webhook"].state, rows["webhook"].attempts) == ("sent", 1)
    assert [r.getMessage() for r in caplog.records] == [
        "e-mail notifications are waiting in the outbox: STREETLOOP_SMTP_HOST is not set"
    ]


# -- webhooks -----------------------------------------------------------------------------------


def test_webhook_is_signed_and_a_500_is_retried_with_the_same_delivery_id(
    sessions: sessionmaker[Session], db: Session, city: Settings, hooks: HookSink
) -> None:
    with sessions.begin() as s:
        key = f.api_key(s)
        s.add(Webhook(api_key_id=key.id, url=hooks.url, secret="app-secret"))
    request_id, t0 = _closed_report(sessions, email_to=None, api_key_id=key.id)
    hooks.statuses = [500, 302, 200]

    deliver_due(sessions, city, now=t0)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, f"HTTP 500 from {hooks.url}: oops!")
    deliver_due(sessions, city, now=row.next_attempt_at)
    db.refresh(row)
    # A redirect would turn the POST into a GET: not followed, not delivered.
    assert (row.state, row.attempts, row.last_error) == ("pending", 2, f"HTTP 302 from {hooks.url}: oops!")
    assert deliver_due(sessions, city, now=row.next_attempt_at).sent == [row.id]

    assert len(hooks.calls) == 3
    assert {body for _, _, body in hooks.calls} == {hooks.calls[0][2]}
    for path, headers, body in hooks.calls:
        assert path == "/streetloop"
        assert headers["X-StreetLoop-Delivery"] == str(row.id)
        assert headers["X-StreetLoop-Signature"] == "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
    event_at = db.scalar(select(StatusEvent.at).where(StatusEvent.id == row.status_event_id))
    assert json.loads(hooks.calls[0][2]) == {
        "event": "closed", "service_request_id": str(request_id), "status": "closed", "detailed_status": "not_found",
        "updated_datetime": event_at.isoformat(), "status_notes": "Nothing there.", "media_url": None,
        "status_page": f"https://311.example.ad/status/{request_id}",
    }


def test_deliveries_for_a_deactivated_webhook_are_given_up_without_a_call(
    sessions: sessionmaker[Session], db: Session, city: Settings, hooks: HookSink
) -> None:
    with sessions.begin() as s:
        key = f.api_key(s)
        hook = Webhook(api_key_id=key.id, url=hooks.url, secret="k")
        s.add(hook)
    request_id, t0 = _closed_report(sessions, email_to=None, api_key_id=key.id)
    with sessions.begin() as s:
        s.get(Webhook, hook.id).active = False
    assert deliver_due(sessions, city, now=t0).failed == [_row(db, request_id).id]
    row = _row(db, request_id)
    assert (row.state, row.last_error) == ("failed", f"webhook {hook.id} was deactivated")
    assert hooks.calls == []


def test_deliveries_for_a_revoked_keys_webhook_are_given_up_without_a_call(
    sessions: sessionmaker[Session], db: Session, city: Settings, hooks: HookSink
) -> None:
    with sessions.begin() as s:
        key = f.api_key(s)
        s.add(Webhook(api_key_id=key.id, url=hooks.url, secret="k"))
    request_id, t0 = _closed_report(sessions, email_to=None, api_key_id=key.id)
    with sessions.begin() as s:
        s.get(ApiKey, key.id).active = False
    assert deliver_due(sessions, city, now=t0).failed == [_row(db, request_id).id]
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("failed", 1, f"api key {key.id} was revoked")
    assert hooks.calls == []


# -- two workers, real commits, the real job queue ---------------------------------------------------


@pytest.fixture
def committed(engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, smtp: SmtpSink):  # noqa: ANN201
    """Sessions that really commit (so two workers can race); every row is removed afterwards."""
    import workers.tasks
    from core.db import make_sessionmaker

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STREETLOOP_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("STREETLOOP_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("STREETLOOP_PUBLIC_URL", "https://311.example.ad")
    workers.tasks.close_resources()
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        f.service_type(s, "notify_test_type", name="Streetlight out")
    yield sessions, Settings.from_env()
    workers.tasks.close_resources()
    with sessions.begin() as s:
        st_id = s.scalar(select(ServiceType.id).where(ServiceType.code == "notify_test_type"))
        req_ids = select(ServiceRequest.id).where(ServiceRequest.service_type_id == st_id)
        wo_ids = select(WorkOrder.id).where(WorkOrder.service_type_id == st_id)
        s.execute(delete(Notification).where(Notification.service_request_id.in_(req_ids)))
        s.execute(delete(StatusEvent).where(
            ((StatusEvent.entity == "service_request") & StatusEvent.entity_id.in_(req_ids))
            | ((StatusEvent.entity == "work_order") & StatusEvent.entity_id.in_(wo_ids))
        ))
        s.execute(delete(ServiceRequest).where(ServiceRequest.service_type_id == st_id))
        s.execute(delete(WorkOrder).where(WorkOrder.service_type_id == st_id))
        s.execute(delete(ServiceType).where(ServiceType.id == st_id))
        s.execute(delete(AccessToken).where(AccessToken.user_id.in_(select(User.id).where(User.email == "disp@notify.test"))))
        s.execute(delete(User).where(User.email == "disp@notify.test"))
        s.execute(delete(Crew).where(Crew.code == "notify-crew"))
        s.execute(delete(ApiKey).where(ApiKey.name == "Test client"))
        s.execute(text("DELETE FROM procrastinate_jobs"))


def test_two_workers_at_once_send_each_message_exactly_once(committed, smtp: SmtpSink) -> None:  # noqa: ANN001
    sessions, settings = committed
    with sessions.begin() as s:
        reqs = [f.report(s, "notify_test_type", lon=f.offset(f.LON, f.LAT, 100 * i)[0],
                         contact=Contact(email=f"resident{i}@example.org")).request for i in range(8)]
        for req in reqs:
            ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR)
    results = []
    workers = [threading.Thread(target=lambda: results.append(deliver_due(sessions, settings))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(rcpt for _, (rcpt,) in smtp.envelopes) == sorted(f"resident{i}@example.org" for i in range(8))
    assert len({m["Message-ID"] for m in smtp.messages}) == 8
    assert len(results[0].sent) + len(results[1].sent) == 8 and not set(results[0].sent) & set(results[1].sent)
    with sessions() as s:
        rows = s.execute(select(Notification.state, Notification.attempts)
                         .where(Notification.service_request_id.in_([r.id for r in reqs]))).all()
    assert sorted(rows) == [("sent", 1)] * 8


def test_a_row_being_claimed_is_skipped_by_the_other_workers(committed) -> None:  # noqa: ANN001
    sessions, _ = committed
    with sessions.begin() as s:
        reqs = [f.report(s, "notify_test_type", lon=f.offset(f.LON, f.LAT, 100 * i)[0],
                         contact=Contact(email=f"resident{i}@example.org")).request for i in range(2)]
        for req in reqs:
            ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR)
        ids = sorted(n.id for req in reqs for n in s.scalars(select(Notification).where(Notification.service_request_id == req.id)))
    with sessions() as a, sessions() as b, sessions() as c:
        for s in (b, c):
            # Waiting on A's row lock would be the bug; fail fast instead of hanging.
            s.execute(text("SET LOCAL lock_timeout = '2s'"))
        first = outbox.claim(a)  # A's lease is not committed yet: its row is locked
        second = outbox.claim(b)
        assert [first.notification_id, second.notification_id] == ids
        assert outbox.claim(c) is None
        a.rollback()
        b.rollback()


def test_a_dispatch_over_http_queues_one_job_and_the_worker_mails_every_reporter(committed, smtp: SmtpSink) -> None:  # noqa: ANN001
    from api import create_app
    from workers.app import Queue, bound_to

    sessions, settings = committed
    with sessions.begin() as s:
        crew = f.crew(s, "notify-crew", skills=["asphalt"])
        headers = f.token_for(s, f.user(s, "disp@notify.test", "dispatcher"))
        first = f.report(s, "notify_test_type", contact=Contact(email="ana@example.org"))
        # Same place: joins the same work order as a duplicate.
        f.report(s, "notify_test_type", contact=Contact(email="ben@example.org"))
        wo_id = first.work_order.id
    queue = Queue(settings)
    try:
        client = create_app(settings, sessions=sessions, queue=queue).test_client()
        r = client.post(f"/api/v1/work-orders/{wo_id}/transitions", json={"to": "dispatched", "crew": crew.code},
                        headers=headers)
        assert r.status_code == 200, r.get_json()
    finally:
        queue.close()
    with sessions() as s:
        assert s.execute(text("SELECT task_name, args FROM procrastinate_jobs")).all() == [("deliver_notifications", {})]

    with bound_to(settings) as worker_app:
        worker_app.run_worker(queues=["notify"], wait=False, install_signal_handlers=False, listen_notify=False)

    assert sorted(rcpt for _, (rcpt,) in smtp.envelopes) == ["ana@example.org", "ben@example.org"]
    assert {m["Subject"].split(" (")[1] for m in smtp.messages} == {"Streetlight out) is scheduled"}
    with sessions() as s:
        assert s.scalar(text("SELECT status::text FROM procrastinate_jobs WHERE task_name = 'deliver_notifications'")) == "succeeded"


def test_the_minutely_sweep_delivers_what_no_job_was_queued_for(committed, smtp: SmtpSink) -> None:  # noqa: ANN001
    import workers.tasks
    from workers.app import app

    sessions, _ = committed
    with sessions.begin() as s:  # a session without a job queue: nothing is deferred
        req = f.report(s, "notify_test_type", contact=Contact(email="ana@example.org")).request
        ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR)
    with sessions() as s:
        assert s.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 0

    workers.tasks.sweep_notifications(timestamp=0)
    assert [rcpt for _, (rcpt,) in smtp.envelopes] == ["ana@example.org"]
    sweep = app.periodic_registry.periodic_tasks[("sweep_notifications", "")]
    assert (sweep.cron, sweep.task.queue, sweep.task.queueing_lock) == ("* * * * *", "notify", "sweep_notifications")
