"""Open311 edges: the spec's 1,000 service_request_id values fit through the server and
the app bounds the query itself; an api_key in a write's URL is refused."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.open311.routes import MAX_QUERY_BYTES
from core.models import ServiceRequest
from tests import factories as f

BASE = "/open311/v2"
ROOT = Path(__file__).resolve().parents[2]


def ids_query(ids: list[str]) -> str:
    # As a client library encodes it: the commas as %2C, three bytes each.
    return "service_request_id=" + "%2C".join(ids)


def seven_digit_ids(n: int, first: int = 1_000_000) -> list[str]:
    return [str(first + i) for i in range(n)]


def descriptions(r: Any) -> list[str]:
    return [e["description"] for e in r.get_json()]


# -- through the app ------------------------------------------------------------------


def test_a_thousand_ids_are_answered(client: Any, db: Session) -> None:
    f.service_type(db)
    reports = [f.report(db).request, f.report(db, lon=f.offset(f.LON, f.LAT, 300)[0]).request]
    db.commit()
    ids = [r.public_id for r in reports] + seven_digit_ids(998)
    query = ids_query(ids)
    assert len(query) > 9_000  # what gunicorn's default 4,094-byte request line refused
    r = client.get(f"{BASE}/requests.json?{query}")
    assert r.status_code == 200, r.data
    assert sorted(x["service_request_id"] for x in r.get_json()) == sorted(
        x.public_id for x in reports
    )


def test_more_than_a_thousand_ids_are_a_400(client: Any) -> None:
    r = client.get(f"{BASE}/requests.json?{ids_query(seven_digit_ids(1001))}")
    assert r.status_code == 400
    assert descriptions(r) == ["at most 1000 service_request_id values per call"]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_query_string_over_the_byte_bound_is_a_400(client: Any, fmt: str) -> None:
    # Few ids, but long ones: the byte bound holds whatever the count.
    query = ids_query(["9" * 40] * (MAX_QUERY_BYTES // 40))
    assert len(query) > MAX_QUERY_BYTES
    r = client.get(f"{BASE}/requests.{fmt}?{query}")
    assert r.status_code == 400
    text = r.get_data(as_text=True)
    assert f"the query string may have at most {MAX_QUERY_BYTES} bytes" in text
    if fmt == "json":
        assert r.get_json()[0]["code"] == 400


# -- through gunicorn, as the demo starts it ---------------------------------------------


def demo_gunicorn_flags() -> list[str]:
    """The options the demo script starts gunicorn with, minus the bind address."""
    line = next(
        ln
        for ln in (ROOT / "scripts" / "demo.sh").read_text().splitlines()
        if ln.startswith('"$BIN/gunicorn"')
    )
    words = re.findall(r"'[^']*'|\"[^\"]*\"|\S+", line)
    flags = words[1 : words.index("'api:create_app()'")]
    bind = flags.index("-b")
    return flags[:bind] + flags[bind + 2 :]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def gunicorn(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Starts gunicorn on 127.0.0.1 with the given flags; all are stopped at the end."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(flags: list[str]) -> int:
        port = free_port()
        binary = Path(sys.executable).with_name("gunicorn")
        env = dict(
            os.environ, DATABASE_URL=database_url, STREETLOOP_MEDIA_DIR=str(tmp_path / "media")
        )
        log = open(tmp_path / f"gunicorn-{port}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(binary), *flags, "-w", "1", "-b", f"127.0.0.1:{port}", "api:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((proc, log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / f"gunicorn-{port}.log").read_text()
            try:
                if get(port, f"{BASE}/discovery.json")[0] == 200:
                    return port
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not start within 60 s")

    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_the_demo_server_lifts_gunicorns_request_line_limit() -> None:
    flags = demo_gunicorn_flags()
    assert flags[flags.index("--limit-request-line") + 1] == "0"


def test_a_thousand_ids_through_gunicorn_with_the_demos_flags(
    gunicorn: Any, committed: sessionmaker[Session]
) -> None:
    with committed() as s:
        f.service_type(s)
        public_id = f.report(s).request.public_id
        s.commit()
    target = f"{BASE}/requests.json?{ids_query([public_id, *seven_digit_ids(999)])}"
    assert len(target) > 8_190  # more than gunicorn's largest request-line limit

    port = gunicorn(demo_gunicorn_flags())
    status, body = get(port, target)
    assert status == 200, body[:500]
    assert [r["service_request_id"] for r in json.loads(body)] == [public_id]
    status, body = get(port, f"{BASE}/requests.json?{ids_query(['9' * 40] * 1000)}")
    assert status == 400 and b"the query string may have at most" in body
    with committed() as s:
        assert s.scalar(select(func.count()).select_from(ServiceRequest)) == 1


def test_without_the_flag_gunicorn_refuses_a_thousand_ids(gunicorn: Any) -> None:
    """The reason for the flag: gunicorn's default request line (4,094 bytes) ends near 600 ids."""
    status, body = get(gunicorn([]), f"{BASE}/requests.json?{ids_query(seven_digit_ids(1000))}")
    assert status == 414, body


