"""Copying a report's photo link into our storage (workers.media_copy): only from the hosts
an admin allowed, at a checked address, every failure recorded on the link.

The allowed host is a made-up name (photos.fixmystreet.test) that the injected resolver
maps to 127.0.0.1, where a small HTTP server started here answers. The refusals are
decided before any connection: the resolver's injected answer is an address the worker
must not reach, and the test checks that no connection was even tried."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.models import MediaLink, Photo, ServiceRequest
from core.settings import Settings
from core.storage import LocalStorage
from tests import factories as f
from tests.factories.photos import jpeg
from tests.loopback_http import LoopbackServer
from workers.media_copy import MAX_ATTEMPTS, copy_link

HOST = "photos.fixmystreet.test"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


PHOTO = jpeg((200, 0, 0))
SLOW_HEADER_LINES = 40


class Connections:
    """Every TCP connection this process tries and every name it asks the system resolver
    for; one outside 127.0.0.0/8 is refused before it is made."""

    def __init__(self) -> None:
        self.to: list[tuple[str, int]] = []
        self.looked_up: list[str] = []


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Connections:
    seen = Connections()
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            seen.to.append((address[0], address[1]))
            if ipaddress.ip_address(address[0]) not in LOOPBACK:
                raise OSError(f"test guard: no connection to {address[0]} (outside 127.0.0.0/8)")
        return real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


class Resolver:
    """The injected resolver: the given answer for every name, and who asked."""

    def __init__(self, answer: list[str]) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return list(self.answer)


class PhotoHost(LoopbackServer):
    """A FixMyStreet's photo server on 127.0.0.1: a photo, a 404, a redirect, a page that
    is not an image, a body larger than it says or than allowed, and slow answers."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.paths: list[str] = []
        self.sent = 0  # bytes of body written, all answers together
        self.header_lines = 0  # slow header lines written before the client hung up
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(
                self, status: int, body: bytes, content_type: str = "image/jpeg", **headers: str
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                host.sent += len(body)

            def do_GET(self) -> None:  # noqa: N802, C901
                host.paths.append(self.path)
                path = self.path.split("?", 1)[0]
                if path == "/photo.jpeg":
                    self._body(200, PHOTO)
                elif path == "/other.jpeg":
                    self._body(200, jpeg((0, 0, 200)))
                elif path == "/missing.jpeg":
                    self._body(404, b"not here", "text/plain")
                elif path == "/moved.jpeg":
                    self._body(302, b"", "text/plain", Location="/photo.jpeg")
                elif path == "/page.jpeg":
                    self._body(200, b"<html><body>a photo, honestly</body></html>", "text/html")
                elif path == "/declared-huge.jpeg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(50 * 1024 * 1024))
                    self.end_headers()
                    self._stream(50 * 1024 * 1024)
                elif path == "/endless.jpeg":
                    # No length: the body goes on until the client hangs up.
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self._stream(50 * 1024 * 1024)
                elif path == "/silent.jpeg":
                    time.sleep(1.5)
                    self._body(200, PHOTO)
                elif path == "/slow-headers.jpeg":
                    # Each header line well within the read timeout, all of them far beyond
                    # the deadline (then an empty 404: no body read would notice the time).
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.flush_headers()
                    for k in range(SLOW_HEADER_LINES):
                        if not self._write(f"X-Line-{k}: x\r\n".encode()):
                            return
                        host.header_lines += 1
                        time.sleep(0.05)
                    self._write(b"Content-Length: 0\r\n\r\n")
                elif path == "/trickle.jpeg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(PHOTO)))
                    self.end_headers()
                    for k in range(len(PHOTO)):
                        if not self._write(PHOTO[k : k + 1]):
                            return
                        time.sleep(0.05)
                else:
                    self._body(404, b"", "text/plain")

            def _write(self, data: bytes) -> bool:
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    return False
                host.sent += len(data)
                return True

            def _stream(self, size: int) -> None:
                chunk = b"\xff" * 65536
                for _ in range(size // len(chunk)):
                    if not self._write(chunk):
                        return

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler, tls)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{HOST}:{self.port}{path}"


@pytest.fixture
def photo_host() -> Iterator[PhotoHost]:
    server = PhotoHost()
    yield server
    server.close()


@pytest.fixture
def allowed(settings: Settings) -> Settings:
    """The test host is allowed, over plain http, at a loopback address: the settings for
    a FixMyStreet on the city's own network (and for this test)."""
    return dataclasses.replace(
        settings,
        media_copy_hosts=(HOST,),
        media_copy_http_hosts=(HOST,),
        media_copy_allow_internal=True,
        max_upload_bytes=100_000,
    )


def _pending(sessions: sessionmaker[Session], *urls: str) -> list[int]:
    """A report with these links, queued for copying as intake queues an allowed host's."""
    with sessions.begin() as s:
        if s.scalar(select(func.count()).select_from(ServiceRequest)) == 0:
            f.service_type(s)
        req = f.report(s, media_urls=urls).request
        for link in req.media_links:
            link.copy_state = "pending"
        s.flush()
        return [link.id for link in req.media_links]


def _link(db: Session, link_id: int) -> MediaLink:
    link = db.get(MediaLink, link_id)
    db.refresh(link)
    return link


def test_an_allowed_link_is_fetched_once_stored_as_a_report_photo_and_processed(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    connections: Connections,
) -> None:
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    dns = Resolver(["127.0.0.1"])
    storage = LocalStorage(allowed.media_dir)
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "copied"
    link = _link(db, link_id)
    photo = db.get(Photo, link.photo_id)
    assert (link.copy_state, link.copy_error, link.copied_at is not None) == ("copied", None, True)
    assert (photo.kind, photo.state, photo.service_request_id, photo.content_type) == (
        "report",
        "ready",
        link.service_request_id,
        "image/jpeg",
    )
    assert storage.get(photo.original_key) == PHOTO and photo.original_key.startswith("private/")
    assert storage.get(photo.public_key)  # processed like an upload: a public copy, a thumbnail
    # Resolved once by the injected resolver, connected to the address it gave, asked once.
    assert dns.asked == [(HOST, photo_host.port)] and HOST not in connections.looked_up
    assert connections.to == [("127.0.0.1", photo_host.port)] and photo_host.paths == [
        "/photo.jpeg"
    ]
    # Done is done: the job again fetches nothing.
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "copied"
    assert photo_host.paths == ["/photo.jpeg"]


def test_the_same_picture_linked_twice_is_one_photo(
    sessions: sessionmaker[Session], db: Session, allowed: Settings, photo_host: PhotoHost
) -> None:
    first, second = _pending(
        sessions, photo_host.url("/photo.jpeg"), photo_host.url("/photo.jpeg?size=full")
    )
    for link_id in (first, second):
        copy_link(
            sessions,
            LocalStorage(allowed.media_dir),
            allowed,
            link_id,
            resolve=Resolver(["127.0.0.1"]),
        )
    assert _link(db, first).photo_id == _link(db, second).photo_id
    assert db.scalar(select(func.count()).select_from(Photo)) == 1


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/missing.jpeg", "HTTP 404"),
        ("/moved.jpeg", "redirect not followed"),
        ("/page.jpeg", "not an image of an accepted type"),
        ("/declared-huge.jpeg", "too large"),
        ("/endless.jpeg", "too large"),
        ("/silent.jpeg", "timeout"),
        ("/trickle.jpeg", "timeout"),
        ("/slow-headers.jpeg", "timeout"),
    ],
)
def test_each_failure_is_recorded_logged_and_not_tried_again(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    caplog: pytest.LogCaptureFixture,
    path: str,
    error: str,
) -> None:
    (link_id,) = _pending(sessions, photo_host.url(path))
    dns = Resolver(["127.0.0.1"])
    storage = LocalStorage(allowed.media_dir)
    with caplog.at_level(logging.WARNING, logger="workers.media_copy"):
        assert (
            copy_link(sessions, storage, allowed, link_id, resolve=dns, timeout=0.5, deadline_s=0.8)
            == "failed"
        )
    link = _link(db, link_id)
    assert (link.copy_state, link.copy_error, link.photo_id) == ("failed", error, None)
    assert (
        f"photo link {link_id} of request {link.service_request_id} (host {HOST}) not copied: {error}"
        in caplog.text
    )
    assert db.scalar(select(func.count()).select_from(Photo)) == 0
    # A redirect's target is not fetched; a body past the limit is not read to its end.
    assert photo_host.paths == [path]
    if "huge" in path or "endless" in path:
        assert photo_host.sent < 50 * 1024 * 1024
    if "slow-headers" in path:
        # The deadline covers the headers too: the worker hung up while they trickled
        # (each line came well within the read timeout).
        time.sleep(0.2)
        assert photo_host.header_lines < SLOW_HEADER_LINES
    # Recorded: the job run again does not fetch it again.
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "failed"
    assert photo_host.paths == [path]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (["127.0.0.1"], "refused: loopback address"),
        (["10.20.0.5"], "refused: private address"),
        (["169.254.169.254"], "refused: link-local address"),
        (["::ffff:192.168.1.10"], "refused: private address"),
        # A public address among them does not make the private one acceptable.
        (["93.184.216.34", "10.0.0.1"], "refused: private address"),
    ],
)
def test_an_allowed_name_that_resolves_inside_the_network_is_refused_before_any_connection(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    connections: Connections,
    answer: list[str],
    error: str,
) -> None:
    strict = dataclasses.replace(allowed, media_copy_allow_internal=False)
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    dns = Resolver(answer)
    assert (
        copy_link(sessions, LocalStorage(strict.media_dir), strict, link_id, resolve=dns)
        == "failed"
    )
    assert _link(db, link_id).copy_error == error
    assert dns.asked == [(HOST, photo_host.port)]
    assert connections.to == [] and photo_host.paths == []


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (["169.254.169.254"], "refused: link-local address"),
        (["127.0.0.1", "fe80::1"], "refused: link-local address"),
        (["::ffff:169.254.169.254"], "refused: link-local address"),
        (["0.0.0.0"], "refused: unspecified address"),
    ],
)
def test_with_internal_addresses_allowed_a_taken_over_name_still_cannot_reach_the_metadata_service(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    connections: Connections,
    answer: list[str],
    error: str,
) -> None:
    assert allowed.media_copy_allow_internal
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    assert (
        copy_link(
            sessions, LocalStorage(allowed.media_dir), allowed, link_id, resolve=Resolver(answer)
        )
        == "failed"
    )
    assert _link(db, link_id).copy_error == error
    assert connections.to == [] and photo_host.paths == []


