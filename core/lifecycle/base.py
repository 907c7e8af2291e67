from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from geoalchemy2 import WKBElement
from sqlalchemy.orm import Session

from core.errors import IllegalTransition
from core.models import StatusEvent


@dataclass(frozen=True)
class Actor:
    """Who caused a change: a signed-in user, an Open311 client app, or the system."""

    label: str
    user_id: int | None = None

    @classmethod
    def user(cls, user_id: int, email: str) -> Actor:
        return cls(label=f"user:{email}", user_id=user_id)

    @classmethod
    def client(cls, name: str) -> Actor:
        return cls(label=f"open311:{name}")

    @classmethod
    def cli(cls, login: str) -> Actor:
        """Someone at the server's shell (`streetloop users ...`): their OS login is all we know."""
        return cls(label=f"cli:{login}")


SYSTEM = Actor(label="system")


def audit(
    session: Session,
    entity: str,
    entity_id: int,
    *,
    from_status: str | None,
    to_status: str,
    actor: Actor,
    note: str | None = None,
    public: bool = False,
    location: WKBElement | None = None,
    at: datetime | None = None,
) -> StatusEvent:
    """One row of the audit trail, in the caller's transaction. The state machines write
    through this; so do records whose state is not one column (shifts, users)."""
    event = StatusEvent(
        entity=entity,
        entity_id=entity_id,
        from_status=from_status,
        to_status=to_status,
        actor=actor.label,
        actor_user_id=actor.user_id,
        at=at or datetime.now(UTC),
        note=note,
        public=public,
        location=location,
    )
    session.add(event)
    return event


class StateMachine:
    """Subclasses give `entity`, `transitions` and the attribute that holds the state.

    Three ways to write to the audit trail, all in the caller's transaction:
    `record_creation` (the first event), `transition` (a state change, checked),
    `annotate` (an audited change that keeps the state, e.g. a priority bump)."""

    entity: ClassVar[str]
    state_attr: ClassVar[str] = "status"
    # Keyed and valued by the entity's `core.status` enum members (plain strings).
    transitions: ClassVar[dict[str, frozenset[str]]]

    @classmethod
    def allowed(cls, current: str) -> frozenset[str]:
        return cls.transitions.get(current, frozenset())

    @classmethod
    def can(cls, current: str, target: str) -> bool:
        return target in cls.allowed(current)

    @classmethod
    def check(cls, obj: Any, target: str, **context: Any) -> None:
        """Raise unless `obj` may move to `target`; subclasses add guards."""
        current, target = str(getattr(obj, cls.state_attr)), str(target)
        if target not in cls.allowed(current):
            raise IllegalTransition(
                f"{cls.entity.replace('_', ' ')} {obj.id} cannot go from {current!r} to {target!r}",
                current=current,
                target=target,
                allowed=sorted(cls.allowed(current)),
            )

    @classmethod
    def _event(
        cls,
        session: Session,
        obj: Any,
        from_status: str | None,
        *,
        actor: Actor,
        note: str | None,
        public: bool,
        location: WKBElement | None,
        at: datetime | None,
    ) -> StatusEvent:
        if obj.id is None:
            session.flush()
        return audit(
            session,
            cls.entity,
            obj.id,
            from_status=from_status,
            to_status=getattr(obj, cls.state_attr),
            actor=actor,
            note=note,
            public=public,
            location=location,
            at=at,
        )

    @classmethod
    def transition(
        cls,
        session: Session,
        obj: Any,
        target: str,
        *,
        actor: Actor,
        note: str | None = None,
        public: bool = False,
        location: WKBElement | None = None,
        at: datetime | None = None,
        **context: Any,
    ) -> StatusEvent:
        # A `core.status` member is kept as its plain value, as the database gives it back:
        # the object reads the same before and after a round trip, a message says 'new'.
        target = str(target)
        cls.check(obj, target, **context)
        current = getattr(obj, cls.state_attr)
        when = at or datetime.now(UTC)
        setattr(obj, cls.state_attr, target)
        if hasattr(obj, "updated_at"):
            obj.updated_at = when
        cls.on_enter(obj, current, target, when, **context)
        return cls._event(
            session, obj, current, actor=actor, note=note, public=public, location=location, at=when
        )

    @classmethod
    def record_creation(
        cls,
        session: Session,
        obj: Any,
        *,
        actor: Actor,
        note: str | None = None,
        public: bool = False,
        location: WKBElement | None = None,
        at: datetime | None = None,
    ) -> StatusEvent:
        """The first event of an entity (from_status NULL), so the timeline starts at birth."""
        return cls._event(
            session, obj, None, actor=actor, note=note, public=public, location=location, at=at
        )

    @classmethod
    def annotate(
        cls,
        session: Session,
        obj: Any,
        *,
        actor: Actor,
        note: str,
        public: bool = False,
        location: WKBElement | None = None,
        at: datetime | None = None,
    ) -> StatusEvent:
        """An audited change that keeps the state (priority raised, location pinned)."""
        state = getattr(obj, cls.state_attr)
        return cls._event(
            session, obj, state, actor=actor, note=note, public=public, location=location, at=at
        )

    @classmethod
    def on_enter(cls, obj: Any, previous: str, target: str, when: datetime, **context: Any) -> None:
        """Hook for fields that follow the state (closed_at and the like)."""
