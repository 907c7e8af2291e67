"""Engine, sessions, the declarative base, rows the code knows are there, and after-commit
hooks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    CursorResult,
    DateTime,
    Engine,
    Identity,
    MetaData,
    Result,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[str]: ARRAY(Text),
        str: Text,
    }


intpk = Annotated[int, mapped_column(BigInteger, Identity(), primary_key=True)]
bigint = Annotated[int, mapped_column(BigInteger)]
created_at = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]


def make_engine(url: str, *, connect_timeout_s: int = 5, **kwargs: Any) -> Engine:
    """An engine whose errors name no values (see `_errors_without_values`).

    `connect_timeout_s`: a connection attempt to a database host that went away fails
    after this long, instead of holding its thread (and the process's exit) for ever."""
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", connect_timeout_s)
    # A failed statement's error would otherwise print its bound parameters: a resident's
    # e-mail, name and phone, a request's secret token. Logs travel further than the
    # database (log shippers, support tickets, a developer's laptop).
    kwargs.setdefault("hide_parameters", True)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "handle_error", _errors_without_values)
    return engine


def _errors_without_values(context: Any) -> None:
    """Keep PostgreSQL's own error text to its first line.

    `hide_parameters` hides what we sent, not what the server says back: its DETAIL and
    CONTEXT lines quote the values ("Failing row contains (..., jane@example.org, ...)",
    "Key (token)=(...) already exists"), and both the driver's exception and SQLAlchemy's
    carry that text into every log line and traceback. The primary message (which names
    the constraint, table or column) stays; the structured diagnostics stay on the
    driver's exception too (`exc.orig.diag`, `sqlstate`), for code that tells errors
    apart by constraint name."""
    orig = context.original_exception
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)
    # No primary message: not the server's error (a refused connection, a Python error),
    # which quotes no row.
    if primary is None or orig.args == (primary,):
        return
    orig.args = (primary,)
    wrapped = context.sqlalchemy_exception
    if wrapped is not None:
        # Rebuilt as `sqlalchemy.exc.DBAPIError` builds it, from the shortened text.
        wrapped.args = (f"({type(orig).__module__}.{type(orig).__name__}) {primary}",)


def make_sessionmaker(bind: Any, **kwargs: Any) -> sessionmaker[Session]:
    kwargs.setdefault("expire_on_commit", False)
    return sessionmaker(bind=bind, **kwargs)


# -- rows by primary key --------------------------------------------------------
# `session.get()` answers None for a key with no row. Where the key comes from a caller,
# that is the caller's mistake: the caller's own NotFound, or a view's 404. Where the code
# knows the row is there (a foreign key, a row it locked or wrote a moment ago, a table
# nothing deletes from), a missing row is a broken invariant: a bug to fail on loudly,
# not an answer to give.


def existing[R: Base](
    session: Session, model: type[R], key: Any, *, with_for_update: bool = False
) -> R:
    """The row with this primary key, which the caller knows exists (say why at the call)."""
    row = session.get(model, key, with_for_update=with_for_update)
    if row is None:
        raise LookupError(f"{model.__name__} {key!r} is gone, though it cannot be")
    return row


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE changed. `Session.execute` is typed as answering a plain
    Result, which counts nothing; for such a statement it is a CursorResult, which does."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"a {type(result).__name__} has no row count: not an UPDATE or DELETE")
    return result.rowcount


def db_now(session: Session) -> datetime:
    """The database's clock: rows are stamped with it, and it is the one clock that every
    process, on whatever machine, shares."""
    return session.execute(select(func.now())).scalar_one()


# -- after-commit hooks ------------------------------------------------------
# Jobs must not be queued before the rows they refer to are visible to the
# worker, and must not be queued at all if the transaction rolls back. A savepoint
# (`begin_nested`) fires the same events when it is released or rolled back: the
# hooks wait for the real commit, and a rolled-back savepoint takes with it only
# the hooks queued inside it.

_HOOKS_KEY = "streetloop.after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` once the session's current transaction has committed."""
    session.info.setdefault(_HOOKS_KEY, []).append((session.get_nested_transaction(), fn))


def _inside(transaction: Any, savepoint: Any) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction has not committed yet
    hooks = session.info.pop(_HOOKS_KEY, [])
    for _, fn in hooks:
        fn()


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous: Any) -> None:
    if previous.nested:
        session.info[_HOOKS_KEY] = [
            (t, fn) for t, fn in session.info.get(_HOOKS_KEY, []) if not _inside(t, previous)
        ]
    else:
        session.info.pop(_HOOKS_KEY, None)
