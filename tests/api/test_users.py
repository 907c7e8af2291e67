"""/api/v1/users: admins manage logins; every change is audited and nothing leaks a password."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AccessToken, StatusEvent, User
from tests import factories as f
from tests.api.errors import error_body

PASSWORD = "a-long-enough-one"
ADMIN_LABEL = "user:admin@example.org"


def new_user(**overrides: Any) -> dict[str, Any]:
    return {
        "email": "ana@city.example",
        "name": "Ana",
        "role": "dispatcher",
        "password": PASSWORD,
    } | overrides


def counts(db: Session) -> tuple[int, int]:
    return (
        db.scalar(select(func.count()).select_from(User)) or 0,
        db.scalar(select(func.count()).select_from(StatusEvent).where(StatusEvent.entity == "user"))
        or 0,
    )


def login(client: Any, email: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"email": email, "password": password})


def bearer(client: Any, email: str, password: str) -> dict[str, str]:
    r = login(client, email, password)
    assert r.status_code == 200, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['access_token']}"}


def keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def no_secrets(r: Any) -> dict[str, Any]:
    text = r.get_data(as_text=True)
    assert "$argon2" not in text and PASSWORD not in text
    assert not {k for k in keys(r.get_json()) if "password" in k or "hash" in k}
    return r.get_json()


def notes(body: dict[str, Any]) -> list[tuple[str | None, str, str, str | None]]:
    return [(e["from_status"], e["to_status"], e["actor"], e["note"]) for e in body["timeline"]]


# -- create --------------------------------------------------------------------------------


def test_create_returns_the_user_with_its_audit_and_it_can_sign_in(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    r = client.post("/api/v1/users", json=new_user(email="Ana@City.Example"), headers=admin)
    assert r.status_code == 201, r.get_json()
    body = no_secrets(r)
    assert {k: v for k, v in body.items() if k not in {"id", "created_at", "timeline"}} == {
        "email": "Ana@city.example",
        "name": "Ana",
        "role": "dispatcher",
        "crew": None,
        "active": True,
    }
    assert notes(body) == [(None, "active", ADMIN_LABEL, "created as dispatcher")]
    stored = db.get(User, body["id"])
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    me = client.get(
        "/api/v1/auth/me", headers=bearer(client, "ana@city.example", PASSWORD)
    ).get_json()
    assert (me["id"], me["role"]) == (body["id"], "dispatcher")
    assert client.get(f"/api/v1/users/{body['id']}", headers=admin).get_json() == body


def test_create_a_crew_login(client: Any, db: Session, admin: dict[str, str]) -> None:
    f.crew(db, "north-1")
    r = client.post("/api/v1/users", json=new_user(role="crew", crew="north-1"), headers=admin)
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["crew"], notes(r.get_json())[0][3]) == (
        "north-1",
        "created as crew of crew north-1",
    )


def test_a_taken_address_in_any_case_is_409(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.user(db, "ana@city.example", "crew", crew=f.crew(db))
    before = counts(db)
    body = error_body(
        client.post("/api/v1/users", json=new_user(email="ANA@city.example"), headers=admin), 409
    )
    assert body["message"] == "a user with the e-mail ANA@city.example exists"
    assert body["errors"]["email"] == [body["message"]]
    assert counts(db) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": None}, "email"),
        ({"name": None}, "name"),
        ({"role": None}, "role"),
        ({"password": None}, "password"),
        ({"role": "mayor"}, "role"),
        ({"email": "ana@city"}, "email"),
        ({"email": "not an address"}, "email"),
        ({"password": "too-short"}, "password"),
        ({"password": "ana@city.example"}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"role": "crew"}, "crew"),
        ({"role": "crew", "crew": "ghost"}, "crew"),
        ({"crew": "north-1"}, "crew"),
        ({"name": " "}, "name"),
    ],
    ids=[
        "no-email",
        "no-name",
        "no-role",
        "no-password",
        "bad-role",
        "dotless-domain",
        "not-an-address",
        "short-password",
        "password-is-email",
        "long-password",
        "crew-without-crew",
        "unknown-crew",
        "crew-for-dispatcher",
        "blank-name",
    ],
)
def test_bad_input_is_422_in_the_one_format_and_nothing_is_stored(
    client: Any, db: Session, admin: dict[str, str], change: dict[str, Any], field: str
) -> None:
    f.crew(db, "north-1")
    payload = {k: v for k, v in (new_user() | change).items() if v is not None}
    before = counts(db)
    body = error_body(client.post("/api/v1/users", json=payload, headers=admin), 422)
    assert field in body["errors"], body
    assert "x" * 20 not in json.dumps(body)  # a refused password is not echoed back
    assert counts(db) == before


# -- read ---------------------------------------------------------------------------------


def test_list_pages_and_filters(client: Any, db: Session, admin: dict[str, str]) -> None:
    crew = f.crew(db, "north-1")
    for i in range(3):
        f.user(db, f"crew{i}@city.example", "crew", crew=crew)
    f.user(db, "gone@city.example", "dispatcher").active = False
    db.flush()
    r = client.get("/api/v1/users?page_size=2", headers=admin)
    assert r.status_code == 200
    page = no_secrets(r)
    assert (page["total"], page["page"], page["page_size"]) == (5, 1, 2)
    assert [u["email"] for u in page["items"]] == ["admin@example.org", "crew0@city.example"]
    assert set(page["items"][1]) == {"id", "email", "name", "role", "crew", "active", "created_at"}
    second = client.get("/api/v1/users?page_size=2&page=2", headers=admin).get_json()
    assert [u["email"] for u in second["items"]] == ["crew1@city.example", "crew2@city.example"]
    crews = client.get("/api/v1/users?role=crew&active=true", headers=admin).get_json()
    assert crews["total"] == 3 and {u["crew"] for u in crews["items"]} == {"north-1"}
    inactive = client.get("/api/v1/users?active=false", headers=admin).get_json()
    assert [(u["email"], u["active"]) for u in inactive["items"]] == [("gone@city.example", False)]
    assert (
        "role" in error_body(client.get("/api/v1/users?role=mayor", headers=admin), 422)["errors"]
    )


def test_an_unknown_user_is_404(client: Any, admin: dict[str, str]) -> None:
    for method, path in [
        ("get", "/api/v1/users/999999"),
        ("patch", "/api/v1/users/999999"),
        ("post", "/api/v1/users/999999/password"),
        ("post", "/api/v1/users/999999/deactivate"),
        ("post", "/api/v1/users/999999/reactivate"),
    ]:
        body = {"password": PASSWORD} if path.endswith("password") else {}
        assert (
            error_body(getattr(client, method)(path, json=body, headers=admin), 404)["message"]
            == "user 999999 not found"
        )


# -- change --------------------------------------------------------------------------------


def test_patch_changes_role_crew_and_name_and_the_timeline_says_who(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.crew(db, "north-1")
    f.crew(db, "south-1")
    uid = f.user(db, "ana@city.example", "dispatcher").id
    url = f"/api/v1/users/{uid}"
    r = client.patch(url, json={"role": "crew", "crew": "north-1"}, headers=admin)
    assert r.status_code == 200, r.get_json()
    assert (r.get_json()["role"], r.get_json()["crew"]) == ("crew", "north-1")
    assert (
        client.patch(url, json={"name": "Ana López"}, headers=admin).get_json()["crew"] == "north-1"
    )
    assert (
        client.patch(url, json={"crew": "south-1"}, headers=admin).get_json()["crew"] == "south-1"
    )
    body = client.patch(url, json={"role": "supervisor"}, headers=admin).get_json()
    assert (body["role"], body["crew"], body["name"]) == ("supervisor", None, "Ana López")
    assert notes(body) == [
        ("active", "active", ADMIN_LABEL, "role dispatcher → crew; crew none → north-1"),
        ("active", "active", ADMIN_LABEL, "renamed from 'ana' to 'Ana López'"),
        ("active", "active", ADMIN_LABEL, "crew north-1 → south-1"),
        ("active", "active", ADMIN_LABEL, "role crew → supervisor; crew south-1 → none"),
    ]
    assert client.patch(url, json={}, headers=admin).get_json()["timeline"] == body["timeline"]


@pytest.mark.parametrize(
    "change",
    [
        {"role": "crew"},
        {"role": "crew", "crew": "ghost"},
        {"crew": "north-1"},
        {"role": "admin", "name": "  "},
        {"role": "mayor"},
    ],
    ids=[
        "crew-without-crew",
        "unknown-crew",
        "crew-for-dispatcher",
        "good-role-bad-name",
        "bad-role",
    ],
)
def test_a_bad_patch_is_422_and_changes_nothing(
    client: Any, db: Session, admin: dict[str, str], change: dict[str, Any]
) -> None:
    f.crew(db, "north-1")
    user = f.user(db, "ana@city.example", "dispatcher")
    before = counts(db)
    error_body(client.patch(f"/api/v1/users/{user.id}", json=change, headers=admin), 422)
    db.refresh(user)
    assert (user.role, user.crew_id, user.name) == ("dispatcher", None, "ana")
    assert counts(db) == before


def test_the_last_active_admin_is_neither_demoted_nor_deactivated(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    me = db.scalar(select(User).where(User.email == "admin@example.org"))
    assert me is not None
    for r in (
        client.patch(f"/api/v1/users/{me.id}", json={"role": "dispatcher"}, headers=admin),
        client.post(f"/api/v1/users/{me.id}/deactivate", headers=admin),
    ):
        assert "it is the last active admin" in error_body(r, 409)["message"]
    db.refresh(me)
    assert (me.role, me.active) == ("admin", True)
    # With a second admin, an admin may step down, and then loses admin access at once.
    f.user(db, "second@city.example", "admin")
    assert (
        client.patch(
            f"/api/v1/users/{me.id}", json={"role": "supervisor"}, headers=admin
        ).status_code
        == 200
    )
    assert error_body(client.get("/api/v1/users", headers=admin), 403)


# -- password and deactivation ---------------------------------------------------------------


def test_a_password_reset_signs_the_user_out_everywhere(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    user = f.user(db, "ana@city.example", "dispatcher")
    old = [f.token_for(db, user), bearer(client, "ana@city.example", "secret-pass")]
    r = client.post(f"/api/v1/users/{user.id}/password", json={"password": PASSWORD}, headers=admin)
    assert r.status_code == 204 and r.get_data() == b""
    for headers in old:
        error_body(client.get("/api/v1/auth/me", headers=headers), 401)
    assert login(client, "ana@city.example", "secret-pass").status_code == 401
    assert login(client, "ana@city.example", PASSWORD).status_code == 200
    timeline = client.get(f"/api/v1/users/{user.id}", headers=admin)
    assert notes(no_secrets(timeline))[-1] == (
        "active",
        "active",
        ADMIN_LABEL,
        "password reset; 2 tokens revoked",
    )


def test_a_weak_reset_is_422_and_the_old_password_and_tokens_still_work(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    user = f.user(db, "ana@city.example", "dispatcher")
    headers = f.token_for(db, user)
    body = error_body(
        client.post(f"/api/v1/users/{user.id}/password", json={"password": "short"}, headers=admin),
        422,
    )
    assert body["errors"]["password"] == ["the password needs at least 10 characters"]
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert login(client, "ana@city.example", "secret-pass").status_code == 200


def test_deactivation_revokes_tokens_and_is_audited_with_its_reason(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    user = f.user(db, "ana@city.example", "dispatcher")
    headers = f.token_for(db, user)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    r = client.post(
        f"/api/v1/users/{user.id}/deactivate", json={"note": "left the city"}, headers=admin
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["active"] is False
    assert notes(r.get_json())[-1] == (
        "active",
        "inactive",
        ADMIN_LABEL,
        "deactivated; 1 token revoked: left the city",
    )
    assert (
        db.scalar(
            select(func.count()).select_from(AccessToken).where(AccessToken.user_id == user.id)
        )
        == 0
    )
    error_body(client.get("/api/v1/auth/me", headers=headers), 401)
    assert login(client, "ana@city.example", "secret-pass").status_code == 401
    assert error_body(client.post(f"/api/v1/users/{user.id}/deactivate", headers=admin), 409)[
        "message"
    ] == ("ana@city.example is already inactive")

    back = client.post(f"/api/v1/users/{user.id}/reactivate", headers=admin)
    assert back.status_code == 200 and back.get_json()["active"] is True
    assert notes(back.get_json())[-1] == ("inactive", "active", ADMIN_LABEL, "reactivated")
    assert login(client, "ana@city.example", "secret-pass").status_code == 200
    assert error_body(client.post(f"/api/v1/users/{user.id}/reactivate", headers=admin), 409)


def test_an_admin_who_deactivates_themselves_is_signed_out(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    f.user(db, "second@city.example", "admin")
    me = db.scalar(select(User.id).where(User.email == "admin@example.org"))
    assert client.post(f"/api/v1/users/{me}/deactivate", headers=admin).status_code == 200
    error_body(client.get("/api/v1/users", headers=admin), 401)


# -- who may ---------------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/{id}"),
    ("patch", "/api/v1/users/{id}"),
    ("post", "/api/v1/users/{id}/password"),
    ("post", "/api/v1/users/{id}/deactivate"),
    ("post", "/api/v1/users/{id}/reactivate"),
]


@pytest.mark.parametrize(
    "role", ["crew", "dispatcher", "supervisor", None], ids=lambda r: r or "anonymous"
)
@pytest.mark.parametrize(
    ("method", "path"), ENDPOINTS, ids=lambda v: v if v.startswith("/") else v.upper()
)
def test_only_admins_manage_users(
    client: Any, db: Session, role: str | None, method: str, path: str
) -> None:
    target = f.user(db, "target@city.example", "dispatcher")
    headers: dict[str, str] = {}
    if role:
        crew = f.crew(db) if role == "crew" else None
        headers = f.token_for(db, f.user(db, f"{role}@city.example", role, crew=crew))
    before = counts(db)
    body = {"role": "admin", "password": PASSWORD, "email": "new@city.example", "name": "New"}
    r = getattr(client, method)(path.format(id=target.id), json=body, headers=headers)
    error_body(r, 403 if role else 401)
    db.refresh(target)
    assert (target.role, target.active, counts(db)) == ("dispatcher", True, before)


def test_the_api_is_documented_with_its_error_answers(client: Any) -> None:
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    expected = {
        ("get", "/api/v1/users"): {"200", "422"},
        ("post", "/api/v1/users"): {"201", "409", "422"},
        ("get", "/api/v1/users/{user_id}"): {"200", "404"},
        ("patch", "/api/v1/users/{user_id}"): {"200", "404", "409", "422"},
        ("post", "/api/v1/users/{user_id}/password"): {"204", "404", "422"},
        ("post", "/api/v1/users/{user_id}/deactivate"): {"200", "404", "409"},
        ("post", "/api/v1/users/{user_id}/reactivate"): {"200", "404", "409"},
    }
    for (method, path), statuses in expected.items():
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (method, path)
        assert operation["security"] == [{"bearer": []}]
        for status in statuses - {"200", "201", "204", "422"}:
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (
                method,
                path,
                status,
            )
    schemas = spec["components"]["schemas"]
    assert schemas["NewUser"]["properties"]["password"]["writeOnly"] is True
    assert set(schemas["NewUser"]["required"]) == {"email", "name", "role", "password"}
    assert "required" not in schemas["UserChange"]
    assert not any("password" in name.lower() for name in schemas["User"]["properties"])
    assert "timeline" in schemas["UserDetail"]["properties"]
