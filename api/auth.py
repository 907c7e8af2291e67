"""Bearer tokens on /api/v1 and role checks."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from api.db import session
from api.errors import abort
from api.spec import error_response_name
from core.auth import user_for_token
from core.lifecycle import Actor
from core.models import User

F = TypeVar("F", bound=Callable[..., Any])

STAFF = ("dispatcher", "supervisor", "admin")


def current_user() -> User:
    return g.current_user


def current_token() -> str:
    """The bearer token of the signed-in request."""
    return g.bearer_token


def current_actor() -> Actor:
    user = current_user()
    return Actor.user(user.id, user.email)


def _authenticate() -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(
            401,
            message="sign in first: send 'Authorization: Bearer <token>' (POST /api/v1/auth/token)",
            headers={"WWW-Authenticate": 'Bearer realm="streetloop"'},
        )
    user = user_for_token(session(), token.strip())
    if user is None:
        abort(
            401,
            message="the token is invalid or has expired; sign in again",
            headers={"WWW-Authenticate": 'Bearer realm="streetloop", error="invalid_token"'},
        )
    # Signing out revokes the very token the request came with.
    g.bearer_token = token.strip()
    return user


def require(*roles: str) -> Callable[[F], F]:
    """Sign-in required; with roles, one of them (admins may do everything staff may)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = _authenticate()
            allowed = set(roles)
            if allowed & set(STAFF):
                allowed.add("admin")
            if roles and user.role not in allowed:
                abort(403, message=f"this needs one of the roles: {', '.join(sorted(allowed))}")
            g.current_user = user
            return view(*args, **kwargs)

        # flask-smorest reads this to document the security requirement and the answers
        # this check gives: 401 always, 403 when roles are named. They refer to the shared
        # error answers (api/spec.py) unless the view documents its own for that status.
        apidoc = copy.deepcopy(getattr(view, "_apidoc", {}))
        apidoc.setdefault("manual_doc", {})["security"] = [{"bearer": []}]
        responses = apidoc.setdefault("response", {}).setdefault("responses", {})
        for status in (401, 403) if roles else (401,):
            if status not in responses:
                responses[status] = [error_response_name(status)]
        # flask-smorest keeps a view's documentation as an attribute of the function, which
        # mypy cannot know; and functools.wraps is typed as making a new kind of callable,
        # though the wrapper takes and answers what the view does.
        wrapper._apidoc = apidoc  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
