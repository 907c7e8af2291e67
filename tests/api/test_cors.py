"""Browsers on other origins (CORS): Open311 reads for every page, writes and the staff API
only for the origins a city lists in STREETLOOP_CORS_ORIGINS."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import ServiceRequest
from core.settings import Settings
from tests import factories as f

BASE = "/open311/v2"
CITY_SITE = "https://www.city.example"
ELSEWHERE = "https://evil.example"


@pytest.fixture
def listed(app: Any) -> Any:
    """The app with the city's own web site listed."""
    app.extensions["streetloop.settings"] = dataclasses.replace(
        app.extensions["streetloop.settings"], cors_origins=(CITY_SITE,)
    )
    return app.test_client()


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db)
    f.api_key(db)
    db.commit()


def _report(client: Any, origin: str | None, fmt: str = "json") -> Any:
    headers = {"Origin": origin} if origin else {}
    return client.post(
        f"{BASE}/requests.{fmt}",
        headers=headers,
        data={
            "api_key": f.API_KEY,
            "service_code": "pothole",
            "lat": str(f.LAT),
            "long": str(f.LON),
        },
    )


def _stored(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ServiceRequest))


@pytest.mark.parametrize(
    "path", ["/discovery.json", "/services.xml", "/requests.json", "/servicerequestupdates.xml"]
)
def test_open311_reads_are_open_to_every_page(client: Any, city: None, path: str) -> None:
    r = client.get(f"{BASE}{path}", headers={"Origin": ELSEWHERE})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # Also without an Origin: a shared cache may give this very answer to a page later.
    assert client.get(f"{BASE}{path}").headers["Access-Control-Allow-Origin"] == "*"


def test_an_open311_read_error_can_be_read_by_the_page_too(client: Any, city: None) -> None:
    r = client.get(f"{BASE}/requests/nope.json", headers={"Origin": ELSEWHERE})
    assert r.status_code == 404 and r.headers["Access-Control-Allow-Origin"] == "*"


