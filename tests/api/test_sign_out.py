"""Signing out: this token, or every token of the account; a deactivated account's
tokens are gone for good, even one issued while it was being deactivated."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import auth, users
from core.errors import PermissionDenied
from core.models import AccessToken, StatusEvent, User
from tests import factories as f
from tests.api.errors import error_body


def me(client: Any, headers: dict[str, str]) -> int:
    return client.get("/api/v1/auth/me", headers=headers).status_code


def user_events(db: Session, user: User) -> list[tuple[str, str | None]]:
    rows = db.execute(
        select(StatusEvent.actor, StatusEvent.note)
        .where(StatusEvent.entity == "user", StatusEvent.entity_id == user.id)
        .order_by(StatusEvent.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_logout_revokes_this_token_only_and_is_audited(client: Any, db: Session) -> None:
    ana = f.user(db, "ana@example.org", "dispatcher")
    phone, laptop = f.token_for(db, ana), f.token_for(db, ana)
    r = client.post("/api/v1/auth/logout", headers=phone)
    assert r.status_code == 204 and r.get_data() == b""
    error_body(client.get("/api/v1/auth/me", headers=phone), 401)
    assert me(client, laptop) == 200
    assert user_events(db, ana) == [("user:ana@example.org", "signed out: this token revoked")]
    # The token is gone, so a second logout with it is a plain 401.
    error_body(client.post("/api/v1/auth/logout", headers=phone), 401)


def test_logout_everywhere_revokes_every_token_and_is_audited(client: Any, db: Session) -> None:
    ana = f.user(db, "ana@example.org", "crew", crew=f.crew(db))
    other = f.token_for(db, f.user(db, "bo@example.org", "dispatcher"))
    tokens = [f.token_for(db, ana) for _ in range(3)]
    r = client.post("/api/v1/auth/logout-everywhere", headers=tokens[0])
    assert r.status_code == 200 and r.get_json() == {"revoked": 3}
    assert [me(client, t) for t in tokens] == [401, 401, 401]
    assert me(client, other) == 200
    assert user_events(db, ana) == [
        ("user:ana@example.org", "signed out everywhere: 3 tokens revoked")
    ]


@pytest.mark.parametrize("path", ["/api/v1/auth/logout", "/api/v1/auth/logout-everywhere"])
def test_signing_out_needs_a_token(client: Any, db: Session, path: str) -> None:
    r = client.post(path)
    error_body(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="streetloop"'
    assert db.scalar(select(StatusEvent.id).where(StatusEvent.entity == "user")) is None


def test_signing_out_is_documented(client: Any) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    for path, ok in (("/api/v1/auth/logout", "204"), ("/api/v1/auth/logout-everywhere", "200")):
        operation = paths[path]["post"]
        assert operation["security"] == [{"bearer": []}]
        assert {ok, "401"} <= set(operation["responses"])
        assert operation["description"]
    token = paths["/api/v1/auth/token"]["post"]
    assert {"200", "401", "429"} <= set(token["responses"])


# -- deactivation is for good ---------------------------------------------------------


def test_a_token_issued_while_the_account_is_deactivated_does_not_come_back(
    committed: sessionmaker[Session],
) -> None:
    """A sign-in checks the password (slow, Argon2) while an admin deactivates the account
    in another transaction. The sign-in must not then store a token that reactivation
    would bring back to life."""
    with committed() as s:
        admin = f.user(s, "admin@example.org", "admin")
        ana = f.user(s, "ana@example.org", "dispatcher")
        s.commit()
        admin_actor = f.Actor.user(admin.id, admin.email)
        ana_id = ana.id

    with committed() as signing_in, committed() as admin_session:
        user = auth.authenticate(signing_in, "ana@example.org", "secret-pass")
        assert user is not None  # the password was right, and the account still active
        target = users.get_user(admin_session, ana_id, for_update=True)
        users.deactivate(admin_session, target, actor=admin_actor)
        admin_session.commit()
        with pytest.raises(PermissionDenied):
            auth.issue_token(signing_in, user, 3600)
        signing_in.rollback()

    with committed() as s:
        users.reactivate(s, users.get_user(s, ana_id, for_update=True), actor=admin_actor)
        s.commit()
        assert s.scalars(select(AccessToken).where(AccessToken.user_id == ana_id)).all() == []


def test_reactivation_revokes_tokens_left_from_before(
    client: Any, db: Session, admin: dict[str, str]
) -> None:
    """However a token of an inactive account came to be, it does not come back."""
    ana = f.user(db, "ana@example.org", "dispatcher")
    headers = f.token_for(db, ana)
    ana.active = False  # as a deactivation that failed to revoke would leave it
    db.flush()
    r = client.post(f"/api/v1/users/{ana.id}/reactivate", headers=admin)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["timeline"][-1]["note"] == "reactivated; 1 token from before revoked"
    error_body(client.get("/api/v1/auth/me", headers=headers), 401)


def test_a_sign_in_with_the_old_password_racing_a_reset_gets_no_token(
    committed: sessionmaker[Session],
) -> None:
    """A reset signs out whoever had the password: a sign-in that checked the old one
    while the reset was committed must not store a token after the reset's revocation."""
    with committed() as s:
        admin = f.user(s, "admin@example.org", "admin")
        ana = f.user(s, "ana@example.org", "dispatcher")
        s.commit()
        admin_actor = f.Actor.user(admin.id, admin.email)
        ana_id = ana.id

    with committed() as signing_in, committed() as admin_session:
        user = auth.authenticate(signing_in, "ana@example.org", "secret-pass")
        assert user is not None
        users.set_password(
            admin_session,
            users.get_user(admin_session, ana_id, for_update=True),
            password="a-brand-new-one",
            actor=admin_actor,
        )
        admin_session.commit()
        with pytest.raises(PermissionDenied):
            auth.issue_token(signing_in, user, 3600)
        signing_in.rollback()

    with committed() as s:
        assert s.scalars(select(AccessToken).where(AccessToken.user_id == ana_id)).all() == []
