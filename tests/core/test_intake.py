"""Intake: validation, work orders with SLA, duplicates joining, geocoding, pins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import ValidationFailed
from core.intake import GeocodeMatch, pin_request, priority_for
from core.lifecycle.work_order import WorkOrderLifecycle
from core.models import ServiceRequest, StatusEvent, WorkOrder
from core.spatial import lon_lat
from tests import factories as f


def test_new_report_becomes_a_work_order_with_sla_skill_and_minutes(db: Session) -> None:
    st = f.service_type(db, sla_hours=48, skill="asphalt", minutes_on_site=25, base_priority=2)
    at = f.days_ago(1)
    result = f.report(db, at=at)
    wo = result.work_order
    assert result.duplicate_of is None
    assert wo.service_type_id == st.id and wo.status == "new"
    assert wo.due_at == at + timedelta(hours=48)
    assert (wo.skill, wo.minutes_on_site, wo.priority, wo.report_count) == ("asphalt", 25, 2, 1)
    assert lon_lat(wo.location) == pytest.approx((f.LON, f.LAT))
    assert result.request.public_id == str(result.request.id)
    assert result.request.detailed_status == "received"


def test_report_within_radius_joins_and_raises_priority(db: Session) -> None:
    f.service_type(db, duplicate_radius_m=50, base_priority=3)
    first = f.report(db)
    lon, lat = f.offset(f.LON, f.LAT, 40)
    second = f.report(db, lon=lon, lat=lat)
    assert second.work_order.id == first.work_order.id
    assert second.request.duplicate_of_id == first.request.id
    assert second.request.id != first.request.id
    assert first.request.public_id in second.request.service_notice
    assert first.work_order.report_count == 2
    assert first.work_order.priority == 4
    third = f.report(db, lon=lon, lat=lat)
    fourth = f.report(db, lon=lon, lat=lat)
    assert third.request.duplicate_of_id == fourth.request.duplicate_of_id == first.request.id
    assert first.work_order.report_count == 4 and first.work_order.priority == 5
    assert db.scalar(select(func.count()).select_from(WorkOrder)) == 1
    note = db.scalars(
        select(StatusEvent.note)
        .where(StatusEvent.entity == "work_order", StatusEvent.note.like("%joined%"))
        .order_by(StatusEvent.id)
    ).first()
    assert "priority 3 -> 4" in note


def test_priority_grows_with_each_doubling_and_is_capped() -> None:
    assert [priority_for(2, n) for n in (1, 2, 3, 4, 8, 100)] == [2, 3, 3, 4, 5, 5]


def test_report_beyond_radius_or_other_type_or_closed_order_does_not_join(db: Session) -> None:
    f.service_type(db, duplicate_radius_m=50)
    f.service_type(db, "graffiti", skill="graffiti")
    first = f.report(db)
    far_lon, far_lat = f.offset(f.LON, f.LAT, 60)
    assert f.report(db, lon=far_lon, lat=far_lat).duplicate_of is None
    assert f.report(db, "graffiti").duplicate_of is None
    WorkOrderLifecycle.transition(db, first.work_order, "cancelled", actor=f.SYSTEM)
    assert f.report(db).duplicate_of is None


def test_duplicate_radius_zero_disables_joining(db: Session) -> None:
    f.service_type(db, duplicate_radius_m=0)
    f.report(db)
    assert f.report(db).duplicate_of is None


def test_district_is_found_from_the_location(db: Session) -> None:
    f.service_type(db)
    centre = f.district(db)
    assert f.report(db).request.district_id == centre.id
    assert f.report(db, lon=1.60, lat=42.60).request.district_id is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lat": "95", "lon": "1.5"}, "lat"),
        ({"lat": "42.5", "lon": "181"}, "long"),
        ({"lat": "abc", "lon": "1.5"}, "lat"),
        ({"lat": "nan", "lon": "1.5"}, "lat"),
        ({"lat": "42.5", "lon": None}, "long"),
        ({"lat": None, "lon": None}, "lat"),
        # Both wrong: the first checked is named.
        ({"lat": "95", "lon": "181"}, "lat"),
        ({"zipcode": "1" * 33}, "zipcode"),
        ({"address_id": "x" * 256}, "address_id"),
        # The location is checked before the zipcode and address_id, as it always was.
        ({"lat": None, "lon": None, "zipcode": "1" * 33}, "lat"),
        ({"lat": "95", "lon": "1.5", "address_id": "x" * 256}, "lat"),
        # With no coordinates and no address, address_id is what locates the report.
        ({"lat": None, "lon": None, "address_id": "x" * 256}, "address_id"),
        ({"description": "x" * 4001}, "description"),
        ({"attributes": {"size": "huge"}}, "attribute[size]"),
        ({"attributes": {"size": "small", "depth_cm": "deep"}}, "attribute[depth_cm]"),
        ({"attributes": {"size": "small", "seen_at": "yesterday"}}, "attribute[seen_at]"),
        ({"attributes": {"size": "small", "hazards": ["water", "fire"]}}, "attribute[hazards]"),
        ({"attributes": {"size": "small", "landmark": "x" * 256}}, "attribute[landmark]"),
        ({"attributes": {"size": "small", "bogus": "x" * 4001}}, "attribute[bogus]"),
        ({"attributes": {"size": ["small", "large"]}}, "attribute[size]"),
        ({"attributes": {}}, "attribute[size]"),
    ],
)
def test_invalid_reports_are_rejected_and_nothing_is_stored(
    db: Session, kwargs: dict, field: str
) -> None:
    f.service_type(db, attributes=f.full_attributes())
    values = {"lat": str(f.LAT), "lon": str(f.LON), "attributes": {"size": "small"}}
    values.update(kwargs)
    lat, lon = values.pop("lat"), values.pop("lon")
    with pytest.raises(ValidationFailed) as err:
        f.report(db, lat=lat, lon=lon, **values)
    assert err.value.field == field
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0
    assert db.scalar(select(func.count()).select_from(WorkOrder)) == 0


def test_each_step_of_a_report_is_written_with_its_event_in_order(db: Session) -> None:
    # A new report: its work order is created, then the request, each with its event;
    # a second report here joins: the work order's note, then the request's, naming the first.
    f.service_type(db, duplicate_radius_m=50, base_priority=3)
    first = f.report(db)
    second = f.report(db, lon=f.offset(f.LON, f.LAT, 20)[0])
    events = db.execute(
        select(StatusEvent.entity, StatusEvent.entity_id, StatusEvent.to_status, StatusEvent.note)
        .where(StatusEvent.entity.in_(("work_order", "service_request")))
        .order_by(StatusEvent.id)
    ).all()
    wo, one, two = first.work_order.id, first.request.id, second.request.id
    assert [tuple(e) for e in events] == [
        ("work_order", wo, "new", f"created for request {one}"),
        ("service_request", one, "received", "Report received."),
        ("work_order", wo, "new", f"report {two} joined (2 reports); priority 3 -> 4"),
        (
            "service_request",
            two,
            "received",
            f"Report received; the same problem was already reported as request {one}.",
        ),
    ]
    assert second.request.service_notice == (
        f"This problem was already reported as request {one}. "
        "Your report has been added to it and you will be kept informed."
    )
    assert first.request.service_notice is None


def test_attribute_values_are_stored_typed(db: Session) -> None:
    f.service_type(db, attributes=f.full_attributes())
    req = f.report(
        db,
        attributes={
            "size": "large",
            "depth_cm": "7",
            "seen_at": "2026-11-20T18:30:00+01:00",
            "landmark": "bakery",
            "details": "line one\nline two",
            "hazards": ["water", "dark", "water"],
        },
    ).request
    assert req.attributes == {
        "size": "large",
        "depth_cm": 7,
        "seen_at": "2026-11-20T18:30:00+01:00",
        "landmark": "bakery",
        "details": "line one\nline two",
        "hazards": ["water", "dark"],
    }


def test_attributes_beyond_the_definition_are_kept_verbatim(db: Session) -> None:
    # FixMyStreet and other clients add attributes of their own (fixmystreet_id, easting...).
    f.service_type(db, attributes=f.full_attributes())
    req = f.report(
        db, attributes={"size": "small", "fixmystreet_id": "1234", "easting": "530000"}
    ).request
    assert req.attributes == {"size": "small"}
    assert req.extra_attributes == {"fixmystreet_id": "1234", "easting": "530000"}


def test_address_only_report_is_geocoded_when_the_index_knows_it(db: Session) -> None:
    f.service_type(db)

    def geocode(session: Session, text: str) -> GeocodeMatch | None:
        return (
            GeocodeMatch(lon=f.LON, lat=f.LAT, label="Avinguda Meritxell 11", precision="address")
            if "Meritxell" in text
            else None
        )

    placed = f.report(
        db, lon=None, lat=None, address_string="Av. Meritxell 11", geocode=geocode
    ).request
    assert placed.location_source == "geocoded" and lon_lat(placed.location) == pytest.approx(
        (f.LON, f.LAT)
    )
    unplaced = f.report(db, lon=None, lat=None, address_string="behind the church", geocode=geocode)
    assert unplaced.request.needs_pin and unplaced.work_order.location is None
    assert unplaced.request.location_source == "none"


def test_pinning_makes_the_work_order_routable_and_is_audited(db: Session) -> None:
    f.service_type(db)
    centre = f.district(db)
    result = f.report(db, lon=None, lat=None, address_string="behind the church")
    pin_request(db, result.request, f.LON, f.LAT, actor=f.SYSTEM)
    db.flush()
    assert not result.request.needs_pin and result.request.location_source == "pinned"
    assert lon_lat(result.work_order.location) == pytest.approx((f.LON, f.LAT))
    assert result.work_order.district_id == centre.id == result.request.district_id
    notes = db.scalars(
        select(StatusEvent.note).where(
            StatusEvent.entity == "work_order", StatusEvent.entity_id == result.work_order.id
        )
    ).all()
    assert any("pinned" in (n or "") for n in notes)
    with pytest.raises(ValidationFailed):
        pin_request(db, result.request, f.LON, f.LAT, actor=f.SYSTEM)


def test_work_order_demand_comes_from_the_type_rules_and_the_report(db: Session) -> None:
    f.service_type(
        db,
        "bulk_trash",
        skill="bulk_pickup",
        demands={"bulk_items": "attribute:item_count", "truck_slots": 1},
        attributes=[{"code": "item_count", "datatype": "number", "description": "How many?"}],
    )
    assert f.report(db, "bulk_trash", attributes={"item_count": "3.2"}).work_order.demand == {
        "bulk_items": 4,
        "truck_slots": 1,
    }
    far = f.offset(f.LON, f.LAT, 500)[0]
    # No count given: room for one item is still needed.
    assert f.report(db, "bulk_trash", lon=far).work_order.demand == {
        "bulk_items": 1,
        "truck_slots": 1,
    }
