"""Staff and crew accounts: create, re-role, rename, reset a password, deactivate.

`streetloop users` and `/api/v1/users` both call these; the caller commits. Each
change writes its `StatusEvent(entity="user")` in the same transaction, so the
account's timeline says who did what. No note holds a password or its hash."""

from __future__ import annotations

import re

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.auth import hash_password, revoke_tokens
from core.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from core.lifecycle.base import Actor
from core.lifecycle.user import UserLifecycle
from core.models import ROLES, Crew, User

MIN_PASSWORD_LENGTH = 10
# Sign-in accepts no longer passwords, and hashing megabytes with Argon2 is a denial of service.
MAX_PASSWORD_LENGTH = 1024
MAX_NAME_LENGTH = 255
# What the table's unique index on lower(email) is called; a lost race on it is a 409.
_EMAIL_INDEX = "uq_users_email_lower"

# Deliberately plain: a typo check for people typing addresses, not RFC 5322. No quoted
# local parts or IP-literal domains, and the domain needs a dot (a@localhost is a typo here).
_LOCAL_PART = re.compile(r"[^\s@\"(),:;<>\[\]\\]{1,64}")
_DOMAIN_LABEL = re.compile(r"(?!-)[^\W_](?:[\w-]{0,61}[^\W_])?", re.UNICODE)


# -- checks -------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """The address as stored: trimmed, with the domain in lower case (it is case-blind;
    the local part is kept as typed, and uniqueness ignores its case too)."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not _looks_like_email(local, domain):
        raise ValidationFailed(
            f"{email.strip()!r} does not look like an e-mail address", field="email"
        )
    return f"{local}@{domain.lower()}"


def _looks_like_email(local: str, domain: str) -> bool:
    if (
        not _LOCAL_PART.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        return False
    labels = domain.split(".")
    return (
        len(local) + 1 + len(domain) <= 320
        and len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
    )


def check_password(password: str, *, email: str) -> None:
    """The password policy; a ValidationFailed on `password` says what to change."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"the password needs at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"the password may have at most {MAX_PASSWORD_LENGTH} characters", field="password"
        )
    folded = password.strip().casefold()
    address = email.strip().casefold()
    if folded in {address, address.rpartition("@")[0]}:
        raise ValidationFailed("the password must not be the e-mail address", field="password")
    if len(set(password)) == 1:
        raise ValidationFailed("the password must not be one character repeated", field="password")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed("a name is needed", field="name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(
            f"the name may have at most {MAX_NAME_LENGTH} characters", field="name"
        )
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}; one of: {', '.join(ROLES)}", field="role")
    return role


def _crew_for(session: Session, role: str, crew_code: str | None) -> Crew | None:
    """The crew a login of `role` belongs to: exactly crew logins have one."""
    if role != "crew":
        if crew_code:
            raise ValidationFailed(
                f"only crew logins belong to a crew; a {role} has none", field="crew"
            )
        return None
    if not crew_code:
        raise ValidationFailed("a crew login needs the code of its crew", field="crew")
    crew = session.scalar(select(Crew).where(Crew.code == crew_code))
    if crew is None:
        raise ValidationFailed(f"no crew {crew_code!r}", field="crew")
    return crew


def _keep_an_admin(session: Session, user: User, doing: str) -> None:
    """Refuse to leave the city without an active admin (nobody could then create one
    through the API). Locking every active admin's row makes two admins who remove each
    other at the same moment queue here, so the second sees the first one's change."""
    if user.role != "admin" or not user.active:
        return
    admins = session.scalars(
        select(User.id).where(User.role == "admin", User.active.is_(True)).with_for_update()
    ).all()
    if set(admins) <= {user.id}:
        raise Conflict(
            f"cannot {doing} {user.email}: it is the last active admin; make another admin first"
        )


# -- reading ------------------------------------------------------------------------


def users_query(*, role: str | None = None, active: bool | None = None) -> Select[User]:
    """Users by e-mail, optionally of one role or only (in)active ones; for paging."""
    query = select(User).options(selectinload(User.crew)).order_by(func.lower(User.email), User.id)
    if role is not None:
        query = query.where(User.role == _check_role(role))
    if active is not None:
        query = query.where(User.active.is_(active))
    return query


def list_users(
    session: Session, *, role: str | None = None, active: bool | None = None
) -> list[User]:
    return list(session.scalars(users_query(role=role, active=active)))


def get_user(session: Session, user_id: int, *, for_update: bool = False) -> User:
    query = select(User).where(User.id == user_id).options(selectinload(User.crew))
    user = session.scalar(query.with_for_update(of=User) if for_update else query)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def find_user(session: Session, email: str, *, for_update: bool = False) -> User:
    """The user with this e-mail address, whatever its case."""
    query = (
        select(User)
        .where(func.lower(User.email) == email.strip().lower())
        .options(selectinload(User.crew))
    )
    user = session.scalar(query.with_for_update(of=User) if for_update else query)
    if user is None:
        raise NotFound(f"no user with the e-mail {email.strip()!r}")
    return user


# -- changes ------------------------------------------------------------------------


def check_new_user(
    session: Session, *, email: str, name: str, role: str, crew_code: str | None = None
) -> None:
    """Raise what `create_user` would for these fields, so the CLI can say so before it
    asks for a password."""
    _new_user_fields(session, email=email, name=name, role=role, crew_code=crew_code)


def _new_user_fields(
    session: Session, *, email: str, name: str, role: str, crew_code: str | None
) -> tuple[str, str, Crew | None]:
    email = normalize_email(email)
    name = _check_name(name)
    crew = _crew_for(session, _check_role(role), crew_code)
    if session.scalar(select(User.id).where(func.lower(User.email) == email.lower())) is not None:
        raise Conflict(f"a user with the e-mail {email} exists", field="email")
    return email, name, crew


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    crew_code: str | None = None,
    actor: Actor,
) -> User:
    """A new, active account; everything is checked before anything is written."""
    email, name, crew = _new_user_fields(
        session, email=email, name=name, role=role, crew_code=crew_code
    )
    check_password(password, email=email)
    user = User(
        email=email,
        name=name,
        role=role,
        crew=crew,
        password_hash=hash_password(password),
        active=True,
    )
    try:
        # A savepoint, so losing a race for the address leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError as exc:
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) != _EMAIL_INDEX:
            raise
        raise Conflict(f"a user with the e-mail {email} exists", field="email") from exc
    note = f"created as {role}" + (f" of crew {crew.code}" if crew else "")
    UserLifecycle.record_creation(session, user, actor=actor, note=note)
    return user


