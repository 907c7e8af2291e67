from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint, abort

from api.auth import current_user, require
from api.db import session, settings
from api.resources.auth.schemas import LoginSchema, MeSchema, TokenSchema
from core.auth import authenticate, issue_token

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Sign in with e-mail and password; get a bearer token.")


@blp.route("/token", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Wrong e-mail or password")
def token(body: dict[str, Any]) -> dict[str, Any]:
    s = session()
    user = authenticate(s, body["email"], body["password"])
    if user is None:
        abort(401, message="wrong e-mail or password")
    ttl = settings().token_ttl_s
    value, _ = issue_token(s, user, ttl)
    s.commit()
    return {"access_token": value, "token_type": "Bearer", "expires_in": ttl}


@blp.route("/me")
@require()
@blp.response(200, MeSchema)
def me() -> Any:
    return current_user()
