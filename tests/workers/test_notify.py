"""Delivering the outbox to a real SMTP server and a real HTTP endpoint on localhost:
exactly one message per event, retries with backoff, giving up, and the worker's jobs."""

from __future__ import annotations

import dataclasses
import email
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import trustme
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
from tests.loopback_http import LoopbackServer
from workers.delivery import deliver_due

ACTOR = f.SYSTEM
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class Connections:
    """Every TCP connection this process tries, and every name it asks the system
    resolver for. A connection outside 127.0.0.0/8 is refused before it is made: tests
    inject the resolver's answer instead of ever reaching another address."""

    def __init__(self) -> None:
        self.to: list[tuple[str, int]] = []
        self.looked_up: list[str] = []


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    seen = Connections()
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = address[0], address[1]
            seen.to.append((host, port))
            if ipaddress.ip_address(host) not in LOOPBACK:
                raise OSError(f"test guard: no connection to {host} (outside 127.0.0.0/8)")

    def connect(sock: socket.socket, address: Any) -> None:
        guard(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


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

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
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


class HookSink(LoopbackServer):
    """A client app's endpoint: answers with the next status of `statuses` (the last one
    repeats). With `tls`, it speaks https with that context and records the names the
    clients asked for in their TLS handshake (SNI)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        # Headers as received (case-insensitive lookups, as HTTP has them).
        self.calls: list[tuple[str, Message, bytes]] = []
        self.statuses = [204]
        self.sni: list[str | None] = []
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

        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: sink.sni.append(name)
        super().__init__(Handler, tls)
        self.url = f"http://127.0.0.1:{self.port}/streetloop"


@pytest.fixture
def hooks() -> Iterator[HookSink]:
    sink = HookSink()
    yield sink
    sink.close()


def _local_hooks(settings: Settings) -> Settings:
    """The test endpoints listen on 127.0.0.1 over plain http: the settings must say so."""
    return dataclasses.replace(
        settings, webhook_allow_hosts=("127.0.0.1",), webhook_http_hosts=("127.0.0.1",)
    )


@pytest.fixture
def city(settings: Settings, smtp: SmtpSink) -> Settings:
    return dataclasses.replace(
        _local_hooks(settings),
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        mail_from="311@example.ad",
        public_base_url="https://311.example.ad",
    )


def _report(
    db: Session,
    email_to: str | None = "ana@example.org",
    *,
    api_key_id: int | None = None,
    east_m: float = 0,
) -> ServiceRequest:
    lon, lat = f.offset(f.LON, f.LAT, east_m)
    return f.report(
        db, lon=lon, lat=lat, contact=Contact(email=email_to), api_key_id=api_key_id
    ).request


def _row(db: Session, request_id: int) -> Notification:
    (row,) = db.scalars(
        select(Notification).where(Notification.service_request_id == request_id)
    ).all()
    db.refresh(row)
    return row


def _closed_report(sessions: sessionmaker[Session], **kwargs: Any) -> tuple[int, datetime]:
    """A report whose closing is committed; returns its id and the database's clock."""
    with sessions.begin() as s:
        if s.scalar(select(ServiceType.id).where(ServiceType.code == "pothole")) is None:
            f.service_type(s, "pothole", name="Pothole")
        req = _report(s, **kwargs)
        ServiceRequestLifecycle.transition(
            s, req, "not_found", actor=ACTOR, note="Nothing there.", public=True
        )
        return req.id, outbox.db_now(s)


# -- e-mail ----------------------------------------------------------------------------------


def test_one_email_per_event_even_when_delivery_runs_twice(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
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
    assert (
        f"Follow your report: https://311.example.ad/status/{request_id}"
        in msg.get_payload(decode=True).decode()
    )


def test_a_451_is_retried_with_backoff_and_delivered_when_the_server_recovers(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.reply = "451 4.3.0 Greylisted, try again later"
    run = deliver_due(sessions, city, now=t0)
    row = _row(db, request_id)
    assert (run.sent, run.retrying) == ([], [row.id])
    assert (row.state, row.attempts, row.next_attempt_at, row.sent_at) == (
        "pending",
        1,
        t0 + timedelta(minutes=1),
        None,
    )
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


def test_a_server_that_refuses_connections_is_retried(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    request_id, t0 = _closed_report(sessions)
    down = dataclasses.replace(city, smtp_port=_free_port())
    deliver_due(sessions, down, now=t0)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.next_attempt_at) == (
        "pending",
        1,
        t0 + timedelta(minutes=1),
    )
    assert row.last_error.startswith(f"SMTP 127.0.0.1:{down.smtp_port}: ConnectionRefusedError(")
    deliver_due(sessions, down, now=t0 + timedelta(minutes=1))
    db.refresh(row)
    assert (row.attempts, row.next_attempt_at) == (2, t0 + timedelta(minutes=3))
    assert deliver_due(sessions, city, now=t0 + timedelta(minutes=3)).sent == [row.id]
    assert len(smtp.messages) == 1


def test_a_server_whose_reply_line_is_too_long_is_retried_with_smtplibs_reason(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    """smtplib refuses a reply line over its limit with a reason that is text, not bytes as
    from a server: the attempt is still a failed one, recorded and retried."""
    request_id, t0 = _closed_report(sessions)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def greet_too_long() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"220 " + b"x" * 10_000 + b"\r\n")

    server = threading.Thread(target=greet_too_long, daemon=True)
    server.start()
    deliver_due(sessions, dataclasses.replace(city, smtp_port=port), now=t0)
    server.join(timeout=10)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.next_attempt_at) == (
        "pending",
        1,
        t0 + timedelta(minutes=1),
    )
    assert row.last_error == "SMTP 500: Line too long."
    assert deliver_due(sessions, city, now=t0 + timedelta(minutes=1)).sent == [row.id]
    assert len(smtp.messages) == 1


def test_delivery_gives_up_after_the_last_attempt(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.reply = "451 4.3.0 Still busy"
    now, waits = t0, []
    for _ in range(outbox.MAX_ATTEMPTS):
        deliver_due(sessions, city, now=now)
        row = _row(db, request_id)
        waits.append((row.next_attempt_at - now) / timedelta(minutes=1))
        now = row.next_attempt_at
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 240, 0]
    assert (row.state, row.attempts, row.last_error) == (
        "failed",
        outbox.MAX_ATTEMPTS,
        "SMTP 451: 4.3.0 Still busy",
    )
    assert deliver_due(sessions, city, now=now + timedelta(days=1)).failed == []
    assert smtp.tries == outbox.MAX_ATTEMPTS and smtp.messages == []


def test_an_unknown_mailbox_is_given_up_at_once(
    sessions: sessionmaker[Session], db: Session, city: Settings, smtp: SmtpSink
) -> None:
    request_id, t0 = _closed_report(sessions)
    smtp.refused_rcpt = "550 5.1.1 No such mailbox"
    run = deliver_due(sessions, city, now=t0)
    row = _row(db, request_id)
    assert run.failed == [row.id]
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error == "recipient refused: 550 5.1.1 No such mailbox"


def test_without_a_mail_server_emails_wait_and_webhooks_still_go(
    sessions: sessionmaker[Session],
    db: Session,
    settings: Settings,
    hooks: HookSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import workers.delivery

    with sessions.begin() as s:
        key = f.api_key(s)
        s.add(Webhook(api_key_id=key.id, url=hooks.url, secret="k"))
    request_id, t0 = _closed_report(sessions, api_key_id=key.id)
    workers.delivery._warned_no_smtp = False
    with caplog.at_level(logging.WARNING, logger="workers.delivery"):
        deliver_due(sessions, _local_hooks(settings), now=t0)
        deliver_due(sessions, _local_hooks(settings), now=t0 + timedelta(hours=1))
    rows = {
        n.channel: n
        for n in db.scalars(
            select(Notification).where(Notification.service_request_id == request_id)
        )
    }
    assert (rows["email"].state, rows["email"].attempts, rows["email"].last_error) == (
        "pending",
        0,
        None,
    )
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
    # The status only: what the target answered ("oops!") is not kept, so last_error
    # cannot be used to read what answers on an address.
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
    deliver_due(sessions, city, now=row.next_attempt_at)
    db.refresh(row)
    # A redirect would turn the POST into a GET: not followed, not delivered.
    assert (row.state, row.attempts, row.last_error) == ("pending", 2, "HTTP 302")
    assert deliver_due(sessions, city, now=row.next_attempt_at).sent == [row.id]

    assert len(hooks.calls) == 3
    assert {body for _, _, body in hooks.calls} == {hooks.calls[0][2]}
    for path, headers, body in hooks.calls:
        assert path == "/streetloop"
        assert headers["X-StreetLoop-Delivery"] == str(row.id)
        assert (
            headers["X-StreetLoop-Signature"]
            == "sha256=" + hmac.new(b"app-secret", body, hashlib.sha256).hexdigest()
        )
    event_at = db.scalar(select(StatusEvent.at).where(StatusEvent.id == row.status_event_id))
    assert json.loads(hooks.calls[0][2]) == {
        "event": "closed",
        "service_request_id": str(request_id),
        "status": "closed",
        "detailed_status": "not_found",
        "updated_datetime": event_at.isoformat(),
        "status_notes": "Nothing there.",
        "media_url": None,
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
    assert (row.state, row.attempts, row.last_error) == (
        "failed",
        1,
        f"api key {key.id} was revoked",
    )
    assert hooks.calls == []


# -- webhooks only reach public hosts (SSRF) -----------------------------------------------------


@pytest.fixture
def local(settings: Settings) -> Settings:
    """Webhooks may call the test endpoints on 127.0.0.1; no mail server (whose start-up
    connects to itself), so `connections` sees the webhook calls only."""
    return _local_hooks(settings)


class Resolver:
    """The DNS, as a test tells it: `answers` for each successive lookup (the last repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _hooked_report(sessions: sessionmaker[Session], url: str) -> tuple[int, datetime]:
    """A closed report of an app whose webhook is `url`, written as a registration made
    before URLs were checked would be (or as one whose name now resolves elsewhere)."""
    with sessions.begin() as s:
        key = f.api_key(s)
        s.add(Webhook(api_key_id=key.id, url=url, secret="k"))
    return _closed_report(sessions, email_to=None, api_key_id=key.id)


def test_without_the_allow_list_a_local_endpoint_is_not_called(
    sessions: sessionmaker[Session],
    db: Session,
    settings: Settings,
    hooks: HookSink,
    connections: Connections,
) -> None:
    request_id, t0 = _hooked_report(sessions, hooks.url.replace("http://", "https://"))
    run = deliver_due(sessions, settings, now=t0)
    row = _row(db, request_id)
    assert run.failed == [row.id]
    assert (row.state, row.attempts, row.last_error) == ("failed", 1, "refused: loopback address")
    assert hooks.calls == [] and connections.to == []


def test_plain_http_is_refused_unless_the_settings_allow_it_for_the_host(
    sessions: sessionmaker[Session],
    db: Session,
    settings: Settings,
    hooks: HookSink,
    connections: Connections,
) -> None:
    request_id, t0 = _hooked_report(sessions, hooks.url)
    only_private_allowed = dataclasses.replace(settings, webhook_allow_hosts=("127.0.0.1",))
    deliver_due(sessions, only_private_allowed, now=t0)
    row = _row(db, request_id)
    assert (row.state, row.last_error) == ("failed", "refused: plain http")
    assert hooks.calls == [] and connections.to == []


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (["10.0.0.1"], "refused: private address"),
        (["192.168.4.4"], "refused: private address"),
        (["169.254.169.254"], "refused: link-local address"),
        (["127.0.0.1"], "refused: loopback address"),
        (["::1"], "refused: loopback address"),
        (["0.0.0.0"], "refused: unspecified address"),
        (["fd12:3456::1"], "refused: private address"),
        (["fe80::1"], "refused: link-local address"),
        (["239.1.1.1"], "refused: multicast address"),
        (["100.64.1.1"], "refused: reserved address"),
        (["::ffff:10.0.0.1"], "refused: private address"),
        (["64:ff9b::a9fe:a9fe"], "refused: link-local address"),
        (["2002:7f00:1::"], "refused: loopback address"),
        # One internal address among public ones is enough to refuse the name.
        (["93.184.215.14", "10.0.0.1"], "refused: private address"),
    ],
)
def test_a_name_that_resolves_into_the_citys_network_is_refused_without_a_connection(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    connections: Connections,
    answer: list[str],
    error: str,
) -> None:
    request_id, t0 = _hooked_report(sessions, "https://hooks.example.org/streetloop")
    dns = Resolver(answer)
    strict = dataclasses.replace(local, webhook_allow_hosts=())
    run = deliver_due(sessions, strict, now=t0, resolve=dns)
    row = _row(db, request_id)
    assert run.failed == [row.id]
    assert (row.state, row.attempts, row.last_error) == ("failed", 1, error)
    assert dns.asked == [("hooks.example.org", 443)]
    # Nothing was connected to, not even the public address of the mixed answer, and the
    # system resolver was not asked either.
    assert connections.to == [] and "hooks.example.org" not in connections.looked_up


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://169.254.169.254/latest/meta-data/", "refused: link-local address"),
        ("https://2130706433/", "refused: loopback address"),
        ("https://[::ffff:a00:1]/", "refused: private address"),
        ("https://metadata/computeMetadata/v1/", "refused: internal host name"),
        ("http://93.184.215.14/", "refused: plain http"),
    ],
)
def test_a_url_registered_before_the_checks_is_refused_without_a_lookup(
    sessions: sessionmaker[Session],
    db: Session,
    settings: Settings,
    connections: Connections,
    url: str,
    error: str,
) -> None:
    request_id, t0 = _hooked_report(sessions, url)
    dns = Resolver(["93.184.215.14"])
    deliver_due(sessions, settings, now=t0, resolve=dns)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("failed", 1, error)
    assert dns.asked == [] and connections.to == []


def test_the_worker_connects_to_the_address_it_checked_and_resolves_once(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    hooks: HookSink,
    connections: Connections,
) -> None:
    # DNS rebinding: the name answers 127.0.0.1 (allowed) to the check, and 10.0.0.1 to
    # any later lookup. The call must go where the check said, with the name's Host header.
    url = f"http://hooks.example.test:{hooks.port}/streetloop"
    request_id, t0 = _hooked_report(sessions, url)
    dns = Resolver(["127.0.0.1"], ["10.0.0.1"])
    named_http = dataclasses.replace(local, webhook_http_hosts=("hooks.example.test",))
    assert deliver_due(sessions, named_http, now=t0, resolve=dns).sent == [_row(db, request_id).id]
    assert dns.asked == [("hooks.example.test", hooks.port)]
    assert connections.to == [("127.0.0.1", hooks.port)]
    assert "hooks.example.test" not in connections.looked_up
    ((path, headers, _),) = hooks.calls
    assert (path, headers["Host"]) == ("/streetloop", f"hooks.example.test:{hooks.port}")


def test_an_unknown_name_is_retried(
    sessions: sessionmaker[Session], db: Session, local: Settings, connections: Connections
) -> None:
    request_id, t0 = _hooked_report(sessions, "https://gone.example.org/hook")

    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    deliver_due(sessions, local, now=t0, resolve=nxdomain)
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "host name not found")
    assert connections.to == []


def test_a_resolver_answer_that_is_no_address_is_a_name_not_found(
    sessions: sessionmaker[Session], db: Session, local: Settings, connections: Connections
) -> None:
    # The same look-up and checks as the photo copies (workers.outbound.checked_addresses):
    # a bad answer is a name not found, retried, not an internal error.
    request_id, t0 = _hooked_report(sessions, "https://odd.example.org/hook")
    deliver_due(sessions, local, now=t0, resolve=Resolver(["not-an-address"]))
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "host name not found")
    assert connections.to == []


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request and then does one thing: `mode`
    is "close" (hang up), "garbage" (answer something that is not HTTP) or "silent"
    (read, never answer)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        # accept() wakes up now and then to see whether the test is over.
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            conn.recv(65536)  # the whole request: http.client sends a small one at once
            if self.mode == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6 internal-db-01\r\n")
            if self.mode == "silent":
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("refused", "connection refused"),
        ("close", "no reply"),
        ("garbage", "invalid HTTP reply"),
        ("silent", "timeout"),
    ],
)
def test_connection_failures_are_told_in_our_own_words(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    error: str,
) -> None:
    import workers.delivery

    monkeypatch.setattr(workers.delivery, "WEBHOOK_TIMEOUT_S", 0.3)
    server = None if mode == "refused" else RawServer(mode)
    try:
        port = server.port if server else _free_port()
        request_id, t0 = _hooked_report(sessions, f"http://127.0.0.1:{port}/hook")
        deliver_due(sessions, local, now=t0)
    finally:
        if server:
            server.close()
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, error)


def test_an_unexpected_error_is_named_not_quoted(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    hooks: HookSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request_id, t0 = _hooked_report(sessions, hooks.url)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("reply from 10.0.0.5:5432: FATAL password authentication failed")

    monkeypatch.setattr(outbox, "webhook_request", broken)
    with caplog.at_level(logging.ERROR, logger="workers.delivery"):
        deliver_due(sessions, local, now=t0)
    row = _row(db, request_id)
    assert (row.state, row.last_error) == (
        "pending",
        "internal error (RuntimeError; see the worker's log)",
    )
    # The operators' log keeps the whole story.
    assert "FATAL password authentication failed" in caplog.text


# -- https: the checked address, the host's name for TLS ------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_hooks(ca: trustme.CA) -> Iterator[HookSink]:
    """An https endpoint on 127.0.0.1 whose certificate names hooks.example.org, and
    127.0.0.1 too: a client that checked it against the address would accept it for any name."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.org", "127.0.0.1").configure_cert(context)
    sink = HookSink(tls=context)
    yield sink
    sink.close()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "webhook-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_https_goes_to_the_checked_address_and_verifies_the_hosts_name(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    tls_hooks: HookSink,
    ca_file: Path,
    connections: Connections,
) -> None:
    url = f"https://hooks.example.org:{tls_hooks.port}/streetloop"
    request_id, t0 = _hooked_report(sessions, url)
    dns = Resolver(["127.0.0.1"])
    trusted = dataclasses.replace(local, webhook_ca_file=ca_file)
    assert deliver_due(sessions, trusted, now=t0, resolve=dns).sent == [_row(db, request_id).id]
    assert dns.asked == [("hooks.example.org", tls_hooks.port)]
    assert connections.to == [("127.0.0.1", tls_hooks.port)]
    assert tls_hooks.sni == ["hooks.example.org"]
    ((path, headers, body),) = tls_hooks.calls
    assert (path, headers["Host"]) == ("/streetloop", f"hooks.example.org:{tls_hooks.port}")
    assert (
        headers["X-StreetLoop-Signature"]
        == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize("case", ["untrusted CA", "another name"])
def test_a_certificate_that_does_not_prove_the_hosts_name_is_a_tls_error(
    sessions: sessionmaker[Session],
    db: Session,
    local: Settings,
    tls_hooks: HookSink,
    ca_file: Path,
    case: str,
) -> None:
    # "another name": the certificate is valid for 127.0.0.1, where the call goes, but
    # not for the URL's host, which is what it must prove.
    host = "hooks.example.org" if case == "untrusted CA" else "other.example.org"
    request_id, t0 = _hooked_report(sessions, f"https://{host}:{tls_hooks.port}/streetloop")
    settings = (
        local if case == "untrusted CA" else dataclasses.replace(local, webhook_ca_file=ca_file)
    )
    deliver_due(sessions, settings, now=t0, resolve=Resolver(["127.0.0.1"]))
    row = _row(db, request_id)
    assert (row.state, row.attempts, row.last_error) == (
        "pending",
        1,
        "TLS error: certificate not accepted",
    )
    assert tls_hooks.calls == []


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
        s.execute(
            delete(StatusEvent).where(
                ((StatusEvent.entity == "service_request") & StatusEvent.entity_id.in_(req_ids))
                | ((StatusEvent.entity == "work_order") & StatusEvent.entity_id.in_(wo_ids))
            )
        )
        s.execute(delete(ServiceRequest).where(ServiceRequest.service_type_id == st_id))
        s.execute(delete(WorkOrder).where(WorkOrder.service_type_id == st_id))
        s.execute(delete(ServiceType).where(ServiceType.id == st_id))
        s.execute(
            delete(AccessToken).where(
                AccessToken.user_id.in_(select(User.id).where(User.email == "disp@notify.test"))
            )
        )
        s.execute(delete(User).where(User.email == "disp@notify.test"))
        s.execute(delete(Crew).where(Crew.code == "notify-crew"))
        s.execute(delete(ApiKey).where(ApiKey.name == "Test client"))
        s.execute(text("DELETE FROM procrastinate_jobs"))


def test_two_workers_at_once_send_each_message_exactly_once(committed, smtp: SmtpSink) -> None:  # noqa: ANN001
    sessions, settings = committed
    with sessions.begin() as s:
        reqs = [
            f.report(
                s,
                "notify_test_type",
                lon=f.offset(f.LON, f.LAT, 100 * i)[0],
                contact=Contact(email=f"resident{i}@example.org"),
            ).request
            for i in range(8)
        ]
        for req in reqs:
            ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR)
    results = []
    workers = [
        threading.Thread(target=lambda: results.append(deliver_due(sessions, settings)))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(rcpt for _, (rcpt,) in smtp.envelopes) == sorted(
        f"resident{i}@example.org" for i in range(8)
    )
    assert len({m["Message-ID"] for m in smtp.messages}) == 8
    assert len(results[0].sent) + len(results[1].sent) == 8 and not set(results[0].sent) & set(
        results[1].sent
    )
    with sessions() as s:
        rows = s.execute(
            select(Notification.state, Notification.attempts).where(
                Notification.service_request_id.in_([r.id for r in reqs])
            )
        ).all()
    assert sorted(rows) == [("sent", 1)] * 8


def test_a_row_being_claimed_is_skipped_by_the_other_workers(committed) -> None:  # noqa: ANN001
    sessions, _ = committed
    with sessions.begin() as s:
        reqs = [
            f.report(
                s,
                "notify_test_type",
                lon=f.offset(f.LON, f.LAT, 100 * i)[0],
                contact=Contact(email=f"resident{i}@example.org"),
            ).request
            for i in range(2)
        ]
        for req in reqs:
            ServiceRequestLifecycle.transition(s, req, "not_found", actor=ACTOR)
        ids = sorted(
            n.id
            for req in reqs
            for n in s.scalars(
                select(Notification).where(Notification.service_request_id == req.id)
            )
        )
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


def test_a_dispatch_over_http_queues_one_job_and_the_worker_mails_every_reporter(
    committed, smtp: SmtpSink
) -> None:  # noqa: ANN001
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
        r = client.post(
            f"/api/v1/work-orders/{wo_id}/transitions",
            json={"to": "dispatched", "crew": crew.code},
            headers=headers,
        )
        assert r.status_code == 200, r.get_json()
    finally:
        queue.close()
    with sessions() as s:
        assert s.execute(text("SELECT task_name, args FROM procrastinate_jobs")).all() == [
            ("deliver_notifications", {})
        ]

    with bound_to(settings) as worker_app:
        worker_app.run_worker(
            queues=["notify"], wait=False, install_signal_handlers=False, listen_notify=False
        )

    assert sorted(rcpt for _, (rcpt,) in smtp.envelopes) == ["ana@example.org", "ben@example.org"]
    assert {m["Subject"].split(" (")[1] for m in smtp.messages} == {"Streetlight out) is scheduled"}
    with sessions() as s:
        assert (
            s.scalar(
                text(
                    "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'deliver_notifications'"
                )
            )
            == "succeeded"
        )


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
    assert (sweep.cron, sweep.task.queue, sweep.task.queueing_lock) == (
        "* * * * *",
        "notify",
        "sweep_notifications",
    )
