"""A crew completes a job with photo and GPS proof; the checks decide how far to trust it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from geoalchemy2.shape import to_shape
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core import closing
from core.errors import Conflict, ValidationFailed
from core.field import check_client_time, last_event_at, note_fix, order_earliest
from core.lifecycle.base import SYSTEM, Actor
from core.lifecycle.completion import CompletionLifecycle
from core.models import (
    COMPLETION_OUTCOMES,
    Completion,
    Photo,
    PositionPing,
    ServiceType,
    StatusEvent,
    WorkOrder,
)
from core.photos import store_photo
from core.spatial import point
from core.storage import Storage
from core.workorders import change_status
from geo import proof
from geo.photos import PhotoLimits, exif_facts, inspect_photos, perceptual_hash

MAX_PHOTOS = 10
# Work an order may be completed from; dispatched/en_route imply the crew got there.
COMPLETABLE = ("dispatched", "en_route", "on_site")


@dataclass(frozen=True)
class CompletionInput:
    outcome: str
    photos: list[bytes] = field(default_factory=list)
    before_photos: list[bytes] = field(default_factory=list)
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    fix_time: datetime | None = None
    captured_at: datetime | None = None
    notes: str | None = None


def validate_input(
    data: CompletionInput, *, now: datetime, earliest: datetime | None = None
) -> None:
    if data.outcome not in COMPLETION_OUTCOMES:
        raise ValidationFailed(
            f"outcome must be one of {', '.join(COMPLETION_OUTCOMES)}", field="outcome"
        )
    if len(data.photos) + len(data.before_photos) > MAX_PHOTOS:
        raise ValidationFailed(f"at most {MAX_PHOTOS} photos per completion", field="photos")
    has_fix = [v is not None for v in (data.lat, data.lon, data.accuracy_m, data.fix_time)]
    if any(has_fix) and not all(has_fix):
        raise ValidationFailed(
            "a GPS fix needs lat, lon, accuracy_m and fix_time together", field="lat"
        )
    if data.lat is not None and not (
        -90 <= data.lat <= 90 and -180 <= data.lon <= 180 and data.accuracy_m >= 0
    ):
        raise ValidationFailed("lat/lon must be valid degrees and accuracy_m >= 0", field="lat")
    for name in ("fix_time", "captured_at"):
        value = getattr(data, name)
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(f"{name} needs a UTC offset", field=name)
        if value is not None:
            check_client_time(name, value, now=now, earliest=earliest)
    if data.notes is not None and len(data.notes) > 4000:
        raise ValidationFailed("notes are limited to 4000 characters", field="notes")


def proof_policy(st: ServiceType) -> proof.ProofPolicy:
    """The proof rules of a service type (its own limits, the rest the defaults)."""
    return proof.ProofPolicy(
        max_distance_m=st.proof_max_distance_m,
        photo_required=st.photo_required,
        auto_verify=st.auto_verify,
    )


def done_time(c: Completion) -> datetime:
    """When the crew says the work was done, as the checks judged it: the proof's capture
    time, else its fix, else its arrival at the server."""
    return c.captured_at or c.fix_time or c.submitted_at


def track_pings(
    s: Session, crew_id: int, done_at: datetime, policy: proof.ProofPolicy
) -> list[proof.Ping]:
    """The crew's GPS fixes within the track window around `done_at`, oldest first: what
    the track and teleport checks read, and what a supervisor sees drawn on the map."""
    span = timedelta(seconds=policy.track_window_s)
    return [
        proof.Ping(lat=lat, lon=lon, at=at, accuracy_m=acc)
        for lat, lon, at, acc in s.execute(
            select(
                func.ST_Y(PositionPing.location),
                func.ST_X(PositionPing.location),
                PositionPing.at,
                PositionPing.accuracy_m,
            )
            .where(
                PositionPing.crew_id == crew_id,
                and_(PositionPing.at >= done_at - span, PositionPing.at <= done_at + span),
            )
            .order_by(PositionPing.at)
        )
    ]


def _earlier_photos(
    s: Session, wo: WorkOrder, sha256s: set[str]
) -> list[tuple[int, str, int | None]]:
    """Photos from other jobs to compare with (exact matches by index; hashes of the rest).

    Comparing every earlier hash is linear in the photo archive; a BK-tree or a
    hash-prefix index is the next step when a city holds millions of photos."""
    this_job = select(Completion.id).where(Completion.work_order_id == wo.id)
    rows = s.execute(
        select(Photo.id, Photo.sha256, Photo.phash).where(
            (Photo.completion_id.is_(None)) | (Photo.completion_id.notin_(this_job)),
            (Photo.sha256.in_(sha256s)) | (Photo.phash.is_not(None)),
        )
    ).all()
    return [(r.id, r.sha256, r.phash) for r in rows]


def complete_work_order(
    s: Session,
    storage: Storage,
    wo: WorkOrder,
    data: CompletionInput,
    *,
    crew_id: int,
    user_id: int,
    actor: Actor,
    tz: ZoneInfo,
    limits: PhotoLimits,
    sample_rate: float,
    draw: Callable[[], float] = random.random,
    now: datetime | None = None,
) -> tuple[Completion, list[proof.Check], list[Photo]]:
    """Store the proof, run the checks, complete the order; the caller commits.

    Proof the checks accept closes the order and its requests at once (unless drawn for
    an audit at `sample_rate`); the rest waits in the supervisors' review queue."""
    now = now or datetime.now(UTC)
    validate_input(data, now=now, earliest=order_earliest(wo))
    # After and before photos together: the request's total pixels are bounded, from the
    # headers, before any photo is decoded.
    inspected = inspect_photos([*data.photos, *data.before_photos], limits)
    after, before = inspected[: len(data.photos)], inspected[len(data.photos) :]
    if wo.status not in COMPLETABLE:
        raise Conflict(
            f"work order {wo.id} is {wo.status}; it cannot be completed now",
            current=wo.status,
            crew_id=wo.crew_id,
        )

    policy = proof_policy(wo.service_type)
    done_at = data.captured_at or data.fix_time or now
    fix = (
        proof.Fix(data.lat, data.lon, data.accuracy_m, data.fix_time)
        if data.lat is not None
        else None
    )
    site = proof.Site.from_point(to_shape(wo.location)) if wo.location is not None else None

    evidence = [
        proof.PhotoEvidence(sha256=p.sha256, phash=perceptual_hash(raw), exif=exif_facts(raw))
        for p, raw in zip(after, data.photos, strict=True)
    ]
    checks: list[proof.Check] = [proof.check_photo(evidence[0] if evidence else None, policy)]
    if fix is not None and site is not None:
        # The job's time starts at its latest dispatch (an order re-dispatched another day).
        start = s.scalar(
            select(func.max(StatusEvent.at)).where(
                StatusEvent.entity == "work_order",
                StatusEvent.entity_id == wo.id,
                StatusEvent.to_status == "dispatched",
            )
        )
        window = (start, now) if start else None
        # A phone that was offline submits late: judge the fix against when the proof was
        # captured (never later than now), not when the server received it.
        checks += [
            proof.check_distance(site, fix, policy),
            proof.check_fix_age(fix, min(done_at, now), policy),
        ]
        for ev in evidence:
            checks += proof.check_exif(ev, site, fix, window, policy, tz=tz)
        pings = track_pings(s, crew_id, done_at, policy)
        checks.append(proof.check_track(site, pings, done_at, policy))
        checks.append(proof.check_teleport([*pings, fix.as_ping()], policy))
    earlier = _earlier_photos(s, wo, {e.sha256 for e in evidence}) if evidence else []
    for ev in evidence:
        checks.append(proof.check_reuse(ev, earlier, policy))
    proof_verdict, proof_reasons = proof.verdict(checks, policy)
    initial = closing.initial_verdict(
        proof_verdict, proof_reasons, data.outcome, sample_rate=sample_rate, draw=draw
    )
    verdict, reasons = initial.verdict, initial.reasons

    completion = Completion(
        work_order_id=wo.id,
        crew_id=crew_id,
        user_id=user_id,
        outcome=data.outcome,
        notes=data.notes,
        location=point(data.lon, data.lat) if fix else None,
        accuracy_m=data.accuracy_m,
        fix_time=data.fix_time,
        captured_at=data.captured_at,
        submitted_at=now,
        verdict=verdict,
        reasons=reasons,
        checks=proof.full_detail(checks),
        auto_verdict=proof_verdict,
        audit_sampled=initial.audit_sampled,
    )
    s.add(completion)
    s.flush()
    if fix is not None:
        note_fix(
            s,
            crew_id,
            at=min(data.fix_time, now),
            lon=data.lon,
            lat=data.lat,
            accuracy_m=data.accuracy_m,
        )
    CompletionLifecycle.record_creation(
        s,
        completion,
        actor=actor,
        at=now,
        note=f"outcome {data.outcome}; checks said {proof_verdict}"
        + (" (drawn for an audit)" if initial.audit_sampled else "")
        + (f": {', '.join(reasons)}" if reasons and not initial.audit_sampled else ""),
    )
    # After photos carry the hash their reuse check compared; before photos get theirs
    # here, so a later job's check can find them.
    photos = [
        store_photo(
            s, storage, info, raw, kind="after", completion_id=completion.id, phash=ev.phash
        )
        for info, raw, ev in zip(after, data.photos, evidence, strict=True)
    ] + [
        store_photo(
            s,
            storage,
            info,
            raw,
            kind="before",
            completion_id=completion.id,
            phash=perceptual_hash(raw),
        )
        for info, raw in zip(before, data.before_photos, strict=True)
    ]

    where = completion.location
    if wo.status != "on_site":
        # A phone that skipped "on site" (no signal, or a quick job) was there all the same.
        completion.arrived_at = min(done_at, now)
        change_status(
            s,
            wo,
            "on_site",
            actor=actor,
            note="implied by the completion",
            at=completion.arrived_at,
            location=where,
        )
    else:
        completion.arrived_at = s.scalar(
            select(func.max(StatusEvent.at)).where(
                StatusEvent.entity == "work_order",
                StatusEvent.entity_id == wo.id,
                StatusEvent.to_status == "on_site",
            )
        )
    completed_at = max(min(done_at, now), last_event_at(s, wo) or done_at)
    completion.completed_at = completed_at
    change_status(
        s,
        wo,
        "completed",
        actor=actor,
        note=f"outcome {data.outcome}; proof {verdict}",
        at=completed_at,
        location=where,
    )
    if verdict == closing.AUTO_VERIFIED:
        # Proof the checks trust closes the loop now: the order and every request on it.
        closing.close_verified(s, completion, actor=SYSTEM, at=max(completed_at, now))
    s.flush()
    return completion, checks, photos


def public_view(
    completion: Completion, checks: list[proof.Check], photos: list[Photo]
) -> dict[str, Any]:
    """What the crew's phone gets back: the verdict and which checks passed, no thresholds."""
    return {
        "id": completion.id,
        "work_order_id": completion.work_order_id,
        "outcome": completion.outcome,
        "verdict": completion.verdict,
        "reasons": list(completion.reasons),
        "checks": proof.public_summary(checks),
        "photos": len(photos),
        "submitted_at": completion.submitted_at.isoformat(),
    }
