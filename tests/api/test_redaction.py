"""Supervisors redact a request's public text; every public reader shows the redaction,
the original stays readable by supervisors only, and the redaction is audited."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from core.closing import close_work_order
from core.lifecycle import Actor
from core.models import Notification, Redaction, ServiceRequest, StatusEvent, WorkOrder
from core.redaction import redact
from core.workorders import change_status
from tests import factories as f

NAME = "Bartholomew Quince"
DESCRIPTION = f"Pothole outside number 12, {NAME} keeps driving into it"
CLOSING = f"Passed to {NAME} at the water company"
OTHER = "Philippa Marrow"
API = "/api/v1/requests"


@pytest.fixture
def reported(client, db: Session) -> dict[str, Any]:  # noqa: ANN001
    f.service_type(db, attributes=f.full_attributes())
    f.api_key(db)
    staff = {
        role: f.token_for(db, f.user(db, f"{role}@example.org", role))
        for role in ("supervisor", "admin", "dispatcher")
    }
    crew = f.crew(db, "redact-crew")
    staff["crew"] = f.token_for(db, f.user(db, "crew@example.org", "crew", crew=crew))
    db.commit()
    public_id = _post(client, DESCRIPTION)
    req = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
    change_status(db, req.work_order, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
    # A supervisor closes it with a public note that names someone (the closing's note is
    # the request's status notes and its timeline's note both).
    close_work_order(db, req.work_order, actor=f.SYSTEM, outcome="referred", status_notes=CLOSING)
    db.commit()
    return {"id": public_id, "request": req, **staff}


def _post(client, description: str) -> str:  # noqa: ANN001
    posted = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
            "attribute[size]": "small",
            "description": description,
            "email": "r@example.org",
        },
    )
    assert posted.status_code == 201, posted.get_data(as_text=True)
    return posted.get_json()[0]["service_request_id"]


def _everything_public(client, db: Session, public_id: str, crew: dict[str, str]) -> str:  # noqa: ANN001
    """The public views, the crew's route and the outbox's copies (what e-mails and
    webhooks about the request say), as one text."""
    route = client.get("/api/v1/crew/route", headers=crew)
    assert route.status_code == 200
    db.expire_all()
    payloads = db.scalars(
        select(Notification.payload)
        .join(ServiceRequest, ServiceRequest.id == Notification.service_request_id)
        .where(ServiceRequest.public_id == public_id)
    ).all()
    assert payloads, "the closing wrote outbox rows"
    return "\n".join(
        [_public_views(client, public_id), route.get_data(as_text=True), *map(str, payloads)]
    )


def _public_views(client, public_id: str) -> str:  # noqa: ANN001
    """Everything the public can read of the request, as one text."""
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    pages = [
        client.get(f"/open311/v2/requests/{public_id}.json?extensions=true"),
        client.get(f"/open311/v2/requests/{public_id}.xml?extensions=true"),
        client.get(f"/open311/v2/requests.json?service_request_id={public_id}&extensions=true"),
        client.get("/open311/v2/requests.xml?extensions=true"),
        client.get("/open311/v2/servicerequestupdates.json", query_string={"start_date": start}),
        client.get("/open311/v2/servicerequestupdates.xml", query_string={"start_date": start}),
        client.get(f"/status/{public_id}"),
    ]
    for page in pages:
        assert page.status_code == 200, page.request.path
    ET.fromstring(pages[1].data)  # still well-formed
    return "\n".join(p.get_data(as_text=True) for p in pages)


def test_a_redacted_description_and_closing_note_no_longer_show_anywhere_public(
    client, db: Session, reported
) -> None:  # noqa: ANN001
    pid = reported["id"]
    before = _everything_public(client, db, pid, reported["crew"])
    assert DESCRIPTION in before and CLOSING in before
    updated_before = db.scalar(
        select(ServiceRequest.updated_at).where(ServiceRequest.public_id == pid)
    )

    r = client.post(
        f"{API}/{pid}/redactions",
        headers=reported["supervisor"],
        json={
            "field": "description",
            "text": "Pothole outside number 12",
            "reason": "names a resident",
        },
    )
    assert r.status_code == 201, r.get_json()
    assert [(x["field"], x["original"], x["redacted"]) for x in r.get_json()] == [
        ("description", DESCRIPTION, "Pothole outside number 12")
    ]
    r = client.post(
        f"{API}/{pid}/redactions",
        headers=reported["admin"],
        json={"field": "status_notes", "reason": "names a utility employee"},
    )
    assert r.status_code == 201, r.get_json()
    # The status notes, and the same text where the closing wrote it into the timeline.
    assert [(x["field"], x["original"], x["redacted"]) for x in r.get_json()] == [
        ("status_notes", CLOSING, "[redacted]"),
        ("note", CLOSING, "[redacted]"),
    ]

    after = _everything_public(client, db, pid, reported["crew"])
    assert NAME not in after
    assert "Pothole outside number 12" in after and "[redacted]" in after
    body = client.get(f"/open311/v2/requests/{pid}.json?extensions=true").get_json()[0]
    assert (
        body["status_notes"] == "[redacted]"
        and [n["description"] for n in body["notes"]][-1] == "[redacted]"
    )
    # Clients polling by time see that it changed.
    db.expire_all()
    assert (
        db.scalar(select(ServiceRequest.updated_at).where(ServiceRequest.public_id == pid))
        > updated_before
    )

    # The originals: supervisors and admins only.
    kept = client.get(f"{API}/{pid}/redactions", headers=reported["supervisor"]).get_json()
    assert [x["original"] for x in kept] == [DESCRIPTION, CLOSING, CLOSING]
    assert client.get(f"{API}/{pid}/redactions", headers=reported["dispatcher"]).status_code == 403
    assert NAME not in client.get(f"{API}/{pid}", headers=reported["dispatcher"]).get_data(
        as_text=True
    )

    # Audited: who and why, on the request's timeline, not public, without the original.
    events = db.scalars(
        select(StatusEvent)
        .where(
            StatusEvent.entity == "service_request",
            StatusEvent.entity_id == reported["request"].id,
            StatusEvent.note.like("redacted %"),
        )
        .order_by(StatusEvent.id)
    ).all()
    assert [(e.actor, e.public, e.from_status, e.to_status) for e in events] == [
        ("user:supervisor@example.org", False, "referred", "referred"),
        ("user:admin@example.org", False, "referred", "referred"),
    ]
    assert events[0].note == "redacted the description: names a resident"
    assert events[1].note.startswith("redacted the status notes, the note of event ")
    assert all(NAME not in e.note for e in events)
    # The outbox's copy of the closing note follows (the resident's e-mail of the closing).
    payloads = db.scalars(
        select(Notification.payload).where(
            Notification.service_request_id == reported["request"].id
        )
    )
    assert all(NAME not in str(p) for p in payloads)


def test_redacting_one_public_note_of_the_timeline(client, db: Session, reported) -> None:  # noqa: ANN001
    pid = reported["id"]
    timeline = client.get(f"{API}/{pid}", headers=reported["supervisor"]).get_json()["timeline"]
    note = next(e for e in timeline if e["public"] and e["note"] == CLOSING)
    r = client.post(
        f"{API}/{pid}/redactions",
        headers=reported["supervisor"],
        json={
            "field": "note",
            "event_id": note["id"],
            "text": "Passed to the water company",
            "reason": "a name",
        },
    )
    assert r.status_code == 201, r.get_json()
    updates = client.get(
        "/open311/v2/servicerequestupdates.json",
        query_string={"start_date": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
    ).get_json()
    assert "Passed to the water company" in [u["description"] for u in updates]
    assert NAME not in str(updates)
    page = client.get(f"/status/{pid}").get_data(as_text=True)
    assert "Passed to the water company" in page
    # The note is the closing's, which is also the status notes: both are redacted, or
    # the name would still show wherever the status notes are read.
    assert [(x["field"], x["original"], x["redacted"]) for x in r.get_json()] == [
        ("note", CLOSING, "Passed to the water company"),
        ("status_notes", CLOSING, "Passed to the water company"),
    ]
    db.expire_all()
    assert (
        db.get(ServiceRequest, reported["request"].id).status_notes == "Passed to the water company"
    )
    # The description (not redacted here) names the person too: look for the note itself.
    everything = _everything_public(client, db, pid, reported["crew"])
    assert CLOSING not in everything and "Passed to the water company" in everything


def test_redacting_the_status_notes_redacts_them_on_the_duplicates_too(
    client, db: Session, reported
) -> None:  # noqa: ANN001
    """A closing writes its note into every request on the work order, duplicates
    included: redacting it on one request redacts it on all of them."""
    # A fresh pair at one spot: #2 joins #1's work order as a duplicate, then it closes.
    first = _post(client, "Pothole by the bus stop")
    second = _post(client, "Same pothole, still there")
    one = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == first))
    two = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == second))
    assert two.work_order_id == one.work_order_id and two.duplicate_of_id == one.id, "not joined"
    change_status(
        db,
        one.work_order,
        "dispatched",
        actor=f.SYSTEM,
        crew_id=db.get(WorkOrder, reported["request"].work_order_id).crew_id,
    )
    close_work_order(
        db,
        one.work_order,
        actor=f.SYSTEM,
        outcome="referred",
        status_notes=f"Passed to {OTHER} at the gas company",
    )
    db.commit()
    assert OTHER in _everything_public(client, db, second, reported["crew"])

    r = client.post(
        f"{API}/{first}/redactions",
        headers=reported["supervisor"],
        json={"field": "status_notes", "reason": "names a utility employee"},
    )
    assert r.status_code == 201, r.get_json()
    assert [(x["request"], x["field"]) for x in r.get_json()] == [
        (first, "status_notes"),
        (first, "note"),
        (second, "status_notes"),
        (second, "note"),
    ]
    for public_id in (first, second):
        everything = _everything_public(client, db, public_id, reported["crew"])
        assert OTHER not in everything and "[redacted]" in everything, public_id
    # Each request has its own redactions (the originals) and its own audit event.
    for row in (one, two):
        kept = client.get(
            f"{API}/{row.public_id}/redactions", headers=reported["supervisor"]
        ).get_json()
        assert [(x["field"], x["original"], x["redacted"]) for x in kept] == [
            ("status_notes", f"Passed to {OTHER} at the gas company", "[redacted]"),
            ("note", f"Passed to {OTHER} at the gas company", "[redacted]"),
        ], row.public_id
        audit = db.scalars(
            select(StatusEvent).where(
                StatusEvent.entity == "service_request",
                StatusEvent.entity_id == row.id,
                StatusEvent.note.like("redacted %"),
            )
        ).all()
        assert len(audit) == 1 and not audit[0].public and OTHER not in audit[0].note
    # The description of the other request is its own: untouched.
    assert (
        client.get(f"/open311/v2/requests/{second}.json").get_json()[0]["description"]
        == "Same pothole, still there"
    )


def test_a_redacted_description_reaches_the_crews_phone_through_its_change_feed(
    client, db: Session, reported
) -> None:  # noqa: ANN001
    crew = reported["crew"]
    crew_id = db.get(WorkOrder, reported["request"].work_order_id).crew_id
    pid = _post(client, f"Big hole, ask {NAME} at number 3")
    wo = db.scalar(select(ServiceRequest).where(ServiceRequest.public_id == pid)).work_order
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew_id)
    db.commit()
    route = client.get("/api/v1/crew/route", headers=crew).get_json()
    assert NAME in str(route["stops"])
    cursor = route["changes_cursor"]

    r = client.post(
        f"{API}/{pid}/redactions",
        headers=reported["supervisor"],
        json={"field": "description", "text": "Big hole at number 3", "reason": "a name"},
    )
    assert r.status_code == 201, r.get_json()
    changes = client.get(f"/api/v1/crew/changes?since={cursor}", headers=crew).get_json()["changes"]
    assert [(c["work_order_id"], c["change"]) for c in changes] == [(wo.id, "updated")]
    route = client.get("/api/v1/crew/route", headers=crew).get_json()
    assert NAME not in str(route) and "Big hole at number 3" in str(route["stops"])


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"field": "description"}, 422, "reason"),
        ({"field": "description", "reason": "  "}, 422, "reason"),
        ({"field": "title", "reason": "x"}, 422, "field"),
        ({"field": "note", "reason": "x"}, 422, "event_id"),
        ({"field": "description", "event_id": 1, "reason": "x"}, 422, "event_id"),
        ({"field": "note", "event_id": 999999, "reason": "x"}, 404, "event_id"),
        ({"field": "description", "text": DESCRIPTION, "reason": "x"}, 422, "text"),
        ({"field": "description", "text": "x" * 4001, "reason": "x"}, 422, "text"),
    ],
)
def test_bad_redactions_are_refused_and_change_nothing(
    client, db: Session, reported, body, status, field
) -> None:  # noqa: ANN001
    r = client.post(f"{API}/{reported['id']}/redactions", headers=reported["supervisor"], json=body)
    assert r.status_code == status, r.get_json()
    err = r.get_json()
    assert set(err) >= {"code", "status", "message"} and err["code"] == status
    assert field in err.get("errors", {}), err
    db.expire_all()
    assert db.get(ServiceRequest, reported["request"].id).description == DESCRIPTION
    assert db.scalar(select(Redaction.id)) is None


def test_only_supervisors_and_admins_redact_public_text_that_is_there(
    client, db: Session, reported
) -> None:  # noqa: ANN001
    pid, req = reported["id"], reported["request"]
    body = {"field": "description", "reason": "x"}
    assert (
        client.post(
            f"{API}/{pid}/redactions", headers=reported["dispatcher"], json=body
        ).status_code
        == 403
    )
    assert client.post(f"{API}/{pid}/redactions", json=body).status_code == 401
    assert (
        client.post(f"{API}/nope/redactions", headers=reported["supervisor"], json=body).status_code
        == 404
    )
    # A staff-only note is not public text.
    from core.lifecycle.service_request import ServiceRequestLifecycle

    private = ServiceRequestLifecycle.annotate(db, req, actor=f.SYSTEM, note=f"called {NAME} back")
    db.commit()
    r = client.post(
        f"{API}/{pid}/redactions",
        headers=reported["supervisor"],
        json={"field": "note", "event_id": private.id, "reason": "x"},
    )
    assert r.status_code == 422 and "event_id" in r.get_json()["errors"]
    # Nothing to redact: a 409 in the one error format.
    req.description = ""
    db.commit()
    r = client.post(f"{API}/{pid}/redactions", headers=reported["supervisor"], json=body)
    assert (
        r.status_code == 409
        and r.get_json()["code"] == 409
        and "nothing to redact" in r.get_json()["message"]
    )
    assert db.scalar(select(Redaction.id)) is None


def test_the_redaction_endpoints_are_documented(client) -> None:  # noqa: ANN001
    paths = client.get("/openapi.json").get_json()["paths"]
    op = paths["/api/v1/requests/{public_id}/redactions"]
    assert op["post"]["security"] == [{"bearer": []}] and op["get"]["security"] == [{"bearer": []}]
    assert {"201", "404", "409", "422"} <= set(op["post"]["responses"])


def test_a_redaction_racing_a_closing_redacts_what_the_closing_wrote(
    engine: Engine, committed: sessionmaker[Session]
) -> None:
    """The redaction waits for a closing in progress on the same work order (it locks the
    order, then the requests, as closing does) and then redacts the notes the closing
    wrote: no redaction of stale text that leaves the closing's note public."""
    with committed() as s:
        f.service_type(s)
        sup = f.user(s, "supervisor@example.org", "supervisor")
        req = f.report(s, description="a hole").request
        req.status_notes = "A crew is booked"
        s.commit()
        req_id, wo_id, actor = req.id, req.work_order_id, Actor.user(sup.id, sup.email)

    closing = Session(engine)
    errors: list[BaseException] = []

    def redact_in_parallel() -> None:
        try:
            with Session(engine) as other:
                mine = other.get(ServiceRequest, req_id)
                redact(other, mine, field="status_notes", reason="a name", actor=actor)
                other.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        wo = closing.scalar(select(WorkOrder).where(WorkOrder.id == wo_id).with_for_update())
        close_work_order(closing, wo, actor=f.SYSTEM, outcome="referred", status_notes=CLOSING)
        closing.flush()
        worker = threading.Thread(target=redact_in_parallel)
        worker.start()
        with engine.connect() as watch:
            for _ in range(100):
                if errors or not worker.is_alive():
                    pytest.fail(
                        f"the redaction did not wait for the closing: {errors or 'it went ahead'}"
                    )
                waiting = watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar()
                watch.rollback()  # pg_stat_activity is a snapshot taken once per transaction
                if waiting:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the redaction did not wait for the closing")
        closing.commit()
        worker.join(10)
        assert not worker.is_alive() and not errors, errors
    finally:
        closing.close()
    with committed() as s:
        assert s.get(ServiceRequest, req_id).status_notes == "[redacted]"
        assert [
            r.original
            for r in s.scalars(select(Redaction).where(Redaction.field == "status_notes"))
        ] == [CLOSING]
        public = s.scalars(
            select(StatusEvent.note).where(
                StatusEvent.entity == "service_request",
                StatusEvent.entity_id == req_id,
                StatusEvent.public,
            )
        ).all()
        assert all(NAME not in (n or "") for n in public), public