def test_an_address_written_in_the_link_is_checked_without_a_lookup(
    sessions: sessionmaker[Session], db: Session, allowed: Settings, connections: Connections
) -> None:
    # The admin listed the address itself; the copy still must not go inside the network.
    strict = dataclasses.replace(
        allowed,
        media_copy_hosts=("10.1.2.3",),
        media_copy_http_hosts=("10.1.2.3",),
        media_copy_allow_internal=False,
    )
    (link_id,) = _pending(sessions, "http://10.1.2.3/photo.jpeg")
    dns = Resolver(["127.0.0.1"])
    assert (
        copy_link(sessions, LocalStorage(strict.media_dir), strict, link_id, resolve=dns)
        == "failed"
    )
    assert _link(db, link_id).copy_error == "refused: private address"
    assert dns.asked == [] and connections.to == []


@pytest.mark.parametrize(
    ("change", "url"),
    [
        ("host taken off the list", "http://{HOST}:{port}/photo.jpeg"),
        ("another host", "https://elsewhere.example.org/photo.jpeg"),
        ("plain http not allowed for it", "http://{HOST}:{port}/photo.jpeg"),
    ],
)
def test_a_link_the_policy_does_not_allow_is_never_fetched_and_stays_a_link(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    connections: Connections,
    change: str,
    url: str,
) -> None:
    # Queued while it was allowed; the settings changed before the job ran.
    settings = {
        "host taken off the list": dataclasses.replace(
            allowed, media_copy_hosts=(), media_copy_http_hosts=()
        ),
        "another host": allowed,
        "plain http not allowed for it": dataclasses.replace(allowed, media_copy_http_hosts=()),
    }[change]
    (link_id,) = _pending(sessions, url.format(HOST=HOST, port=photo_host.port))
    dns = Resolver(["127.0.0.1"])
    assert (
        copy_link(sessions, LocalStorage(settings.media_dir), settings, link_id, resolve=dns)
        == "link"
    )
    link = _link(db, link_id)
    assert (link.copy_state, link.copy_error, link.photo_id) == ("link", None, None)
    assert (
        dns.asked == []
        and connections.to == []
        and connections.looked_up == []
        and photo_host.paths == []
    )


