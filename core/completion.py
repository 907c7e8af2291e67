"""A crew completes a job with photo and GPS proof; the checks decide how far to trust it.

The workflow of the domain: it stores the proof, asks the pure checks of geo.proof (and
geo.photos for the photos' facts) what they make of it, and moves the work order through
its lifecycle, every change with its audit event, in the caller's transaction. What one
process's completions share (storage, photo limits, the city's zone, the audit share, the
clock) is one `CompletionSettings`; what one completion brings is its `CompletionInput`
and who sends it, its `Completer`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from geoalchemy2.shape import to_shape
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core import closing
from core.errors import Conflict, ValidationFailed
from core.field import check_client_time, last_event_at, note_fix, order_earliest
from core.lifecycle.base import SYSTEM, Actor
from core.lifecycle.completion import CompletionLifecycle
from core.locks import AdvisoryLock
from core.models import (
    Completion,
    IdempotencyKey,
    Photo,
    PositionPing,
    ServiceType,
    WorkOrder,
)
from core.photos import store_photo
from core.settings import Settings
from core.spatial import point
from core.status import COMPLETABLE, COMPLETION_OUTCOMES
from core.storage import Storage
from core.workorders import change_status
from geo import proof
from geo.photos import InspectedPhoto, PhotoLimits, exif_facts, inspect_photos, perceptual_hash

MAX_PHOTOS = 10


def _utc_now() -> datetime:
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Callable[[], datetime]:
    """A clock that always says `at`: for completions on a day gone by (the demo's history)."""
    return lambda: at


@dataclass(frozen=True)
class CompletionSettings:
    """What every completion of a process shares; built once from the settings
    (`from_settings`). `tz` reads a photo's EXIF time that has no zone; `draw` picks the
    completions audited at `audit_sample_rate`; `clock` says when a completion arrives."""

    storage: Storage
    tz: tzinfo
    limits: PhotoLimits = field(default_factory=PhotoLimits)
    audit_sample_rate: float = Settings.audit_sample_rate
    draw: Callable[[], float] = random.random
    clock: Callable[[], datetime] = _utc_now

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage) -> CompletionSettings:
        return cls(
            storage=storage,
            tz=settings.tz,
            limits=PhotoLimits.from_settings(settings),
            audit_sample_rate=settings.audit_sample_rate,
        )


@dataclass(frozen=True)
class Completer:
    """Who completes: the crew on the order, its member signed in on the phone, and the
    actor the audit events name."""

    crew_id: int
    user_id: int
    actor: Actor


@dataclass(frozen=True)
class CompletionInput:
    """What the phone sends: the outcome, the photos, its GPS fix and when it was taken,
    when the proof was captured, and the crew's notes."""

    outcome: str
    photos: list[bytes] = field(default_factory=list)
    before_photos: list[bytes] = field(default_factory=list)
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    fix_time: datetime | None = None
    captured_at: datetime | None = None
    notes: str | None = None

    def gps_fix(self) -> proof.Fix | None:
        """The fix, when all its parts were sent (`validate_input` refuses some of them)."""
        lat, lon, accuracy_m, at = self.lat, self.lon, self.accuracy_m, self.fix_time
        if lat is None or lon is None or accuracy_m is None or at is None:
            return None
        return proof.Fix(lat, lon, accuracy_m, at)

    def done_at(self, now: datetime) -> datetime:
        """When the crew says the work was done: the proof's capture time, else its fix,
        else its arrival (as `done_time` reads a stored completion)."""
        return self.captured_at or self.fix_time or now


