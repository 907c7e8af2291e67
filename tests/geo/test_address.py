"""Street-name normalisation and free-text address parsing."""

from __future__ import annotations

import pytest

from geo.address import ParsedAddress, normalize_housenumber, normalize_street, parse_address


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Plaça Major", "placa major"),
        ("Pl. Major", "placa major"),
        ("C/ Major", "carrer major"),
        ("c/Major", "carrer major"),
        ("C. Major", "carrer major"),
        ("Calle Major", "carrer major"),
        ("Av. Meritxell", "avinguda meritxell"),
        ("AVDA  Meritxell", "avinguda meritxell"),
        ("Ctra. de la Rabassa", "carretera de la rabassa"),
        ("Carrer de l'Església", "carrer de l esglesia"),
        ("Sant Julià de Lòria", "sant julia de loria"),
        ("Main St.", "main street"),
        ("Abbey Rd", "abbey road"),
        ("Park Ave", "park avenue"),
        ("Mannerheimintie", "mannerheimintie"),
        ("Pohjoinen Makasiinikatu", "pohjoinen makasiinikatu"),
        ("Yrjönkatu", "yrjonkatu"),
    ],
)
def test_normalize_street(raw: str, key: str) -> None:
    assert normalize_street(raw) == key


def test_normalize_street_only_expands_whole_tokens() -> None:
    # "st" inside a word or "c" as part of a name must survive.
    assert normalize_street("Carrer Sant Salvador") == "carrer sant salvador"
    assert normalize_street("Strada Vella") == "strada vella"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("5 A", "5a"),
        ("13A", "13a"),
        ("25 - 27", "25-27"),
        ("5–7", "5-7"),
        ("6, 1. krs. / Floor 1", "6"),
    ],
)
def test_normalize_housenumber(raw: str, norm: str) -> None:
    assert normalize_housenumber(raw) == norm


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Carrer Major 12", ParsedAddress("carrer major", "12", None)),
        ("12 Carrer Major", ParsedAddress("carrer major", "12", None)),
        ("12, Carrer Major", ParsedAddress("carrer major", "12", None)),
        ("Carrer Major, 12, AD500 Andorra la Vella", ParsedAddress("carrer major", "12", "AD500")),
        ("Carrer Major 12 AD500 Andorra la Vella", ParsedAddress("carrer major", "12", "AD500")),
        ("C/ Major, nº 12", ParsedAddress("carrer major", "12", None)),
        ("Av. Meritxell 25-27", ParsedAddress("avinguda meritxell", "25-27", None)),
        (
            "Avinguda del Consell General 5–7",
            ParsedAddress("avinguda del consell general", "5-7", None),
        ),
        (
            "Avda. Carlemany 93, Escaldes-Engordany, Andorra",
            ParsedAddress("avinguda carlemany", "93", None),
        ),
        ("Plaça Major", ParsedAddress("placa major", None, None)),
        ("Mannerheimintie 5 A", ParsedAddress("mannerheimintie", "5a", None)),
        # Finnish apartment number after the staircase letter is not part of the house.
        ("Mannerheimintie 5 A 12, 00100 Helsinki", ParsedAddress("mannerheimintie", "5a", "00100")),
        ("Kaivokatu 1, FI-00100 Helsinki", ParsedAddress("kaivokatu", "1", "00100")),
        ("Andorra", ParsedAddress("", None, None)),
    ],
)
def test_parse_address(raw: str, expected: ParsedAddress) -> None:
    assert parse_address(raw) == expected


def test_range_housenumber_also_tries_first_number() -> None:
    assert parse_address("Av. Meritxell 25-27").housenumber_candidates == ["25-27", "25"]
    assert parse_address("Mannerheimintie 5 A").housenumber_candidates == ["5a", "5"]
    assert parse_address("Carrer Major 12").housenumber_candidates == ["12"]
    assert parse_address("Plaça Major").housenumber_candidates == []


def test_parse_and_osm_name_meet_on_the_same_key() -> None:
    # The index is keyed by normalize_street(OSM name); a resident's input must land there.
    assert parse_address("avda meritxell, 11").street_key == normalize_street("Avinguda Meritxell")
    assert parse_address("Pl. Major 4").street_key == normalize_street("Plaça Major")
