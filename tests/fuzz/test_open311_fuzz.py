"""Hypothesis against Open311 GeoReport v2 on the live server (the OpenAPI document does
not describe it): forms and queries of every endpoint, in .json and .xml, with plausible
values, junk, NUL characters, invalid UTF-8, and numbers and dates at the extremes.
No answer is a 5xx, every error is the GeoReport list of {code, description} in the
format asked for, and every other answer parses in that format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import factories as f
from tests.fuzz.conftest import STATS, LiveServer

pytestmark = pytest.mark.fuzz

EXAMPLES = 40

# Text as hostile clients send it: NUL, controls, invalid UTF-8 (bytes go out raw,
# percent-encoded), huge numbers, dates at and beyond the calendar's ends.
HOSTILE = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        b"\xed\xa0\x80",
        b"\xff\xfe",
        b"\xc3",
        "\ufffe",
        "\x1b[0m",
        "<x>&amp;",
        "'; --",
        " ",
        "",
        "99999999999999999999",
        "-1",
        "0",
        "1e999",
        "nan",
        "inf",
        "-0",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-02-30T00:00:00Z",
        "2026-01-01",
        "2026-01-01T00:00:00",
    ]
)
TEXT = st.one_of(HOSTILE, st.text(max_size=40), st.text(st.characters(codec="utf-8"), max_size=300))
DATE = st.one_of(
    TEXT,
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
NUMBER = st.one_of(TEXT, st.floats().map(str), st.integers().map(str))
LAT, LON = st.floats(42.49, 42.52).map(str), st.floats(1.50, 1.55).map(str)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


def params(**fields: st.SearchStrategy) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """Some of `fields` (absent when None), sometimes one more parameter nobody expects."""
    pairs = st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()})
    extra = st.lists(st.tuples(TEXT.filter(lambda k: isinstance(k, str)), TEXT), max_size=2)
    return st.builds(lambda d, e: [(k, v) for k, v in d.items() if v is not None] + e, pairs, extra)


SEARCH = params(
    service_request_id=st.one_of(
        TEXT, st.lists(st.integers(-5, 10).map(str), max_size=5).map(",".join)
    ),
    service_code=st.one_of(TEXT, st.sampled_from(["pothole", "graffiti", "pothole,graffiti"])),
    start_date=DATE,
    end_date=DATE,
    status=st.one_of(TEXT, st.sampled_from(["open", "closed", "open,closed"])),
    page=NUMBER,
    page_size=NUMBER,
    extensions=st.one_of(TEXT, st.just("true")),
    jurisdiction_id=TEXT,
    lat=st.one_of(LAT, NUMBER),
    long=st.one_of(LON, NUMBER),
)
POST = params(
    api_key=st.one_of(st.just(f.API_KEY), TEXT),
    service_code=st.one_of(st.sampled_from(["pothole", "graffiti"]), TEXT),
    lat=st.one_of(LAT, NUMBER),
    long=st.one_of(LON, NUMBER),
    address_string=TEXT,
    address_id=TEXT,
    description=TEXT,
    email=st.one_of(st.emails(), TEXT),
    first_name=TEXT,
    last_name=TEXT,
    phone=TEXT,
    device_id=TEXT,
    account_id=TEXT,
    media_url=st.one_of(st.just("https://example.org/p.jpg"), TEXT),
    zipcode=TEXT,
    jurisdiction_id=TEXT,
    **{
        "attribute[size]": st.one_of(st.sampled_from(["small", "large"]), TEXT),
        "attribute[depth_cm]": NUMBER,
        "attribute[seen_at]": DATE,
        "attribute[hazards][]": st.one_of(st.just("water"), TEXT),
        "attribute[]": TEXT,
    },
)
# A resident's comment as FixMyStreet posts it (the seeded requests' ids are small numbers).
POST_UPDATE = params(
    api_key=st.one_of(st.just(f.API_KEY), TEXT),
    service_request_id=st.one_of(st.integers(-1, 8).map(str), TEXT),
    update_id=st.one_of(st.integers(0, 3).map(str), TEXT),
    description=TEXT,
    updated_datetime=DATE,
    status=st.one_of(st.sampled_from(["OPEN", "CLOSED", "FIXED", "REOPEN", "IN_PROGRESS"]), TEXT),
    first_name=TEXT,
    last_name=TEXT,
    email=st.one_of(st.emails(), TEXT),
    phone=TEXT,
    media_url=st.one_of(st.just("https://example.org/c.jpg"), TEXT),
    jurisdiction_id=TEXT,
)
PATH_PART = st.one_of(
    TEXT.filter(lambda t: isinstance(t, str) and t and "/" not in t and t not in {".", ".."}),
    st.sampled_from(["pothole", "graffiti", "1", "2"]),
)

# (method, path template, strategy of the parameters)
ENDPOINTS = {
    "discovery": ("GET", "/open311/v2/discovery.{fmt}", params(jurisdiction_id=TEXT)),
    "services": ("GET", "/open311/v2/services.{fmt}", params(jurisdiction_id=TEXT)),
    "service_definition": (
        "GET",
        "/open311/v2/services/{part}.{fmt}",
        params(jurisdiction_id=TEXT),
    ),
    "requests": ("GET", "/open311/v2/requests.{fmt}", SEARCH),
    "request": (
        "GET",
        "/open311/v2/requests/{part}.{fmt}",
        params(extensions=TEXT, jurisdiction_id=TEXT),
    ),
    "token": ("GET", "/open311/v2/tokens/{part}.{fmt}", params(jurisdiction_id=TEXT)),
    "updates": (
        "GET",
        "/open311/v2/servicerequestupdates.{fmt}",
        params(start_date=DATE, end_date=DATE, api_key=TEXT),
    ),
    "post_request": ("POST", "/open311/v2/requests.{fmt}", POST),
    "post_update": ("POST", "/open311/v2/servicerequestupdates.{fmt}", POST_UPDATE),
}


def check_answer(r: requests.Response, fmt: str) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    if r.status_code == 304:
        return
    if fmt == "xml":
        root = ET.fromstring(r.content)  # well-formed, whatever came in
        if r.status_code >= 400:
            assert root.tag == "errors" and len(root) >= 1, r.text[:500]
            for error in root:
                assert (
                    error.tag == "error"
                    and error.findtext("code") == str(r.status_code)
                    and error.findtext("description")
                ), r.text[:500]
        return
    body = json.loads(r.content)
    if r.status_code >= 400:
        assert isinstance(body, list) and body, r.text[:500]
        for error in body:
            assert set(error) == {"code", "description"} and error["code"] == r.status_code, r.text[
                :500
            ]
            assert isinstance(error["description"], str) and error["description"]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_open311_never_5xx_and_errors_in_the_georeport_shape(
    live_server: LiveServer, endpoint: str, fmt: str
) -> None:
    method, template, strategy = ENDPOINTS[endpoint]
    http = requests.Session()
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(values=strategy, part=PATH_PART, media=maybe(st.binary(max_size=64)))
    def fuzz(values: list[tuple[str, Any]], part: str, media: bytes | None) -> None:
        nonlocal sent
        sent += 1
        url = live_server.base_url + template.format(
            fmt=fmt, part=requests.utils.quote(part, safe="")
        )
        if method == "GET":
            r = http.get(url, params=values, timeout=60)
        else:
            files = {"media": ("p.jpg", media, "image/jpeg")} if media is not None else None
            r = http.post(url, data=values, files=files, timeout=60)
        check_answer(r, fmt)

    try:
        with STATS.timed():
            fuzz()
    finally:
        STATS.cases[("open311", "public")] += sent
        STATS.operations[("open311", "public")] += 1
        http.close()