def change_role(
    session: Session, user: User, *, role: str, crew_code: str | None = None, actor: Actor
) -> bool:
    """Give the user a role (and, for a crew login, its crew); False if nothing changed.

    The caller sends the crew for a crew login even when only the role changes: a crew
    login always has one (the table checks it), any other login never does."""
    crew = _crew_for(session, _check_role(role), crew_code)
    if role == user.role and crew == user.crew:
        return False
    if role != "admin":
        _keep_an_admin(session, user, f"make a {role} of")
    changes = []
    if role != user.role:
        changes.append(f"role {user.role} → {role}")
    if crew != user.crew:
        changes.append(
            f"crew {user.crew.code if user.crew else 'none'} → {crew.code if crew else 'none'}"
        )
    user.role, user.crew = role, crew
    UserLifecycle.annotate(session, user, actor=actor, note="; ".join(changes))
    return True


def rename(session: Session, user: User, *, name: str, actor: Actor) -> bool:
    """Change the name staff see; False if it is the same."""
    name = _check_name(name)
    if name == user.name:
        return False
    old, user.name = user.name, name
    UserLifecycle.annotate(session, user, actor=actor, note=f"renamed from {old!r} to {name!r}")
    return True


def set_password(session: Session, user: User, *, password: str, actor: Actor) -> int:
    """Reset the password and sign the user out everywhere (whoever had it, or a token,
    loses access); returns the number of tokens revoked."""
    check_password(password, email=user.email)
    user.password_hash = hash_password(password)
    revoked = revoke_tokens(session, user)
    UserLifecycle.annotate(
        session, user, actor=actor, note=f"password reset; {_tokens(revoked)} revoked"
    )
    return revoked


def deactivate(session: Session, user: User, *, actor: Actor, note: str | None = None) -> int:
    """Close the account and revoke its tokens; returns how many. The row stays: the audit
    trail and the completions point at it. `note` is the reason, for the timeline."""
    if not user.active:
        raise IllegalTransition(
            f"{user.email} is already inactive", current="inactive", target="inactive"
        )
    _keep_an_admin(session, user, "deactivate")
    revoked = revoke_tokens(session, user)
    UserLifecycle.transition(
        session,
        user,
        "inactive",
        actor=actor,
        note=f"deactivated; {_tokens(revoked)} revoked" + (f": {note}" if note else ""),
    )
    return revoked


def reactivate(session: Session, user: User, *, actor: Actor, note: str | None = None) -> None:
    """Open the account again, with the password it had (reset it if that is in doubt).

    Its tokens from before stay revoked: deactivation deleted them, and an inactive
    account gets none (core.auth.issue_token). Any that exist anyway (the flag set by
    hand in the database, say) are deleted here, so reactivating never revives one."""
    if user.active:
        raise IllegalTransition(
            f"{user.email} is already active", current="active", target="active"
        )
    stale = revoke_tokens(session, user)
    text = (
        "reactivated"
        + (f"; {_tokens(stale)} from before revoked" if stale else "")
        + (f": {note}" if note else "")
    )
    UserLifecycle.transition(session, user, "active", actor=actor, note=text)


def _tokens(count: int) -> str:
    return f"{count} token{'' if count == 1 else 's'}"
