"""GeoReport v2 bodies in JSON and XML, and the spec's error list."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from flask import Response, g

# In XML a list needs a name for its items.
_ITEM_TAGS = {
    "attributes": "attribute",
    "values": "value",
    "notes": "note",
    "photos": "photo",
    "endpoints": "endpoint",
    "formats": "format",
}
CONTENT_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}


def current_format() -> str:
    return g.get("open311_format", "json")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for k, v in value.items():
            _append(el, k, v)
    elif isinstance(value, list):
        child = _ITEM_TAGS.get(tag, "item")
        for item in value:
            _append(el, child, item)
    else:
        el.text = _text(value)


def to_xml(root: str, item: str, items: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    top = ET.Element(root)
    if isinstance(items, dict):
        for k, v in items.items():
            _append(top, k, v)
    else:
        for entry in items:
            _append(top, item, entry)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def render(body: Any, *, root: str, item: str = "request", status: int = 200, fmt: str | None = None) -> Response:
    fmt = fmt or current_format()
    if fmt == "xml":
        payload = to_xml(root, item, body)
    else:
        payload = json.dumps(body, default=_default, ensure_ascii=False).encode()
    return Response(payload, status=status, content_type=CONTENT_TYPES[fmt])


def open311_error(status: int, description: str) -> Response:
    errors = [{"code": status, "description": description}]
    return render(errors, root="errors", item="error", status=status)
