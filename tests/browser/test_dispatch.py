"""The dispatch desk in a real browser (end-to-end scenario 1): a dispatcher signs in, sees
the open work, pins an address-only report, plans a day (the worker solves it for real,
the desk shows its progress), edits it (a refused move explained in words, a drag on the
timeline, a lock), publishes it, and sees it on the map and the timeline."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.models import (
    Crew,
    CrewPosition,
    Depot,
    PlanRoute,
    RoutePlan,
    RouteStop,
    ServiceRequest,
    Shift,
    ShiftBreak,
    WorkOrder,
)
from core.spatial import point
from core.workorders import mark_must_do
from tests import factories as f
from tests.browser.pages import DESKTOP, TIME_ZONE, LiveServer, accessible, shot, sign_in

AGENCY = (
    "Desk Roads"  # this module's own agency: its plans' scope, apart from the other tests' crews
)
DISPATCHER = "desk-dispatcher@example.org"


@pytest.fixture(scope="module")
def desk_day(live: LiveServer) -> dict[str, Any]:
    """Three crews of our own on shift from now for six hours (two for asphalt, one for
    paint), ten pieces of work with places around the centre, one report with only an address."""
    tz = ZoneInfo(TIME_ZONE)
    start = (datetime.now(tz) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    with live.sessions() as s:
        f.service_type(s, "desk_pothole", skill="asphalt", agency=AGENCY)
        f.service_type(s, "desk_paint", skill="paint", agency=AGENCY)
        f.service_type(s, "desk_crane", skill="crane", agency=AGENCY)  # no crew of ours has a crane
        depot = Depot(
            code="desk-yard", name="Desk yard", agency=AGENCY, location=point(f.LON, f.LAT)
        )
        s.add(depot)
        s.flush()
        crews = {}
        for code, skills in (
            ("desk-asphalt-1", ["asphalt"]),
            ("desk-asphalt-2", ["asphalt"]),
            ("desk-paint-1", ["paint"]),
        ):
            crew = f.crew(s, code, skills=skills)
            crew.agency, crew.depot_id = AGENCY, depot.id
            s.add(
                Shift(
                    crew_id=crew.id,
                    starts_at=start,
                    ends_at=start + timedelta(hours=6),
                    start_depot_id=depot.id,
                    end_depot_id=depot.id,
                    breaks=[
                        ShiftBreak(
                            earliest_start=start + timedelta(hours=2),
                            latest_end=start + timedelta(hours=4),
                            minutes=30,
                        )
                    ],
                )
            )
            crews[code] = crew.id
            # Where each crew's phone last said it was: by the yard.
            lon, lat = f.offset(f.LON, f.LAT - 0.004, 900 * (len(crews) - 2))
            s.add(
                CrewPosition(
                    crew_id=crew.id, at=datetime.now(tz), location=point(lon, lat), accuracy_m=8.0
                )
            )
        orders = []
        for i in range(10):
            east = 350 * (i // 2 + 1) * (1 if i % 2 == 0 else -1)
            lon, lat = f.offset(f.LON, f.LAT + (0.002 if i % 3 == 0 else -0.0015), east)
            code = "desk_paint" if i in (4, 7) else "desk_pothole"
            orders.append(
                f.report(
                    s, code, lon=lon, lat=lat, address_string=f"Carrer de la Prova {i + 1}"
                ).work_order.id
            )
        # Some work more urgent than the rest, and one overdue.
        for wo_id, priority in ((orders[0], 5), (orders[3], 4), (orders[6], 1)):
            s.get(WorkOrder, wo_id).priority = priority
        s.get(WorkOrder, orders[1]).due_at = datetime.now(tz) - timedelta(hours=3)
        lon, lat = f.offset(f.LON, f.LAT + 0.0035, 200)
        crane = f.report(
            s, "desk_crane", lon=lon, lat=lat, address_string="Avinguda de la Grua 1"
        ).work_order
        # Urgent, so the day's plans take it in whatever it needs, and must say why they cannot.
        # The day the shifts start on: today, but tomorrow in the last five minutes before
        # midnight (the test plans that day then, as a dispatcher would).
        day = start.date()
        mark_must_do(s, crane, day=day, crew=None, actor=f.SYSTEM, today=datetime.now(tz).date())
        unpinned = f.report(
            s, "desk_pothole", lon=None, lat=None, address_string="Plaça del Poble 3"
        ).request.public_id
        f.user(s, DISPATCHER, "dispatcher")
        s.commit()
    return {"crews": crews, "orders": orders, "unpinned": unpinned, "crane": crane.id, "day": day}


def _plan(live: LiveServer) -> RoutePlan | None:
    with live.sessions() as s:
        return s.scalars(
            select(RoutePlan)
            .where(RoutePlan.scope["agency"].astext == AGENCY)
            .order_by(RoutePlan.id.desc())
        ).first()


def _stops(live: LiveServer, plan_id: int) -> dict[int, tuple[str, int, bool]]:
    """work order id → (crew code, position among the route's jobs, locked)."""
    with live.sessions() as s:
        rows = s.execute(
            select(RouteStop.work_order_id, Crew.code, RouteStop.sequence, RouteStop.locked)
            .join(PlanRoute, PlanRoute.id == RouteStop.route_id)
            .join(Crew, Crew.id == PlanRoute.crew_id)
            .where(PlanRoute.plan_id == plan_id, RouteStop.kind == "job")
            .order_by(Crew.code, RouteStop.sequence)
        ).all()
    out: dict[int, tuple[str, int, bool]] = {}
    count: dict[str, int] = {}
    for wo, crew, _, locked in rows:
        count[crew] = count.get(crew, 0) + 1
        out[wo] = (crew, count[crew], locked)
    return out


def test_a_dispatcher_plans_edits_and_publishes_a_day(
    browser_context, live: LiveServer, worker, desk_day
) -> None:  # noqa: ANN001
    context, watch = browser_context(DESKTOP)
    # The refused move is a 422 on purpose; chromium logs every 4xx answer to a fetch.
    watch.expect(r"status of 422 .*/api/v1/plans/\d+/moves")
    page = context.new_page()
    page.goto("/console/")
    sign_in(page, DISPATCHER)

    # The map with the open work, its key, and the report waiting for a pin.
    page.locator("#dispatch-map .work-pin").first.wait_for()
    assert page.locator("#dispatch-map .work-pin").count() >= 11
    # Overdue shows by its ring and "!", not by colour alone; priorities are in the markers.
    assert page.locator("#dispatch-map .work-pin.overdue", has_text="3!").count() >= 1
    assert page.locator("#dispatch-map .work-pin", has_text="5").count() >= 1
    assert page.locator("#dispatch-map .crew-pin", has_text="desk-asphalt-1").count() == 1
    page.get_by_role("region", name="Key").get_by_text("Desk Pothole").wait_for()
    page.get_by_text("Plaça del Poble 3").wait_for()
    assert (
        page.locator("#plan-date").input_value()
        == datetime.now(ZoneInfo(TIME_ZONE)).date().isoformat()
    )
    accessible(page, "dispatch desk: the map")
    shot(page, "console-dispatch-map")

    # Pin the address-only report with a click on the map.
    page.locator("#pins li", has_text="Plaça del Poble 3").get_by_role(
        "button", name="Place on map"
    ).click()
    page.get_by_text("Click the map where Plaça del Poble 3 is (Escape to stop).").wait_for()
    box = page.locator("#dispatch-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    page.get_by_text(f"Report {desk_day['unpinned']} is on the map.").wait_for()
    with live.sessions() as s:
        req = s.scalar(
            select(ServiceRequest).where(ServiceRequest.public_id == desk_day["unpinned"])
        )
        assert req.location is not None and req.work_order.location is not None
        desk_day["orders"].append(req.work_order_id)

    # Plan the day for our agency with a short limit; the worker solves it.
    page.get_by_label("Scope").select_option(f"agency:{AGENCY}")
    # Long enough for the checks and the screenshot of the solving state on a loaded machine.
    page.get_by_label("Time limit (s)").fill("8")
    if desk_day["day"].isoformat() != page.locator("#plan-date").input_value():
        page.locator("#plan-date").fill(desk_day["day"].isoformat())
    page.get_by_role("button", name="Plan the day").click()
    progress = page.locator("#solve-progress")
    progress.get_by_text("Solving: time used of the limit").wait_for(timeout=30_000)
    page.locator("#best-scheduled").wait_for(timeout=10_000)
    seen = float(page.locator("#solve-bar").get_attribute("value"))
    assert 0 <= seen <= 8
    shot(page, "console-dispatch-solving")
    accessible(page, "dispatch desk: solving")

    # The planned day: routes on the map, numbered stops, a timeline row per crew.
    page.locator("#publish").wait_for(timeout=30_000)
    plan = _plan(live)
    assert plan.status == "ready" and plan.progress["phase"] == "done"
    stops = _stops(live, plan.id)
    assert len(stops) == plan.stats["scheduled"] >= 8
    # The work no crew can do is listed with its reason in words.
    left_out = page.locator("#unassigned li", has_text=f"Work order {desk_day['crane']}")
    left_out.get_by_text(
        "must-do, but no crew on shift in this plan has the skill crane"
    ).wait_for()
    rows = page.locator(".tl-row[role=group]")
    assert {rows.nth(i).get_attribute("aria-label") for i in range(rows.count())} == {
        "Crew desk-asphalt-1",
        "Crew desk-asphalt-2",
        "Crew desk-paint-1",
    }
    assert page.locator(".tl-stop").count() == len(stops)
    assert page.locator("#dispatch-map .stop-pin").count() == len(stops)
    assert page.locator("#dispatch-map path.leaflet-interactive, #dispatch-map path").count() >= 1
    assert page.locator(".tl-break").count() >= 1
    # Times in the city's zone (the browser runs in UTC).
    first_wo, (first_crew, first_pos, _) = next(
        (wo, v) for wo, v in stops.items() if v[0] == "desk-asphalt-1" or v[0] == "desk-asphalt-2"
    )
    with live.sessions() as s:
        start_at = s.scalar(
            select(RouteStop.start_at)
            .where(RouteStop.work_order_id == first_wo)
            .join(PlanRoute, PlanRoute.id == RouteStop.route_id)
            .where(PlanRoute.plan_id == plan.id)
        )
    local = start_at.astimezone(ZoneInfo(TIME_ZONE)).strftime("%H:%M")
    block = page.locator(f".tl-stop[data-wo='{first_wo}']")
    assert local in block.get_attribute("aria-label")
    accessible(page, "dispatch desk: the planned day")
    shot(page, "console-dispatch-planned")

    # A refused move: asphalt work onto the paint crew. The API's words show; nothing changes.
    block.click()
    page.get_by_label("Crew", exact=True).select_option("desk-paint-1")
    page.get_by_role("spinbutton", name="Position").fill("1")
    page.get_by_role("button", name="Move", exact=True).click()
    refusal = page.locator("#edit-refusal")
    refusal.get_by_text("Refused:").wait_for()
    words = refusal.inner_text()
    assert "breaks a constraint" in words and "422" not in words, words
    assert _stops(live, plan.id) == stops
    accessible(page, "dispatch desk: a refused move")
    shot(page, "console-dispatch-refused")

    # A drag on the timeline: a stop onto the other asphalt crew's row, at its start.
    other = "desk-asphalt-2" if first_crew == "desk-asphalt-1" else "desk-asphalt-1"
    track = page.locator(f".tl-track[data-crew='{other}']")
    target = track.bounding_box()
    block = page.locator(f".tl-stop[data-wo='{first_wo}']")
    block.drag_to(track, target_position={"x": 3, "y": target["height"] / 2})
    page.get_by_text(f"Work order {first_wo} moved to {other}, position 1.").wait_for()
    assert _stops(live, plan.id)[first_wo][:2] == (other, 1)

    # The keyboard's way: the move form, then a lock.
    moved = next(wo for wo, v in _stops(live, plan.id).items() if v[0] == first_crew)
    page.locator(f".tl-stop[data-wo='{moved}']").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "move-crew"
    page.keyboard.press("ArrowDown")  # a select steps through its options with the arrows
    page.get_by_label("Crew", exact=True).select_option(other)
    page.get_by_role("spinbutton", name="Position").fill("2")
    page.get_by_role("button", name="Move", exact=True).click()
    page.get_by_text(f"Work order {moved} moved to {other}, position 2.").wait_for()
    assert _stops(live, plan.id)[moved][:2] == (other, 2)
    page.locator(f".tl-stop[data-wo='{moved}']").click()
    page.get_by_role("button", name="Lock stop").click()
    page.locator(f".tl-stop.locked[data-wo='{moved}']").wait_for()
    assert _stops(live, plan.id)[moved][2] is True

    # Remove a stop: it goes back to the pool, and the plan lists it with why.
    removed = next(
        wo for wo, v in _stops(live, plan.id).items() if v[0] == first_crew and wo != first_wo
    )
    page.locator(f".tl-stop[data-wo='{removed}']").click()
    page.get_by_role("button", name="Remove stop").click()
    page.get_by_text(f"Work order {removed} is back in the pool.").wait_for()
    assert removed not in _stops(live, plan.id)
    taken_off = page.locator("#unassigned li", has_text=f"Work order {removed}")
    taken_off.get_by_text(f"taken off {first_crew} by hand").wait_for()

    # Force it in again as must-do for the day (applied when the day is planned again).
    taken_off.get_by_role("button", name="Force in (must-do)").click()
    taken_off.get_by_text("must-do", exact=True).wait_for()
    with live.sessions() as s:
        assert s.get(WorkOrder, removed).must_do_on == plan.plan_date

    # Publish: the work is dispatched to the crews, the plan listed as published.
    page.get_by_role("button", name="Publish to the crews").click()
    page.locator("#plan-panel").get_by_text("published", exact=True).wait_for()
    page.get_by_role("button", name="Re-plan from now").wait_for()
    with live.sessions() as s:
        for wo_id, (crew, _, _) in _stops(live, plan.id).items():
            wo = s.get(WorkOrder, wo_id)
            assert wo.status == "dispatched" and wo.crew.code == crew
    # The day's plans of our agency (the shared live database has other tests' plans too).
    ours = page.locator("#plans li", has_text=f"Agency {AGENCY}")
    assert ours.get_by_text("published").count() == 1
    assert page.locator("#dispatch-map .stop-pin").count() == len(stops) - 1
    accessible(page, "dispatch desk: the published day")
    shot(page, "console-dispatch-published")

    # Re-plan the published day from now: a new version, solved and shown as it was the first.
    page.get_by_label("Time limit (s)").fill("3")
    page.get_by_role("button", name="Re-plan from now").click()
    page.locator("#plans").get_by_text("Version 2 · Agency Desk Roads").wait_for()
    page.locator("#publish").wait_for(timeout=30_000)
    with live.sessions() as s:
        child = s.scalars(select(RoutePlan).where(RoutePlan.parent_id == plan.id)).one()
        assert child.status == "ready" and child.version == 2 and child.progress["phase"] == "done"
    # The must-do work the dispatcher forced in is on a route again.
    assert removed in _stops(live, child.id)
    assert ours.count() == 2
