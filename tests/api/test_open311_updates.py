"""Open311 servicerequestupdates (mySociety's extension, as FixMyStreet reads it), the
expected_datetime rule, and the after photos in `extensions=true`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import ServiceRequest
from tests import factories as f
from tests.factories.updates_history import (
    CREW_EMAIL,
    PII,
    PRIVATE_NOTES,
    T0,
    History,
    build_updates_history,
)

BASE = "/open311/v2"


@pytest.fixture
def history(db: Session) -> History:
    return build_updates_history(db)


def _updates(client, fmt: str = "json", **query: str):  # noqa: ANN001, ANN202
    return client.get(f"{BASE}/servicerequestupdates.{fmt}", query_string=query)


def _expected_updates(h: History) -> list[dict[str, Any]]:
    def upd(
        who: str, status: str, fms: str, at: str, description: str = "", media_url: str = ""
    ) -> dict[str, Any]:
        req = getattr(h, who)
        return {
            "update_id": str(h.events[(who, status)]),
            "service_request_id": req.public_id,
            "status": fms,
            "updated_datetime": at,
            "description": description,
            "media_url": media_url,
            "external_status_code": status,
        }

    after = "http://localhost/media/public/photos/5-after.jpg"
    return [
        upd("a", "received", "OPEN", "2026-03-02T09:00:00+01:00", "Report received."),
        upd(
            "b",
            "received",
            "OPEN",
            "2026-03-02T09:30:00+01:00",
            f"Report received; the same problem was already reported as request {h.a.public_id}.",
        ),
        upd(
            "a",
            "scheduled",
            "ACTION_SCHEDULED",
            "2026-03-02T11:00:00+01:00",
            "Scheduled: a crew has been assigned.",
        ),
        upd(
            "b",
            "scheduled",
            "ACTION_SCHEDULED",
            "2026-03-02T11:00:00+01:00",
            "Scheduled: a crew has been assigned.",
        ),
        upd("c", "received", "OPEN", "2026-03-02T12:00:00+01:00", "Report received."),
        upd(
            "c",
            "no_action_needed",
            "NO_FURTHER_ACTION",
            "2026-03-02T13:00:00+01:00",
            "Painted over by the owner.",
        ),
        upd(
            "a",
            "in_progress",
            "IN_PROGRESS",
            "2026-03-03T11:00:00+01:00",
            "A crew is working on it.",
        ),
        upd(
            "b",
            "in_progress",
            "IN_PROGRESS",
            "2026-03-03T11:00:00+01:00",
            "A crew is working on it.",
        ),
        upd("a", "fixed", "FIXED", "2026-03-03T12:00:00+01:00", "Pothole filled.", after),
        upd("b", "fixed", "FIXED", "2026-03-03T12:00:00+01:00", "Pothole filled.", after),
    ]


WHOLE = {"start_date": "2026-03-02T00:00:00Z", "end_date": "2026-03-04T00:00:00Z"}


# -- servicerequestupdates ------------------------------------------------------------------------


def test_updates_json_are_the_public_timeline_in_order(client, history: History) -> None:  # noqa: ANN001
    resp = _updates(
        client, **WHOLE, api_key="anything"
    )  # api_key is not needed to read, as for requests
    assert resp.status_code == 200, resp.data
    assert resp.content_type == "application/json; charset=utf-8"
    assert resp.get_json() == _expected_updates(history)


def test_updates_xml_has_fixmystreets_shape(client, history: History) -> None:  # noqa: ANN001
    resp = _updates(client, "xml", **WHOLE)
    assert resp.status_code == 200 and resp.content_type == "text/xml; charset=utf-8"
    assert resp.data.startswith(
        b'<?xml version="1.0" encoding="utf-8"?>\n<service_request_updates><request_update>'
    )
    root = ET.fromstring(resp.data)
    assert root.tag == "service_request_updates"
    got = [{child.tag: child.text or "" for child in item} for item in root]
    assert [item.tag for item in root] == ["request_update"] * 10
    assert [list(d) for d in got] == [
        list(e) for e in _expected_updates(history)
    ]  # same fields, same order
    assert got == _expected_updates(history)
    assert b"<media_url />" in resp.data  # no photo: an empty element, never a missing one


def test_updates_never_show_private_notes_or_people(client, history: History) -> None:  # noqa: ANN001
    blob = _updates(client, **WHOLE).get_data(as_text=True) + _updates(
        client, "xml", **WHOLE
    ).get_data(as_text=True)
    for secret in (
        *PRIVATE_NOTES,
        *PII.values(),
        history.a.token,
        history.b.token,
        CREW_EMAIL,
        "acknowledged",
        "private/photos",
        "1-report",
        "3-after",
        "4-before",
        "6-after",
    ):
        assert secret not in blob, secret


def test_updates_date_window_is_inclusive_and_understands_offsets(client, history: History) -> None:  # noqa: ANN001
    everything = _expected_updates(history)
    # Exactly the times of the scheduled and the in-progress updates: both ends included.
    got = _updates(
        client, start_date="2026-03-02T10:00:00Z", end_date="2026-03-03T11:00:00+01:00"
    ).get_json()
    assert got == everything[2:8]
    # An unencoded '+' arrives as a space; a date without a zone is the city's time.
    got = client.get(
        f"{BASE}/servicerequestupdates.json?start_date=2026-03-03T11:00:01+01:00&end_date=2026-03-03T12:00:00"
    ).get_json()
    assert got == everything[8:]
    assert (
        _updates(
            client, start_date="2026-03-05T00:00:00Z", end_date="2026-03-06T00:00:00Z"
        ).get_json()
        == []
    )
    empty = _updates(
        client, "xml", start_date="2026-03-05T00:00:00Z", end_date="2026-03-06T00:00:00Z"
    )
    assert empty.data.endswith(b"<service_request_updates />")


def test_updates_default_to_the_last_day(client, db: Session) -> None:  # noqa: ANN001
    f.service_type(db)
    now = datetime.now(UTC).replace(microsecond=0)
    recent = f.report(db, at=now - timedelta(hours=2)).request
    old = f.report(db, lon=f.offset(f.LON, f.LAT, 500)[0], at=now - timedelta(hours=30)).request
    db.commit()
    assert [u["service_request_id"] for u in _updates(client).get_json()] == [recent.public_id]
    # end_date alone: the day before it; start_date alone: up to now.
    end = (now - timedelta(hours=20)).isoformat()
    assert [u["service_request_id"] for u in _updates(client, end_date=end).get_json()] == [
        old.public_id
    ]
    start = (now - timedelta(days=20)).isoformat()
    assert [u["service_request_id"] for u in _updates(client, start_date=start).get_json()] == [
        old.public_id,
        recent.public_id,
    ]


def test_a_fix_that_did_not_hold_loses_its_photo(client, db: Session, history: History) -> None:  # noqa: ANN001
    a = db.get(ServiceRequest, history.a.id)
    ServiceRequestLifecycle.transition(
        db,
        a,
        "reopened",
        actor=f.SYSTEM,
        at=T0 + timedelta(hours=30),
        note="Reopened.",
        public=True,
    )
    db.commit()
    got = {
        (u["service_request_id"], u["external_status_code"]): u
        for u in _updates(client, **WHOLE).get_json()
    }
    assert got[(history.a.public_id, "fixed")]["media_url"] == ""
    assert got[(history.a.public_id, "reopened")]["status"] == "OPEN"
    assert (
        got[(history.b.public_id, "fixed")]["media_url"]
        == "http://localhost/media/public/photos/5-after.jpg"
    )


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"start_date": "yesterday"}, "start_date must be an ISO 8601 date-time"),
        ({"end_date": "2026-13-01T00:00:00Z"}, "end_date must be an ISO 8601 date-time"),
        (
            {"start_date": "2026-03-02T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"},
            "end_date is before start_date",
        ),
        (
            {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-03-01T00:00:00Z"},
            "spans more than 31 days",
        ),
        ({"start_date": "2020-01-01T00:00:00Z"}, "spans more than 31 days"),
    ],
)
def test_bad_update_windows_are_400_in_the_spec_shape(
    client, history: History, query: dict[str, str], fragment: str
) -> None:  # noqa: ANN001
    resp = _updates(client, **query)
    assert resp.status_code == 400
    (error,) = resp.get_json()
    assert error["code"] == 400 and fragment in error["description"]
    root = ET.fromstring(_updates(client, "xml", **query).data)
    assert (
        root.tag == "errors"
        and root.findtext("error/code") == "400"
        and fragment in root.findtext("error/description")
    )


def test_a_31_day_window_is_accepted(client, history: History) -> None:  # noqa: ANN001
    resp = _updates(client, start_date="2026-02-01T00:00:00Z", end_date="2026-03-04T00:00:00Z")
    assert resp.status_code == 200 and len(resp.get_json()) == 10


def test_updates_check_the_jurisdiction(app, client, history: History) -> None:  # noqa: ANN001
    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], jurisdiction_id="andorra.ad"
    )
    assert _updates(client, **WHOLE, jurisdiction_id="andorra.ad").status_code == 200
    resp = _updates(client, "xml", **WHOLE, jurisdiction_id="paris.fr")
    assert resp.status_code == 404 and "jurisdiction_id" in ET.fromstring(resp.data).findtext(
        "error/description"
    )


def test_updates_query_uses_the_partial_index(db: Session, history: History) -> None:
    from core.public_requests import updates_query

    stmt = updates_query(T0, T0 + timedelta(days=1)).compile(dialect=db.get_bind().dialect)
    db.execute(
        text("SET LOCAL enable_seqscan = off")
    )  # a handful of rows: make the planner show its choice
    # Through the driver with bound parameters, as the endpoint sends it.
    plan = "\n".join(r[0] for r in db.connection().exec_driver_sql(f"EXPLAIN {stmt}", stmt.params))
    assert "ix_status_events_public_request_at" in plan


# -- expected_datetime ---------------------------------------------------------------------------------


def test_expected_datetime_plan_eta_else_sla_due_time_never_past_and_none_when_closed(
    client, db: Session, history: History
) -> None:  # noqa: ANN001
    f.service_type(db, "streetlight", sla_hours=48, skill="electrical")
    soon = datetime(datetime.now(UTC).year + 1, 1, 12, 8, 0, tzinfo=UTC)  # winter: CET
    open_one = f.report(db, "streetlight", at=soon).request
    planned = f.report(db, "streetlight", lon=f.offset(f.LON, f.LAT, 300)[0], at=soon).request
    planned.expected_at = soon + timedelta(hours=23, minutes=30)
    overdue = f.report(db, "streetlight", lon=f.offset(f.LON, f.LAT, 600)[0], at=T0).request
    slipped = f.report(db, "streetlight", lon=f.offset(f.LON, f.LAT, 900)[0], at=T0).request
    slipped.expected_at = T0 + timedelta(hours=3)  # a plan's arrival that has passed
    db.commit()
    ids = ",".join(r.public_id for r in (open_one, planned, overdue, slipped, history.a, history.c))
    got = {
        r["service_request_id"]: r["expected_datetime"]
        for r in client.get(f"{BASE}/requests.json?service_request_id={ids}").get_json()
    }
    assert got == {
        open_one.public_id: f"{soon.year}-01-14T09:00:00+01:00",  # reported + 48 h SLA, no plan yet
        planned.public_id: f"{soon.year}-01-13T08:30:00+01:00",
        overdue.public_id: None,  # due in March: never a promise in the past
        slipped.public_id: None,
        history.a.public_id: None,  # fixed
        history.c.public_id: None,  # closed without a visit
    }
    root = ET.fromstring(client.get(f"{BASE}/requests/{open_one.public_id}.xml").data)
    assert root.findtext("request/expected_datetime") == f"{soon.year}-01-14T09:00:00+01:00"
    root = ET.fromstring(client.get(f"{BASE}/requests/{history.a.public_id}.xml").data)
    assert (
        root.find("request/expected_datetime") is not None
        and root.findtext("request/expected_datetime") == ""
    )


# -- extensions=true photos ------------------------------------------------------------------------------------


def test_extension_photos_add_the_closing_completions_after_photos(
    client, history: History
) -> None:  # noqa: ANN001
    def photos(public_id: str) -> list[dict[str, str]]:
        (body,) = client.get(f"{BASE}/requests/{public_id}.json?extensions=true").get_json()
        return body["photos"]

    base = "http://localhost/media/public/photos"
    after = {
        "kind": "after",
        "url": f"{base}/5-after.jpg",
        "thumbnail_url": f"{base}/5-after-thumb.jpg",
    }
    assert photos(history.a.public_id) == [
        {
            "kind": "report",
            "url": f"{base}/1-report.jpg",
            "thumbnail_url": f"{base}/1-report-thumb.jpg",
        },
        after,
    ]
    assert photos(history.b.public_id) == [after]  # the duplicate was closed by the same work
    assert photos(history.c.public_id) == []
    root = ET.fromstring(
        client.get(f"{BASE}/requests/{history.a.public_id}.xml?extensions=true").data
    )
    assert [
        (p.findtext("kind"), p.findtext("url")) for p in root.findall("request/photos/photo")
    ] == [
        ("report", f"{base}/1-report.jpg"),
        ("after", f"{base}/5-after.jpg"),
    ]


def test_extension_photos_drop_the_after_photo_once_reopened(
    client, db: Session, history: History
) -> None:  # noqa: ANN001
    a = db.get(ServiceRequest, history.a.id)
    ServiceRequestLifecycle.transition(
        db, a, "reopened", actor=f.SYSTEM, at=T0 + timedelta(hours=30), public=True
    )
    db.commit()
    (body,) = client.get(f"{BASE}/requests/{history.a.public_id}.json?extensions=true").get_json()
    assert [p["kind"] for p in body["photos"]] == ["report"]
