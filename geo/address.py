"""Normalise and parse free-text street addresses for matching against the OSM index.

Both sides of a lookup (index keys built from OSM and the resident's
``address_string``) go through the same functions, so the goal is
consistency, not linguistic correctness.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Abbreviation -> canonical word. Applied to whole tokens after accents are
# stripped and case folded, with or without a trailing dot.
_ABBREVIATIONS: dict[str, str] = {
    # Catalan / Spanish (Andorra). Spanish words unify to the Catalan ones
    # because OSM names in Andorra are Catalan but residents also write Spanish.
    "c": "carrer",
    "cl": "carrer",
    "calle": "carrer",
    "av": "avinguda",
    "avd": "avinguda",
    "avda": "avinguda",
    "avgda": "avinguda",
    "avenida": "avinguda",
    "ctra": "carretera",
    "crta": "carretera",
    "cra": "carretera",
    "pl": "placa",
    "pca": "placa",
    "pza": "placa",
    "plaza": "placa",
    "pg": "passeig",
    "pso": "passeig",
    "paseo": "passeig",
    "rbla": "rambla",
    "urb": "urbanitzacio",
    "urbanizacion": "urbanitzacio",
    # French
    "bd": "boulevard",
    "bld": "boulevard",
    "boul": "boulevard",
    "rte": "route",
    "imp": "impasse",
    # English
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "blvd": "boulevard",
    "dr": "drive",
    "ln": "lane",
    "sq": "square",
    "hwy": "highway",
}

_COUNTRIES = frozenset(
    {
        "andorra",
        "andorre",
        "espanya",
        "espana",
        "spain",
        "france",
        "franca",
        "suomi",
        "finland",
        "finlande",
    }
)
# Postcodes: Andorra AD500 / AD-500, Finland/Spain/France five digits (FI-00100).
_POSTCODE_RE = re.compile(r"\b(?:ad[- ]?(\d{3})|(?:fi-)?(\d{5}))\b")
_NUMBER_WORDS = frozenset({"n", "no", "nr", "num", "numero"})
# "12", "12a", "12 a", "25-27", "25 - 27", "12 bis"; a following lone number is an apartment.
_HOUSENUMBER = r"\d+\s*(?:[a-z]|bis|ter)?(?:\s*[-/]\s*\d+\s*[a-z]?)?"
_HN_AT_END = re.compile(rf"^(?P<street>.*?\D)\s*(?P<hn>{_HOUSENUMBER})(?:\s+\d+)?\s*$")
_HN_AT_START = re.compile(rf"^(?P<hn>{_HOUSENUMBER})\s+(?P<street>\D.*)$")
_HN_ONLY = re.compile(rf"^(?P<hn>{_HOUSENUMBER})(?:\s+\d+)?$")


def _fold(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # En/em dashes from word processors: "5–7" must parse like "5-7".
    return re.sub(r"[\u2010-\u2015]", "-", stripped.casefold())


def normalize_street(s: str) -> str:
    """Matching key for a street name: no accents or punctuation, abbreviations expanded."""
    s = _fold(s)
    # "c/Major" has no space after the slash, so split it off before tokenising.
    s = re.sub(r"(?<![a-z0-9])c\s*/", " carrer ", s)
    s = s.replace("º", " ").replace("ª", " ")
    words = re.sub(r"[^\w]+|_", " ", s).split()
    return " ".join(_ABBREVIATIONS.get(w, w) for w in words)


def normalize_housenumber(s: str) -> str:
    """Canonical housenumber: case folded, no spaces ("5 A" -> "5a", "25 - 27" -> "25-27").

    Text after a comma is dropped because OSM mappers put floor notes there
    ("6, 1. krs. / Floor 1").
    """
    s = _fold(s.split(",", 1)[0])
    return re.sub(r"\s+", "", s)


def housenumber_candidates(housenumber: str) -> list[str]:
    """Lookup order for a housenumber: itself, then its leading number ("25-27" -> "25")."""
    out = [housenumber]
    m = re.match(r"\d+", housenumber)
    if m and m.group() != housenumber:
        out.append(m.group())
    return out


@dataclass(frozen=True)
class ParsedAddress:
    """A free-text address split into a street key and optional numbers."""

    street_key: str
    housenumber: str | None
    postcode: str | None

    @property
    def housenumber_candidates(self) -> list[str]:
        return housenumber_candidates(self.housenumber) if self.housenumber else []


def _strip_number_words(s: str) -> str:
    # "Carrer Major, nº 12" / "num. 12": the marker would otherwise become
    # part of the street key.
    return re.sub(r"(?<![\w])(?:n\s*[º°o]|nr|num|numero|no)\.?\s*(?=\d)", " ", s)


def parse_address(s: str) -> ParsedAddress:
    """Split "Carrer Major, 12, AD500 Andorra la Vella" into street key, housenumber, postcode.

    The first comma part with letters is the street (a housenumber may lead or
    trail it); a later purely numeric part is the housenumber; anything from a
    postcode onwards, and other trailing parts (city, country), is dropped.
    """
    text = _fold(s).strip()
    text = _strip_number_words(text)
    postcode: str | None = None
    m = _POSTCODE_RE.search(text)
    # A five-digit run at the very start is a housenumber, not a postcode.
    if m and (m.group(1) or m.start() > 0):
        postcode = f"AD{m.group(1)}" if m.group(1) else m.group(2)
        text = text[: m.start()]

    parts = [p.strip() for p in text.split(",") if p.strip()]
    street: str | None = None
    housenumber: str | None = None
    for part in parts:
        if street is None and re.search(r"[^\W\d_]", part):
            m_end = _HN_AT_END.match(part)
            m_start = _HN_AT_START.match(part)
            if m_end and re.search(r"[^\W\d_]", m_end.group("street")):
                street, hn = m_end.group("street"), m_end.group("hn")
            elif m_start:
                street, hn = m_start.group("street"), m_start.group("hn")
            else:
                street, hn = part, None
            if hn and housenumber is None:
                housenumber = hn
        elif housenumber is None and (m_only := _HN_ONLY.match(part)):
            housenumber = m_only.group("hn")
        elif street is not None:
            break  # city / country / floor notes follow the street
    key = normalize_street(street) if street else ""
    if key in _COUNTRIES:
        key = ""
    return ParsedAddress(
        street_key=key,
        housenumber=normalize_housenumber(housenumber) if housenumber else None,
        postcode=postcode.upper() if postcode else None,
    )
