"""Signing in with limits on failures: tight per account, loose per client address.

Every failed sign-in is a row of `sign_in_failures`, in PostgreSQL so that every API
process counts the same ones. Before a password is hashed (Argon2, deliberately slow):

- an account with `account_failures` failures within `account_window` is locked, from
  every address: this is what stops guessing one person's password;
- an address with `address_failures` failures within `address_window` is refused, for
  every account: this is what stops trying one password on many accounts.

Both answer 429 with the seconds until the oldest failure that keeps the limit ages out,
and cost no hashing, so a locked-out burst neither guesses nor slows the service.

Only failures count, so sign-ins that succeed never use up an address's allowance: a
depot's twenty crews behind one NAT address all get in, even with a few typos each; it
would take a hundred typos within fifteen minutes (the default) to lock the yard out.

The account's lock would otherwise be a weapon: five wrong guesses from anywhere, for
each crew's e-mail, and the yard is locked out at 07:00. So an address the account
signed in from within `known_address_days` is exempt from it: it counts its own failures
for the account against the same tight limit, and everyone's against a cap ten times as
high, so the account's guesses stay bounded however many addresses it is known at. A success forgives the failures
of its own address only, never others' (a guesser elsewhere gets no fresh guesses from
the crew's sign-in); the address's spray count loses only that account's own failures
from there.

Accounts are keyed by an HMAC of the e-mail typed (with the app's secret key), so
unknown addresses lock exactly like known ones (nobody learns who has an account), the
table holds no e-mail, and the log names the user id, or the key's first characters.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.auth import authenticate, issue_token
from core.errors import PermissionDenied
from core.locks import AdvisoryLock
from core.models import SignInAddress, SignInFailure, User
from core.settings import Settings

log = logging.getLogger("streetloop.sign_in")

# "One account's sign-in" (core.locks; it shared the shifts' class by mistake before).
_ACCOUNT_LOCK = AdvisoryLock.SIGN_IN


# At an address the account is known at, all its failures from anywhere may reach this
# many times the account's limit before that address is locked too (5 x 10 = 50 guesses
# a window at most, wherever they come from).
KNOWN_ADDRESS_CAP = 10


@dataclass(frozen=True)
class SignInLimits:
    account_failures: int = 5
    account_window: timedelta = timedelta(minutes=15)
    address_failures: int = 100
    address_window: timedelta = timedelta(minutes=15)
    # 0: no address is known, every one is held to the account's lock.
    known_address_days: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInLimits:
        return cls(
            account_failures=settings.sign_in_account_failures,
            account_window=timedelta(minutes=settings.sign_in_account_window_minutes),
            address_failures=settings.sign_in_address_failures,
            address_window=timedelta(minutes=settings.sign_in_address_window_minutes),
            known_address_days=settings.sign_in_known_address_days,
        )


class TooManyFailures(Exception):
    """Refused before the password was looked at; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    user: User
    token: str


def account_key(email: str, secret: str) -> str:
    """What the failures of an e-mail address are counted under: keyed, so the table
    cannot be turned back into addresses by hashing a list of them."""
    normalized = email.strip().lower()
    return hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    address: str,
    limits: SignInLimits,
    secret: str,
    ttl_s: int,
) -> SignedIn | None:
    """A token for the right password; None (a failure, recorded) for a wrong one.

    Raises TooManyFailures while the account or the address is over its limit. The
    caller commits in both the success and the failure case: a failure must be stored.
    """
    account = account_key(email, secret)
    # One account's sign-ins queue here, across processes, from the check until the
    # failure is committed: a burst of parallel guesses cannot all pass the check
    # before the first failure is counted. Different accounts never wait for each other.
    session.execute(select(func.pg_advisory_xact_lock(_ACCOUNT_LOCK, func.hashtext(account))))
    retry = _retry_after(session, account, address, limits)
    if retry is not None:
        log.warning(
            "sign-in refused, locked: %s from %s, retry in %d s",
            _who(session, email, account),
            address,
            retry,
        )
        raise TooManyFailures(retry)

    user = authenticate(session, email, password)
    if user is not None:
        try:
            token, _ = issue_token(session, user, ttl_s)
        except PermissionDenied:
            # Deactivated, or its password reset, while the password was being checked: no
            # token, and no failure either (the password was right when it was checked);
            # it answers as a wrong password does.
            log.warning(
                "sign-in refused: %s from %s was deactivated or had its password reset meanwhile",
                _who(session, email, account),
                address,
            )
            return None
        session.execute(
            delete(SignInFailure).where(
                SignInFailure.account == account, SignInFailure.address == address
            )
        )
        _remember(session, account, address, limits)
        return SignedIn(user, token)

    session.add(SignInFailure(account=account, address=address))
    _prune(session, limits)
    log.warning("sign-in failed: %s from %s", _who(session, email, account), address)
    return None


