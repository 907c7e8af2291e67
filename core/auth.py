"""Passwords (Argon2id), opaque bearer tokens, and Open311 API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.db import rowcount
from core.errors import PermissionDenied
from core.lifecycle.base import Actor
from core.lifecycle.client_app import ApiKeyLifecycle, WebhookLifecycle
from core.models import AccessToken, ApiKey, User, Webhook

_hasher = PasswordHasher()
# Verifying against this when the e-mail is unknown keeps login timing uniform.
_DUMMY_HASH = _hasher.hash("streetloop-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def authenticate(session: Session, email: str, password: str) -> User | None:
    user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def issue_token(session: Session, user: User, ttl_s: int) -> tuple[str, datetime]:
    """A new bearer token of an active account; PermissionDenied if it is not active now,
    or if its password is no longer the one `user` was signed in with.

    The account's row is locked (FOR SHARE) and read again first. A sign-in checks the
    password without a lock, and an admin may deactivate the account or reset its
    password meanwhile: without this, the token would be stored after that change deleted
    the account's tokens, and outlive it (a reactivation would even bring it back). With
    it, either the change waits for this token (and deletes it) or this sees the change."""
    now = session.execute(
        select(User.active, User.password_hash).where(User.id == user.id).with_for_update(read=True)
    ).one_or_none()
    if now is None or not now.active:
        raise PermissionDenied(f"user {user.id} is not active")
    if now.password_hash != user.password_hash:
        raise PermissionDenied(f"the password of user {user.id} changed while signing in")
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    session.add(AccessToken(token_hash=_sha256(token), user_id=user.id, expires_at=expires))
    # Expired tokens are useless; clearing them here keeps the table small without a cron job.
    session.execute(
        delete(AccessToken).where(
            AccessToken.user_id == user.id, AccessToken.expires_at < func.now()
        )
    )
    return token, expires


def user_for_token(session: Session, token: str) -> User | None:
    row = session.scalar(
        select(AccessToken).where(
            AccessToken.token_hash == _sha256(token), AccessToken.expires_at > func.now()
        )
    )
    if row is None or not row.user.active:
        return None
    return row.user


def revoke_tokens(session: Session, user: User) -> int:
    """Sign the user out everywhere; returns how many tokens were deleted."""
    result = session.execute(delete(AccessToken).where(AccessToken.user_id == user.id))
    return rowcount(result)


def revoke_token(session: Session, user: User, token: str) -> bool:
    """Sign out this one token of the user (the device it is on); False if it was gone."""
    result = session.execute(
        delete(AccessToken).where(
            AccessToken.user_id == user.id, AccessToken.token_hash == _sha256(token)
        )
    )
    return bool(rowcount(result))


def create_api_key(
    session: Session, name: str, key: str | None = None, *, actor: Actor
) -> tuple[ApiKey, str]:
    """A new Open311 client app's key, on the audit trail; the key itself is shown once
    (only its hash is stored, and the trail names the app, never the key)."""
    key = key or secrets.token_urlsafe(24)
    row = ApiKey(key_hash=_sha256(key), name=name, active=True)
    session.add(row)
    session.flush()
    ApiKeyLifecycle.record_creation(session, row, actor=actor, note=f"created: {name}")
    return row, key


def revoke_api_key(session: Session, row: ApiKey, *, actor: Actor) -> None:
    """Revoke a client app's key for good, and switch its webhooks off with it: the
    outbox calls no webhook of a revoked key, and the list must not say otherwise.
    Revoking a revoked key changes nothing."""
    row = session.scalars(
        select(ApiKey)
        .where(ApiKey.id == row.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if not row.active:
        return
    hooks = session.scalars(
        select(Webhook)
        .where(Webhook.api_key_id == row.id, Webhook.active.is_(True))
        .order_by(Webhook.id)
        .with_for_update()
    ).all()
    for hook in hooks:
        WebhookLifecycle.transition(session, hook, "inactive", actor=actor, note="api key revoked")
    ApiKeyLifecycle.transition(
        session,
        row,
        "revoked",
        actor=actor,
        note=f"revoked; {len(hooks)} webhook{'s' if len(hooks) != 1 else ''} switched off",
    )


def api_key_for(session: Session, key: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where(ApiKey.key_hash == _sha256(key), ApiKey.active.is_(True))
    )
