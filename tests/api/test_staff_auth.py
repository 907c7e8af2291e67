"""/api/v1 sign-in, bearer tokens, the role matrix and the JSON error shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.models import AccessToken
from tests import factories as f

BAD_LOGIN = "wrong e-mail or password"


def assert_error(response: Any, status: int, *, errors: bool = False) -> dict[str, Any]:
    """The /api/v1 error body: exactly code/status/message (+errors), code == HTTP status."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    expected = {"code", "status", "message"} | ({"errors"} if errors else set())
    assert set(body) == expected
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def login(client: Any, email: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"email": email, "password": password})


# -- sign in -------------------------------------------------------------------------


def test_token_then_me(client: Any, db: Session) -> None:
    crew = f.crew(db, "north-1")
    u = f.user(db, "Ana@Example.org", "crew", crew=crew)
    r = login(client, "ana@example.org ", "secret-pass")
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 12 * 3600
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.get_json() == {
        "id": u.id,
        "email": "Ana@Example.org",
        "name": "Ana",
        "role": "crew",
        "crew_code": "north-1",
    }


def test_me_for_staff_has_no_crew(client: Any, db: Session) -> None:
    u = f.user(db, "disp@example.org", "dispatcher")
    me = client.get("/api/v1/auth/me", headers=f.token_for(db, u))
    assert me.status_code == 200
    assert me.get_json()["crew_code"] is None
    assert me.get_json()["role"] == "dispatcher"


def test_wrong_password_and_unknown_email_answer_alike(client: Any, db: Session) -> None:
    f.user(db, "ana@example.org", "admin")
    wrong = assert_error(login(client, "ana@example.org", "nope"), 401)
    unknown = assert_error(login(client, "nobody@example.org", "secret-pass"), 401)
    assert wrong == unknown == {"code": 401, "status": "Unauthorized", "message": BAD_LOGIN}


def test_inactive_user_cannot_sign_in_nor_use_old_token(client: Any, db: Session) -> None:
    u = f.user(db, "gone@example.org", "admin")
    headers = f.token_for(db, u)
    u.active = False
    db.flush()
    assert (
        assert_error(login(client, "gone@example.org", "secret-pass"), 401)["message"] == BAD_LOGIN
    )
    r = client.get("/api/v1/auth/me", headers=headers)
    assert_error(r, 401)
    assert "invalid_token" in r.headers["WWW-Authenticate"]


def test_login_payload_is_validated(client: Any) -> None:
    body = assert_error(
        client.post("/api/v1/auth/token", json={"email": "a@b.c"}), 422, errors=True
    )
    assert body["errors"] == {"password": ["Missing data for required field."]}


# -- bearer tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic YWxhZGRpbjpvcGVu"}, {"Authorization": "Bearer "}],
    ids=["missing", "other-scheme", "empty"],
)
def test_missing_token_is_401_with_challenge(client: Any, headers: dict[str, str]) -> None:
    r = client.get("/api/v1/auth/me", headers=headers)
    body = assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="streetloop"'
    assert "POST /api/v1/auth/token" in body["message"]


def test_garbage_token_is_401_invalid_token(client: Any) -> None:
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"})
    body = assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="streetloop", error="invalid_token"'
    assert body["message"] == "the token is invalid or has expired; sign in again"