def _retry_after(session: Session, account: str, address: str, limits: SignInLimits) -> int | None:
    """Seconds until the account and the address are both under their limits; None if
    they are now. A limit of N holds while N failures lie in the window, so it lifts when
    the N-th most recent one leaves it."""
    anywhere = SignInFailure.account == account
    waits = [
        _wait(
            session,
            SignInFailure.address == address,
            limits.address_failures,
            limits.address_window,
        )
    ]
    if _known(session, account, address, limits):
        # Where the account signs in: its own failures from here count against the tight
        # limit, and everyone's against a cap KNOWN_ADDRESS_CAP times as high, so the
        # account's guesses stay bounded however many addresses it is known at.
        waits += [
            _wait(
                session,
                anywhere & (SignInFailure.address == address),
                limits.account_failures,
                limits.account_window,
            ),
            _wait(
                session,
                anywhere,
                KNOWN_ADDRESS_CAP * limits.account_failures,
                limits.account_window,
            ),
        ]
    else:
        waits.append(_wait(session, anywhere, limits.account_failures, limits.account_window))
    found = [w for w in waits if w is not None]
    return max(found) if found else None


def _wait(
    session: Session, where: ColumnElement[bool], limit: int, window: timedelta
) -> int | None:
    nth = session.scalar(
        select(literal(window) - (func.now() - SignInFailure.at))
        .where(where, SignInFailure.at > func.now() - window)
        .order_by(SignInFailure.at.desc())
        .offset(limit - 1)
        .limit(1)
    )
    if nth is None:
        return None
    # Retry-After is whole seconds; round up so a client that obeys it is not refused again.
    return max(1, math.ceil(nth.total_seconds()))


def _known(session: Session, account: str, address: str, limits: SignInLimits) -> bool:
    if not limits.known_address_days:
        return False
    return (
        session.execute(
            select(func.count())
            .select_from(SignInAddress)
            .where(
                SignInAddress.account == account,
                SignInAddress.address == address,
                SignInAddress.last_at > func.now() - timedelta(days=limits.known_address_days),
            )
        ).scalar_one()
        > 0
    )


def _remember(session: Session, account: str, address: str, limits: SignInLimits) -> None:
    """This address is the account's for the next `known_address_days`; addresses not
    used that long, any account's, are forgotten (an index range on `last_at`)."""
    if not limits.known_address_days:
        return
    session.execute(
        insert(SignInAddress)
        .values(account=account, address=address)
        .on_conflict_do_update(index_elements=["account", "address"], set_={"last_at": func.now()})
    )
    session.execute(
        delete(SignInAddress).where(
            SignInAddress.last_at < func.now() - timedelta(days=limits.known_address_days)
        )
    )


def _prune(session: Session, limits: SignInLimits) -> None:
    """Forget failures no window looks at any more (an index range on `at`): the table
    holds at most the failures of the last window, whatever is sprayed at it."""
    horizon = max(limits.account_window, limits.address_window)
    session.execute(delete(SignInFailure).where(SignInFailure.at < func.now() - horizon))


def _who(session: Session, email: str, account: str) -> str:
    """The log's name for an account: its user id, else the start of its key."""
    user_id = session.scalar(select(User.id).where(func.lower(User.email) == email.strip().lower()))
    return f"user {user_id}" if user_id is not None else f"unknown account {account[:12]}"
