"""Schemas and helpers shared by the /api/v1 resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flask_smorest
from flask_smorest.pagination import Page, PaginationParameters
from geoalchemy2 import WKBElement
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from shapely.geometry import MultiPolygon
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.db import session
from api.errors import ErrorSchema
from api.resources.typed import Computed
from api.spec import error_response_name
from core.models import StatusEvent
from core.spatial import lon_lat, multipolygon_from_geojson
from geo.photos import ACCEPTED_FORMATS

MAX_PAGE_SIZE = 500
# Any page beyond this is empty for any city (a billion rows at the largest page size),
# and keeps (page - 1) * page_size inside the bigint an OFFSET takes.
MAX_PAGE = 2_000_000


# A photo file as it was uploaded, in any of the formats accepted (`@blp.doc(responses=...)`).
PHOTO_FILE = {
    200: {
        "content": {
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in sorted(set(ACCEPTED_FORMATS.values()))
        }
    }
}

BODY_LOCATIONS = {"json", "form", "files", "json_or_form"}


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with our page body and a short way to document errors.

    Lists are paged with flask-smorest's own `blp.paginate` (its `page` and `page_size`
    query parameters, parsed and documented by it), but a page is answered as the body
    `{items, page, page_size, total}` (`page_schema`), which the console screens read,
    rather than as a bare list with an `X-Pagination` header: `_set_pagination_metadata`
    and `_document_pagination_metadata` are the hooks flask-smorest documents for setting
    and documenting the page's metadata another way."""

    DEFAULT_PAGINATION_PARAMETERS: ClassVar[dict[str, int]] = {
        "page": 1,
        "page_size": 50,
        "max_page_size": MAX_PAGE_SIZE,
    }

    def arguments(
        self, schema: Any, *, location: str = "json", **kwargs: Any
    ) -> Callable[[Any], Any]:
        """flask-smorest's arguments; a body (JSON, form or files) may also be answered 413:
        the server refuses any body beyond its limit (MAX_CONTENT_LENGTH) before a view runs."""
        parse = super().arguments(schema, location=location, **kwargs)
        if location not in BODY_LOCATIONS:
            return parse
        too_large = self.error(413)

        def decorator(view: Any) -> Any:
            # A view that documents its own 413 (the completion's photo limits) keeps it.
            own = getattr(view, "_apidoc", {}).get("response", {}).get("responses", {})
            return parse(view) if 413 in own else too_large(parse(view))

        return decorator

    def paginate(self, pager: type[Page] | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        """flask-smorest's paginate, with `page` bounded by MAX_PAGE (a 422 beyond it,
        documented as the parameter's maximum), as `page_size` is by MAX_PAGE_SIZE."""
        paginate = super().paginate(pager, **kwargs)

        def decorator(view: Any) -> Any:
            wrapper = paginate(view)
            # The page parameters' schema is a class made for this one view, both parsed
            # and documented: a bound added to its field holds for both.
            params = wrapper._apidoc["pagination"]["parameters"]["schema"]
            params._declared_fields["page"].validators.append(validate.Range(max=MAX_PAGE))
            return wrapper

        return decorator

    def _set_pagination_metadata(
        self, page_params: PaginationParameters, result: Any, headers: Any
    ) -> tuple[dict[str, Any], Any]:
        page = {
            "items": result,
            "page": page_params.page,
            "page_size": page_params.page_size,
            "total": page_params.item_count,
        }
        return page, headers

    def _document_pagination_metadata(self, spec: Any, resp_doc: dict[str, Any]) -> None:
        # No header to document: the answer's schema (page_schema) describes the page.
        pass

    def error(self, status: int, description: str | None = None) -> Callable[[Any], Any]:
        """Document an error answer in the one error shape (api/errors.py): the shared
        answer for its status (components/responses), or one with its own description."""
        if description is None:
            return self.alt_response(status, response=error_response_name(status))
        return self.alt_response(status, schema=ErrorSchema, description=description)


class SelectPage(Page):
    """A page of a SQLAlchemy select: its rows are counted, and only the page's are read.

    `@blp.paginate(SelectPage)` pages the select a view returns; a view that must do more
    with the rows takes `pagination_parameters` and uses `SelectPage(query, ...).items`."""

    collection: Select

    @property
    def item_count(self) -> int:
        return (
            session().scalar(
                select(func.count()).select_from(self.collection.order_by(None).subquery())
            )
            or 0
        )

    @property
    def items(self) -> list[Any]:
        params = self.page_params
        return list(
            session()
            .scalars(self.collection.limit(params.page_size).offset(params.first_item))
            .all()
        )


class PointSchema(Schema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))