def test_the_openapi_document_is_readable_from_other_origins(client: Any) -> None:
    r = client.get("/openapi.json", headers={"Origin": ELSEWHERE})
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_a_preflight_for_an_open311_read_is_granted_to_any_origin(client: Any) -> None:
    r = client.options(
        f"{BASE}/requests.json",
        headers={
            "Origin": ELSEWHERE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match",
        },
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD"}
    assert "If-None-Match" in r.headers["Access-Control-Allow-Headers"]
    assert int(r.headers["Access-Control-Max-Age"]) > 0


def test_a_report_from_a_page_on_an_unlisted_origin_is_refused_and_stores_nothing(
    listed: Any, db: Session, city: None
) -> None:
    r = _report(listed, ELSEWHERE, "xml")
    assert r.status_code == 403
    error = ET.fromstring(r.data).find("error")
    assert error is not None and "STREETLOOP_CORS_ORIGINS" in (error.findtext("description") or "")
    assert "Access-Control-Allow-Origin" not in r.headers
    assert _stored(db) == 0


def test_with_no_origin_listed_every_cross_origin_report_is_refused(
    client: Any, db: Session, city: None
) -> None:
    r = _report(client, CITY_SITE)
    assert r.status_code == 403 and r.get_json()[0]["code"] == 403
    assert _stored(db) == 0


def test_a_report_from_the_listed_site_is_taken_and_its_answer_readable(
    listed: Any, db: Session, city: None
) -> None:
    r = _report(listed, CITY_SITE)
    assert r.status_code == 201, r.data
    assert r.headers["Access-Control-Allow-Origin"] == CITY_SITE
    assert "Origin" in r.headers["Vary"]
    assert _stored(db) == 1


def test_servers_send_no_origin_and_are_not_affected(listed: Any, db: Session, city: None) -> None:
    """FixMyStreet and other servers post without an Origin: no CORS applies."""
    r = _report(listed, None)
    assert r.status_code == 201
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_page_of_streetloop_itself_may_post(client: Any, db: Session, city: None) -> None:
    # Browsers send Origin on a same-origin POST too.
    assert _report(client, "http://localhost").status_code == 201


def test_the_preflight_of_a_write_is_granted_to_the_listed_origin_only(listed: Any) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = listed.options(f"{BASE}/requests.json", headers={"Origin": CITY_SITE, **ask})
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == CITY_SITE
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in ok.headers["Access-Control-Allow-Headers"]
    assert "Origin" in ok.headers["Vary"]
    no = listed.options(f"{BASE}/requests.json", headers={"Origin": ELSEWHERE, **ask})
    assert no.status_code == 403
    assert "Access-Control-Allow-Origin" not in no.headers


def test_the_staff_api_answers_the_listed_origin_with_what_its_client_needs(
    listed: Any, db: Session
) -> None:
    headers = f.token_for(db, f.user(db, "dispatcher@example.org", "dispatcher"))
    preflight = listed.options(
        "/api/v1/crews",
        headers={
            "Origin": CITY_SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == CITY_SITE
    assert {"GET", "POST"} <= set(preflight.headers["Access-Control-Allow-Methods"].split(", "))
    allowed = {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type", "idempotency-key", "if-none-match"} <= allowed
    assert (
        "Access-Control-Allow-Credentials" not in preflight.headers
    )  # bearer tokens, never cookies
    r = listed.get("/api/v1/crews", headers={"Origin": CITY_SITE, **headers})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == CITY_SITE
    assert "ETag" in r.headers["Access-Control-Expose-Headers"]
    assert "Origin" in r.headers["Vary"]


def test_the_staff_api_gives_an_unlisted_origin_no_permission(listed: Any, db: Session) -> None:
    preflight = listed.options(
        "/api/v1/crews",
        headers={
            "Origin": ELSEWHERE,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert preflight.get_json()["message"].startswith(f"requests from {ELSEWHERE} are not allowed")
    r = listed.get("/api/v1/app-config", headers={"Origin": ELSEWHERE})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Origin" in r.headers["Vary"]


def test_no_cors_headers_on_the_staff_api_when_no_origin_is_listed(client: Any) -> None:
    r = client.get("/api/v1/app-config", headers={"Origin": CITY_SITE})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_a_preflight_for_a_route_that_does_not_exist_is_a_404(listed: Any) -> None:
    r = listed.options(
        "/api/v1/nope", headers={"Origin": CITY_SITE, "Access-Control-Request-Method": "GET"}
    )
    assert r.status_code == 404


def _env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://u@127.0.0.1/db", **extra}


def test_the_setting_takes_origins_and_refuses_anything_else() -> None:
    s = Settings.from_env(
        _env(
            STREETLOOP_CORS_ORIGINS=" https://www.City.example/ , http://127.0.0.1:8080,https://www.city.example"
            ",https://www.city.example:443, http://intranet:80"
        )
    )
    # A browser's Origin has no port when it is the scheme's own: so is the setting's.
    assert s.cors_origins == (
        "https://www.city.example",
        "http://127.0.0.1:8080",
        "http://intranet",
    )
    assert Settings.from_env(_env()).cors_origins == ()
    for bad in (
        "*",
        "www.city.example",
        "https://www.city.example/report",
        "ftp://city.example",
        "https://user@city.example",
        "https://city.example:99999",
    ):
        with pytest.raises(ValueError, match="STREETLOOP_CORS_ORIGINS"):
            Settings.from_env(_env(STREETLOOP_CORS_ORIGINS=bad))


def test_the_public_url_counts_as_our_own_origin_even_with_a_path(
    app: Any, db: Session, city: None
) -> None:
    """Behind a proxy the Host may differ; STREETLOOP_PUBLIC_URL names our origin then."""
    app.extensions["streetloop.settings"] = dataclasses.replace(
        app.extensions["streetloop.settings"], public_base_url="https://311.city.example/streetloop"
    )
    assert _report(app.test_client(), "https://311.city.example").status_code == 201


def test_a_refused_write_is_refused_before_its_body_is_read(
    listed: Any, db: Session, city: None
) -> None:
    # A NUL in the body would be a 400 from the input guard; the origin check comes first.
    r = listed.post(
        f"{BASE}/requests.json",
        headers={"Origin": ELSEWHERE},
        data={"api_key": f.API_KEY, "service_code": "pothole", "description": "a\x00b"},
    )
    assert r.status_code == 403