def test_expired_token_is_401(client: Any, db: Session) -> None:
    u = f.user(db, "ana@example.org", "admin")
    headers = f.token_for(db, u)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    db.execute(
        update(AccessToken)
        .where(AccessToken.user_id == u.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.flush()
    r = client.get("/api/v1/auth/me", headers=headers)
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="streetloop", error="invalid_token"'


# -- roles ---------------------------------------------------------------------------

STAFF_LISTS = [
    "/api/v1/service-types",
    "/api/v1/crews",
    "/api/v1/depots",
    "/api/v1/districts",
    "/api/v1/requests",
    "/api/v1/work-orders",
]


@pytest.mark.parametrize("path", [*STAFF_LISTS, "/api/v1/api-keys"])
def test_crew_gets_403_on_staff_lists(client: Any, db: Session, path: str) -> None:
    u = f.user(db, "crew@example.org", "crew", crew=f.crew(db))
    r = client.get(path, headers=f.token_for(db, u))
    body = assert_error(r, 403)
    assert body["message"].startswith("this needs one of the roles: ")
    assert "WWW-Authenticate" not in r.headers


@pytest.mark.parametrize("path", STAFF_LISTS)
@pytest.mark.parametrize("role", ["dispatcher", "supervisor", "admin"])
def test_staff_can_list(client: Any, db: Session, path: str, role: str) -> None:
    u = f.user(db, f"{role}@example.org", role)
    r = client.get(path, headers=f.token_for(db, u))
    assert r.status_code == 200, r.get_json()


# What a call-taker reads to take a call: the types (and their attributes) to ask about.
CALL_TAKER_LISTS = ["/api/v1/service-types"]


@pytest.mark.parametrize(
    "path",
    [
        *(p for p in STAFF_LISTS if p not in CALL_TAKER_LISTS),
        "/api/v1/api-keys",
        "/api/v1/users",
        "/api/v1/plans",
        "/api/v1/reviews",
    ],
)
def test_call_taker_gets_403_on_staff_lists(client: Any, db: Session, path: str) -> None:
    u = f.user(db, "agent@example.org", "call_taker")
    body = assert_error(client.get(path, headers=f.token_for(db, u)), 403)
    assert body["message"].startswith("this needs one of the roles: ")
    assert "call_taker" not in body["message"]


@pytest.mark.parametrize("path", CALL_TAKER_LISTS)
def test_call_taker_can_list_what_a_call_needs(client: Any, db: Session, path: str) -> None:
    u = f.user(db, "agent@example.org", "call_taker")
    r = client.get(path, headers=f.token_for(db, u))
    assert r.status_code == 200, r.get_json()


def _creates() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "/api/v1/service-types",
            {
                "code": "graffiti",
                "name": "Graffiti",
                "agency": "Parks",
                "sla_hours": 24,
                "skill": "paint",
                "minutes_on_site": 20,
            },
        ),
        (
            "/api/v1/crews",
            {"code": "paint-1", "name": "Paint 1", "agency": "Parks", "skills": ["paint"]},
        ),
        (
            "/api/v1/depots",
            {
                "code": "yard-2",
                "name": "Yard 2",
                "agency": "Public Works",
                "location": {"lat": f.LAT, "lon": f.LON},
            },
        ),
        (
            "/api/v1/districts",
            {
                "code": "north",
                "name": "North",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[1.5, 42.5], [1.6, 42.5], [1.6, 42.6], [1.5, 42.6], [1.5, 42.5]]
                    ],
                },
            },
        ),
        ("/api/v1/api-keys", {"name": "Kiosk"}),
    ]


@pytest.mark.parametrize(
    ("path", "payload"), _creates(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_dispatcher_cannot_create_admin_can(
    client: Any, db: Session, path: str, payload: dict[str, Any]
) -> None:
    dispatcher = f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))
    supervisor = f.token_for(db, f.user(db, "sup@example.org", "supervisor"))
    admin = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    body = assert_error(client.post(path, json=payload, headers=dispatcher), 403)
    assert body["message"] == "this needs one of the roles: admin"
    call_taker = f.token_for(db, f.user(db, "agent@example.org", "call_taker"))
    assert_error(client.post(path, json=payload, headers=call_taker), 403)
    assert_error(client.post(path, json=payload, headers=supervisor), 403)
    r = client.post(path, json=payload, headers=admin)
    assert r.status_code == 201, r.get_json()


def test_dispatcher_cannot_list_api_keys(client: Any, db: Session) -> None:
    headers = f.token_for(db, f.user(db, "disp@example.org", "dispatcher"))
    assert_error(client.get("/api/v1/api-keys", headers=headers), 403)


def test_unauthenticated_create_is_401(client: Any) -> None:
    r = client.post("/api/v1/api-keys", json={"name": "Kiosk"})
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="streetloop"'


# -- the error shape elsewhere -----------------------------------------------------------


def test_unknown_api_route_and_method_use_the_json_shape(client: Any, db: Session) -> None:
    headers = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    assert_error(client.get("/api/v1/nope", headers=headers), 404)
    assert_error(client.delete("/api/v1/crews", headers=headers), 405)
    body = assert_error(client.get("/api/v1/service-types/nope", headers=headers), 404)
    assert body["message"] == "service type 'nope' not found"


def test_malformed_json_is_400_in_our_shape(client: Any, db: Session) -> None:
    headers = f.token_for(db, f.user(db, "admin@example.org", "admin"))
    r = client.post(
        "/api/v1/crews", data="{not json", content_type="application/json", headers=headers
    )
    body = assert_error(r, 400, errors=True)
    assert "Invalid JSON body." in str(body["errors"])


def test_authentication_is_checked_before_the_body_is_validated(client: Any) -> None:
    # An anonymous caller learns nothing about the payload rules.
    r = client.post("/api/v1/service-types", json={"code": ""})
    assert r.status_code == 401


def test_method_not_allowed_keeps_the_allow_header(client: Any) -> None:
    r = client.delete("/api/v1/auth/token")
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    assert r.get_json()["code"] == 405
