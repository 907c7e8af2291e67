"""/api/v1/work-orders: filters, order, detail, and staff transitions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import WorkOrder
from core.workorders import change_status
from tests import factories as f


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


def ids(r: Any) -> list[int]:
    assert r.status_code == 200, r.get_json()
    return [item["id"] for item in r.get_json()["items"]]


def order_at(
    db: Session, code: str = "pothole", metres_east: float = 0, days: float = 1, **kwargs: Any
) -> WorkOrder:
    lon, lat = f.offset(f.LON, f.LAT, metres_east)
    return f.report(db, code, lon=lon, lat=lat, at=f.days_ago(days), **kwargs).work_order


def transition(client: Any, headers: dict[str, str], wo: WorkOrder, **body: Any) -> Any:
    return client.post(f"/api/v1/work-orders/{wo.id}/transitions", json=body, headers=headers)


def dispatch(db: Session, wo: WorkOrder, crew_code: str = "pothole-1") -> None:
    from sqlalchemy import select

    from core.models import Crew

    crew_id = db.scalar(select(Crew.id).where(Crew.code == crew_code))
    change_status(db, wo, "dispatched", actor=f.SYSTEM, crew_id=crew_id)
    db.flush()


# -- list --------------------------------------------------------------------------------


def test_ordered_by_priority_then_due_at(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, "pothole", sla_hours=72, base_priority=3)
    f.service_type(db, "streetlight", sla_hours=24, base_priority=3, skill="electric")
    f.service_type(db, "gas_leak", sla_hours=4, base_priority=5, skill="gas")
    late_pothole = order_at(db, "pothole", 0, days=1)  # p3, due in 2 days
    early_pothole = order_at(db, "pothole", 500, days=2)  # p3, due in 1 day
    light = order_at(db, "streetlight", 0, days=0.5)  # p3, due in 12 h
    gas = order_at(db, "gas_leak", 0, days=0.1)  # p5
    r = client.get("/api/v1/work-orders", headers=dispatcher)
    assert ids(r) == [gas.id, light.id, early_pothole.id, late_pothole.id]
    assert [w["priority"] for w in r.get_json()["items"]] == [5, 3, 3, 3]
    assert r.get_json()["total"] == 4

    page = client.get(
        "/api/v1/work-orders", query_string={"page": 2, "page_size": 3}, headers=dispatcher
    )
    assert ids(page) == [late_pothole.id]
    assert (page.get_json()["page"], page.get_json()["page_size"], page.get_json()["total"]) == (
        2,
        3,
        4,
    )


def test_list_item_shape(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db, sla_hours=48, minutes_on_site=25, skill="asphalt")
    f.district(db, "centre")
    result = f.report(db, at=f.days_ago(1))
    second = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0])  # joins the same order
    item = client.get("/api/v1/work-orders", headers=dispatcher).get_json()["items"][0]
    wo = result.work_order
    assert item["id"] == wo.id
    assert (item["status"], item["service_code"], item["priority"], item["report_count"]) == (
        "new",
        "pothole",
        4,
        2,
    )
    assert (item["skill"], item["minutes_on_site"], item["district"], item["crew"]) == (
        "asphalt",
        25,
        "centre",
        None,
    )
    assert item["location"] == {"lat": f.LAT, "lon": f.LON}
    assert item["service_request_ids"] == [result.request.public_id, second.request.public_id]


def test_filter_by_status_service_code_and_district(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, "pothole")
    f.service_type(db, "graffiti", skill="paint")
    f.crew(db)
    f.district(db, "west", bbox=(1.50, 42.49, 1.52, 42.52))
    f.district(db, "east", bbox=(1.52, 42.49, 1.55, 42.52))
    east_pothole = order_at(db, "pothole", 0)
    west_graffiti = f.report(db, "graffiti", lon=1.51, lat=42.50).work_order
    cancelled = order_at(db, "pothole", 800)
    change_status(db, cancelled, "cancelled", actor=f.SYSTEM)
    db.flush()

    def q(**params: str) -> list[int]:
        return sorted(
            ids(client.get("/api/v1/work-orders", query_string=params, headers=dispatcher))
        )

    assert q(status="new") == sorted([east_pothole.id, west_graffiti.id])
    assert q(status="cancelled") == [cancelled.id]
    assert q(status="new,cancelled") == sorted([east_pothole.id, west_graffiti.id, cancelled.id])
    assert q(service_code="graffiti") == [west_graffiti.id]
    assert q(service_code="graffiti,pothole", status="new") == sorted(
        [east_pothole.id, west_graffiti.id]
    )
    assert q(district="west") == [west_graffiti.id]
    assert q(district="east", status="new") == [east_pothole.id]

    bad = client.get("/api/v1/work-orders", query_string={"status": "open"}, headers=dispatcher)
    assert bad.status_code == 422
    assert bad.get_json()["message"] == "unknown status 'open'"
    assert list(bad.get_json()["errors"]) == ["status"]


def test_filter_by_crew(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    f.crew(db, "pothole-1")
    f.crew(db, "pothole-2")
    one = order_at(db, metres_east=0)
    two = order_at(db, metres_east=500)
    order_at(db, metres_east=1000)
    dispatch(db, one, "pothole-1")
    dispatch(db, two, "pothole-2")
    r = client.get("/api/v1/work-orders", query_string={"crew": "pothole-1"}, headers=dispatcher)
    assert ids(r) == [one.id]
    assert r.get_json()["items"][0]["crew"] == "pothole-1"
    assert (
        ids(client.get("/api/v1/work-orders", query_string={"crew": "nobody"}, headers=dispatcher))
        == []
    )


def test_filter_needs_location_overdue_and_bbox(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, sla_hours=72)
    overdue = order_at(db, metres_east=0, days=4)
    fresh = order_at(db, metres_east=2000, days=1)
    unplaced = f.report(
        db, lon=None, lat=None, address_string="Carrer Major 1", at=f.days_ago(1)
    ).work_order

    def q(**params: str) -> list[int]:
        return sorted(
            ids(client.get("/api/v1/work-orders", query_string=params, headers=dispatcher))
        )

    assert q(needs_location="true") == [unplaced.id]
    assert q(needs_location="false") == sorted([overdue.id, fresh.id])
    assert q(overdue="true") == [overdue.id]
    assert q(overdue="false") == sorted([fresh.id, unplaced.id])
    assert q(bbox="1.52,42.50,1.53,42.51") == [overdue.id]
    bad = client.get(
        "/api/v1/work-orders", query_string={"bbox": "1.52,42.50,1.53"}, headers=dispatcher
    )
    assert bad.status_code == 422 and list(bad.get_json()["errors"]) == ["bbox"]


# -- detail ------------------------------------------------------------------------------


def test_detail_with_timeline_and_request_ids(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db)
    first = f.report(db, at=f.days_ago(1))
    second = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0])
    wo = first.work_order
    dispatch(db, wo)
    r = client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher)
    assert r.status_code == 200
    body = r.get_json()
    assert body["service_request_ids"] == [first.request.public_id, second.request.public_id]
    assert (body["status"], body["crew"]) == ("dispatched", "pothole-1")
    assert [(e["from_status"], e["to_status"]) for e in body["timeline"]] == [
        (None, "new"),
        ("new", "new"),
        ("new", "dispatched"),
    ]
    assert body["timeline"][0]["note"] == f"created for request {first.request.public_id}"
    assert body["timeline"][1]["note"].startswith(
        f"report {second.request.public_id} joined (2 reports)"
    )


def test_unknown_work_order_is_404(client: Any, dispatcher: dict[str, str]) -> None:
    r = client.get("/api/v1/work-orders/999999", headers=dispatcher)
    assert r.status_code == 404
    assert r.get_json() == {
        "code": 404,
        "status": "Not Found",
        "message": "work order 999999 not found",
    }
    r = client.post(
        "/api/v1/work-orders/999999/transitions", json={"to": "cancelled"}, headers=dispatcher
    )
    assert r.status_code == 404


# -- transitions ----------------------------------------------------------------------------


def test_dispatch_to_a_crew_schedules_the_requests(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db, "pothole-1", skills=["asphalt", "signs"])
    first = f.report(db, at=f.days_ago(1))
    second = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0])
    wo = first.work_order
    r = transition(
        client, dispatcher, wo, to="dispatched", crew="pothole-1", note="first thing tomorrow"
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["status"], body["crew"]) == ("dispatched", "pothole-1")
    last = body["timeline"][-1]
    assert (last["from_status"], last["to_status"], last["note"], last["actor"]) == (
        "new",
        "dispatched",
        "first thing tomorrow",
        "user:disp@example.org",
    )

    for req in (first.request, second.request):
        detail = client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher).get_json()
        assert detail["detailed_status"] == "scheduled"
        assert detail["status"] == "open"
        event = detail["timeline"][-1]
        assert (event["from_status"], event["to_status"], event["note"], event["public"]) == (
            "received",
            "scheduled",
            "Scheduled: a crew has been assigned.",
            True,
        )

    listed = client.get(
        "/api/v1/work-orders",
        query_string={"crew": "pothole-1", "status": "dispatched"},
        headers=dispatcher,
    )
    assert ids(listed) == [wo.id]


def test_dispatch_to_a_crew_lacking_the_skill_is_422(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, skill="asphalt")
    f.crew(db, "painters", skills=["paint"])
    result = f.report(db)
    r = transition(client, dispatcher, result.work_order, to="dispatched", crew="painters")
    assert r.status_code == 422
    body = r.get_json()
    assert body["message"] == "crew painters lacks the skill 'asphalt' this work needs"
    assert body["errors"] == {"crew": ["missing skill"]}
    db.refresh(result.work_order)
    assert (result.work_order.status, result.work_order.crew_id) == ("new", None)
    detail = client.get(
        f"/api/v1/requests/{result.request.public_id}", headers=dispatcher
    ).get_json()
    assert detail["detailed_status"] == "received"


def test_dispatch_to_unknown_or_inactive_crew_is_422(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db, "retired").active = False
    db.flush()
    wo = f.report(db).work_order
    for code in ("nobody", "retired"):
        r = transition(client, dispatcher, wo, to="dispatched", crew=code)
        assert r.status_code == 422
        assert r.get_json()["errors"] == {"crew": ["unknown or inactive crew"]}


def test_dispatch_without_crew_or_location_is_422(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db)
    wo = f.report(db).work_order
    r = transition(client, dispatcher, wo, to="dispatched")
    assert r.status_code == 422
    assert r.get_json()["errors"]["error_code"] == "invalid"
    assert set(r.get_json()["errors"]) == {"crew_id", "error_code"}

    unplaced = f.report(db, lon=None, lat=None, address_string="Carrer Major 1").work_order
    r = transition(client, dispatcher, unplaced, to="dispatched", crew="pothole-1")
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"location", "error_code"}


def test_illegal_transition_is_409(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    wo = f.report(db).work_order
    r = transition(client, dispatcher, wo, to="on_site")
    assert r.status_code == 409
    body = r.get_json()
    assert set(body) == {"code", "status", "message", "errors"}
    assert (body["code"], body["status"]) == (409, "Conflict")
    assert body["message"] == f"work order {wo.id} cannot go from 'new' to 'on_site'"
    assert body["errors"]["error_code"] == "illegal_transition"
    assert body["errors"]["detail"] == {
        "current": "new",
        "target": "on_site",
        "allowed": ["cancelled", "closed", "dispatched", "planned"],
    }
    detail = client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher).get_json()
    assert detail["status"] == "new" and len(detail["timeline"]) == 1


@pytest.mark.parametrize("target", ["completed", "verified", "rejected", "closed"])
def test_staff_cannot_complete_or_verify(
    client: Any, db: Session, dispatcher: dict[str, str], target: str
) -> None:
    f.service_type(db)
    f.crew(db)
    wo = f.report(db).work_order
    dispatch(db, wo)
    change_status(db, wo, "on_site", actor=f.SYSTEM)  # "completed" would be legal from here
    db.flush()
    r = transition(client, dispatcher, wo, to=target)
    assert r.status_code == 409
    body = r.get_json()
    assert body["errors"]["error_code"] == "illegal_transition"
    assert (
        body["message"]
        == f"work orders reach {target!r} through a crew completion or a supervisor review, not directly"
    )
    db.refresh(wo)
    assert wo.status == "on_site"


def test_unknown_target_is_422(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    wo = f.report(db).work_order
    r = transition(client, dispatcher, wo, to="done")
    assert r.status_code == 422
    assert list(r.get_json()["errors"]) == ["to"]


def test_unable_needs_a_reason(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    f.service_type(db)
    f.crew(db)
    wo = f.report(db).work_order
    dispatch(db, wo)
    r = transition(client, dispatcher, wo, to="unable")
    assert r.status_code == 422
    assert r.get_json()["errors"] == {
        "reason": [
            "'unable' needs a reason, one of: blocked_by_vehicle, needs_equipment, needs_other_crew, "
            "no_access, not_found, other, unsafe, weather"
        ]
    }
    bad = transition(client, dispatcher, wo, to="unable", reason="tired")
    assert bad.status_code == 422 and list(bad.get_json()["errors"]) == ["reason"]
    db.refresh(wo)
    assert wo.status == "dispatched"

    ok = transition(
        client, dispatcher, wo, to="unable", reason="blocked_by_vehicle", note="van on the hole"
    )
    assert ok.status_code == 200, ok.get_json()
    assert (ok.get_json()["status"], ok.get_json()["unable_reason"]) == (
        "unable",
        "blocked_by_vehicle",
    )


def test_cancel_cancels_the_linked_requests(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    first = f.report(db, at=f.days_ago(1))
    second = f.report(db, lon=f.offset(f.LON, f.LAT, 10)[0])
    # Cancelling closes residents' requests without any work done: a supervisor's decision.
    refused = transition(client, dispatcher, first.work_order, to="cancelled", note="private land")
    assert refused.status_code == 403
    assert (
        client.get(f"/api/v1/requests/{first.request.public_id}", headers=dispatcher).get_json()[
            "status"
        ]
        == "open"
    )
    supervisor = f.token_for(db, f.user(db, "sup@example.org", "supervisor"))
    r = transition(client, supervisor, first.work_order, to="cancelled", note="private land")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "cancelled"
    for req in (first.request, second.request):
        detail = client.get(f"/api/v1/requests/{req.public_id}", headers=dispatcher).get_json()
        assert (detail["detailed_status"], detail["status"]) == ("cancelled", "closed")
        assert detail["closed_at"] is not None
        assert detail["timeline"][-1]["note"] == "Cancelled by the city."
    again = transition(client, dispatcher, first.work_order, to="new")
    assert (
        again.status_code == 409
        and again.get_json()["errors"]["error_code"] == "illegal_transition"
    )


def test_back_to_new_unassigns_the_crew(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db)
    result = f.report(db)
    dispatch(db, result.work_order)
    r = transition(client, dispatcher, result.work_order, to="new")
    assert r.status_code == 200
    assert (r.get_json()["status"], r.get_json()["crew"]) == ("new", None)
    detail = client.get(
        f"/api/v1/requests/{result.request.public_id}", headers=dispatcher
    ).get_json()
    assert detail["detailed_status"] == "acknowledged"


def test_crew_cannot_use_staff_transitions(client: Any, db: Session) -> None:
    f.service_type(db)
    crew_headers = f.token_for(db, f.user(db, "c@example.org", "crew", crew=f.crew(db)))
    wo = f.report(db).work_order
    r = transition(client, crew_headers, wo, to="cancelled")
    assert r.status_code == 403
    assert client.get("/api/v1/work-orders", headers=crew_headers).status_code == 403


def test_due_at_is_sla_after_the_report(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db, sla_hours=48)
    result = f.report(db, at=f.days_ago(1))
    body = client.get(f"/api/v1/work-orders/{result.work_order.id}", headers=dispatcher).get_json()
    from datetime import datetime

    assert datetime.fromisoformat(body["due_at"]) == result.request.requested_at + timedelta(
        hours=48
    )


def test_crew_is_refused_on_transitions_other_than_dispatch(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    f.service_type(db)
    f.crew(db)
    wo = f.report(db).work_order
    r = client.post(
        f"/api/v1/work-orders/{wo.id}/transitions",
        json={"to": "cancelled", "crew": "pothole-1"},
        headers=dispatcher,
    )
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["crew"]
    assert (
        client.get(f"/api/v1/work-orders/{wo.id}", headers=dispatcher).get_json()["status"] == "new"
    )
