"""The real worker, the real queue, committed rows: a report's photo goes public end to end."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, delete, select, text

from core.db import after_commit
from core.models import ApiKey, Photo, ServiceRequest, ServiceType, StatusEvent, WorkOrder
from core.settings import Settings
from tests import factories as f


@pytest.fixture
def committed(engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A client app on a session that really commits; every row it made is removed afterwards."""
    import workers.tasks
    from api import create_app
    from core.db import make_sessionmaker
    from workers.app import Queue

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STREETLOOP_MEDIA_DIR", str(tmp_path / "media"))
    workers.tasks.close_resources()
    settings = Settings.from_env()
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        f.service_type(s, "worker_test_type")
        f.api_key(s, key="worker-test-key")
    queue = Queue(settings)
    app = create_app(settings, sessions=sessions, queue=queue)
    yield app, sessions, settings
    queue.close()
    workers.tasks.close_resources()
    with sessions.begin() as s:
        st_id = s.scalar(select(ServiceType.id).where(ServiceType.code == "worker_test_type"))
        req_ids = select(ServiceRequest.id).where(ServiceRequest.service_type_id == st_id)
        wo_ids = select(WorkOrder.id).where(WorkOrder.service_type_id == st_id)
        s.execute(
            delete(StatusEvent).where(
                ((StatusEvent.entity == "service_request") & StatusEvent.entity_id.in_(req_ids))
                | ((StatusEvent.entity == "work_order") & StatusEvent.entity_id.in_(wo_ids))
            )
        )
        s.execute(delete(Photo).where(Photo.service_request_id.in_(req_ids)))
        s.execute(delete(ServiceRequest).where(ServiceRequest.service_type_id == st_id))
        s.execute(delete(WorkOrder).where(WorkOrder.service_type_id == st_id))
        s.execute(delete(ServiceType).where(ServiceType.id == st_id))
        s.execute(delete(ApiKey).where(ApiKey.name == "Test client"))
        s.execute(text("DELETE FROM procrastinate_jobs"))


def test_worker_processes_the_photo_of_a_committed_report(committed) -> None:  # noqa: ANN001
    from workers.app import bound_to

    app, sessions, settings = committed
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(buf, "JPEG")
    resp = app.test_client().post(
        "/open311/v2/requests.json",
        data={
            "api_key": "worker-test-key",
            "service_code": "worker_test_type",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "media": (io.BytesIO(buf.getvalue()), "p.jpg"),
        },
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.data
    public_id = resp.get_json()[0]["service_request_id"]

    with bound_to(settings) as worker_app:
        worker_app.run_worker(
            queues=["media"], wait=False, install_signal_handlers=False, listen_notify=False
        )

    with sessions() as s:
        photo = s.scalar(
            select(Photo).join(ServiceRequest).where(ServiceRequest.public_id == public_id)
        )
        assert photo.state == "ready"
        assert (settings.media_dir / photo.public_key).is_file()
        assert (
            s.scalar(select(ServiceRequest.media_url).where(ServiceRequest.public_id == public_id))
            == f"/media/{photo.public_key}"
        )
        status = s.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE task_name = 'process_photo'")
        )
    assert status == "succeeded"


def test_after_commit_hooks_run_only_after_a_real_commit(engine: Engine) -> None:
    from core.db import make_sessionmaker

    ran: list[str] = []
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        after_commit(s, lambda: ran.append("committed"))
        s.execute(text("SELECT 1"))
        assert ran == []
        s.rollback()
        s.commit()
        assert ran == []  # the hook belonged to the rolled-back transaction
        after_commit(s, lambda: ran.append("second"))
        s.execute(text("SELECT 1"))
        s.commit()
    assert ran == ["second"]


