"""The one JSON error format of /api/v1, as the tests check it."""

from __future__ import annotations

from typing import Any


def error_body(r: Any, status: int) -> dict[str, Any]:
    """The error body of `r`, after checking its status and that it has no other keys."""
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert body["code"] == status
    assert set(body) <= {"code", "status", "message", "errors"}
    return body
