from __future__ import annotations

from typing import Any

from api.auth import current_actor, current_token, current_user, require
from api.client_address import request_client_address
from api.db import session, settings
from api.errors import ErrorSchema, abort
from api.resources.auth.schemas import LoginSchema, MeSchema, RevokedSchema, TokenSchema
from api.resources.common import Blueprint
from core.auth import revoke_token, revoke_tokens
from core.lifecycle.user import UserLifecycle
from core.sign_in import SignInLimits, TooManyFailures, sign_in

blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/auth",
    description="Sign in with e-mail and password; get a bearer token; sign out one or every device.",
)

SIGNED_IN = {"schema": ErrorSchema, "description": "No token, or one that is invalid or expired"}


@blp.route("/token", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Wrong e-mail or password")
@blp.alt_response(
    429,
    schema=ErrorSchema,
    headers={"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    description="Too many failed sign-ins for this account or from this address; nothing was checked",
)
@blp.doc(operationId="signIn")
def token(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange e-mail and password for a bearer token.

    Failed sign-ins are limited per account and per client address (settings
    `STREETLOOP_SIGN_IN_*`); past a limit the answer is 429 with `Retry-After`, even for
    the right password, until the oldest failure in the window has aged out."""
    s = session()
    cfg = settings()
    try:
        signed_in = sign_in(
            s,
            body["email"],
            body["password"],
            address=request_client_address(),
            limits=SignInLimits.from_settings(cfg),
            secret=cfg.secret_key,
            ttl_s=cfg.token_ttl_s,
        )
    except TooManyFailures as exc:
        abort(
            429,
            message="too many failed sign-ins; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        )
    # The failure is committed too: it is what the limits count.
    s.commit()
    if signed_in is None:
        abort(401, message="wrong e-mail or password")
    return {"access_token": signed_in.token, "token_type": "Bearer", "expires_in": cfg.token_ttl_s}


@blp.route("/me")
@require()
@blp.response(200, MeSchema)
@blp.doc(operationId="getMe")
def me() -> Any:
    return current_user()


@blp.route("/logout", methods=["POST"])
@require()
@blp.response(204)
@blp.alt_response(401, **SIGNED_IN)
@blp.doc(operationId="signOut")
def logout() -> None:
    """Sign out this device.

    Revokes the token this request was sent with; the account's other tokens (its other
    devices) keep working. Written to the account's timeline."""
    s = session()
    user = current_user()
    revoke_token(s, user, current_token())
    UserLifecycle.annotate(s, user, actor=current_actor(), note="signed out: this token revoked")
    s.commit()


@blp.route("/logout-everywhere", methods=["POST"])
@require()
@blp.response(200, RevokedSchema)
@blp.alt_response(401, **SIGNED_IN)
@blp.doc(operationId="signOutEverywhere")
def logout_everywhere() -> dict[str, int]:
    """Sign out every device.

    Revokes all of the account's tokens, this one included (a lost phone, a shared
    computer). Written to the account's timeline."""
    s = session()
    user = current_user()
    revoked = revoke_tokens(s, user)
    UserLifecycle.annotate(
        s,
        user,
        actor=current_actor(),
        note=f"signed out everywhere: {revoked} token{'' if revoked == 1 else 's'} revoked",
    )
    s.commit()
    return {"revoked": revoked}
