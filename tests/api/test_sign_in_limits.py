"""Sign-in limits: failed sign-ins per account (tight) and per client address (loose),
kept in PostgreSQL; the client address behind trusted proxies; what the log says."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

import core.auth
from core.models import SignInFailure
from core.settings import Settings
from tests import factories as f
from tests.api.errors import error_body

PASSWORD = "secret-pass"  # what tests.factories.user gives every account
HERE = "198.51.100.7"
ELSEWHERE = "203.0.113.9"


def login(client: Any, email: str, password: str, address: str = HERE, **headers: str) -> Any:
    return client.post(
        "/api/v1/auth/token",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": address},
        headers=headers,
    )


def failures(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(SignInFailure)) or 0


@pytest.fixture
def app_with(settings: Settings, sessions: Any, queue: Any) -> Callable[..., Flask]:
    """An app whose settings differ from the test defaults by `overrides`."""
    from api import create_app

    def make(**overrides: Any) -> Flask:
        application = create_app(
            dataclasses.replace(settings, **overrides), sessions=sessions, queue=queue
        )
        application.config["TESTING"] = True
        return application

    return make


class CountingHasher:
    """The real Argon2 hasher, counting its verifications."""

    def __init__(self, real: Any) -> None:
        self.real, self.verified = real, 0

    def verify(self, hash_: str, password: str) -> bool:
        self.verified += 1
        return self.real.verify(hash_, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    """A refused sign-in must cost no Argon2 verification: this counts them."""
    counting = CountingHasher(core.auth._hasher)
    monkeypatch.setattr(core.auth, "_hasher", counting)
    return counting


# -- per account ---------------------------------------------------------------------


def test_five_failures_lock_the_account_even_for_the_right_password(
    client: Any, db: Session, hasher: CountingHasher
) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    for guess in range(5):
        error_body(login(client, "ana@example.org", f"guess-{guess}"), 401)
    hashed = hasher.verified
    locked = login(client, "Ana@Example.org ", PASSWORD)
    body = error_body(locked, 429)
    assert body["message"] == "too many failed sign-ins; try again later"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    # The lock is the account's, whichever address asks, and it is checked before hashing.
    error_body(login(client, "ana@example.org", PASSWORD, address=ELSEWHERE), 429)
    assert hasher.verified == hashed


def test_the_lock_ends_when_the_failures_leave_the_window(client: Any, db: Session) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    for _ in range(5):
        error_body(login(client, "ana@example.org", "nope"), 401)
    error_body(login(client, "ana@example.org", PASSWORD), 429)
    db.execute(
        update(SignInFailure).values(at=SignInFailure.at - func.make_interval(0, 0, 0, 0, 0, 15))
    )
    db.flush()
    assert login(client, "ana@example.org", PASSWORD).status_code == 200


def test_retry_after_counts_from_the_oldest_failure_that_keeps_the_lock(
    client: Any, db: Session
) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    for _ in range(5):
        error_body(login(client, "ana@example.org", "nope"), 401)
    # The first failure was ten minutes ago: the lock holds for the five minutes left of it.
    oldest = db.scalar(select(func.min(SignInFailure.id)))
    db.execute(
        update(SignInFailure)
        .where(SignInFailure.id == oldest)
        .values(at=SignInFailure.at - func.make_interval(0, 0, 0, 0, 0, 10))
    )
    db.flush()
    locked = login(client, "ana@example.org", PASSWORD)
    error_body(locked, 429)
    retry = int(locked.headers["Retry-After"])
    assert 4 * 60 < retry <= 5 * 60


def test_a_success_clears_the_accounts_failures(client: Any, db: Session) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    for _ in range(4):
        error_body(login(client, "ana@example.org", "nope"), 401)
    assert login(client, "ana@example.org", PASSWORD).status_code == 200
    for _ in range(4):
        error_body(login(client, "ana@example.org", "nope"), 401)
    assert login(client, "ana@example.org", PASSWORD).status_code == 200


def test_unknown_and_known_addresses_lock_alike(client: Any, db: Session) -> None:
    """Nobody learns which e-mail addresses have accounts from how they lock."""
    f.user(db, "ana@example.org", "dispatcher")
    answers = {}
    for email in ("ana@example.org", "nobody@example.org"):
        seen = [login(client, email, "nope").status_code for _ in range(6)]
        answers[email] = (seen, login(client, email, "nope").get_json())
    assert answers["ana@example.org"] == answers["nobody@example.org"]
    assert answers["ana@example.org"][0] == [401] * 5 + [429]


def test_failures_are_stored_without_the_e_mail_or_the_password(client: Any, db: Session) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    error_body(login(client, "ana@example.org", "hunter2-guess"), 401)
    row = db.scalars(select(SignInFailure)).one()
    assert row.address == HERE
    assert "ana" not in row.account and len(row.account) == 64


# -- per address ---------------------------------------------------------------------


def test_a_depot_of_twenty_crews_behind_one_address_all_get_in(client: Any, db: Session) -> None:
    """07:00 at the yard: twenty crews, one NAT address, each mistypes twice, then signs in.
    The address limit counts failures only, and forty typos are far from it."""
    for n in range(20):
        f.user(db, f"crew-{n}@example.org", "crew", crew=f.crew(db, f"crew-{n}"))
    answers = []
    for n in range(20):
        for typo in ("secret-pas", "Secret-pass"):
            error_body(login(client, f"crew-{n}@example.org", typo), 401)
        answers.append(login(client, f"crew-{n}@example.org", PASSWORD).status_code)
    assert answers == [200] * 20
    assert failures(db) == 0


def test_a_spray_over_many_accounts_from_one_address_is_stopped(
    app_with: Callable[..., Flask], db: Session, hasher: CountingHasher
) -> None:
    client = app_with(sign_in_address_failures=10).test_client()
    f.user(db, "ana@example.org", "dispatcher")
    for n in range(10):
        error_body(login(client, f"guess-{n}@example.org", "Winter2026!"), 401)
    hashed = hasher.verified
    # Past the limit the address is refused before any hashing, whichever account it names...
    error_body(login(client, "guess-10@example.org", "Winter2026!"), 429)
    error_body(login(client, "ana@example.org", PASSWORD), 429)
    assert hasher.verified == hashed
    # ...while the same account signs in from elsewhere: no account was locked.
    assert login(client, "ana@example.org", PASSWORD, address=ELSEWHERE).status_code == 200


def test_failed_sign_ins_from_other_addresses_do_not_count(
    app_with: Callable[..., Flask], db: Session
) -> None:
    client = app_with(sign_in_address_failures=3).test_client()
    f.user(db, "ana@example.org", "dispatcher")
    for n in range(3):
        error_body(login(client, f"guess-{n}@example.org", "nope", address=ELSEWHERE), 401)
    assert login(client, "ana@example.org", PASSWORD).status_code == 200


def test_a_spoofed_x_forwarded_for_does_not_change_the_counted_address(
    app_with: Callable[..., Flask], db: Session
) -> None:
    client = app_with(sign_in_address_failures=3).test_client()
    for n in range(3):
        error_body(
            login(client, f"guess-{n}@example.org", "nope", **{"X-Forwarded-For": f"192.0.2.{n}"}),
            401,
        )
    assert set(db.scalars(select(SignInFailure.address))) == {HERE}
    error_body(
        login(client, "guess-3@example.org", "nope", **{"X-Forwarded-For": "192.0.2.99"}), 429
    )


def test_behind_a_trusted_proxy_the_address_it_saw_is_counted(
    app_with: Callable[..., Flask], db: Session
) -> None:
    """One proxy hop: the last X-Forwarded-For entry is the one the proxy wrote; what the
    client put before it is not believed."""
    client = app_with(trusted_proxies=1).test_client()
    error_body(
        login(
            client,
            "nobody@example.org",
            "nope",
            address="127.0.0.1",
            **{"X-Forwarded-For": f"10.6.6.6, {ELSEWHERE}"},
        ),
        401,
    )
    assert db.scalars(select(SignInFailure.address)).all() == [ELSEWHERE]


# -- what is logged -------------------------------------------------------------------


def test_failed_and_locked_sign_ins_are_logged_without_e_mail_or_password(
    client: Any, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = f.user(db, "ana@example.org", "dispatcher")
    caplog.set_level(logging.INFO, logger="streetloop.sign_in")
    for _ in range(5):
        login(client, "ana@example.org", "hunter2-guess")
    login(client, "nobody@example.org", "hunter2-guess")
    error_body(login(client, "ana@example.org", PASSWORD), 429)
    messages = [r.getMessage() for r in caplog.records if r.name == "streetloop.sign_in"]
    assert len(messages) == 7, messages
    assert all(HERE in m for m in messages)
    assert sum(f"user {user.id}" in m for m in messages) == 6
    assert "locked" in messages[-1]
    text = "\n".join(messages)
    assert (
        "ana@" not in text
        and "nobody@" not in text
        and "hunter2" not in text
        and PASSWORD not in text
    )


# -- across processes -------------------------------------------------------------------


def test_a_burst_of_parallel_guesses_gets_no_more_than_the_limit(
    committed: Any, settings: Settings
) -> None:
    """Guesses sent at once, each on its own connection as from several API processes:
    the limit is counted in PostgreSQL and one account's sign-ins queue for it, so no
    more than five are even checked."""
    from api import create_app

    with committed() as s:
        f.user(s, "ana@example.org", "dispatcher")
        s.commit()
    app = create_app(settings, sessions=committed, queue=_NoQueue())
    start = threading.Barrier(10)

    def guess(n: int) -> int:
        with app.test_client() as client:
            start.wait()
            return login(client, "ana@example.org", f"guess-{n}").status_code

    with ThreadPoolExecutor(10) as pool:
        answers = Counter(pool.map(guess, range(10)))
    assert answers == {401: 5, 429: 5}, answers


class _NoQueue:
    def defer(self, task_name: str, **kwargs: object) -> int:
        return 0


# -- known addresses -------------------------------------------------------------------


def test_a_lock_made_elsewhere_does_not_keep_a_crew_out_where_it_signs_in_every_day(
    client: Any, db: Session
) -> None:
    """Five wrong guesses from anywhere lock an account, so someone who knows the crews'
    e-mails could keep the whole yard out at 07:00. An address the account signed in
    from lately is exempt from that lock (it has a tight limit of its own), so the lock
    stops guessers without stopping the crews."""
    for n in range(20):
        f.user(db, f"crew-{n}@example.org", "dispatcher")
        assert (
            login(client, f"crew-{n}@example.org", PASSWORD, address=HERE).status_code == 200
        )  # yesterday, at the yard
    for n in range(20):
        for guess in range(5):
            error_body(
                login(client, f"crew-{n}@example.org", f"guess-{guess}", address=ELSEWHERE), 401
            )
        error_body(
            login(client, f"crew-{n}@example.org", PASSWORD, address="192.0.2.55"), 429
        )  # locked
    # 07:00 at the yard: everyone gets in.
    assert [
        login(client, f"crew-{n}@example.org", PASSWORD, address=HERE).status_code
        for n in range(20)
    ] == [200] * 20
    # The yard's successes forgave the yard's own typos only: elsewhere the lock holds.
    error_body(login(client, "crew-0@example.org", PASSWORD, address="192.0.2.55"), 429)


def test_a_known_address_has_a_tight_limit_of_its_own(client: Any, db: Session) -> None:
    f.user(db, "ana@example.org", "dispatcher")
    assert login(client, "ana@example.org", PASSWORD, address=HERE).status_code == 200
    for guess in range(5):
        error_body(login(client, "ana@example.org", f"guess-{guess}", address=HERE), 401)
    error_body(login(client, "ana@example.org", PASSWORD, address=HERE), 429)


def test_an_address_is_known_only_for_a_while(client: Any, db: Session) -> None:
    from core.models import SignInAddress

    f.user(db, "ana@example.org", "dispatcher")
    assert login(client, "ana@example.org", PASSWORD, address=HERE).status_code == 200
    row = db.scalars(select(SignInAddress)).one()
    assert "ana" not in row.account and row.address == HERE  # keyed like the failures
    db.execute(
        update(SignInAddress).values(
            last_at=SignInAddress.last_at - func.make_interval(0, 0, 0, 31)
        )
    )
    db.flush()
    for guess in range(5):
        error_body(login(client, "ana@example.org", f"guess-{guess}", address=ELSEWHERE), 401)
    error_body(login(client, "ana@example.org", PASSWORD, address=HERE), 429)


def test_guesses_from_everywhere_are_still_bounded_at_a_known_address(
    client: Any, db: Session
) -> None:
    """An account known at many addresses (a phone on mobile data collects carrier NAT
    addresses) must not get five guesses at each: all its failures from anywhere are
    capped at ten times the limit, then even its known addresses are locked."""
    f.user(db, "ana@example.org", "dispatcher")
    elsewhere = [f"192.0.2.{n + 1}" for n in range(10)]
    for address in [HERE, *elsewhere]:
        assert login(client, "ana@example.org", PASSWORD, address=address).status_code == 200
    for address in elsewhere:
        for guess in range(5):
            error_body(
                login(client, "ana@example.org", f"guess-{address}-{guess}", address=address), 401
            )
    error_body(login(client, "ana@example.org", PASSWORD, address=HERE), 429)