@dataclass(frozen=True)
class CompletionResult:
    """A completion as stored, the checks its proof was held to, and its photos (whose
    processing the caller queues after the commit)."""

    completion: Completion
    checks: list[proof.Check]
    photos: list[Photo]


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
    lat, lon, accuracy_m = data.lat, data.lon, data.accuracy_m
    if (
        lat is not None
        and lon is not None
        and accuracy_m is not None
        and not (-90 <= lat <= 90 and -180 <= lon <= 180 and accuracy_m >= 0)
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


def _known_accuracy(accuracy_m: float | None) -> float | None:
    """A stored accuracy the track checks can use, else None (unknown, so no credit). Rows
    from before the positions endpoint refused them may hold a negative or NaN accuracy."""
    if accuracy_m is None or not math.isfinite(accuracy_m) or accuracy_m < 0:
        return None
    return accuracy_m


def track_pings(
    s: Session, crew_id: int, done_at: datetime, policy: proof.ProofPolicy
) -> list[proof.Ping]:
    """The crew's GPS fixes within the track window around `done_at`, oldest first: what
    the track and teleport checks read, and what a supervisor sees drawn on the map."""
    span = timedelta(seconds=policy.track_window_s)
    return [
        proof.Ping(lat=lat, lon=lon, at=at, accuracy_m=_known_accuracy(acc))
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
    wo: WorkOrder,
    data: CompletionInput,
    by: Completer,
    settings: CompletionSettings,
) -> CompletionResult:
    """Store the proof, run the checks, complete the order; the caller commits.

    Proof the checks accept closes the order and its requests at once (unless drawn for
    an audit at the settings' `audit_sample_rate`); the rest waits in the supervisors'
    review queue. Raises ValidationFailed for bad input, PhotoRejected for a photo that
    cannot be read or is too large, Conflict when the order cannot be completed now."""
    now = settings.clock()
    validate_input(data, now=now, earliest=order_earliest(wo))
    after, before = _inspect_photos(data, settings.limits)
    if wo.status not in COMPLETABLE:
        raise Conflict(
            f"work order {wo.id} is {wo.status}; it cannot be completed now",
            current=wo.status,
            crew_id=wo.crew_id,
        )
    policy = proof_policy(wo.service_type)
    evidence = [
        proof.PhotoEvidence(sha256=p.sha256, phash=perceptual_hash(raw), exif=exif_facts(raw))
        for p, raw in zip(after, data.photos, strict=True)
    ]
    checks = _run_checks(s, wo, data, evidence, by.crew_id, policy, tz=settings.tz, now=now)
    proof_verdict, proof_reasons = proof.verdict(checks, policy)
    initial = closing.initial_verdict(
        proof_verdict,
        proof_reasons,
        data.outcome,
        sample_rate=settings.audit_sample_rate,
        draw=settings.draw,
    )
    completion = _record_completion(s, wo, data, by, checks, proof_verdict, initial, now=now)
    photos = _store_photos(s, settings.storage, completion, data, after, before, evidence)
    _complete_order(s, wo, completion, data.done_at(now), actor=by.actor, now=now)
    s.flush()
    return CompletionResult(completion, checks, photos)


def _inspect_photos(
    data: CompletionInput, limits: PhotoLimits
) -> tuple[list[InspectedPhoto], list[InspectedPhoto]]:
    """The after and the before photos, read from their headers (PhotoRejected if one
    cannot be). Together: the request's total pixels are bounded before any is decoded."""
    inspected = inspect_photos([*data.photos, *data.before_photos], limits)
    return inspected[: len(data.photos)], inspected[len(data.photos) :]


def _run_checks(
    s: Session,
    wo: WorkOrder,
    data: CompletionInput,
    evidence: list[proof.PhotoEvidence],
    crew_id: int,
    policy: proof.ProofPolicy,
    *,
    tz: tzinfo,
    now: datetime,
) -> list[proof.Check]:
    """Every check the proof is held to, in the order they are stored and shown: the
    photo, then (with a fix and a site) where and when, then whether a photo is reused."""
    checks = [proof.check_photo(evidence[0] if evidence else None, policy)]
    fix = data.gps_fix()
    if fix is not None and wo.location is not None:
        site = proof.Site.from_point(to_shape(wo.location))
        checks += _place_and_time_checks(
            s, wo, site, fix, evidence, crew_id, policy, done_at=data.done_at(now), tz=tz, now=now
        )
    earlier = _earlier_photos(s, wo, {e.sha256 for e in evidence}) if evidence else []
    checks += [proof.check_reuse(ev, earlier, policy) for ev in evidence]
    return checks


def _place_and_time_checks(
    s: Session,
    wo: WorkOrder,
    site: proof.Site,
    fix: proof.Fix,
    evidence: list[proof.PhotoEvidence],
    crew_id: int,
    policy: proof.ProofPolicy,
    *,
    done_at: datetime,
    tz: tzinfo,
    now: datetime,
) -> list[proof.Check]:
    """The fix against the site, each photo's own GPS and time, and the crew's track."""
    # The job's time starts at its latest dispatch (an order re-dispatched another day).
    start = last_event_at(s, wo, ("dispatched",))
    window = (start, now) if start else None
    # A phone that was offline submits late: judge the fix against when the proof was
    # captured (never later than now), not when the server received it.
    checks = [
        proof.check_distance(site, fix, policy),
        proof.check_fix_age(fix, min(done_at, now), policy),
    ]
    for ev in evidence:
        checks += proof.check_exif(ev, site, fix, window, policy, tz=tz)
    pings = track_pings(s, crew_id, done_at, policy)
    checks.append(proof.check_track(site, pings, done_at, policy))
    checks.append(proof.check_teleport([*pings, fix.as_ping()], policy))
    return checks


def _record_completion(
    s: Session,
    wo: WorkOrder,
    data: CompletionInput,
    by: Completer,
    checks: list[proof.Check],
    proof_verdict: str,
    initial: closing.InitialVerdict,
    *,
    now: datetime,
) -> Completion:
    """The completion's row (flushed, so it has its id) with its audit event; its fix is
    the crew's latest position too, if nothing newer is known."""
    fix = data.gps_fix()
    completion = Completion(
        work_order_id=wo.id,
        crew_id=by.crew_id,
        user_id=by.user_id,
        outcome=data.outcome,
        notes=data.notes,
        location=point(fix.lon, fix.lat) if fix is not None else None,
        accuracy_m=data.accuracy_m,
        fix_time=data.fix_time,
        captured_at=data.captured_at,
        submitted_at=now,
        verdict=initial.verdict,
        reasons=initial.reasons,
        checks=proof.full_detail(checks),
        auto_verdict=proof_verdict,
        audit_sampled=initial.audit_sampled,
    )
    s.add(completion)
    s.flush()
    if fix is not None:
        note_fix(
            s, by.crew_id, at=min(fix.at, now), lon=fix.lon, lat=fix.lat, accuracy_m=fix.accuracy_m
        )
    reasons = initial.reasons
    CompletionLifecycle.record_creation(
        s,
        completion,
        actor=by.actor,
        at=now,
        note=f"outcome {data.outcome}; checks said {proof_verdict}"
        + (" (drawn for an audit)" if initial.audit_sampled else "")
        + (f": {', '.join(reasons)}" if reasons and not initial.audit_sampled else ""),
    )
    return completion


def _store_photos(
    s: Session,
    storage: Storage,
    completion: Completion,
    data: CompletionInput,
    after: list[InspectedPhoto],
    before: list[InspectedPhoto],
    evidence: list[proof.PhotoEvidence],
) -> list[Photo]:
    """The completion's photos, after then before, each stored as every photo is."""
    # After photos carry the hash their reuse check compared; before photos get theirs
    # here, so a later job's check can find them.
    return [
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


def _complete_order(
    s: Session,
    wo: WorkOrder,
    completion: Completion,
    done_at: datetime,
    *,
    actor: Actor,
    now: datetime,
) -> None:
    """The order is on site (if the phone never said so) and completed, at the times the
    proof gives; proof the checks trust closes it and every request on it now."""
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
        completion.arrived_at = last_event_at(s, wo, ("on_site",))
    # Never before the order's last change: its audit trail stays in order.
    completed_at = max(min(done_at, now), last_event_at(s, wo) or done_at)
    completion.completed_at = completed_at
    change_status(
        s,
        wo,
        "completed",
        actor=actor,
        note=f"outcome {completion.outcome}; proof {completion.verdict}",
        at=completed_at,
        location=where,
    )
    if completion.verdict == closing.AUTO_VERIFIED:
        closing.close_verified(s, completion, actor=SYSTEM, at=max(completed_at, now))


# -- a phone's resend -----------------------------------------------------------------
# A phone that lost the answer (no signal as it came) sends the same proof again, under
# the same Idempotency-Key: it gets the first answer back, and nothing is stored twice.


class KeyReused(ValidationFailed):
    """The key came before with other content: a phone bug, never a retry."""


@dataclass(frozen=True)
class SubmissionKey:
    """How a phone names one submission: its member, the key it chose, and a fingerprint
    of everything it sent (the caller's: what makes two submissions the same is the
    protocol's to say)."""

    user_id: int
    key: str
    fingerprint: str


def earlier_answer(s: Session, sub: SubmissionKey) -> IdempotencyKey | None:
    """The answer a submission under this key got already, or None for a new one. Holds
    the key's lock until the caller's commit: a retry racing the original waits for its
    answer. Raises KeyReused for the key with other content."""
    s.execute(
        select(
            func.pg_advisory_xact_lock(
                AdvisoryLock.COMPLETION, func.hashtext(f"{sub.user_id}:{sub.key}")
            )
        )
    )
    seen = s.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == sub.user_id, IdempotencyKey.key == sub.key
        )
    )
    if seen is not None and seen.request_hash != sub.fingerprint:
        raise KeyReused(
            "this Idempotency-Key was used for a different submission", field="Idempotency-Key"
        )
    return seen


def remember_answer(
    s: Session, sub: SubmissionKey, answer: dict[str, Any], *, status_code: int
) -> None:
    """Keep the answer given to `sub`, in the transaction that stored its proof."""
    s.add(
        IdempotencyKey(
            user_id=sub.user_id,
            key=sub.key,
            request_hash=sub.fingerprint,
            status_code=status_code,
            response=answer,
        )
    )


def public_view(result: CompletionResult) -> dict[str, Any]:
    """What the crew's phone gets back: the verdict and which checks passed, no thresholds."""
    completion, checks, photos = result.completion, result.checks, result.photos
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
