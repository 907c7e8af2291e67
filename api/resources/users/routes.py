from __future__ import annotations

from typing import Any

from api.auth import current_actor, require
from api.db import session
from api.errors import ErrorSchema
from api.resources.common import Blueprint, SelectPage, page_schema, timeline
from api.resources.users.schemas import (
    AccountNoteSchema,
    NewUserSchema,
    PasswordSchema,
    UserArgs,
    UserChangeSchema,
    UserDetailSchema,
    UserSchema,
)
from core import users
from core.models import User

blp = Blueprint(
    "users",
    __name__,
    url_prefix="/users",
    description="Staff and crew logins (admins): roles, password resets, deactivation; every change is audited.",
)

NOT_FOUND = {"schema": ErrorSchema, "description": "No such user"}
INVALID = {"schema": ErrorSchema, "description": "Bad input; nothing was stored"}


def _detail(user: User) -> User:
    # Read by the answer's schema; no column, hence the ignore.
    user.timeline = timeline(session(), "user", user.id)  # type: ignore[attr-defined]
    return user


@blp.route("")
@require("admin")
@blp.arguments(UserArgs, location="query")
@blp.response(200, page_schema(UserSchema))
@blp.paginate(SelectPage)
@blp.doc(operationId="listUsers")
def list_users(args: dict[str, Any]) -> Any:
    return users.users_query(role=args.get("role"), active=args.get("active"))


@blp.route("", methods=["POST"])
@require("admin")
@blp.arguments(NewUserSchema)
@blp.response(201, UserDetailSchema)
@blp.alt_response(
    409, schema=ErrorSchema, description="A user with this e-mail address (in any case) exists"
)
@blp.alt_response(422, **INVALID)
@blp.doc(operationId="createUser")
def create_user(data: dict[str, Any]) -> Any:
    s = session()
    user = users.create_user(
        s,
        email=data["email"],
        name=data["name"],
        role=data["role"],
        password=data["password"],
        crew_code=data["crew"],
        actor=current_actor(),
    )
    s.commit()
    return _detail(user)


@blp.route("/<int:user_id>")
@require("admin")
@blp.response(200, UserDetailSchema)
@blp.alt_response(404, **NOT_FOUND)
@blp.doc(operationId="getUser")
def get_user(user_id: int) -> Any:
    return _detail(users.get_user(session(), user_id))


@blp.route("/<int:user_id>", methods=["PATCH"])
@require("admin")
@blp.arguments(UserChangeSchema)
@blp.response(200, UserDetailSchema)
@blp.alt_response(404, **NOT_FOUND)
@blp.alt_response(409, schema=ErrorSchema, description="It would demote the last active admin")
@blp.alt_response(422, **INVALID)
@blp.doc(operationId="updateUser")
def update_user(data: dict[str, Any], user_id: int) -> Any:
    s = session()
    user = users.get_user(s, user_id, for_update=True)
    actor = current_actor()
    if "role" in data or "crew" in data:
        role = data.get("role", user.role)
        # A crew login keeps its crew when only its role or name is sent.
        kept = user.crew.code if user.crew and role == "crew" else None
        users.change_role(s, user, role=role, crew_code=data.get("crew", kept), actor=actor)
    if "name" in data:
        users.rename(s, user, name=data["name"], actor=actor)
    s.commit()
    return _detail(user)


@blp.route("/<int:user_id>/password", methods=["POST"])
@require("admin")
@blp.arguments(PasswordSchema)
@blp.response(204)
@blp.alt_response(404, **NOT_FOUND)
@blp.alt_response(422, **INVALID)
@blp.doc(operationId="resetUserPassword")
def reset_password(data: dict[str, Any], user_id: int) -> None:
    """Set a new password and revoke the user's tokens: every device signs in again."""
    s = session()
    user = users.get_user(s, user_id, for_update=True)
    users.set_password(s, user, password=data["password"], actor=current_actor())
    s.commit()


@blp.route("/<int:user_id>/deactivate", methods=["POST"])
@require("admin")
@blp.arguments(AccountNoteSchema, required=False)
@blp.response(200, UserDetailSchema)
@blp.alt_response(404, **NOT_FOUND)
@blp.alt_response(409, schema=ErrorSchema, description="Already inactive, or the last active admin")
@blp.doc(operationId="deactivateUser")
def deactivate(data: dict[str, Any], user_id: int) -> Any:
    """Close the login and revoke its tokens at once. The row stays for the audit trail."""
    s = session()
    user = users.get_user(s, user_id, for_update=True)
    users.deactivate(s, user, actor=current_actor(), note=data.get("note"))
    s.commit()
    return _detail(user)


@blp.route("/<int:user_id>/reactivate", methods=["POST"])
@require("admin")
@blp.arguments(AccountNoteSchema, required=False)
@blp.response(200, UserDetailSchema)
@blp.alt_response(404, **NOT_FOUND)
@blp.alt_response(409, schema=ErrorSchema, description="Already active")
@blp.doc(operationId="reactivateUser")
def reactivate(data: dict[str, Any], user_id: int) -> Any:
    """Open the login again with its old password (reset it too if that may have leaked)."""
    s = session()
    user = users.get_user(s, user_id, for_update=True)
    users.reactivate(s, user, actor=current_actor(), note=data.get("note"))
    s.commit()
    return _detail(user)
