"""The public CitiStat page in chromium: the district map, readable charts and tables that
fit a 1280 px screen and A4 / Letter paper, with no script and nothing from elsewhere.

The stage's database is shared, so this module seeds a city quarter of its own: six
districts east of the seeded one and requests in June 2025, a fortnight no other test
writes to (the page's figures for it are this module's alone; its map shows every
district of the city, the other tests' included)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.models import Completion, District, ServiceRequest, WorkOrder
from core.spatial import point
from tests import factories as f
from tests.browser.pages import PHONE, SCREENSHOTS, LiveServer, accessible, shot

PERIOD = "from=2025-06-02&to=2025-06-15"
WIDE = {"width": 1280, "height": 900}
# (code, name, lon0, lat0, lon1, lat1); the names are long or carry markup on purpose.
DISTRICTS = [
    ("cs-north-west", "Sant Julià de Lòria nord", 1.56, 42.47, 1.59, 42.49),
    ("cs-north", "Riverside & <Old> Town", 1.59, 42.47, 1.62, 42.49),
    ("cs-north-east", "Les Bons", 1.62, 42.47, 1.65, 42.49),
    ("cs-south-west", "Aixovall", 1.56, 42.45, 1.59, 42.47),
    ("cs-south", "Santa Coloma", 1.59, 42.45, 1.62, 42.47),
    ("cs-south-east", "Quiet Hills", 1.62, 42.45, 1.65, 42.47),  # no request in the period: hatched
]
# Per district: (open and late, closed on time, closed late, verified completions, rejected ones)
WORK = {
    "cs-north-west": (9, 2, 1, 2, 1),
    "cs-north": (1, 8, 0, 6, 0),
    "cs-north-east": (4, 4, 2, 3, 2),
    "cs-south-west": (0, 3, 3, 1, 3),
    "cs-south": (14, 1, 0, 0, 0),
}


def _at(day: int, hour: int = 9) -> datetime:
    return datetime(2025, 6, day, hour, tzinfo=UTC)


@pytest.fixture(scope="module")
def quarter(live: LiveServer) -> dict[str, int]:
    """The districts and a fortnight of their requests and completions; {code: received}."""
    received = {}
    with live.sessions() as s:
        st = f.service_type(
            s,
            "cs-streetlight",
            name="Street light out",
            agency="Lighting",
            sla_hours=48,
            skill="electric",
        )
        crew = f.crew(s, "cs-lights", skills=["electric"])
        user = f.user(s, "citistat-crew@example.org", "crew", crew=crew)
        n = 0
        for code, name, x0, y0, x1, y1 in DISTRICTS:
            d = District(
                code=code,
                name=name,
                geom=f"SRID=4326;MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))",
            )
            s.add(d)
            s.flush()
            if code not in WORK:
                continue
            late_open, on_time, late, verified, rejected = WORK[code]
            where = point((x0 + x1) / 2, (y0 + y1) / 2)
            kinds = ["open"] * late_open + ["on_time"] * on_time + ["late"] * late
            for i, kind in enumerate(kinds):
                n += 1
                at = _at(2 + i % 13)
                closed = {
                    "open": None,
                    "on_time": at + timedelta(hours=20),
                    "late": at + timedelta(hours=70),
                }[kind]
                s.add(
                    ServiceRequest(
                        public_id=f"CITISTAT-{n}",
                        token=f"citistat-token-{n}",
                        service_type_id=st.id,
                        requested_at=at,
                        updated_at=closed or at,
                        district_id=d.id,
                        location=where,
                        description=f"light {n}",
                        closed_at=closed,
                        detailed_status="acknowledged" if closed is None else "no_action_needed",
                    )
                )
            received[code] = len(kinds)
            for i, verdict in enumerate(["auto_verified"] * verified + ["rejected"] * rejected):
                wo = WorkOrder(
                    service_type_id=st.id,
                    priority=3,
                    due_at=_at(20),
                    skill="electric",
                    minutes_on_site=20,
                    location=where,
                    district_id=d.id,
                    crew_id=crew.id,
                )
                s.add(wo)
                s.flush()
                s.add(
                    Completion(
                        work_order_id=wo.id,
                        crew_id=crew.id,
                        user_id=user.id,
                        outcome="fixed",
                        verdict=verdict,
                        submitted_at=_at(3 + i),
                        arrived_at=_at(3 + i),
                        completed_at=_at(3 + i, 10),
                    )
                )
        s.commit()
    return received


def _tables_fit(page: Any) -> list[str]:
    """Every table that is wider than the box it sits in, or cut by it."""
    return page.evaluate("""() => [...document.querySelectorAll('table')].flatMap((t) => {
        const box = t.parentElement.getBoundingClientRect(), r = t.getBoundingClientRect();
        const wrap = t.parentElement;
        const cut = wrap.scrollWidth > wrap.clientWidth + 1 || r.right > box.right + 1
                    || r.right > document.documentElement.clientWidth + 1;
        const name = t.querySelector('caption, th')?.textContent.trim();
        return cut ? [`${name}: ${Math.round(r.width)} px in ${Math.round(box.width)} px`] : [];
    })""")


def _scroll_to(page: Any, selector: str) -> None:
    page.locator(selector).first.evaluate("(e) => e.scrollIntoView({block: 'start'})")


def _small_svg_text(page: Any) -> list[str]:
    """Text inside the charts and the map drawn smaller than 12 CSS px on the page."""
    return page.evaluate("""() => [...document.querySelectorAll('svg text')].flatMap((t) => {
        const size = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
        return size < 11.95 ? [`${t.textContent} (${size.toFixed(1)} px)`] : [];
    })""")


def test_citistat_page_fits_at_1280_and_is_accessible(
    browser_context: Any, live: LiveServer, quarter: dict[str, int]
) -> None:
    context, _watch = browser_context(WIDE)
    page = context.new_page()
    page.goto(f"/citistat?{PERIOD}")
    assert page.locator("script").count() == 0
    # The map: one shape per district of the city, ours among them, each with its title.
    shapes = page.locator("svg.map g.district")
    with live.sessions() as s:
        assert shapes.count() == s.query(District).count()
    north = page.locator('svg.map g.district[data-code="cs-north"]')
    assert north.locator("title").text_content().startswith("Riverside & <Old> Town")
    assert page.locator('svg.map g.district[data-code="cs-south-east"] path.nodata').count() == 1
    assert page.locator(".legend li").count() >= 2
    # The map's text alternative: each district's figures in the table under it.
    received = page.evaluate("""() => Object.fromEntries([...document.querySelector('#by-district-caption')
        .closest('table').tBodies[0].rows].map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]))""")
    names = {code: name for code, name, *_ in DISTRICTS}
    assert {names[code]: n for code, n in quarter.items()} == {
        k: v for k, v in received.items() if k in names.values()
    }
    # Tables, charts and labels all readable at 1280 px.
    assert _tables_fit(page) == []
    assert _small_svg_text(page) == []
    for figure in page.locator("figure").all():
        assert figure.locator("figcaption").inner_text().strip()
    accessible(page, "CitiStat at 1280 px")
    shot(page, "citistat-desktop")
    _scroll_to(page, "#by-district")
    shot(page, "citistat-districts-desktop")
    _scroll_to(page, "#by-district-caption")
    shot(page, "citistat-district-table-desktop")
    _scroll_to(page, "#by-service-type")
    shot(page, "citistat-types-desktop")

    # Each figure is a plain link that reloads the page; the choice survives a new period.
    for label, figure in (
        ("Backlog", "backlog"),
        ("Verified share", "verified"),
        ("On-time rate", "on_time"),
    ):
        page.get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(f"**shade={figure}**")
        assert page.locator('nav.shade a[aria-current="true"]').inner_text() == label
        assert page.locator("svg.map title").first.text_content()
        assert _tables_fit(page) == []
        accessible(page, f"CitiStat shaded by {figure}")
        if figure == "backlog":
            _scroll_to(page, "#map")
            shot(page, "citistat-map-backlog-desktop")
    page.get_by_role("link", name="Backlog", exact=True).click()
    page.get_by_label("From").fill("2025-06-01")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**from=2025-06-01**")
    assert "shade=backlog" in page.url


@pytest.mark.parametrize(("paper", "width_mm"), [("A4", 297), ("Letter", 279.4)])
def test_citistat_prints_on_a4_and_letter_without_cut_columns(
    browser_context: Any, quarter: dict[str, int], paper: str, width_mm: float
) -> None:
    # The printable width of a landscape page (the page's @page asks for landscape and
    # 12 mm margins), in CSS pixels: print layout is a screen of that width in print media.
    printable = round((width_mm - 2 * 12) / 25.4 * 96)
    context, _watch = browser_context({"width": printable, "height": 700})
    page = context.new_page()
    page.goto(f"/citistat?{PERIOD}")
    page.emulate_media(media="print")
    assert _tables_fit(page) == []
    assert _small_svg_text(page) == []
    assert page.locator("form.period").is_hidden()
    _scroll_to(page, "#by-district")
    shot(page, f"citistat-print-{paper.lower()}")
    # Chromium's own PDF of the page on that paper, as the print dialog makes it.
    pdf = page.pdf(format=paper, prefer_css_page_size=True, print_background=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    Path(SCREENSHOTS / f"citistat-{paper.lower()}.pdf").write_bytes(pdf)
    boxes = {b.decode() for b in re.findall(rb"/MediaBox \[([^\]]+)\]", pdf)}
    width_pt, height_pt = (float(v) for v in next(iter(boxes)).split()[2:4])
    assert len(boxes) == 1 and width_pt > height_pt, boxes  # every page landscape, of one size
    assert abs(width_pt - width_mm / 25.4 * 72) < 2, (paper, width_pt)


def test_citistat_page_on_a_phone(browser_context: Any, quarter: dict[str, int]) -> None:
    # Residents open it on phones too: the charts and the map shrink to the screen, the
    # wide tables scroll sideways inside their own box (focusable, so a keyboard can too),
    # and the page itself never does.
    context, _watch = browser_context(PHONE)
    page = context.new_page()
    page.goto(f"/citistat?{PERIOD}")
    assert page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    accessible(page, "CitiStat on a phone")
    _scroll_to(page, "#map")
    shot(page, "citistat-phone")
