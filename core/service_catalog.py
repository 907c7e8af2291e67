"""The services a resident can report, as the public lists them (Open311's services)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from core.models import ServiceType

# Open311's changeset of a catalogue with no service in it yet: a fixed time, so that the
# value does not change from one call to the next.
_EMPTY_CHANGED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def active(session: Session) -> Sequence[ServiceType]:
    """The services open to reports, by group and name, with their attributes loaded."""
    return session.scalars(
        select(ServiceType)
        .where(ServiceType.active.is_(True))
        .options(selectinload(ServiceType.attributes))
        .order_by(ServiceType.group, ServiceType.name)
    ).all()


def active_one(session: Session, code: str) -> ServiceType | None:
    """The service `code`, if it is open to reports."""
    return session.scalar(
        select(ServiceType).where(ServiceType.code == code, ServiceType.active.is_(True))
    )


def changed_at(session: Session) -> datetime:
    """When the catalogue last changed: its newest service's creation."""
    return session.scalar(select(func.max(ServiceType.created_at))) or _EMPTY_CHANGED_AT
