"""The public status page /status/<confirmation number>: what it shows, what it never shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from markupsafe import escape
from sqlalchemy.orm import Session

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


@pytest.fixture
def history(db: Session) -> History:
    return build_updates_history(db)


def _page(client, public_id: str) -> str:  # noqa: ANN001
    resp = client.get(f"/status/{public_id}")
    assert resp.status_code == 200, resp.data
    assert resp.content_type == "text/html; charset=utf-8"
    return resp.get_data(as_text=True)


def _by_id(html: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped, whitespace folded)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match is not None, f"no #{element_id}"
    return " ".join(unescape(re.sub(r"<[^>]+>", "", match.group(2))).split())


def _timeline(html: str) -> list[str]:
    items = re.findall(
        r"<li>(.*?)</li>",
        re.search(r'<ol class="timeline" id="timeline">(.*?)</ol>', html, re.S).group(1),
        re.S,
    )
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", item)).split()) for item in items]


def _images(html: str, figure_class: str) -> list[tuple[str, str]]:
    return re.findall(rf'<figure class="{figure_class}"><a href="([^"]+)"><img src="([^"]+)"', html)


def test_fixed_request_page(client, history: History) -> None:  # noqa: ANN001
    html = _page(client, history.a.public_id)
    assert "<h1>Pothole</h1>" in html
    assert _by_id(html, "status") == "Fixed"
    assert _by_id(html, "status-notes") == "Fixed. The crew's work was checked and confirmed."
    assert 'id="expected"' not in html  # closed: nothing more to expect
    assert _by_id(html, "address") == "Av. Meritxell 11"
    assert _by_id(html, "place") == "42.508043, 1.524371 · see it on OpenStreetMap"
    assert (
        'href="https://www.openstreetmap.org/?mlat=42.508043&amp;mlon=1.524371#map=18/42.508043/1.524371"'
    ) in html
    # Times in the city's zone (Europe/Andorra in the test settings); private steps left out.
    assert _timeline(html) == [
        "Mon 2 Mar 2026, 09:00 CET Received Report received.",
        "Mon 2 Mar 2026, 11:00 CET Scheduled Scheduled: a crew has been assigned.",
        "Tue 3 Mar 2026, 11:00 CET In progress A crew is working on it.",
        "Tue 3 Mar 2026, 12:00 CET Fixed Pothole filled.",
    ]
    assert '<time datetime="2026-03-02T09:00:00+01:00">' in html
    # The resident's photo before, the crew's verified after photo, both public copies.
    assert _images(html, "before") == [
        ("/media/public/photos/1-report.jpg", "/media/public/photos/1-report-thumb.jpg")
    ]
    assert _images(html, "after") == [
        ("/media/public/photos/5-after.jpg", "/media/public/photos/5-after-thumb.jpg")
    ]
    # The resident's own words, escaped.
    assert _by_id(html, "description") == "Deep hole <script>alert(1)</script> by the bus stop"
    assert "<script" not in html


def test_page_has_no_personal_data_tokens_or_internal_notes(client, history: History) -> None:  # noqa: ANN001
    html = _page(client, history.a.public_id) + _page(client, history.b.public_id)
    for secret in (
        *PII.values(),
        history.a.token,
        history.b.token,
        *PRIVATE_NOTES,
        CREW_EMAIL,
        "pothole-1",
        "private/photos",
        "4-before",
        "3-after",
        "2-report",
        "6-after",
        "plan 7 v1",
        "Accepted",
    ):
        assert secret not in html, secret


def test_page_loads_nothing_from_elsewhere(client, history: History) -> None:  # noqa: ANN001
    resp = client.get(f"/status/{history.a.public_id}")
    html = resp.get_data(as_text=True)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert re.findall(r'src="([^"]+)"', html) == [
        "/media/public/photos/1-report-thumb.jpg",
        "/media/public/photos/5-after-thumb.jpg",
    ]
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert 'name="viewport"' in html


def test_duplicate_notice_links_the_first_report(client, history: History) -> None:  # noqa: ANN001
    html = _page(client, history.b.public_id)
    assert _by_id(html, "duplicate").startswith(
        f"This problem had already been reported as request {history.a.public_id}."
    )
    assert f'<a href="/status/{history.a.public_id}">' in html
    # Its own timeline, with the photo of the work that closed both.
    assert _timeline(html)[0] == (
        f"Mon 2 Mar 2026, 09:30 CET Received Report received; the same problem was already "
        f"reported as request {history.a.public_id}."
    )
    assert _images(html, "before") == []
    assert _images(html, "after") == [
        ("/media/public/photos/5-after.jpg", "/media/public/photos/5-after-thumb.jpg")
    ]


def test_closed_without_a_visit(client, history: History) -> None:  # noqa: ANN001
    html = _page(client, history.c.public_id)
    assert "<h1>Graffiti</h1>" in html and "handled by Sanitation" in html
    assert _by_id(html, "status") == "Closed: no action needed"
    assert _timeline(html) == [
        "Mon 2 Mar 2026, 12:00 CET Received Report received.",
        "Mon 2 Mar 2026, 13:00 CET Closed: no action needed Painted over by the owner.",
    ]
    assert "Photos" not in html and 'id="address"' not in html


def test_open_requests_show_the_plan_eta_else_the_sla_due_time_and_never_a_past_time(
    client, db: Session
) -> None:  # noqa: ANN001
    f.service_type(db, sla_hours=48)
    # Winter dates a year on, so the CET offsets below hold.
    soon = datetime(datetime.now(UTC).year + 1, 1, 12, 8, 0, tzinfo=UTC)
    waiting = f.report(db, at=soon).request
    planned = f.report(db, lon=f.offset(f.LON, f.LAT, 300)[0], at=soon).request
    planned.expected_at = soon + timedelta(hours=23, minutes=30)
    late = f.report(db, lon=f.offset(f.LON, f.LAT, 600)[0], at=T0).request
    db.commit()
    html = _page(client, waiting.public_id)
    assert _by_id(html, "status") == "Received"
    assert (
        _by_id(html, "expected")
        == f"Expected by {soon + timedelta(hours=48):%a} 14 Jan {soon.year}, 09:00 CET"
    )
    assert f'<time datetime="{soon.year}-01-14T09:00:00+01:00">' in html and 'id="late"' not in html
    assert (
        _by_id(_page(client, planned.public_id), "expected")
        == f"Expected by {soon + timedelta(days=1):%a} 13 Jan {soon.year}, 08:30 CET"
    )
    # Reported in March with a 48-hour target and never planned: late, and said so.
    html = _page(client, late.public_id)
    assert 'id="expected"' not in html
    assert _by_id(html, "late") == (
        "This is late: the city aimed to deal with it by Wed 4 Mar 2026, 09:00 CET. "
        "It is still on the list, and this page will show when a crew is scheduled."
    )
    # A crew on the way to late work: late still, but in hand.
    from core.workorders import change_status

    crew = f.crew(db, "pothole-9")
    change_status(db, late.work_order, "dispatched", actor=f.SYSTEM, crew_id=crew.id)
    change_status(db, late.work_order, "en_route", actor=f.SYSTEM)
    db.commit()
    assert _by_id(_page(client, late.public_id), "late") == (
        "This is late: the city aimed to deal with it by Wed 4 Mar 2026, 09:00 CET. A crew has it in hand."
    )


def test_summer_time_and_a_report_without_a_place(client, db: Session) -> None:  # noqa: ANN001
    f.service_type(db)
    when = datetime(2026, 7, 1, 6, 15, tzinfo=UTC)
    req = f.report(db, lon=None, lat=None, address_string="Behind the old church", at=when).request
    db.commit()
    html = _page(client, req.public_id)
    assert _by_id(html, "address") == "Behind the old church"
    assert 'id="place"' not in html
    assert _timeline(html) == [
        "Wed 1 Jul 2026, 08:15 CEST Received Report received; staff will place it on the map from the address given."
    ]


def test_reopened_request_no_longer_shows_the_after_photo(
    client, db: Session, history: History
) -> None:  # noqa: ANN001
    from core.lifecycle.service_request import ServiceRequestLifecycle

    a = db.get(ServiceRequest, history.a.id)
    a.status_notes = "Reopened: a new report says the problem is back."
    ServiceRequestLifecycle.transition(
        db,
        a,
        "reopened",
        actor=f.SYSTEM,
        at=T0 + timedelta(days=3),
        note=a.status_notes,
        public=True,
    )
    db.commit()
    html = _page(client, history.a.public_id)
    assert _by_id(html, "status") == "Reopened"
    assert _images(html, "after") == []
    assert (
        _timeline(html)[-1]
        == "Thu 5 Mar 2026, 09:00 CET Reopened Reopened: a new report says the problem is back."
    )


@pytest.mark.parametrize("public_id", ["999999", "x" * 40, "<b>nope"])
def test_unknown_number_is_an_html_404(client, history: History, public_id: str) -> None:  # noqa: ANN001
    resp = client.get(f"/status/{public_id}")
    assert resp.status_code == 404
    assert resp.content_type == "text/html; charset=utf-8"
    html = resp.get_data(as_text=True)
    assert "<h1>Request not found</h1>" in html
    assert f"<strong>{escape(public_id)}</strong>" in html and "<b>" not in html
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
