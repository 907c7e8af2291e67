"""The public timeline of three requests, for the Open311 updates and the status page:
contact details and private notes in between the public steps, and a verified completion
whose after photo is the only one that may be shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.intake import Contact
from core.lifecycle.service_request import ServiceRequestLifecycle
from core.models import Completion, Photo, ServiceRequest, StatusEvent
from core.workorders import change_status
from tests import factories as f

# Monday 2 March 2026, 08:00 UTC: 09:00 CET in the test settings' Europe/Andorra.
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PII = {
    "email": "jane.resident@example.org",
    "first_name": "Janet",
    "last_name": "Residentova",
    "phone": "+376 555 0101",
    "device_id": "device-7f3a",
    "account_id": "acct-991",
}
PRIVATE_NOTES = (
    "internal triage: caller was rude",
    "crew lead Bob Smith phoned",
    "crew: used 40 kg of cold mix",
)
CREW_EMAIL = "crew-a@test"


@dataclass
class History:
    a: ServiceRequest  # reported with contact details, scheduled, in progress, fixed
    b: ServiceRequest  # joined a, followed it to fixed
    c: ServiceRequest  # graffiti, closed without a visit
    completion: Completion
    events: dict[tuple[str, str], int]  # (which request, to_status) -> status event id


def photo(
    db: Session,
    n: int,
    kind: str,
    *,
    request: ServiceRequest | None = None,
    completion: Completion | None = None,
    state: str = "ready",
) -> Photo:
    ready = state == "ready"
    p = Photo(
        kind=kind,
        state=state,
        service_request_id=request.id if request else None,
        completion_id=completion.id if completion else None,
        sha256=f"{n:064x}",
        content_type="image/jpeg",
        byte_size=1000,
        width=640,
        height=480,
        original_key=f"private/photos/{n:02x}/{n:064x}.jpg",
        public_key=f"public/photos/{n}-{kind}.jpg" if ready else None,
        thumbnail_key=f"public/photos/{n}-{kind}-thumb.jpg" if ready else None,
    )
    db.add(p)
    db.flush()
    return p


def build_updates_history(db: Session) -> History:
    """Three requests with a known public timeline, private notes in between, and a
    verified completion with one ready after photo among photos that must stay private."""
    f.service_type(db)
    f.service_type(db, "graffiti", name="Graffiti", agency="Sanitation", skill="graffiti")
    lsm = ServiceRequestLifecycle
    a = f.report(
        db,
        at=T0,
        contact=Contact(**PII),
        address_string="Av. Meritxell 11",
        description="Deep hole <script>alert(1)</script> by the bus stop",
    ).request
    b = f.report(db, lon=f.offset(f.LON, f.LAT, 20)[0], at=T0 + timedelta(minutes=30)).request
    assert b.duplicate_of_id == a.id and b.work_order_id == a.work_order_id
    wo = a.work_order
    lsm.transition(
        db, a, "acknowledged", actor=f.SYSTEM, at=T0 + timedelta(hours=1), note=PRIVATE_NOTES[0]
    )
    lsm.annotate(
        db, a, actor=f.SYSTEM, at=T0 + timedelta(hours=1, minutes=30), note=PRIVATE_NOTES[1]
    )
    crew = f.crew(db)
    user = f.user(db, CREW_EMAIL, "crew", crew=crew)
    # The work order's moves bring both requests along, with their public notes.
    change_status(
        db,
        wo,
        "dispatched",
        actor=f.SYSTEM,
        crew_id=crew.id,
        at=T0 + timedelta(hours=2),
        note="plan 7 v1",
    )
    c = f.report(
        db, "graffiti", lon=f.offset(f.LON, f.LAT, 800)[0], at=T0 + timedelta(hours=3)
    ).request
    lsm.transition(
        db,
        c,
        "no_action_needed",
        actor=f.SYSTEM,
        at=T0 + timedelta(hours=4),
        note="Painted over by the owner.",
        public=True,
    )
    change_status(db, wo, "on_site", actor=f.SYSTEM, at=T0 + timedelta(hours=26))

    rejected = Completion(
        work_order_id=a.work_order_id,
        crew_id=crew.id,
        user_id=user.id,
        outcome="fixed",
        verdict="rejected",
        submitted_at=T0 + timedelta(hours=25),
        notes=PRIVATE_NOTES[2],
    )
    done = Completion(
        work_order_id=a.work_order_id,
        crew_id=crew.id,
        user_id=user.id,
        outcome="fixed",
        verdict="auto_verified",
        submitted_at=T0 + timedelta(hours=27),
        notes=PRIVATE_NOTES[2],
    )
    db.add_all([rejected, done])
    db.flush()
    photo(db, 1, "report", request=a)
    photo(db, 2, "report", request=a, state="pending")
    photo(db, 3, "after", completion=rejected)
    photo(db, 4, "before", completion=done)
    photo(db, 5, "after", completion=done)
    photo(db, 6, "after", completion=done, state="pending")
    fixed_at = T0 + timedelta(hours=27)
    for req in (a, b):
        req.status_notes = "Fixed. The crew's work was checked and confirmed."
        lsm.transition(
            db,
            req,
            "fixed",
            actor=f.SYSTEM,
            at=fixed_at,
            note="Pothole filled.",
            public=True,
            verified_completion_id=done.id,
        )
    db.commit()
    names = {a.id: "a", b.id: "b", c.id: "c"}
    events = {
        (names[e.entity_id], e.to_status): e.id
        for e in db.scalars(
            select(StatusEvent).where(StatusEvent.entity == "service_request", StatusEvent.public)
        )
    }
    return History(a=a, b=b, c=c, completion=done, events=events)
