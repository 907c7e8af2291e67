"""What every input must be before any view sees it, checked once for the whole app.

- Text: no NUL character (PostgreSQL text cannot hold one) and no lone surrogate (not
  Unicode: it cannot be encoded to UTF-8 for the database or the answer). One
  `before_request` checks the path, query, form, JSON body and headers, and answers 422
  on /api/v1 (the field named) or 400 in the GeoReport shape on /open311.
- Integers: path ids beyond a PostgreSQL bigint match no route (404); query and body
  integers use `Id`/`bigint_range` so a cursor or page beyond what a column holds is a 422.
- Dates and times: years outside [MIN_YEAR, MAX_YEAR] are refused, so date arithmetic
  (a period's end + 1 day, a zone conversion) and PostgreSQL's calendar never overflow.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from flask import Flask, Response, g, request
from marshmallow import ValidationError, fields, validate
from werkzeug.routing import IntegerConverter, Map

# PostgreSQL bigint, the type of every id and cursor column.
BIGINT_MAX = 2**63 - 1
# Generous for any real query (CitiStat over decades, a shift next year), and far from
# both Python's (1..9999) and PostgreSQL's limits, so arithmetic on them cannot overflow.
MIN_YEAR, MAX_YEAR = 1900, 2199

# A NUL, or a UTF-16 surrogate on its own (json.loads accepts "\ud800" escapes).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
# A JSON body can only carry one as a \u escape, a NUL byte (UTF-16/32 bodies) or the
# bytes of a UTF-8-encoded surrogate (0xED..., which json.loads lets through): a body
# with none of these is not walked at all, which spares a phone's 5,000 pings ~20 ms
# (bench/input_guard.py).
_MAYBE_BAD_JSON = re.compile(rb"\\u|[\x00\xed]")


def bigint_range(low: int = 1) -> validate.Range:
    return validate.Range(min=low, max=BIGINT_MAX)


def Id(**kwargs: Any) -> fields.Integer:  # noqa: N802 - reads as a field type
    """An id or cursor in a query or body: an integer a bigint column can hold."""
    low = kwargs.pop("low", 1)
    return fields.Integer(validate=bigint_range(low), **kwargs)


def year_problem(value: date) -> str | None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        return f"the year must be between {MIN_YEAR} and {MAX_YEAR}"
    return None


class _YearBounded:
    """Mixin for marshmallow's date fields: refuses years outside [MIN_YEAR, MAX_YEAR]."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        # A mixin: the date field it is mixed into has _deserialize, which mypy cannot see here.
        result = super()._deserialize(value, attr, data, **kwargs)  # type: ignore[misc]
        problem = year_problem(result)
        if problem:
            raise ValidationError(problem)
        return result


class Date(_YearBounded, fields.Date):
    pass


class DateTime(_YearBounded, fields.DateTime):
    pass


class AwareDateTime(_YearBounded, fields.AwareDateTime):
    pass


class IdConverter(IntegerConverter):
    """`<int:...>` in routes: at most a bigint, so `/work-orders/99999999999999999999` is
    a 404 like any id no row has, not a database error. (flask-smorest documents the
    maximum from `max`, being an IntegerConverter.)"""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,  # noqa: A002 - werkzeug's names
        max: int | None = BIGINT_MAX,
        signed: bool = False,
    ) -> None:  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _first_bad(items: Any, prefix: str = "") -> str | None:
    """The name of the first string (key or value) with a NUL or a lone surrogate."""
    if isinstance(items, str):
        return (prefix or "body") if _BAD_TEXT.search(items) else None
    if isinstance(items, dict):
        for key, value in items.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str) and _BAD_TEXT.search(key):
                return name
            found = _first_bad(value, name)
            if found:
                return found
    elif isinstance(items, list):
        for k, value in enumerate(items):
            found = _first_bad(value, f"{prefix}.{k}" if prefix else str(k))
            if found:
                return found
    return None


BAD_TEXT = "contains a NUL character or invalid Unicode"
# A multipart part with no name in its Content-Disposition: werkzeug files it under the
# key None, which no field reads and which code sorting or matching keys would trip on.
NAMELESS = "is a form part without a name"


def _bad_field() -> tuple[str, str, str] | None:
    """(location, name, what is wrong) of the first unusable text in this request, or None."""
    if _BAD_TEXT.search(request.path):
        return "path", "path", BAD_TEXT
    for location, multi in (
        ("query", request.args),
        ("form", request.form),
        ("files", request.files),
    ):
        for key, values in multi.lists():
            if key is None:
                return location, "(no name)", NAMELESS
            # A file's values are its uploads, not text: only its field name is checked.
            if _BAD_TEXT.search(key) or any(
                isinstance(v, str) and _BAD_TEXT.search(v) for v in values
            ):
                return location, key, BAD_TEXT
    for key, value in request.headers.items():
        if "\x00" in value:
            return "headers", key, BAD_TEXT
    if request.is_json and _MAYBE_BAD_JSON.search(request.get_data(cache=True)):
        found = _first_bad(request.get_json(silent=True))
        if found:
            return "json", found, BAD_TEXT
    return None


def _refuse_bad_text() -> Response | None:
    bad = _bad_field()
    if bad is None:
        return None
    location, name, problem = bad
    message = f"{name} ({location}) {problem}"
    if request.path.startswith("/open311"):
        from api.open311.formats import open311_error

        # The format the client asked for, read from the path (the blueprint's own
        # preprocessor has not run yet).
        g.open311_format = "xml" if request.path.endswith(".xml") else "json"
        return open311_error(400, message)
    from api.errors import error_response

    return error_response(422, message, {name: [problem]})


def init_app(app: Flask) -> None:
    """Before any blueprint registers a route: the converter is bound when a rule is added."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(_refuse_bad_text)
