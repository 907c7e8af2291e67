"""Admins register client apps' webhooks; the secret is shown once; only https URLs of
public hosts, unless the settings make an exception."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import Notification, User, Webhook
from core.settings import Settings
from tests import factories as f
from tests.api.errors import error_body

PUBLIC_ONLY = "webhooks may call only public hosts, or those in STREETLOOP_WEBHOOK_ALLOW_HOSTS"
HTTPS_ONLY = "use https; plain http is allowed only for the hosts in STREETLOOP_WEBHOOK_HTTP_HOSTS"


@pytest.fixture
def relay_client(settings: Settings, sessions: Any, queue: object) -> Any:
    """An app whose settings let webhooks reach 127.0.0.1 and the city's own relay
    (`relay.internal`, the 10.20.0.0/16 network), over plain http for 127.0.0.1."""
    from api import create_app

    relay = dataclasses.replace(
        settings,
        webhook_allow_hosts=("127.0.0.1", "relay.internal", "10.20.0.0/16"),
        webhook_http_hosts=("127.0.0.1",),
    )
    app = create_app(relay, sessions=sessions, queue=queue)
    app.config["TESTING"] = True
    return app.test_client()


def test_register_list_and_deactivate_a_webhook(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    key = f.api_key(db)
    r = client.post(
        f"/api/v1/api-keys/{key.id}/webhooks",
        json={"url": "https://app.example.org/streetloop"},
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert set(created) == {"id", "api_key_id", "url", "active", "created_at", "secret"}
    assert (created["api_key_id"], created["url"], created["active"]) == (
        key.id,
        "https://app.example.org/streetloop",
        True,
    )
    secret = created["secret"]
    assert len(secret) == 64 and db.get(Webhook, created["id"]).secret == secret

    listed = client.get(f"/api/v1/api-keys/{key.id}/webhooks", headers=admin)
    assert listed.status_code == 200
    assert [(h["id"], h["url"], h["active"]) for h in listed.get_json()] == [
        (created["id"], created["url"], True)
    ]
    assert all(
        set(h) == {"id", "api_key_id", "url", "active", "created_at"} for h in listed.get_json()
    )
    assert secret not in listed.get_data(as_text=True)

    gone = client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin)
    assert gone.status_code == 204 and gone.get_data() == b""
    assert (
        client.get(f"/api/v1/api-keys/{key.id}/webhooks", headers=admin).get_json()[0]["active"]
        is False
    )

    # A request the app submits now tells no one: the hook is off.
    f.service_type(db)
    req = f.report(db, api_key_id=key.id, contact=Contact()).request
    ServiceRequestLifecycle.transition(db, req, "scheduled", actor=f.SYSTEM)
    db.flush()
    assert (
        db.scalars(select(Notification).where(Notification.service_request_id == req.id)).all()
        == []
    )

    # Registering the same URL again switches it back on, with a new secret.
    again = client.post(
        f"/api/v1/api-keys/{key.id}/webhooks", json={"url": created["url"]}, headers=admin
    )
    assert again.status_code == 201
    assert (again.get_json()["id"], again.get_json()["active"]) == (created["id"], True)
    assert again.get_json()["secret"] != secret


def test_the_same_url_twice_is_a_conflict(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    url = "https://app.example.org:8443/hook"
    first = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin)
    assert first.status_code == 201
    body = error_body(
        client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin), 409
    )
    assert (
        body["message"]
        == f"{url} is already registered for api key {key.id} (webhook {first.get_json()['id']})"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://app.example.org/hook", "Not a valid URL."),
        ("javascript:alert(1)", "Not a valid URL."),
        ("app.example.org/hook", "Not a valid URL."),
        ("https://", "Not a valid URL."),
        (
            "https://user:pw@app.example.org/hook",
            "put no credentials in the URL; verify deliveries with the signature instead",
        ),
        ("https://app.example.org/" + "x" * 2048, "Longer than maximum length 2048."),
    ],
)
def test_only_plain_http_urls_are_accepted(
    client: Any, db: Session, admin: dict[str, str], url: str, message: str
) -> None:
    key = f.api_key(db)
    body = error_body(
        client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin), 422
    )
    assert body["errors"] == {"url": [message]}
    assert db.scalars(select(Webhook)).all() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # The cloud's metadata service, the city's networks, this machine, in every spelling
        # a resolver reads as an address.
        (
            "https://169.254.169.254/latest/meta-data/",
            f"169.254.169.254 is a link-local address; {PUBLIC_ONLY}",
        ),
        ("https://10.0.0.1/hook", f"10.0.0.1 is a private address; {PUBLIC_ONLY}"),
        ("https://192.168.1.20:8443/hook", f"192.168.1.20 is a private address; {PUBLIC_ONLY}"),
        ("https://100.64.0.1/hook", f"100.64.0.1 is a reserved address; {PUBLIC_ONLY}"),
        ("https://127.0.0.1:5432/", f"127.0.0.1 is a loopback address; {PUBLIC_ONLY}"),
        ("https://[::1]/hook", f"::1 is a loopback address; {PUBLIC_ONLY}"),
        ("https://0.0.0.0/", f"0.0.0.0 is an unspecified address; {PUBLIC_ONLY}"),
        ("https://0/", f"0 (0.0.0.0) is an unspecified address; {PUBLIC_ONLY}"),
        ("https://224.0.0.1/", f"224.0.0.1 is a multicast address; {PUBLIC_ONLY}"),
        ("https://2130706433/", f"2130706433 (127.0.0.1) is a loopback address; {PUBLIC_ONLY}"),
        ("https://017700000001/", f"017700000001 (127.0.0.1) is a loopback address; {PUBLIC_ONLY}"),
        (
            "https://127.000.000.001/",
            f"127.000.000.001 (127.0.0.1) is a loopback address; {PUBLIC_ONLY}",
        ),
        ("https://0x7f.1/", "Not a valid URL."),
        ("https://[fe80::1]/", f"fe80::1 is a link-local address; {PUBLIC_ONLY}"),
        (
            "https://[::ffff:7f00:1]/",
            f"::ffff:7f00:1 (127.0.0.1) is a loopback address; {PUBLIC_ONLY}",
        ),
        (
            "https://[64:ff9b::a00:1]/",
            f"64:ff9b::a00:1 (10.0.0.1) is a private address; {PUBLIC_ONLY}",
        ),
        (
            "https://[2002:a9fe:a9fe::]/",
            f"2002:a9fe:a9fe:: (169.254.169.254) is a link-local address; {PUBLIC_ONLY}",
        ),
        # Names that lead inside a network by definition.
        ("https://localhost:8080/", f"localhost is an internal host name; {PUBLIC_ONLY}"),
        ("https://db.localhost/", f"db.localhost is an internal host name; {PUBLIC_ONLY}"),
        (
            "https://metadata/computeMetadata/v1/",
            f"metadata is an internal host name; {PUBLIC_ONLY}",
        ),
        ("https://billing.internal/", f"billing.internal is an internal host name; {PUBLIC_ONLY}"),
        ("https://printer.local/", f"printer.local is an internal host name; {PUBLIC_ONLY}"),
        # And plain http anywhere.
        ("http://app.example.org/hook", HTTPS_ONLY),
        ("http://127.0.0.1:8080/hook", HTTPS_ONLY),
    ],
)
def test_urls_into_the_citys_network_are_refused(
    client: Any, db: Session, admin: dict[str, str], url: str, message: str
) -> None:
    key = f.api_key(db)
    body = error_body(
        client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin), 422
    )
    assert body["errors"] == {"url": [message]}
    assert db.scalars(select(Webhook)).all() == []


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.org/x?y=1", "https://8.8.8.8/hook", "https://[2001:4860:4860::8888]/"],
)
def test_public_hosts_are_accepted_without_any_setting(
    client: Any, db: Session, admin: dict[str, str], url: str
) -> None:
    key = f.api_key(db)
    r = client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin)
    assert r.status_code == 201, r.get_json()
    assert db.scalars(select(Webhook.url)).all() == [url]


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("http://127.0.0.1:8080/hook", 201, None),
        ("https://2130706433:8443/hook", 201, None),  # 127.0.0.1 too
        ("https://relay.internal/hook", 201, None),
        ("https://10.20.3.4/hook", 201, None),
        ("https://[::ffff:a14:304]/hook", 201, None),  # 10.20.3.4
        # What the settings do not name stays refused.
        ("http://relay.internal/hook", 422, HTTPS_ONLY),
        ("https://10.21.0.1/hook", 422, f"10.21.0.1 is a private address; {PUBLIC_ONLY}"),
        ("https://[::1]/hook", 422, f"::1 is a loopback address; {PUBLIC_ONLY}"),
        ("https://localhost/hook", 422, f"localhost is an internal host name; {PUBLIC_ONLY}"),
    ],
)
def test_the_settings_allow_named_internal_hosts_and_plain_http(
    relay_client: Any,
    db: Session,
    admin: dict[str, str],
    url: str,
    status: int,
    message: str | None,
) -> None:
    key = f.api_key(db)
    r = relay_client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={"url": url}, headers=admin)
    if status == 201:
        assert r.status_code == 201, r.get_json()
        assert db.scalars(select(Webhook.url)).all() == [url]
    else:
        assert error_body(r, status)["errors"] == {"url": [message]}
        assert db.scalars(select(Webhook)).all() == []


def test_bad_bodies_and_unknown_ids(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    assert error_body(
        client.post(f"/api/v1/api-keys/{key.id}/webhooks", json={}, headers=admin), 422
    )["errors"] == {"url": ["Missing data for required field."]}
    chosen = client.post(
        f"/api/v1/api-keys/{key.id}/webhooks",
        json={"url": "https://a.example.org/", "secret": "mine"},
        headers=admin,
    )
    assert error_body(chosen, 422)["errors"] == {"secret": ["Unknown field."]}
    assert (
        error_body(client.get("/api/v1/api-keys/999999/webhooks", headers=admin), 404)["message"]
        == "api key 999999 not found"
    )
    missing = client.post(
        "/api/v1/api-keys/999999/webhooks", json={"url": "https://a.example.org/"}, headers=admin
    )
    assert error_body(missing, 404)["message"] == "api key 999999 not found"
    assert (
        error_body(client.delete("/api/v1/webhooks/999999", headers=admin), 404)["message"]
        == "webhook 999999 not found"
    )


def test_a_revoked_key_gets_no_new_webhook(client: Any, db: Session, admin: dict[str, str]) -> None:
    key = f.api_key(db)
    key.active = False
    db.flush()
    r = client.post(
        f"/api/v1/api-keys/{key.id}/webhooks", json={"url": "https://a.example.org/"}, headers=admin
    )
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
        client.post(
            f"/api/v1/api-keys/{key.id}/webhooks",
            json={"url": "https://b.example.org/"},
            headers=staff,
        ),
        client.delete(f"/api/v1/webhooks/{hook.id}", headers=staff),
    ):
        assert error_body(r, 403)["message"] == "this needs one of the roles: admin"
    assert error_body(client.get(f"/api/v1/api-keys/{key.id}/webhooks"), 401)["code"] == 401
    db.refresh(hook)
    assert hook.active is True


def _trail(
    db: Session, entity: str, entity_id: int
) -> list[tuple[str | None, str, str | None, str]]:
    from core.models import StatusEvent

    rows = db.scalars(
        select(StatusEvent)
        .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
        .order_by(StatusEvent.id)
    ).all()
    return [(e.from_status, e.to_status, e.note, e.actor) for e in rows]


def test_client_apps_keys_and_webhooks_are_on_the_audit_trail(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    """Who let an app in, pointed it at which URL, and who cut it off: each a state
    change written with its event, and revoking a key switches its webhooks off too,
    so the list no longer says they are called."""
    me = db.scalar(select(User).where(User.role == "admin"))
    actor = f"user:{me.email}"
    key_id = client.post("/api/v1/api-keys", json={"name": "Kiosk"}, headers=admin).get_json()["id"]
    hook = client.post(
        f"/api/v1/api-keys/{key_id}/webhooks",
        json={"url": "https://a.example.org/hook?token=s3cret"},
        headers=admin,
    )
    assert hook.status_code == 201, hook.get_json()
    hook_id = hook.get_json()["id"]
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers=admin).status_code == 204
    again = client.post(
        f"/api/v1/api-keys/{key_id}/webhooks",
        json={"url": "https://a.example.org/hook?token=s3cret"},
        headers=admin,
    )
    assert again.get_json()["id"] == hook_id
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=admin).status_code == 204
    # Revoking again changes nothing and writes nothing.
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=admin).status_code == 204

    assert _trail(db, "api_key", key_id) == [
        (None, "active", "created: Kiosk", actor),
        ("active", "revoked", "revoked; 1 webhook switched off", actor),
    ]
    assert _trail(db, "webhook", hook_id) == [
        (None, "active", "registered: https://a.example.org/hook (its query left out)", actor),
        ("active", "inactive", "switched off", actor),
        ("inactive", "active", "registered again, with a new secret", actor),
        ("active", "inactive", "api key revoked", actor),
    ]
    # The trail is read by every admin: a token a client app put in its URL stays out of it.
    assert "s3cret" not in str(_trail(db, "webhook", hook_id))
    listed = client.get(f"/api/v1/api-keys/{key_id}/webhooks", headers=admin).get_json()
    assert [(h["id"], h["active"]) for h in listed] == [(hook_id, False)]
