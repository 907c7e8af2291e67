"""An unmodified third-party Open311 client (PyPI `georeport`) against a live StreetLoop server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from georeport import GeoReport
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from tests import factories as f


@pytest.fixture
def server(app, db: Session) -> Iterator[str]:  # noqa: ANN001
    f.service_type(db, attributes=f.full_attributes())
    f.service_type(db, "graffiti", skill="graffiti")
    db.commit()
    # One thread serves requests one at a time, so the test's single connection is never shared at once.
    httpd = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/open311/v2"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_client_reads_everything(server: str, db: Session, fmt: str) -> None:
    first = f.report(db, attributes={"size": "small"}, description="Hole by the bakery").request
    f.report(db, "graffiti", lon=f.offset(f.LON, f.LAT, 300)[0])
    db.commit()
    client = GeoReport(server, output_format=fmt)

    services = client.get_service_list()
    assert {s["service_code"] for s in services} == {"pothole", "graffiti"}

    definition = client.get_service_definition("pothole")
    codes = [
        a["code"]
        for a in (
            definition["attributes"] if fmt == "json" else definition["attributes"]["attribute"]
        )
    ]
    assert codes[:2] == ["size", "depth_cm"]

    listed = client.get_service_requests(service_code="pothole", status="open")
    listed = listed if isinstance(listed, list) else [listed]  # xmltodict: one item is a dict
    assert [r["service_request_id"] for r in listed] == [first.public_id]

    one = client.get_service_request(first.public_id)
    assert one["description"] == "Hole by the bakery"
    assert float(one["lat"]) == pytest.approx(f.LAT)

    both = client.get_service_requests(service_request_id=f"{first.public_id},999999")
    both = both if isinstance(both, list) else [both]
    assert [r["service_request_id"] for r in both] == [first.public_id]
