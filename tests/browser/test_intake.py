"""Scenario 5: a call-taker records a caller's report at an address and reads back its
confirmation number; a second call about the same spot shows the open report nearby and
joins it; the caller asking "what happened to my report?" hears the status page's words."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import AddressPoint, RequestContact, ServiceRequest
from core.spatial import point
from geo.address import normalize_housenumber, normalize_street
from tests import factories as f
from tests.browser.pages import DESKTOP, TIME_ZONE, LiveServer, accessible, shot, sign_in

AGENT = "intake-agent@example.org"
TYPE = "intake-lamp"
STREET = "Carrer Prat de la Creu"
# A corner of the seeded district no other scenario uses, and a type of our own, so
# nothing another test made can be (or join) what this one records.
LON, LAT = 1.5405, 42.4985
NUMBERS = ["2", "4", "6", "8", "10", "12", "14"]
SPACING_M = 15


@pytest.fixture(scope="module")
def desk_city(live: LiveServer) -> dict[str, Any]:
    with live.sessions() as s:
        f.user(s, AGENT, "call_taker")
        f.service_type(
            s,
            TYPE,
            name="Street lamp out",
            agency="Lighting",
            skill="electric",
            duplicate_radius_m=40,
            attributes=[
                {
                    "code": "lamps",
                    "datatype": "singlevaluelist",
                    "description": "Lamps out",
                    "required": True,
                    "order": 1,
                    "values": [
                        {"key": "one", "name": "One lamp"},
                        {"key": "several", "name": "Several lamps"},
                    ],
                },
                {
                    "code": "pole",
                    "datatype": "string",
                    "description": "Number on the pole",
                    "order": 2,
                    "datatype_description": "printed on a plate, about head height",
                },
                {
                    "code": "poles_out",
                    "datatype": "number",
                    "description": "How many poles",
                    "order": 3,
                },
                {"code": "since", "datatype": "datetime", "description": "Dark since", "order": 4},
                {
                    "code": "hazards",
                    "datatype": "multivaluelist",
                    "description": "Dangers",
                    "order": 5,
                    "values": [
                        {"key": "crossing", "name": "Dark crossing"},
                        {"key": "wire", "name": "Hanging wire"},
                    ],
                },
                {"code": "details", "datatype": "text", "description": "Anything else", "order": 6},
            ],
        )
        for i, number in enumerate(NUMBERS):
            lon, lat = f.offset(LON, LAT, i * SPACING_M)
            s.add(
                AddressPoint(
                    street=STREET,
                    street_key=normalize_street(STREET),
                    housenumber=normalize_housenumber(number),
                    postcode="AD500",
                    city="Andorra la Vella",
                    location=point(lon, lat),
                    osm_type="node",
                    osm_id=9_000_000 + i,
                )
            )
        s.commit()
    return {"places": {n: f.offset(LON, LAT, i * SPACING_M) for i, n in enumerate(NUMBERS)}}


def _request(live: LiveServer, public_id: str) -> ServiceRequest:
    with live.sessions() as s:
        req = s.scalar(select(ServiceRequest).where(ServiceRequest.public_id == public_id))
        assert req is not None, public_id
        s.expunge(req)
        return req


def _number_on_screen(page: Any) -> str:
    # The visible number is in groups of three for reading aloud; the digits are the number.
    return re.sub(r"\D", "", page.locator("#intake-number [aria-hidden]").inner_text())


def test_a_call_taker_records_a_call_a_second_call_joins_it_and_a_caller_hears_the_status(
    browser_context: Any, live: LiveServer, desk_city: dict[str, Any]
) -> None:
    context, watch = browser_context(DESKTOP)
    watch.expect(r"status of 422 .*/api/v1/requests")  # the first try leaves out a required answer
    watch.expect(r"status of 404 .*/api/v1/requests/99999999")  # a number nobody was given
    page = context.new_page()
    page.goto("/console/")
    sign_in(page, AGENT)
    page.get_by_text("(call-taker)").wait_for()
    # A call-taker's console has the intake desk only.
    assert page.locator("#desks a").all_inner_texts() == ["Intake"]
    page.get_by_role("heading", name="A caller reports a problem").wait_for()
    accessible(page, "intake desk, empty")

    # -- the first call: "the street light outside Prat de la Creu 10 is out" ----------------
    page.get_by_label("Problem", exact=True).select_option(value=TYPE)
    page.get_by_label("Address the caller gives").fill("prat de la creu 1")
    page.get_by_role("button", name="Carrer Prat de la Creu 10, AD500, Andorra la Vella").wait_for()
    assert page.locator("#intake-address-results button").all_inner_texts() == [
        "Carrer Prat de la Creu 10, AD500, Andorra la Vella",
        "Carrer Prat de la Creu 12, AD500, Andorra la Vella",
        "Carrer Prat de la Creu 14, AD500, Andorra la Vella",
    ]
    page.get_by_text("3 addresses match.").wait_for()
    accessible(page, "intake address search")
    shot(page, "intake-search-desktop")
    # The keyboard picks it as well as the mouse: down to the first match, Enter.
    page.get_by_label("Address the caller gives").press("ArrowDown")
    page.keyboard.press("Enter")
    page.locator("#intake-place").get_by_text(
        "Carrer Prat de la Creu 10, AD500, Andorra la Vella"
    ).wait_for()
    page.get_by_text(
        "No open report of this kind within 40 m. This call makes a new report."
    ).wait_for()

    page.get_by_label("Number on the pole").fill("PC-0417")
    page.get_by_label("How many poles").fill("2")
    page.get_by_label("Dark since").fill("2026-12-01T21:30")
    page.get_by_label("Dark crossing").check()
    page.get_by_label("What the caller says").fill(
        "Caller: dark since last night <b>by the school</b>"
    )
    page.get_by_label("Caller's first name").fill("Núria")
    page.get_by_label("Caller's phone").fill("+376 812 345")
    page.get_by_role("button", name="Record the report").click()
    page.get_by_text("attribute 'lamps' (Lamps out) is required").wait_for()
    accessible(page, "intake refused call")
    page.get_by_label("Lamps out (required)").select_option(label="Several lamps")
    page.get_by_role("button", name="Record the report").click()

    page.get_by_role("heading", name="Report recorded").wait_for()
    first = _number_on_screen(page)
    page.get_by_text("It is a new report").wait_for()
    accessible(page, "intake confirmation read-back")
    shot(page, "intake-confirmation-desktop")
    req = _request(live, first)
    assert (req.channel, req.detailed_status, req.duplicate_of_id, req.address) == (
        "phone",
        "received",
        None,
        "Carrer Prat de la Creu 10, AD500, Andorra la Vella",
    )
    assert req.description == "Caller: dark since last night <b>by the school</b>"
    # The caller's "21:30" is the city's: 20:30 UTC in Andorra's winter.
    assert req.attributes == {
        "lamps": "several",
        "pole": "PC-0417",
        "poles_out": 2,
        "since": "2026-12-01T20:30:00+00:00",
        "hazards": ["crossing"],
    }
    with live.sessions() as s:
        contact = s.scalar(select(RequestContact).where(RequestContact.request_id == req.id))
        assert (contact.first_name, contact.phone) == ("Núria", "+376 812 345")
    assert page.locator("#intake-status").inner_text() == "Received"

    # -- the second call, about the same light: the desk shows the first report and joins it --
    page.get_by_role("button", name="Take the next call").click()
    page.get_by_role("heading", name="A caller reports a problem").wait_for()
    page.get_by_label("Problem", exact=True).select_option(value=TYPE)
    page.get_by_label("Address the caller gives").fill("Prat de la Creu, 12")
    page.get_by_role("button", name="Carrer Prat de la Creu 12, AD500, Andorra la Vella").click()
    joins = page.locator(".candidate[data-outcome='joins']")
    joins.get_by_text(f"Report {first}").wait_for()
    assert "This call will join it" in joins.inner_text()
    assert (
        "Caller: dark since last night <b>by the school</b>" in joins.inner_text()
    )  # the caller's words, as text
    assert "15 m away" in joins.inner_text()
    accessible(page, "intake nearby open report")
    shot(page, "intake-nearby-desktop")

    # The caller says "a bit further along": a click on the map, beside the chosen place
    # (the map centres on it), names the nearest address and keeps the join.
    box = page.locator("#intake-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2 + 25, box["y"] + box["height"] / 2)
    page.locator("#intake-place").get_by_text(
        re.compile(r"Clicked on the map, \d+ m from Carrer Prat de la Creu 1[24]")
    ).wait_for()
    joins.get_by_text(f"Report {first}").wait_for()
    page.get_by_label("Lamps out (required)").select_option(label="One lamp")
    page.get_by_label("What the caller says").fill("Second caller: the lamp by the crossing is out")
    page.get_by_role("button", name="Record the report").click()
    page.get_by_role("heading", name="Report recorded").wait_for()
    second = _number_on_screen(page)
    page.get_by_text(f"It joined report {first}").wait_for()
    shot(page, "intake-joined-desktop")
    assert second != first
    joined = _request(live, second)
    assert (joined.duplicate_of_id, joined.work_order_id, joined.location_source) == (
        req.id,
        req.work_order_id,
        "device",
    )

    # -- "what happened to my report?" ----------------------------------------------------------
    with live.sessions() as s:
        original = s.get(ServiceRequest, req.id)
        ServiceRequestLifecycle.transition(
            s,
            original,
            "acknowledged",
            actor=f.SYSTEM,
            public=True,
            note="The lighting team has the report.",
        )
        s.commit()
    page.get_by_role("link", name="What happened to my report?").click()
    page.get_by_label("Confirmation number").fill(
        " ".join(first)
    )  # read out digit by digit, spaces and all
    page.get_by_role("button", name="Look up").click()
    page.get_by_role("heading", name=f"Report {first}").wait_for()
    status_page = context.new_page()
    status_page.goto(f"/status/{first}")
    words = status_page.locator("#status").inner_text()
    assert words == "Accepted, waiting to be planned"
    assert page.locator("#intake-lookup-status").inner_text() == words
    timeline = page.locator("#intake-lookup-timeline li").all_inner_texts()
    assert "The lighting team has the report." in timeline[-1] and words in timeline[-1]
    assert [t for t in status_page.locator("#timeline li").all_inner_texts() if words in t]
    status_page.close()
    assert page.locator("#intake-lookup-expected").inner_text().startswith("Expected by ")
    reported = req.requested_at.astimezone(ZoneInfo(TIME_ZONE))
    assert (
        f"{reported:%H:%M}" in page.locator(".intake-report dd").nth(2).inner_text()
    )  # the city's clock, not the browser's UTC
    accessible(page, "intake lookup")
    shot(page, "intake-lookup-desktop")

    page.get_by_label("Confirmation number").fill("99999999")
    page.get_by_role("button", name="Look up").click()
    page.get_by_text(
        "No report has the number 99999999. Check the digits with the caller."
    ).wait_for()
    accessible(page, "intake lookup, unknown number")
    assert live.received("GET", "/api/v1/requests/nearby")
