"""A deactivated account's tokens are gone for good, even one issued while it was being
deactivated."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import auth, users
from core.errors import PermissionDenied
from core.models import AccessToken
from tests import factories as f
from tests.api.errors import error_body


# -- deactivation is for good ---------------------------------------------------------


def test_a_token_issued_while_the_account_is_deactivated_does_not_come_back(committed: sessionmaker[Session]) -> None:
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


def test_reactivation_revokes_tokens_left_from_before(client: Any, db: Session, admin: dict[str, str]) -> None:
    """However a token of an inactive account came to be, it does not come back."""
    ana = f.user(db, "ana@example.org", "dispatcher")
    headers = f.token_for(db, ana)
    ana.active = False  # as a deactivation that failed to revoke would leave it
    db.flush()
    r = client.post(f"/api/v1/users/{ana.id}/reactivate", headers=admin)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["timeline"][-1]["note"] == "reactivated; 1 token from before revoked"
    error_body(client.get("/api/v1/auth/me", headers=headers), 401)
