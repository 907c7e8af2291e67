"""A crew's completion as the phone sends it (tests/api/conftest.py's `job` is the work order it completes)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from tests import factories as f
from tests.api.uploads import multipart
from tests.factories.photos import photo

NOW = datetime.now(UTC).replace(microsecond=0)


def submit(
    client,
    job: dict,
    *,
    key: str = "k-1",
    photos=None,
    before=None,
    wo_id=None,
    headers=None,
    **form,
):  # noqa: ANN001, ANN003, ANN202
    data = {
        "lat": str(f.LAT),
        "lon": str(f.LON + 0.0001),
        "accuracy_m": "6",
        "fix_time": (NOW - timedelta(seconds=30)).isoformat(),
        "captured_at": (NOW - timedelta(seconds=40)).isoformat(),
        "outcome": "fixed",
        "notes": "filled and rolled",
    }
    data.update({k: v for k, v in form.items() if v is not None})
    for k in [k for k, v in form.items() if v is None]:
        data.pop(k, None)
    if photos is None:
        photos = [photo(1, lat=f.LAT, lon=f.LON, taken=NOW - timedelta(minutes=1))]
    data["photos"] = [(io.BytesIO(p), f"p{i}.jpg") for i, p in enumerate(photos)]
    data["before_photos"] = [(io.BytesIO(p), f"b{i}.jpg") for i, p in enumerate(before or [])]
    return client.post(
        f"/api/v1/work-orders/{wo_id or job['wo'].id}/completion",
        **multipart(data),
        headers={**(headers or job["headers"]), "Idempotency-Key": key},
    )
