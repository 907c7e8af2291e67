"""Admins register client apps' webhooks; the secret is shown once; only http(s) URLs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import Notification, Webhook
from tests import factories as f
from tests.api.errors import error_body


def test_register_list_and_deactivate_a_webhook(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    r = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": "https://app.example.org/streetloop"}, headers=admin)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert set(created) == {"id", "api_key_id", "url", "active", "created_at", "secret"}
    assert (created["api_key_id"], created["url"], created["active"]) == (key.id, "https://app.example.org/streetloop", True)
    secret = created["secret"]
    assert len(secret) == 64 and db.get(Webhook, created["id"]).secret == secret

    listed = client.get(f"/api/v1/api-keys/{key.id}/webhooks", headers=admin)
    assert listed.status_code == 200
    assert [(h["id"], h["url"], h["active"]) for h in listed.get_json()] == [(created["id"], created["url"], True)]
    assert all(set(h) == {"id", "api_key_id", "url", "active", "created_at"} for h in listed.get_json())
    assert secret not in listed.get_data(as_text=True)

    gone = client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin)
    assert gone.status_code == 204 and gone.get_data() == b""
    assert client.get(f"/api/v1/api-keys/{key.id}/webhooks", headers=admin).get_json()[0]["active"] is False

    # A request the app submits now tells no one: the hook is off.
    f.service_type(db)
    req = f.report(db, api_key_id=key.id, contact=Contact()).request
    ServiceRequestLifecycle.transition(db, req, "scheduled", actor=f.SYSTEM)
    db.flush()
    assert db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all() == []

    # Registering the same URL again switches it back on, with a new secret.
    again = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": created["url"]}, headers=admin)
    assert again.status_code == 201
    assert (again.get_json()["id"], again.get_json()["active"]) == (created["id"], True)
    assert again.get_json()["secret"] != secret


def test_the_same_url_twice_is_a_conflict(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    url = "http://127.0.0.1:8080/hook"
    first = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin)
    assert first.status_code == 201
    body = error_body(client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin), 409)
    assert body["message"] == f"{url} is already registered for api key {key.id} (webhook {first.get_json()['id']})"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://app.example.org/hook", "Not a valid URL."),
        ("javascript:alert(1)", "Not a valid URL."),
        ("app.example.org/hook", "Not a valid URL."),
        ("https://", "Not a valid URL."),
        ("https://user:pw@app.example.org/hook", "put no credentials in the URL; verify deliveries with the signature instead"),
        ("https://app.example.org/" + "x" * 2048, "Longer than maximum length 2048."),
    ],
)
def test_only_plain_http_urls_are_accepted(client: Any, db: Session, admin: dict[str, str], url: str, message: str) -> None:
    key = f.api_key(db)
    body = error_body(client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin), 422)
    assert body["errors"] == {"url": [message]}
    assert db.scalars(select(Webhook)).all() == []


def test_bad_bodies_and_unknown_ids(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    assert error_body(client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={}, headers=admin), 422)["errors"] == {
        "url": ["Missing data for required field."]
    }
    chosen = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": "https://a.example.org/", "secret": "mine"}, headers=admin)
    assert error_body(chosen, 422)["errors"] == {"secret": ["Unknown field."]}
    assert error_body(client.get("/api/v1/api-keys/999999/webhooks", headers=admin), 404)["message"] == "api key 999999 not found"
    missing = client.post("/api/v1/api-keys/999999/webhooks", json={"url": "https://a.example.org/"}, headers=admin)
    assert error_body(missing, 404)["message"] == "api key 999999 not found"
    assert error_body(client.delete("/api/v1/webhooks/999999", headers=admin), 404)["message"] == "webhook 999999 not found"


def test_a_revoked_key_gets_no_new_webhook(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    key.active = False
    db.flush()
    r = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": "https://a.example.org/"}, headers=admin)
    assert error_body(r, 409)["message"] == f"api key {key.id} is revoked"


@pytest.mark.parametrize("role", ["dispatcher", "supervisor"])
def test_only_admins_manage_webhooks(client: Any, db: Session, role: str) -> None:
    key = f.api_key(db)
    hook = Webhook(api_key_id=key.id, url="https://a.example.org/", secret="k")
    db.add(hook)
    db.flush()
    staff = f.token_for(db, f.user(db, f"{role}@example.org", role))
    for r in (
        client.get(f"/api/v1/api-keys/{key.id}/webhooks", headers=staff),
        client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": "https://b.example.org/"}, headers=staff),
        client.delete(f"/api/v1/webhooks/{hook.id}", headers=staff),
    ):
        assert error_body(r, 403)["message"] == "this needs one of the roles: admin"
    assert error_body(client.get(f"/api/v1/api-keys/{key.id}/webhooks"), 401)["code"] == 401
    db.refresh(hook)
    assert hook.active is True