def point_out(element: WKBElement | None) -> dict[str, float] | None:
    ll = lon_lat(element)
    return None if ll is None else {"lat": ll[1], "lon": ll[0]}


def as_multipolygon(geojson: dict[str, Any], *, what: str = "a district") -> MultiPolygon:
    """A body's GeoJSON polygon, or a marshmallow error (a 422 on the field that holds it)."""
    try:
        return multipolygon_from_geojson(geojson, what=what)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def patch_schema(schema_cls: type[Schema]) -> Schema:
    """A PATCH body: every top-level field optional, but a nested object that is sent is
    validated in full (`partial=True` would also skip the nested schemas' required fields)."""
    return schema_cls(partial=tuple(schema_cls().fields))


class BBoxArgs(Schema):
    bbox = fields.String(metadata={"description": "min_lon,min_lat,max_lon,max_lat"})

    @validates_schema
    def _bbox(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("bbox"):
            parse_bbox(data["bbox"])


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    try:
        parts = [float(p) for p in raw.split(",")]
    except ValueError:
        raise ValidationError(
            "bbox must be four numbers: min_lon,min_lat,max_lon,max_lat", "bbox"
        ) from None
    if len(parts) != 4:
        raise ValidationError("bbox must be four numbers: min_lon,min_lat,max_lon,max_lat", "bbox")
    min_lon, min_lat, max_lon, max_lat = parts
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        raise ValidationError("bbox corners are out of range or in the wrong order", "bbox")
    return min_lon, min_lat, max_lon, max_lat


def bbox_filter(column: Any, raw: str) -> Any:
    min_lon, min_lat, max_lon, max_lat = parse_bbox(raw)
    return func.ST_Intersects(
        column, func.ST_MakeEnvelope(min_lon, min_lat, max_lon, max_lat, 4326)
    )


def page_schema(item: type[Schema]) -> type[Schema]:
    """The answer of a paged list (see Blueprint): one page of items and where it lies."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "page": fields.Integer(
                required=True, metadata={"description": "this page's number, from 1"}
            ),
            "page_size": fields.Integer(
                required=True, metadata={"description": "at most this many items a page"}
            ),
            "total": fields.Integer(
                required=True, metadata={"description": "items on all pages together"}
            ),
        },
        name=f"{item.__name__.removesuffix('Schema')}PageSchema",
    )


class EventSchema(Schema):
    id = fields.Integer(
        metadata={"description": "names a public note to redact (POST .../redactions)"}
    )
    at = fields.DateTime()
    from_status = fields.String(allow_none=True)
    to_status = fields.String()
    actor = fields.String()
    note = fields.String(allow_none=True)
    public = fields.Boolean()
    # Where it happened, when the event has a place (a crew's); typed, see api/resources/typed.py.
    location = Computed(
        lambda e: point_out(e.location), fields.Nested(PointSchema, allow_none=True)
    )


def timeline(session: Session, entity: str, entity_id: int) -> list[StatusEvent]:
    return list(
        session.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.at, StatusEvent.id)
        )
    )


def csv_list(raw: str | None) -> list[str]:
    return [v.strip() for v in (raw or "").split(",") if v.strip()]