def test_an_unknown_name_is_a_failure(
    sessions: sessionmaker[Session], db: Session, allowed: Settings, connections: Connections
) -> None:
    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    (link_id,) = _pending(sessions, f"http://{HOST}/photo.jpeg")
    assert (
        copy_link(sessions, LocalStorage(allowed.media_dir), allowed, link_id, resolve=nxdomain)
        == "failed"
    )
    assert _link(db, link_id).copy_error == "host name not found"
    assert connections.to == []


def test_the_copy_job_is_a_media_task_without_retries() -> None:
    import workers.tasks  # noqa: F401
    from workers.app import app

    task = app.tasks["copy_media_link"]
    assert task.queue == "media" and task.retry_strategy is None


# -- the city's CA -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_photo_host(ca: trustme.CA) -> Iterator[PhotoHost]:
    """The photo server over https, its certificate for HOST issued by a city's own CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    server = PhotoHost(tls=context)
    yield server
    server.close()


@pytest.mark.parametrize("trusted", [True, False])
def test_an_https_link_is_verified_with_the_citys_ca_file(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    tls_photo_host: PhotoHost,
    ca: trustme.CA,
    tmp_path: Path,
    trusted: bool,
) -> None:
    # An internal FixMyStreet's certificate is issued by the city's CA, which
    # STREETLOOP_WEBHOOK_CA_FILE names for all outgoing https (webhooks and these copies).
    ca_file = tmp_path / "city-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings = dataclasses.replace(
        allowed, media_copy_http_hosts=(), webhook_ca_file=ca_file if trusted else None
    )
    (link_id,) = _pending(sessions, tls_photo_host.url("/photo.jpeg", scheme="https"))
    state = copy_link(
        sessions,
        LocalStorage(settings.media_dir),
        settings,
        link_id,
        resolve=Resolver(["127.0.0.1"]),
    )
    link = _link(db, link_id)
    if trusted:
        assert (state, link.copy_error) == ("copied", None) and tls_photo_host.paths == [
            "/photo.jpeg"
        ]
    else:
        assert (state, link.copy_error) == ("failed", "TLS error: certificate not accepted")
        assert tls_photo_host.paths == []


# -- tried a few times, never forever ------------------------------------------------------


class BrokenStorage(LocalStorage):
    """Our own storage failing (a full disk, a bucket gone): a write raises."""

    def put(self, key: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")


def _claimed(
    sessions: sessionmaker[Session], link_id: int, *, ago: timedelta, attempts: int
) -> None:
    """The link as a try left it that was claimed `ago` and never finished (its worker killed)."""
    with sessions.begin() as s:
        s.execute(
            update(MediaLink)
            .where(MediaLink.id == link_id)
            .values(copy_claimed_at=datetime.now(UTC) - ago, copy_attempts=attempts)
        )


def test_a_failure_on_our_side_is_recorded_tried_again_later_and_given_up_after_a_few_attempts(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    storage, dns = BrokenStorage(allowed.media_dir), Resolver(["127.0.0.1"])
    with caplog.at_level(logging.ERROR, logger="workers.media_copy"):
        assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "pending"
    link = _link(db, link_id)
    assert (link.copy_state, link.copy_attempts, link.copy_error) == (
        "pending",
        1,
        "internal error (OSError; see the worker's log)",
    )
    assert (
        link.copy_claimed_at is not None and db.scalar(select(func.count()).select_from(Photo)) == 0
    )
    assert (
        "copy attempt 1 of 3 failed on our side" in caplog.text
        and "No space left on device" in caplog.text
    )
    # A job again at once (a duplicate): the claim is fresh, it fetches nothing.
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "pending"
    assert photo_host.paths == ["/photo.jpeg"] and _link(db, link_id).copy_attempts == 1
    # The sweep's later passes, each after the claim has aged: the last try gives up.
    for attempt in range(2, MAX_ATTEMPTS + 1):
        _claimed(sessions, link_id, ago=timedelta(minutes=11), attempts=attempt - 1)
        state = copy_link(sessions, storage, allowed, link_id, resolve=dns)
        assert (state, _link(db, link_id).copy_attempts) == (
            "pending" if attempt < MAX_ATTEMPTS else "failed",
            attempt,
        )
    link = _link(db, link_id)
    assert (link.copy_state, link.copy_error) == (
        "failed",
        f"gave up after {MAX_ATTEMPTS} attempts",
    )
    assert photo_host.paths == ["/photo.jpeg"] * MAX_ATTEMPTS
    _claimed(sessions, link_id, ago=timedelta(hours=1), attempts=MAX_ATTEMPTS)
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "failed"
    assert len(photo_host.paths) == MAX_ATTEMPTS


def test_a_link_claimed_by_a_worker_killed_mid_fetch_is_tried_again_once_the_claim_is_old(
    sessions: sessionmaker[Session], db: Session, allowed: Settings, photo_host: PhotoHost
) -> None:
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    storage, dns = LocalStorage(allowed.media_dir), Resolver(["127.0.0.1"])
    # Claimed a moment ago: that fetch may still be running; this job leaves it alone.
    _claimed(sessions, link_id, ago=timedelta(seconds=5), attempts=1)
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "pending"
    assert dns.asked == [] and photo_host.paths == [] and _link(db, link_id).copy_attempts == 1
    # Claimed long ago and never finished: the worker died; this job tries again.
    _claimed(sessions, link_id, ago=timedelta(minutes=11), attempts=1)
    assert copy_link(sessions, storage, allowed, link_id, resolve=dns) == "copied"
    link = _link(db, link_id)
    assert (link.copy_attempts, link.copy_error, link.photo_id is not None) == (2, None, True)


def test_a_link_whose_every_try_was_killed_is_given_up_without_fetching_again(
    sessions: sessionmaker[Session],
    db: Session,
    allowed: Settings,
    photo_host: PhotoHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (link_id,) = _pending(sessions, photo_host.url("/photo.jpeg"))
    _claimed(sessions, link_id, ago=timedelta(minutes=11), attempts=MAX_ATTEMPTS)
    dns = Resolver(["127.0.0.1"])
    with caplog.at_level(logging.WARNING, logger="workers.media_copy"):
        assert (
            copy_link(sessions, LocalStorage(allowed.media_dir), allowed, link_id, resolve=dns)
            == "failed"
        )
    link = _link(db, link_id)
    assert (link.copy_state, link.copy_error, link.copy_attempts) == (
        "failed",
        f"gave up after {MAX_ATTEMPTS} attempts",
        MAX_ATTEMPTS,
    )
    assert f"not copied: gave up after {MAX_ATTEMPTS} attempts" in caplog.text
    assert dns.asked == [] and photo_host.paths == []
