"""Accounts: the rules on e-mail, role, crew and password; the audit trail; token revocation;
and the last active admin, who cannot be removed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from core import users
from core.auth import authenticate, user_for_token
from core.db import make_sessionmaker
from core.errors import Conflict, IllegalTransition, NotFound, ValidationFailed
from core.lifecycle import Actor
from core.models import AccessToken, StatusEvent, User
from tests import factories as f

ADMIN = Actor(label="user:boss@city.example", user_id=None)
PASSWORD = "correct horse battery"


def events(db: Session, user: User) -> list[StatusEvent]:
    return list(
        db.scalars(
            select(StatusEvent)
            .where(StatusEvent.entity == "user", StatusEvent.entity_id == user.id)
            .order_by(StatusEvent.id)
        )
    )


def counts(db: Session) -> tuple[int, int]:
    return (
        db.scalar(select(func.count()).select_from(User)) or 0,
        db.scalar(select(func.count()).select_from(StatusEvent).where(StatusEvent.entity == "user"))
        or 0,
    )


def new_user(
    db: Session, email: str = "ana@city.example", role: str = "dispatcher", **kwargs: Any
) -> User:
    values: dict[str, Any] = {"name": "Ana", "password": PASSWORD, "actor": ADMIN} | kwargs
    return users.create_user(db, email=email, role=role, **values)


def assert_no_secret(db: Session, user: User, password: str) -> None:
    for event in events(db, user):
        text = " ".join(
            str(v) for v in (event.from_status, event.to_status, event.actor, event.note)
        )
        assert password not in text and user.password_hash not in text and "$argon2" not in text


# -- create -------------------------------------------------------------------------------


def test_create_user_stores_an_argon2_hash_and_audits_the_creation(db: Session) -> None:
    user = new_user(db, "Ana.Lopez@City.EXAMPLE", "admin")
    assert (user.email, user.name, user.role, user.crew_id, user.active) == (
        "Ana.Lopez@city.example",
        "Ana",
        "admin",
        None,
        True,
    )
    assert user.password_hash.startswith("$argon2id$")
    PasswordHasher().verify(user.password_hash, PASSWORD)
    assert authenticate(db, "ana.lopez@city.example", PASSWORD) is user
    [event] = events(db, user)
    assert (event.from_status, event.to_status, event.actor, event.note) == (
        None,
        "active",
        ADMIN.label,
        "created as admin",
    )
    assert_no_secret(db, user, PASSWORD)


def test_a_crew_login_belongs_to_its_crew(db: Session) -> None:
    crew = f.crew(db, "north-1")
    user = new_user(db, role="crew", crew_code="north-1")
    assert user.crew_id == crew.id
    assert events(db, user)[0].note == "created as crew of crew north-1"


def test_the_same_address_in_another_case_is_a_conflict(db: Session) -> None:
    new_user(db, "ana@city.example")
    before = counts(db)
    with pytest.raises(Conflict) as exc:
        new_user(db, " ANA@City.Example ", "admin")
    assert (exc.value.field, exc.value.message) == (
        "email",
        "a user with the e-mail ANA@city.example exists",
    )
    assert counts(db) == before


def test_losing_the_race_for_an_address_is_a_conflict_and_the_session_goes_on(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another transaction took the address between the check and the insert: only the index sees it.
    new_user(db, "ana@city.example")
    checked = users._new_user_fields
    monkeypatch.setattr(
        users, "_new_user_fields", lambda session, **kw: (kw["email"], kw["name"], None)
    )
    with pytest.raises(Conflict) as exc:
        new_user(db, "Ana@city.example")
    assert exc.value.field == "email"
    monkeypatch.setattr(users, "_new_user_fields", checked)
    assert new_user(db, "bea@city.example").id is not None
    assert counts(db) == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"email": "ana"}, "email", "'ana' does not look like an e-mail address"),
        ({"email": "ana@city"}, "email", "'ana@city' does not look like an e-mail address"),
        ({"email": "ana lopez@city.example"}, "email", None),
        ({"email": "ana@@city.example"}, "email", None),
        ({"email": "ana@city..example"}, "email", None),
        ({"email": "@city.example"}, "email", None),
        ({"email": "ana@-city.example"}, "email", None),
        ({"email": ""}, "email", None),
        ({"name": "   "}, "name", "a name is needed"),
        (
            {"role": "mayor"},
            "role",
            "unknown role 'mayor'; one of: crew, dispatcher, supervisor, admin, call_taker",
        ),
        ({"role": "crew"}, "crew", "a crew login needs the code of its crew"),
        ({"role": "crew", "crew_code": "nope"}, "crew", "no crew 'nope'"),
        (
            {"crew_code": "north-1"},
            "crew",
            "only crew logins belong to a crew; a dispatcher has none",
        ),
        ({"password": "123456789"}, "password", "the password needs at least 10 characters"),
        ({"password": "x" * 1025}, "password", "the password may have at most 1024 characters"),
        (
            {"password": "ANA@city.example"},
            "password",
            "the password must not be the e-mail address",
        ),
        (
            {"email": "ana.lopez.garcia@city.example", "password": "Ana.Lopez.Garcia"},
            "password",
            "the password must not be the e-mail address",
        ),
        (
            {"password": "aaaaaaaaaaaa"},
            "password",
            "the password must not be one character repeated",
        ),
    ],
    ids=[
        "no-at",
        "no-dot",
        "space",
        "two-ats",
        "empty-label",
        "no-local",
        "hyphen-label",
        "empty",
        "blank-name",
        "bad-role",
        "crew-without-crew",
        "unknown-crew",
        "crew-for-dispatcher",
        "short-password",
        "long-password",
        "password-is-email",
        "password-is-local-part",
        "one-char-password",
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    db: Session, kwargs: dict[str, Any], field: str, message: str | None
) -> None:
    f.crew(db, "north-1")
    before = counts(db)
    with pytest.raises(ValidationFailed) as exc:
        new_user(db, **kwargs)
    assert exc.value.field == field
    if message:
        assert exc.value.message == message
    assert counts(db) == before


def test_check_new_user_raises_what_create_would_without_writing(db: Session) -> None:
    new_user(db, "ana@city.example")
    with pytest.raises(Conflict):
        users.check_new_user(db, email="ANA@city.example", name="Ana", role="admin")
    with pytest.raises(ValidationFailed):
        users.check_new_user(db, email="bea@city.example", name="Bea", role="crew")
    users.check_new_user(db, email="bea@city.example", name="Bea", role="admin")
    assert counts(db) == (1, 1)


# -- find and list ------------------------------------------------------------------------


def test_find_user_ignores_case_and_get_user_404s(db: Session) -> None:
    user = new_user(db, "Ana@city.example")
    assert users.find_user(db, " ana@CITY.example") is user
    assert users.get_user(db, user.id) is user
    with pytest.raises(NotFound):
        users.find_user(db, "bea@city.example")
    with pytest.raises(NotFound):
        users.get_user(db, user.id + 1000)


def test_list_users_by_email_with_filters(db: Session) -> None:
    f.crew(db, "north-1")
    new_user(db, "zoe@city.example", "admin")
    new_user(db, "Bea@city.example", "crew", crew_code="north-1")
    gone = new_user(db, "al@city.example", "crew", crew_code="north-1")
    users.deactivate(db, gone, actor=ADMIN)
    assert [u.email for u in users.list_users(db)] == [
        "al@city.example",
        "Bea@city.example",
        "zoe@city.example",
    ]
    assert [u.email for u in users.list_users(db, role="crew", active=True)] == ["Bea@city.example"]
    assert [u.email for u in users.list_users(db, active=False)] == ["al@city.example"]
    with pytest.raises(ValidationFailed):
        users.list_users(db, role="mayor")


# -- role and name ------------------------------------------------------------------------


def test_role_changes_keep_the_crew_rule_and_are_audited(db: Session) -> None:
    f.crew(db, "north-1")
    f.crew(db, "south-1")
    new_user(db, "boss@city.example", "admin")
    user = new_user(db)
    with pytest.raises(ValidationFailed) as exc:
        users.change_role(db, user, role="crew", actor=ADMIN)
    assert exc.value.field == "crew" and user.role == "dispatcher"
    assert users.change_role(db, user, role="crew", crew_code="north-1", actor=ADMIN)
    assert users.change_role(db, user, role="crew", crew_code="south-1", actor=ADMIN)
    assert not users.change_role(db, user, role="crew", crew_code="south-1", actor=ADMIN)
    assert users.change_role(db, user, role="admin", actor=ADMIN)
    db.flush()  # the table's check (a crew login has a crew) holds at every step
    assert (user.role, user.crew_id) == ("admin", None)
    assert [(e.from_status, e.to_status, e.note) for e in events(db, user)[1:]] == [
        ("active", "active", "role dispatcher → crew; crew none → north-1"),
        ("active", "active", "crew north-1 → south-1"),
        ("active", "active", "role crew → admin; crew south-1 → none"),
    ]


def test_rename_is_audited(db: Session) -> None:
    user = new_user(db)
    assert users.rename(db, user, name="  Ana López ", actor=ADMIN)
    assert not users.rename(db, user, name="Ana López", actor=ADMIN)
    assert user.name == "Ana López"
    assert events(db, user)[-1].note == "renamed from 'Ana' to 'Ana López'"


# -- password and deactivation --------------------------------------------------------------


def tokens(db: Session, user: User, n: int = 2) -> list[str]:
    return [f.token_for(db, user)["Authorization"].removeprefix("Bearer ") for _ in range(n)]


def test_a_password_reset_revokes_every_token_and_is_audited_without_the_password(
    db: Session,
) -> None:
    user = new_user(db)
    old_hash = user.password_hash
    live = tokens(db, user)
    assert users.set_password(db, user, password="a-brand-new-one", actor=ADMIN) == 2
    db.flush()
    assert all(user_for_token(db, t) is None for t in live)
    assert (
        db.scalar(
            select(func.count()).select_from(AccessToken).where(AccessToken.user_id == user.id)
        )
        == 0
    )
    assert authenticate(db, user.email, PASSWORD) is None
    assert authenticate(db, user.email, "a-brand-new-one") is user
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(user.password_hash, PASSWORD)
    assert events(db, user)[-1].note == "password reset; 2 tokens revoked"
    assert_no_secret(db, user, "a-brand-new-one")
    assert old_hash not in " ".join(e.note or "" for e in events(db, user))


def test_a_weak_new_password_changes_nothing(db: Session) -> None:
    user = new_user(db)
    live = tokens(db, user, 1)
    with pytest.raises(ValidationFailed):
        users.set_password(db, user, password="short", actor=ADMIN)
    assert authenticate(db, user.email, PASSWORD) is user
    assert user_for_token(db, live[0]) is user
    assert len(events(db, user)) == 1


def test_deactivation_revokes_tokens_and_reactivation_restores_the_login(db: Session) -> None:
    user = new_user(db)
    live = tokens(db, user)
    assert users.deactivate(db, user, actor=ADMIN, note="left the city") == 2
    db.flush()
    assert (user.active, user.status) == (False, "inactive")
    assert all(user_for_token(db, t) is None for t in live)
    assert authenticate(db, user.email, PASSWORD) is None
    with pytest.raises(IllegalTransition, match="already inactive"):
        users.deactivate(db, user, actor=ADMIN)
    users.reactivate(db, user, actor=ADMIN)
    assert authenticate(db, user.email, PASSWORD) is user
    with pytest.raises(IllegalTransition, match="already active"):
        users.reactivate(db, user, actor=ADMIN)
    assert [(e.from_status, e.to_status, e.note) for e in events(db, user)] == [
        (None, "active", "created as dispatcher"),
        ("active", "inactive", "deactivated; 2 tokens revoked: left the city"),
        ("inactive", "active", "reactivated"),
    ]


# -- the last active admin ---------------------------------------------------------------


@pytest.mark.parametrize(
    "remove",
    [
        lambda db, u: users.deactivate(db, u, actor=ADMIN),
        lambda db, u: users.change_role(db, u, role="supervisor", actor=ADMIN),
    ],
    ids=["deactivate", "demote"],
)
def test_the_last_active_admin_stays(
    db: Session, remove: Callable[[Session, User], object]
) -> None:
    admin = new_user(db, "boss@city.example", "admin")
    other = new_user(db, "old@city.example", "admin")
    users.deactivate(db, other, actor=ADMIN)  # an inactive admin does not count
    new_user(db, "disp@city.example", "dispatcher")
    with pytest.raises(Conflict, match="it is the last active admin"):
        remove(db, admin)
    assert (admin.role, admin.active) == ("admin", True)
    assert len(events(db, admin)) == 1
    users.reactivate(db, other, actor=ADMIN)
    remove(db, admin)
    with pytest.raises(Conflict):
        remove(db, other)


@pytest.fixture
def two_committed_admins(engine: Engine) -> Iterator[tuple[int, int]]:
    """Two admins committed for real (outside the test's transaction), removed afterwards."""
    sessions = make_sessionmaker(engine)
    with sessions.begin() as s:
        ids = (
            new_user(s, "race-a@city.example", "admin").id,
            new_user(s, "race-b@city.example", "admin").id,
        )
    yield ids
    with sessions.begin() as s:
        s.execute(
            delete(StatusEvent).where(StatusEvent.entity == "user", StatusEvent.entity_id.in_(ids))
        )
        s.execute(delete(User).where(User.id.in_(ids)))


def test_two_admins_removing_each_other_at_once_leave_one(
    engine: Engine, two_committed_admins: tuple[int, int]
) -> None:
    a_id, b_id = two_committed_admins
    sessions = make_sessionmaker(engine)
    outcome: dict[str, object] = {}
    first = sessions()
    thread = threading.Thread(target=lambda: None)
    try:
        users.deactivate(
            first, users.get_user(first, a_id), actor=ADMIN
        )  # holds the admins' row locks

        def second() -> None:
            with sessions() as s:
                try:
                    users.deactivate(s, users.get_user(s, b_id), actor=ADMIN)
                    s.commit()
                    outcome["b"] = "deactivated"
                except Conflict as exc:
                    outcome["b"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second removal did not wait for the first"
        first.commit()
    finally:
        first.close()
        thread.join(10)
    assert isinstance(outcome.get("b"), Conflict)
    with sessions() as s:
        assert s.scalars(
            select(User.id).where(User.id.in_((a_id, b_id)), User.active.is_(True))
        ).all() == [b_id]
