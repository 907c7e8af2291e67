"""A client generated from the served /openapi.json (openapi-python-client, as a mobile
team would) drives a crew's day through its generated code only: sign in, the route (and
again with If-None-Match: 304), changes, events, positions, and a completion with a photo.

Every answer must parse into its typed model (`parsed` is the model, not None) and, turned
back into JSON by the model, be exactly the JSON that was sent: a field the spec types
wrongly, or leaves out, fails here. The spec itself must pass openapi-spec-validator.

The client talks to the app in-process (httpx's WSGI transport: no socket is opened)."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.comments import NewComment, add_comment
from core.lifecycle import Actor
from core.models import MediaLink, WorkOrder
from tests import factories as f
from tests.factories.photos import photo
from tests.factories.plans import DAY, TZ

PACKAGE = "streetloop_client"
# The generator's defaults run ruff over the output: not needed to import it, and it
# would make the test depend on a formatter's version.
CONFIG = f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"


def _served_spec(client: Any) -> dict[str, Any]:  # noqa: ANN401
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return json.loads(response.data)


@pytest.fixture
def generated(client: Any, tmp_path: Path) -> Iterator[ModuleType]:  # noqa: ANN401
    """The client package, generated from the served spec and imported from a temporary folder."""
    (tmp_path / "spec.json").write_text(json.dumps(_served_spec(client)))
    (tmp_path / "config.yml").write_text(CONFIG)
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            "spec.json",
            "--output-path",
            str(tmp_path / PACKAGE),
            "--meta",
            "none",
            "--config",
            "config.yml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The generator warns on stdout about what it could not type; it must have nothing to say.
    assert "Warning" not in run.stdout and "Unable" not in run.stdout, run.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _typed(response: Any, status: int, model: str) -> Any:  # noqa: ANN401
    """The answer parsed into `model`, checked against the raw JSON it came from."""
    assert response.status_code == status, response.content
    parsed = response.parsed
    assert type(parsed).__name__ == model, (type(parsed), response.content)
    assert parsed.to_dict() == json.loads(response.content)
    return parsed


def test_the_served_spec_is_valid_openapi(client: Any) -> None:  # noqa: ANN401
    validate(_served_spec(client))


def test_a_crews_day_through_the_generated_client(app, db: Session, published, generated) -> None:  # noqa: ANN001
    crew = published["crews"]["pothole-1"]
    # The generated clients build their own httpx client (with the bearer token): only its
    # transport is the app's, in-process.
    transport = {"transport": httpx.WSGITransport(app=app)}
    anonymous = generated.Client(base_url="http://127.0.0.1", httpx_args=transport)

    # Sign in as the crew (the fixture made its user with the factories' password).
    login = _module("models.login").Login(email="pothole-1@test", password="secret-pass")
    token = _typed(
        _module("api.auth.sign_in").sync_detailed(client=anonymous, body=login), 200, "Token"
    )
    client = generated.AuthenticatedClient(
        base_url="http://127.0.0.1", token=token.access_token, httpx_args=transport
    )

    # A time window on one of its orders, so that nested list is typed with content too.
    windowed = db.scalars(
        select(WorkOrder).where(WorkOrder.crew_id == crew.id).order_by(WorkOrder.id)
    ).first()
    start = datetime.combine(DAY, time(8), TZ)
    windowed.time_windows = [
        {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()}
    ]
    # And a resident's comment and a photo sent as a link on its report, for those lists.
    report = windowed.requests[0]
    key = f.api_key(db)
    add_comment(
        db,
        NewComment(
            service_request_id=report.public_id,
            client_update_id="fms-1",
            text="Still there, deeper",
        ),
        api_key_id=key.id,
        actor=Actor.client(key.name),
        reopen_within=timedelta(days=30),
    )
    db.add(
        MediaLink(service_request_id=report.id, position=0, url="https://fms.example/photo/1.jpeg")
    )
    db.commit()

    route_api = _module("api.crew.get_crew_route")
    answer = route_api.sync_detailed(client=client, date=DAY)
    route = _typed(answer, 200, "CrewRoute")
    assert (
        route.crew.code == "pothole-1"
        and route.stops
        and type(route.stops[0]).__name__ == "RouteStop"
    )
    assert (
        type(route.depot_start).__name__ == "Place"
        and type(route.geometry).__name__ == "LineString"
    )
    assert all(type(b).__name__ == "RouteBreak" for b in route.breaks) and route.breaks
    commented = next(s for s in route.stops if s.work_order_id == windowed.id)
    assert [type(c).__name__ for c in commented.comments] == ["StopComment"]
    assert (
        commented.comments[0].text == "Still there, deeper"
        and commented.comments[0].at.tzinfo is not None
    )
    assert [(type(p).__name__, p.url) for p in commented.photo_links] == [
        ("StopPhotoLink", "https://fms.example/photo/1.jpeg")
    ]
    assert [w.start for s in route.stops for w in s.time_windows] == [start]
    tag = answer.headers["ETag"]

    again = route_api.sync_detailed(client=client, date=DAY, if_none_match=tag)
    assert again.status_code == 304 and again.content == b"" and again.parsed is None
    assert again.headers["ETag"] == tag and again.headers["Cache-Control"] == "private, no-cache"

    changes = _typed(
        _module("api.crew.get_crew_changes").sync_detailed(client=client, since=0),
        200,
        "CrewChanges",
    )
    assert changes.changes and all(type(c).__name__ == "CrewChange" for c in changes.changes)

    stop = route.stops[0]
    events = _module("api.crew.post_work_order_event")
    field_event = _module("models.field_event")
    for kind in ("en_route", "on_site"):
        body = field_event.FieldEvent(
            type_=field_event.FieldEventType(kind),
            device_time=datetime.now(UTC),
            lat=stop.lat,
            lon=stop.lon,
            accuracy_m=6.0,
        )
        applied = _typed(
            events.sync_detailed(wo_id=stop.work_order_id, client=client, body=body),
            200,
            "EventApplied",
        )
        assert applied.applied is True and applied.status.value == kind

    batch = _module("models.positions_batch").PositionsBatch(
        pings=[
            _module("models.ping").Ping(
                time=datetime.now(UTC) - timedelta(seconds=60 - 10 * k),
                lat=stop.lat,
                lon=stop.lon,
                accuracy=5.0,
            )
            for k in range(5)
        ]
    )
    stored = _typed(
        _module("api.crew.post_crew_positions").sync_detailed(client=client, body=batch),
        201,
        "PositionsStored",
    )
    assert stored.stored == 5

    submission = _module("models.completion_submission")
    now = datetime.now(UTC).replace(microsecond=0)
    proof = photo(3, lat=stop.lat, lon=stop.lon, taken=now - timedelta(seconds=20))
    body = submission.CompletionSubmission(
        outcome=submission.CompletionSubmissionOutcome("fixed"),
        photos=[
            _module("types").File(
                payload=io.BytesIO(proof), file_name="after.jpg", mime_type="image/jpeg"
            )
        ],
        lat=stop.lat,
        lon=stop.lon,
        accuracy_m=6.0,
        fix_time=now - timedelta(seconds=10),
        captured_at=now - timedelta(seconds=20),
        notes="filled and rolled",
    )
    done = _typed(
        _module("api.crew.complete_work_order").sync_detailed(
            wo_id=stop.work_order_id, client=client, body=body, idempotency_key="generated-client-1"
        ),
        201,
        "Completion",
    )
    assert done.work_order_id == stop.work_order_id and done.photos == 1
    assert all(type(c).__name__ == "CheckResult" for c in done.checks)

    # What the office sees: the crew's latest position, typed as a list of models.
    staff = f.token_for(db, f.user(db, "disp@test", "dispatcher"))["Authorization"].removeprefix(
        "Bearer "
    )
    office = generated.AuthenticatedClient(
        base_url="http://127.0.0.1", token=staff, httpx_args=transport
    )
    positions = _module("api.crew.list_crew_positions").sync_detailed(client=office)
    assert positions.status_code == 200
    assert [type(p).__name__ for p in positions.parsed] == ["CrewPosition"]
    assert [p.to_dict() for p in positions.parsed] == json.loads(positions.content)
