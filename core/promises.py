"""A resident's expected time, and the promise behind it.

`expected_at` is the best estimate now: the published plan's arrival, moved during the
day as the crew's progress and position say (`dispatch.promises`). `promised_at` is the
time the resident was last given. A later estimate is told again, once, through the
outbox (kind "delayed") and the public timeline, only when it slips past the promise by
more than the allowed slip; smaller slips and earlier arrivals just move `expected_at`,
so Open311 never shows a time already past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import notifications
from core.lifecycle.base import SYSTEM, Actor
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import ServiceRequest


def _when(eta: datetime, now: datetime, tz: ZoneInfo) -> str:
    local = eta.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return f"{local:%H:%M}"
    return f"{local:%a} {local.day} {local:%b} at {local:%H:%M}"


def keep_promise(
    session: Session,
    request: ServiceRequest,
    eta: datetime,
    *,
    slip: timedelta,
    tz: ZoneInfo,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
) -> bool:
    """Move the request's expected time to `eta` (never before now); True if the resident
    is told because it slipped past their promise by more than `slip`."""
    now = now or datetime.now(UTC)
    eta = max(eta, now)
    request.expected_at = eta
    if request.promised_at is None:
        request.promised_at = eta
        return False
    if eta - request.promised_at <= slip:
        return False
    note = f"The work is running late: a crew is now expected by {_when(eta, now, tz)}."
    event = ServiceRequestLifecycle.annotate(
        session, request, actor=actor, note=note, public=True, at=now
    )
    notifications.enqueue(session, request, event, kind="delayed")
    request.promised_at = eta
    return True
