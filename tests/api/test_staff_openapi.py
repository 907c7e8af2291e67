"""The OpenAPI document and the self-hosted Swagger UI."""

from __future__ import annotations

import json
import re
from typing import Any


def test_openapi_json_documents_the_staff_api(client: Any) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    spec = json.loads(r.get_data(as_text=True))
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "StreetLoop" and spec["info"]["version"] == "v1"
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/token",
        "/api/v1/auth/me",
        "/api/v1/crews",
        "/api/v1/work-orders/{wo_id}/transitions",
        "/api/v1/requests/{public_id}/pin",
        "/api/v1/service-types/{code}",
        "/api/v1/api-keys/{key_id}",
    ):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_protected_operations_declare_bearer_security(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths["/api/v1/crews"]["get"]["security"] == [{"bearer": []}]
    assert paths["/api/v1/crews"]["post"]["security"] == [{"bearer": []}]
    assert paths["/api/v1/work-orders/{wo_id}/transitions"]["post"]["security"] == [{"bearer": []}]
    assert paths["/api/v1/auth/me"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/api/v1/auth/token"]["post"]


def test_schemas_are_named_and_patch_bodies_have_no_required_fields(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert "ServiceType" in schemas and "ServiceTypePatch" in schemas
    assert set(schemas["ServiceType"]["required"]) == {
        "code",
        "name",
        "agency",
        "sla_hours",
        "skill",
        "minutes_on_site",
    }
    assert "required" not in schemas["ServiceTypePatch"]
    patch_body = spec["paths"]["/api/v1/service-types/{code}"]["patch"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    assert patch_body == {"$ref": "#/components/schemas/ServiceTypePatch"}


def test_docs_page_uses_local_assets(client: Any) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "/docs/assets/" in html
    assert "/docs/assets/swagger-ui-bundle.js" in html
    for cdn in ("unpkg", "jsdelivr", "cdnjs", "googleapis", "cloudflare"):
        assert cdn not in html
    assert not re.search(r"""(src|href)=["']https?://""", html)


def test_swagger_assets_are_served(client: Any) -> None:
    # File responses stream: close them (ResourceWarning is an error here).
    with client.get("/docs/assets/swagger-ui-bundle.js") as js:
        assert js.status_code == 200
        assert js.mimetype in {"text/javascript", "application/javascript"}
        bundle = js.get_data(as_text=True)
        assert len(bundle) > 100_000
        # Swagger UI reads OpenAPI 3.1 from version 5 on: an older one shows no operations.
        assert re.search(r'"5\.\d+\.\d+"', bundle)
    with client.get("/docs/assets/swagger-ui.css") as css:
        assert css.status_code == 200 and css.mimetype == "text/css"
    with client.get("/docs/assets/nope.js") as missing:
        assert missing.status_code == 404
    with client.get("/docs/assets/../../etc/passwd") as escape:
        assert escape.status_code == 404