@pytest.fixture
def photo_server() -> Iterator[str]:
    """A FixMyStreet's photo host on 127.0.0.1, serving one photo."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "blue").save(buf, "JPEG")
    body = buf.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/photo.jpeg" else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_worker_copies_a_linked_photo_from_an_allowed_host_and_the_crew_gets_a_photo(
    committed,
    photo_server: str,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    from workers.app import bound_to

    app, sessions, _ = committed
    # The host written as an address: nothing is looked up (tests ask no DNS server).
    monkeypatch.setenv("STREETLOOP_MEDIA_COPY_HOSTS", "127.0.0.1")
    monkeypatch.setenv("STREETLOOP_MEDIA_COPY_HTTP_HOSTS", "127.0.0.1")
    monkeypatch.setenv("STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL", "true")
    import workers.tasks

    workers.tasks.close_resources()
    settings = Settings.from_env()
    app.extensions["streetloop.settings"] = settings
    resp = app.test_client().post(
        "/open311/v2/requests.json",
        data={
            "api_key": "worker-test-key",
            "service_code": "worker_test_type",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "media_url": [f"{photo_server}/photo.jpeg", "https://elsewhere.example.org/p.jpeg"],
        },
    )
    assert resp.status_code == 201, resp.data
    public_id = resp.get_json()[0]["service_request_id"]

    with bound_to(settings) as worker_app:
        worker_app.run_worker(
            queues=["media"], wait=False, install_signal_handlers=False, listen_notify=False
        )

    with sessions() as s:
        req = s.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
        copied, other = req.media_links
        assert (copied.copy_state, other.copy_state) == ("copied", "link")
        photo = s.get(Photo, copied.photo_id)
        assert (photo.kind, photo.state) == ("report", "ready") and (
            settings.media_dir / photo.public_key
        ).is_file()
        jobs = s.execute(
            text(
                "SELECT task_name, status::text, queueing_lock FROM procrastinate_jobs ORDER BY id"
            )
        ).all()
    # Queued with the link's queueing lock: the sweep cannot add a second one while it waits.
    assert [tuple(j) for j in jobs] == [
        ("copy_media_link", "succeeded", f"copy_media_link:{copied.id}")
    ]
    body = (
        app.test_client()
        .get(f"/open311/v2/requests/{public_id}.json?extensions=true")
        .get_json()[0]
    )
    assert body["media_urls"] == [
        f"{photo_server}/photo.jpeg",
        "https://elsewhere.example.org/p.jpeg",
    ]
    assert [p["url"].rsplit("/media/", 1)[1] for p in body["photos"]] == [photo.public_key]


def test_the_pending_sweep_queues_again_a_link_whose_copy_job_was_lost(committed) -> None:  # noqa: ANN001
    import asyncio
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from core.models import MediaLink
    from workers.app import bound_to
    from workers.tasks import sweep_pending_photos

    app, sessions, settings = committed
    now = datetime.now(UTC)
    with sessions.begin() as s:
        old = f.report(
            s,
            "worker_test_type",
            at=now - timedelta(minutes=30),
            media_urls=(
                "https://fms.example.ad/1.jpeg",
                "https://fms.example.ad/2.jpeg",
                "https://fms.example.ad/4.jpeg",
                "https://fms.example.ad/5.jpeg",
            ),
        ).request
        new = f.report(
            s,
            "worker_test_type",
            lon=f.offset(f.LON, f.LAT, 500)[0],
            media_urls=("https://fms.example.ad/3.jpeg",),
        ).request
        lost, _, busy, killed = old.media_links
        for link in (lost, busy, killed, new.media_links[0]):
            link.copy_state = "pending"
        # A try under way (claimed a minute ago), and one whose worker died 20 minutes ago.
        busy.copy_attempts, busy.copy_claimed_at = 1, now - timedelta(minutes=1)
        killed.copy_attempts, killed.copy_claimed_at = 1, now - timedelta(minutes=20)
        s.flush()
        lost, killed = lost.id, killed.id

    async def sweep() -> None:
        with bound_to(settings) as bound:
            async with bound.open_async():
                # The job's context as procrastinate passes it: the sweep only defers through its app.
                await sweep_pending_photos(SimpleNamespace(app=bound), timestamp=0)

    asyncio.run(sweep())
    # Again before a worker ran the jobs (a slow queue): nothing is queued twice.
    asyncio.run(sweep())
    with sessions() as s:
        jobs = s.execute(
            text("SELECT task_name, args, queueing_lock FROM procrastinate_jobs ORDER BY id")
        ).all()
        assert s.scalar(select(MediaLink.copy_state).where(MediaLink.id == lost)) == "pending"
    # The old report's lost and killed ones, once each; not the one being tried, nor the new
    # report's, whose job may still be on its way.
    assert [tuple(j) for j in jobs] == [
        ("copy_media_link", {"link_id": i}, f"copy_media_link:{i}") for i in (lost, killed)
    ]