# -- api_key stays out of URLs ---------------------------------------------------------------


@pytest.fixture
def city(db: Session) -> None:
    f.service_type(db, attributes=f.full_attributes())
    f.api_key(db)
    db.commit()


FORM = {
    "service_code": "pothole",
    "lat": str(f.LAT),
    "long": str(f.LON),
    "attribute[size]": "small",
}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_an_api_key_in_the_url_of_a_post_is_refused(
    client: Any, db: Session, city: None, fmt: str
) -> None:
    before = db.scalar(select(func.count()).select_from(ServiceRequest))
    # Even together with a good key in the body: the one in the URL is already in a log.
    for form in (FORM, {**FORM, "api_key": f.API_KEY}):
        r = client.post(f"{BASE}/requests.{fmt}?api_key={f.API_KEY}", data=form)
        assert r.status_code == 400, r.data
        text = r.get_data(as_text=True)
        assert "send api_key in the form body, not in the URL" in text
        assert f.API_KEY not in text
    assert db.scalar(select(func.count()).select_from(ServiceRequest)) == before


def test_an_api_key_in_the_form_body_still_works(client: Any, city: None) -> None:
    r = client.post(f"{BASE}/requests.json?jurisdiction_id=", data={**FORM, "api_key": f.API_KEY})
    assert r.status_code == 201, r.data


def test_reads_take_no_api_key(client: Any, city: None) -> None:
    """Reads are public and never look at api_key: a key sent with one is ignored, not checked."""
    for path in ("/services.json", "/requests.json", "/discovery.json"):
        assert client.get(f"{BASE}{path}?api_key=wrong").status_code == 200


# -- no personal data in URLs of writes ------------------------------------------------------


def _count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ServiceRequest)) or 0


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_fields_in_the_url_of_a_post_are_refused_by_name_without_their_values(
    client: Any, db: Session, city: None, fmt: str
) -> None:
    """A URL goes into access logs: a write's fields (contact details above all) are read from
    the body only, and any of them in the query string is refused, named, never echoed."""
    before = _count(db)
    r = client.post(
        f"{BASE}/requests.{fmt}?email=jane%40example.org&first_name=Jane&phone=5550199&description=hi",
        data={**FORM, "api_key": f.API_KEY},
    )
    assert r.status_code == 400, r.data
    text = r.get_data(as_text=True)
    assert r.content_type.startswith("application/json" if fmt == "json" else "text/xml"), (
        r.content_type
    )
    for name in ("email", "first_name", "phone", "description"):
        assert name in text
    for value in ("jane", "Jane", "5550199", "example.org"):
        assert value not in text
    if fmt == "json":
        assert [e["code"] for e in r.get_json()] == [400]
    assert _count(db) == before


def test_a_field_only_in_the_url_is_not_read_from_there(
    client: Any, db: Session, city: None
) -> None:
    # Every required field in the query, none in the body: refused, not taken from the URL.
    r = client.post(
        f"{BASE}/requests.json?service_code=pothole&lat={f.LAT}&long={f.LON}",
        data={"api_key": f.API_KEY},
    )
    assert r.status_code == 400, r.data
    assert "service_code" in r.get_data(as_text=True)
    assert _count(db) == 0


def test_a_name_in_the_url_that_could_hold_data_is_counted_not_echoed(
    client: Any, db: Session, city: None
) -> None:
    r = client.post(f"{BASE}/requests.json?jane%40example.org", data={**FORM, "api_key": f.API_KEY})
    assert r.status_code == 400, r.data
    assert "jane" not in r.get_data(as_text=True)
    assert _count(db) == 0


def test_jurisdiction_id_may_be_in_the_url_of_a_post(
    app: Any, client: Any, db: Session, city: None
) -> None:
    """FixMyStreet-style clients send everything in the form body; some put jurisdiction_id
    in the query, which carries nothing personal and is still checked there."""
    from dataclasses import replace

    app.extensions["streetloop.settings"] = replace(
        app.extensions["streetloop.settings"], jurisdiction_id="andorra.ad"
    )
    body = {
        **FORM,
        "api_key": f.API_KEY,
        "email": "jane@example.org",
        "first_name": "Jane",
        "description": "hi",
    }
    assert (
        client.post(f"{BASE}/requests.xml?jurisdiction_id=andorra.ad", data=body).status_code == 201
    )
    assert (
        client.post(
            f"{BASE}/requests.xml", data={**body, "jurisdiction_id": "andorra.ad"}
        ).status_code
        == 201
    )
    assert (
        client.post(f"{BASE}/requests.xml?jurisdiction_id=paris.fr", data=body).status_code == 404
    )
    assert (
        client.post(
            f"{BASE}/requests.xml", data={**body, "jurisdiction_id": "paris.fr"}
        ).status_code
        == 404
    )
    assert _count(db) == 2
