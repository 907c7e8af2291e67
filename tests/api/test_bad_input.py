"""Bad input is a clear 4xx in the one error format, never a 500: ids and cursors beyond
a bigint, NUL characters and lone surrogates in any text, dates far outside the calendar,
a PATCH onto a code that exists, and a body that is not JSON."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Depot, ServiceRequest
from tests import factories as f
from tests.api.errors import error_body

HUGE = "99999999999999999999"  # beyond a bigint
BIGINT_PLUS_ONE = str(2**63)


def _open311_error(r, status: int) -> list[dict]:  # noqa: ANN001
    assert r.status_code == status, r.get_data(as_text=True)
    if r.mimetype == "text/xml":
        text = r.get_data(as_text=True)
        assert f"<errors><error><code>{status}</code><description>" in text
        return []
    body = r.get_json()
    assert (
        isinstance(body, list)
        and body
        and all(set(e) == {"code", "description"} and e["code"] == status for e in body)
    )
    return body


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/work-orders/{HUGE}",
        f"/api/v1/work-orders/{BIGINT_PLUS_ONE}",
        f"/api/v1/users/{HUGE}",
        f"/api/v1/plans/{HUGE}",
        f"/api/v1/shifts/{BIGINT_PLUS_ONE}",
    ],
)
def test_path_ids_beyond_a_bigint_are_404(client, admin, path: str) -> None:  # noqa: ANN001
    error_body(client.get(path, headers=admin), 404)


@pytest.mark.parametrize(
    "url, field",
    [
        (f"/api/v1/work-orders?page={HUGE}", "page"),
        ("/api/v1/requests?page=99999999999999999", "page"),
        (f"/api/v1/crew/changes?since={HUGE}&crew=x", "since"),
        ("/api/v1/plans/late-stops?min_minutes=99999999999999", "min_minutes"),
    ],
)
def test_query_integers_beyond_what_the_database_holds_are_422(
    client, admin, url: str, field: str
) -> None:  # noqa: ANN001
    assert field in error_body(client.get(url, headers=admin), 422)["errors"]


@pytest.mark.parametrize(
    "body",
    [
        '{"email": "a\\u0000@example.org", "password": "p"}',
        '{"email": "\\ud800@example.org", "password": "p"}',
        '{"email": "a@example.org", "password": "p\\udfff"}',
    ],
)
def test_unusable_text_in_the_unauthenticated_sign_in_is_422(client, body: str) -> None:  # noqa: ANN001
    r = client.post("/api/v1/auth/token", data=body, content_type="application/json")
    assert error_body(r, 422)["errors"]


def test_a_surrogate_sent_as_raw_utf8_bytes_is_422_too(client) -> None:  # noqa: ANN001
    # json.loads decodes a bytes body with 'surrogatepass': ED A0 80 becomes "\ud800".
    r = client.post(
        "/api/v1/auth/token",
        data=b'{"email": "\xed\xa0\x80@example.org", "password": "p"}',
        content_type="application/json",
    )
    assert "email" in error_body(r, 422)["errors"]


def test_unusable_text_in_queries_and_nested_json_is_422_naming_the_field(client, admin) -> None:  # noqa: ANN001
    assert "q" in error_body(client.get("/api/v1/requests?q=a%00b", headers=admin), 422)["errors"]
    r = client.post(
        "/api/v1/crews",
        headers=admin,
        json={"code": "c1", "name": "n", "agency": "a", "skills": ["ok", "b\x00d"]},
    )
    assert "skills.1" in error_body(r, 422)["errors"]
    r = client.post(
        "/api/v1/crews",
        headers=admin,
        data='{"code": "c1", "name": "\\ud83d", "agency": "a"}',
        content_type="application/json",
    )
    assert "name" in error_body(r, 422)["errors"]


def test_unusable_text_on_open311_is_a_georeport_400_in_the_asked_format(
    client, db: Session
) -> None:  # noqa: ANN001
    f.service_type(db)
    f.api_key(db)
    db.commit()
    _open311_error(client.get("/open311/v2/requests.xml?service_request_id=a%00"), 400)
    _open311_error(client.get("/open311/v2/requests/a%00.json"), 400)
    form = {
        "api_key": f.API_KEY,
        "service_code": "pothole",
        "lat": str(f.LAT),
        "long": str(f.LON),
        "description": "pot\x00hole",
    }
    _open311_error(client.post("/open311/v2/requests.json", data=form), 400)
    _open311_error(client.post("/open311/v2/requests.xml", data=form), 400)
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == 0


def test_the_status_page_refuses_a_nul_in_its_path(client) -> None:  # noqa: ANN001
    error_body(client.get("/status/R%00"), 422)


@pytest.mark.parametrize(
    "url, field",
    [
        ("/api/v1/citistat?from=0001-01-01&to=9999-12-31", "to"),
        ("/api/v1/citistat?to=9999-12-31", "to"),
        ("/api/v1/shifts?from=9999-12-31", "from"),
        ("/api/v1/work-orders?from=0001-01-01T00:00:00%2B14:00", "from"),
        ("/api/v1/requests?to=9999-12-31T23:59:59-14:00", "to"),
        ("/api/v1/plans?date=9999-12-31", "date"),
        ("/open-data/requests.csv?from=0001-01-01", "from"),
    ],
)
def test_dates_outside_the_calendar_are_422(client, admin, url: str, field: str) -> None:  # noqa: ANN001
    assert field in error_body(client.get(url, headers=admin), 422)["errors"]


@pytest.mark.parametrize(
    "query", ["start_date=9999-12-31T23:59:59-14:00", "end_date=0001-01-01T00:00:00%2B14:00"]
)
@pytest.mark.parametrize(
    "path",
    [
        "/open311/v2/requests.json",
        "/open311/v2/requests.xml",
        "/open311/v2/servicerequestupdates.json",
    ],
)
def test_open311_dates_outside_the_calendar_are_400(client, path: str, query: str) -> None:  # noqa: ANN001
    _open311_error(client.get(f"{path}?{query}"), 400)


def test_citistat_page_refuses_a_year_outside_the_calendar(client) -> None:  # noqa: ANN001
    assert client.get("/citistat?to=9999-12-31").status_code == 422


def test_patching_a_code_onto_one_that_exists_is_409(client, db: Session, admin) -> None:  # noqa: ANN001
    f.depot(db, "yard-1")
    f.depot(db, "yard-2")
    db.commit()
    error_body(client.patch("/api/v1/depots/yard-1", json={"code": "yard-2"}, headers=admin), 409)
    assert sorted(db.scalars(select(Depot.code))) == ["yard-1", "yard-2"]
    renamed = client.patch("/api/v1/depots/yard-1", json={"code": "yard-3"}, headers=admin)
    assert renamed.status_code == 200 and renamed.get_json()["code"] == "yard-3"


def test_a_body_that_is_not_json_has_errors_as_an_object(client, admin) -> None:  # noqa: ANN001
    r = client.post("/api/v1/auth/token", data='{"email": ', content_type="application/json")
    assert isinstance(error_body(r, 400)["errors"], dict)
    r = client.post(
        "/api/v1/service-types", data="not json", content_type="application/json", headers=admin
    )
    assert isinstance(error_body(r, 400)["errors"], dict)
