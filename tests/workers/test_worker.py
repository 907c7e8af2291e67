"""The real worker, the real queue, committed rows: a report's photo goes public end to end."""

from __future__ import annotations

import io
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
        s.execute(delete(StatusEvent).where(
            ((StatusEvent.entity == "service_request") & StatusEvent.entity_id.in_(req_ids))
            | ((StatusEvent.entity == "work_order") & StatusEvent.entity_id.in_(wo_ids))
        ))
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
        data={"api_key": "worker-test-key", "service_code": "worker_test_type", "lat": str(f.LAT), "long": str(f.LON),
              "media": (io.BytesIO(buf.getvalue()), "p.jpg")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.data
    public_id = resp.get_json()[0]["service_request_id"]

    with bound_to(settings) as worker_app:
        worker_app.run_worker(queues=["media"], wait=False, install_signal_handlers=False, listen_notify=False)

    with sessions() as s:
        photo = s.scalar(select(Photo).join(ServiceRequest).where(ServiceRequest.public_id == public_id))
        assert photo.state == "ready"
        assert (settings.media_dir / photo.public_key).is_file()
        assert s.scalar(select(ServiceRequest.media_url).where(ServiceRequest.public_id == public_id)) == f"/media/{photo.public_key}"
        status = s.scalar(text("SELECT status::text FROM procrastinate_jobs WHERE task_name = 'process_photo'"))
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
