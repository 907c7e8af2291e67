"""GET /api/v1/addresses: the intake desk finds the place a caller names, by text as it
is typed or by a click on the map, over the geocoder's address index."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from core.models import AddressPoint
from core.spatial import point
from geo.address import normalize_housenumber, normalize_street
from tests import factories as f
from tests.api.errors import error_body

URL = "/api/v1/addresses"


def _at(
    db: Session,
    street: str,
    housenumber: str | None,
    metres_east: float,
    *,
    city: str = "Andorra la Vella",
    postcode: str | None = "AD500",
    osm_id: int = 0,
) -> None:
    lon, lat = f.offset(f.LON, f.LAT, metres_east)
    db.add(
        AddressPoint(
            street=street,
            street_key=normalize_street(street),
            housenumber=normalize_housenumber(housenumber) if housenumber else None,
            postcode=postcode,
            city=city,
            location=point(lon, lat),
            osm_type="node",
            osm_id=osm_id,
        )
    )


@pytest.fixture
def index(db: Session) -> None:
    for i, hn in enumerate(["10", "2", "3", "1", "12", "25-27"]):
        _at(db, "Carrer Major", hn, 20 * (i + 1), osm_id=i)
    _at(
        db, "Carrer Major", "3", 61, postcode=None, city=None, osm_id=90
    )  # the same building mapped twice: one line
    _at(db, "Carrer Major", None, 50, osm_id=91)  # the street itself, cut into two ways
    _at(db, "Carrer Major", None, 70, osm_id=92)
    _at(
        db, "Carrer Major", "3", 5000, city="Encamp", postcode="AD200", osm_id=93
    )  # a namesake elsewhere
    _at(db, "Plaça Major", "1", 400, osm_id=94)
    _at(db, "Avinguda Meritxell", "12", 600, osm_id=95)
    db.commit()


@pytest.fixture
def agent(db: Session) -> dict[str, str]:
    return f.token_for(db, f.user(db, "agent@example.org", "call_taker"))


def _labels(client: Any, headers: dict[str, str], **query: Any) -> list[str]:
    r = client.get(URL, query_string=query, headers=headers)
    assert r.status_code == 200, r.get_json()
    return [a["label"] for a in r.get_json()]


def test_a_street_as_it_is_typed_lists_the_street_then_its_numbers_in_order(
    client: Any, agent: dict[str, str], index: None
) -> None:
    assert _labels(client, agent, q="carrer maj") == [
        "Carrer Major, AD500, Andorra la Vella",
        "Carrer Major 1, AD500, Andorra la Vella",
        "Carrer Major 2, AD500, Andorra la Vella",
        "Carrer Major 3, AD500, Andorra la Vella",
        "Carrer Major 3, AD200, Encamp",
        "Carrer Major 10, AD500, Andorra la Vella",
        "Carrer Major 12, AD500, Andorra la Vella",
        "Carrer Major 25-27, AD500, Andorra la Vella",
    ]


def test_a_number_ranks_the_exact_one_first_then_those_it_starts(
    client: Any, agent: dict[str, str], index: None
) -> None:
    assert _labels(client, agent, q="C/ Major, 1") == [
        "Carrer Major 1, AD500, Andorra la Vella",
        "Carrer Major 10, AD500, Andorra la Vella",
        "Carrer Major 12, AD500, Andorra la Vella",
    ]
    [hit, namesake] = client.get(URL, query_string={"q": "Major 3"}, headers=agent).get_json()
    # The building mapped twice is one line, at the point mapped first.
    assert hit == {
        "label": "Carrer Major 3, AD500, Andorra la Vella",
        "street": "Carrer Major",
        "housenumber": "3",
        "postcode": "AD500",
        "city": "Andorra la Vella",
        "precision": "address",
        "distance_m": None,
        "lat": pytest.approx(f.LAT),
        "lon": pytest.approx(f.offset(f.LON, f.LAT, 60)[0]),
    }
    assert (namesake["city"], namesake["lon"]) == (
        "Encamp",
        pytest.approx(f.offset(f.LON, f.LAT, 5000)[0]),
    )


def test_a_word_of_the_street_finds_every_street_with_it(
    client: Any, agent: dict[str, str], index: None
) -> None:
    labels = _labels(client, agent, q="maj", limit=25)
    assert labels[0] == "Carrer Major, AD500, Andorra la Vella"
    assert "Plaça Major 1, AD500, Andorra la Vella" in labels
    # The street's own name, abbreviated and without its accent, ranks it before others with the word.
    assert _labels(client, agent, q="Pl. Major")[0] == "Plaça Major 1, AD500, Andorra la Vella"
    assert _labels(client, agent, q="avda meritxell 12") == [
        "Avinguda Meritxell 12, AD500, Andorra la Vella"
    ]


def test_a_number_the_street_lacks_lists_the_street(
    client: Any, agent: dict[str, str], index: None
) -> None:
    assert _labels(client, agent, q="Carrer Major 99", limit=2) == [
        "Carrer Major, AD500, Andorra la Vella",
        "Carrer Major 1, AD500, Andorra la Vella",
    ]


def test_nothing_matches_is_an_empty_list(client: Any, agent: dict[str, str], index: None) -> None:
    assert _labels(client, agent, q="Rue de Rivoli") == []
    assert _labels(client, agent, q="12") == []  # no street in it
    assert _labels(client, agent, q="100%_") == []  # LIKE's wildcards are text


def test_the_limit_bounds_the_list(client: Any, agent: dict[str, str], index: None) -> None:
    assert len(_labels(client, agent, q="carrer major", limit=3)) == 3


def test_a_click_on_the_map_names_the_nearest_house_numbers(
    client: Any, agent: dict[str, str], index: None
) -> None:
    lon, lat = f.offset(f.LON, f.LAT, 58)
    r = client.get(URL, query_string={"near": f"{lat},{lon}", "limit": 2}, headers=agent).get_json()
    assert [(a["label"], a["precision"]) for a in r] == [
        ("Carrer Major 3, AD500, Andorra la Vella", "address"),
        ("Carrer Major 2, AD500, Andorra la Vella", "address"),
    ]
    assert [a["distance_m"] for a in r] == [pytest.approx(2, abs=0.5), pytest.approx(18, abs=0.5)]
    # Far from any address: nothing, rather than a building the caller is not at.
    lon, lat = f.offset(f.LON, f.LAT, 2500)
    assert client.get(URL, query_string={"near": f"{lat},{lon}"}, headers=agent).get_json() == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "q"),
        ({"q": "major", "near": "42.5,1.5"}, "near"),
        ({"q": ""}, "q"),
        ({"q": "a"}, "q"),  # one letter would list most of the city
        ({"q": "x" * 201}, "q"),
        ({"near": "42.5"}, "near"),
        ({"near": "north,east"}, "near"),
        ({"near": "91,1.5"}, "near"),
        ({"near": "nan,1.5"}, "near"),
        ({"q": "major", "limit": 0}, "limit"),
        ({"q": "major", "limit": 26}, "limit"),
    ],
)
def test_bad_questions_are_422(
    client: Any, agent: dict[str, str], query: dict[str, Any], field: str
) -> None:
    r = client.get(URL, query_string=query, headers=agent)
    assert field in error_body(r, 422)["errors"], r.get_json()


@pytest.mark.parametrize(
    ("role", "status"),
    [("call_taker", 200), ("dispatcher", 200), ("supervisor", 200), ("admin", 200), ("crew", 403)],
)
def test_who_may_search(client: Any, db: Session, role: str, status: int) -> None:
    u = f.user(db, f"{role}@example.org", role, crew=f.crew(db) if role == "crew" else None)
    assert (
        client.get(URL, query_string={"q": "major"}, headers=f.token_for(db, u)).status_code
        == status
    )
    assert client.get(URL, query_string={"q": "major"}).status_code == 401


def test_one_building_mapped_twice_is_one_line_wherever_it_lies(
    client: Any, db: Session, agent: dict[str, str]
) -> None:
    # 8 m apart, either side of a 0.002° line: a grid would cut them in two, the clustering does not.
    for lon, postcode, osm_id in ((1.524 - 0.00005, "AD500", 1), (1.524 + 0.00005, None, 2)):
        db.add(
            AddressPoint(
                street="Carrer Nou",
                street_key=normalize_street("Carrer Nou"),
                housenumber="7",
                postcode=postcode,
                city=None,
                location=point(lon, f.LAT),
                osm_type="way",
                osm_id=osm_id,
            )
        )
    # The same number 300 m away is another building (a namesake), its own line.
    db.add(
        AddressPoint(
            street="Carrer Nou",
            street_key=normalize_street("Carrer Nou"),
            housenumber="7",
            postcode="AD600",
            city=None,
            location=point(1.524 + 0.004, f.LAT),
            osm_type="node",
            osm_id=3,
        )
    )
    db.commit()
    assert _labels(client, agent, q="carrer nou 7") == [
        "Carrer Nou 7, AD500",
        "Carrer Nou 7, AD600",
    ]
