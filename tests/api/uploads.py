"""Multipart uploads for the test client."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart


def multipart(fields: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `client.post`: the form encoded in memory. Given the form as
    a dict, the test client spools a body over 500 kB (a phone photo) to a temporary file
    that nothing closes: a ResourceWarning, which filterwarnings=error makes an error.

    Values as the test client takes them: text, or (stream, filename[, content type]) for
    a file, or a list of those."""

    def part(value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, tuple):
            return FileStorage(
                value[0], filename=value[1], content_type=value[2] if len(value) > 2 else None
            )
        return value

    boundary, body = encode_multipart(
        {k: [part(x) for x in v] if isinstance(v, list) else part(v) for k, v in fields.items()}
    )
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}
