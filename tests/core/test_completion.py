"""The completion workflow (core.completion) called directly, with a real database session:
what it stores, the verdict each kind of doubtful proof gets, what it refuses, and that
every change and its audit event land in the caller's one transaction.

The crew's phone reaches the same code through HTTP (tests/api/test_completion.py); here
the checks' inputs are set one at a time, so each doubtful reason is seen on its own."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core import closing
from core.completion import (
    Completer,
    CompletionInput,
    CompletionSettings,
    KeyReused,
    SubmissionKey,
    complete_work_order,
    earlier_answer,
    fixed_clock,
    public_view,
    remember_answer,
    track_pings,
)
from core.errors import Conflict, ValidationFailed
from core.field import ingest_positions, last_event_at
from core.lifecycle import Actor
from core.models import Completion, CrewPosition, Photo, PositionPing, StatusEvent, WorkOrder
from core.photos import original_key, store_photo
from core.storage import LocalStorage
from core.workorders import change_status
from geo.photos import PhotoLimits, inspect_photos
from geo.proof import Ping, ProofPolicy
from tests import factories as f

NOW = datetime.now(UTC).replace(microsecond=0)
# About 555 m of latitude: far beyond every distance a check allows (75 m to the fix,
# 150 m to the photo's GPS and to the track), near enough that driving it is no teleport.
FAR = 0.005


def photo(
    seed: int,
    *,
    lat: float | None = f.LAT,
    lon: float | None = f.LON,
    taken: datetime | None = NOW - timedelta(minutes=1),
) -> bytes:
    """A JPEG of random blocks (each seed its own picture, far apart in perceptual hash)
    with the GPS position and the capture time a phone writes into its EXIF."""
    blocks = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(blocks).resize((320, 240), Image.Resampling.NEAREST)
    exif = Image.Exif()
    if lat is not None and lon is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if lat >= 0 else "S"), _dms(lat)
        gps[3], gps[4] = ("E" if lon >= 0 else "W"), _dms(lon)
    if taken is not None:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken.astimezone(UTC).strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
        sub[0x9011] = "+00:00"  # OffsetTimeOriginal
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 4)


def good_proof(**changes: Any) -> CompletionInput:
    """Proof every check accepts: a fix 8 m from the site, taken 30 s ago, and an after
    photo taken at the site a minute ago; `changes` spoil one part of it."""
    proof = CompletionInput(
        outcome="fixed",
        photos=[photo(1)],
        lat=f.LAT,
        lon=f.LON + 0.0001,
        accuracy_m=6,
        fix_time=NOW - timedelta(seconds=30),
        captured_at=NOW - timedelta(seconds=40),
        notes="filled and rolled",
    )
    return replace(proof, **changes)


@dataclass
class Job:
    wo: WorkOrder
    by: Completer
    settings: CompletionSettings


def make_job(
    s: Session,
    media: Path,
    *,
    track: list[Ping] | None = None,
    dispatched: bool = True,
    **type_overrides: Any,
) -> Job:
    """A pothole's work order dispatched an hour ago to a crew whose phone has sat at the
    site for the last 25 minutes (unless `track` says otherwise)."""
    f.service_type(s, proof_max_distance_m=75, **type_overrides)
    crew = f.crew(s)
    member = f.user(s, "pothole-1@test", "crew", crew=crew)
    wo = f.report(s).work_order
    if dispatched:
        change_status(
            s, wo, "dispatched", actor=f.SYSTEM, crew_id=crew.id, at=NOW - timedelta(hours=1)
        )
    if track is None:
        track = [
            Ping(at=NOW - timedelta(minutes=m), lat=f.LAT, lon=f.LON, accuracy_m=8)
            for m in range(1, 26)
        ]
    ingest_positions(s, crew.id, track, now=NOW)
    s.flush()
    settings = CompletionSettings(
        storage=LocalStorage(media),
        tz=ZoneInfo("Europe/Andorra"),
        limits=PhotoLimits(),
        audit_sample_rate=0.0,
        clock=fixed_clock(NOW),
    )
    by = Completer(crew_id=crew.id, user_id=member.id, actor=Actor.user(member.id, member.email))
    return Job(wo, by, settings)


def events(s: Session, entity: str, entity_id: int) -> list[str]:
    return list(
        s.scalars(
            select(StatusEvent.to_status)
            .where(StatusEvent.entity == entity, StatusEvent.entity_id == entity_id)
            .order_by(StatusEvent.id)
        )
    )


def test_good_proof_is_auto_verified_and_closes_the_order_and_its_request(
    db: Session, tmp_path: Path
) -> None:
    job = make_job(db, tmp_path)
    request = job.wo.requests[0]
    before = photo(2, taken=NOW - timedelta(minutes=30))
    last_change = last_event_at(db, job.wo)
    assert last_change is not None
    result = complete_work_order(
        db, job.wo, good_proof(before_photos=[before]), job.by, job.settings
    )
    c = result.completion
    assert (c.verdict, c.auto_verdict, c.reasons, c.audit_sampled) == (
        closing.AUTO_VERIFIED,
        closing.AUTO_VERIFIED,
        [],
        False,
    )
    assert {check.name: check.passed for check in result.checks} == {
        "photo_present": True,
        "distance": True,
        "fix_age": True,
        "exif_location": True,
        "exif_time": True,
        "track": True,
        "teleport": True,
        "reuse": True,
    }
    assert [check["name"] for check in c.checks] == [check.name for check in result.checks]
    # The phone said "dispatched" last: its arrival is implied at the proof's capture time,
    # and the work done then, or at the order's last change if that came later.
    assert c.arrived_at == NOW - timedelta(seconds=40)
    assert c.completed_at == max(c.arrived_at, last_change)
    assert c.submitted_at == NOW and c.crew_id == job.by.crew_id
    assert (job.wo.status, request.detailed_status) == ("verified", "fixed")
    assert events(db, "work_order", job.wo.id)[-3:] == ["on_site", "completed", "verified"]
    assert events(db, "completion", c.id) == [closing.AUTO_VERIFIED]
    assert events(db, "service_request", request.id)[-1] == "fixed"
    # The photos, after then before: content-named originals on disk, rows that name
    # them, and both hashes kept for later jobs' reuse checks.
    assert [(p.kind, p.completion_id, p.state) for p in result.photos] == [
        ("after", c.id, "pending"),
        ("before", c.id, "pending"),
    ]
    for p, raw in zip(result.photos, [photo(1), before], strict=True):
        assert p.id is not None and p.phash is not None
        assert (tmp_path / p.original_key).read_bytes() == raw
    # The fix is the crew's latest position now.
    assert db.scalar(select(CrewPosition.at).where(CrewPosition.crew_id == job.by.crew_id)) == (
        NOW - timedelta(seconds=30)
    )
    assert public_view(result) == {
        "id": c.id,
        "work_order_id": job.wo.id,
        "outcome": "fixed",
        "verdict": closing.AUTO_VERIFIED,
        "reasons": [],
        "checks": [{"name": check.name, "passed": check.passed} for check in result.checks],
        "photos": 2,
        "submitted_at": NOW.isoformat(),
    }


def _far_track() -> list[Ping]:
    return [
        Ping(at=NOW - timedelta(minutes=m), lat=f.LAT + FAR, lon=f.LON, accuracy_m=8)
        for m in range(1, 26)
    ]


def _teleporting_track() -> list[Ping]:
    # At the site, then 10 km away a minute later: no vehicle covers that.
    return [
        Ping(at=NOW - timedelta(minutes=3), lat=f.LAT, lon=f.LON, accuracy_m=8),
        Ping(at=NOW - timedelta(minutes=2), lat=f.LAT + 0.09, lon=f.LON, accuracy_m=8),
    ]


# Each doubtful proof and the reasons it waits for a supervisor with: (proof's changes,
# the job's, expected reasons).
DOUBTFUL: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    "fix far from the site": ({"lat": f.LAT + FAR}, {}, ["distance_failed"]),
    # Twenty minutes before the photo: it proves an earlier visit, not this one.
    "old fix": ({"fix_time": NOW - timedelta(minutes=20)}, {}, ["fix_age_failed"]),
    "no fix at all": (
        {"lat": None, "lon": None, "accuracy_m": None, "fix_time": None},
        {},
        ["distance_missing", "fix_age_missing"],
    ),
    "no photo where one is required": ({"photos": []}, {}, ["photo_missing"]),
    "photo taken elsewhere": (
        {"photos": [photo(1, lat=f.LAT + 2 * FAR)]},
        {},
        ["exif_location_failed"],
    ),
    "photo taken before the job": (
        {"photos": [photo(1, taken=NOW - timedelta(hours=3))]},
        {},
        ["exif_time_failed"],
    ),
    "track never near the site": ({}, {"track": _far_track()}, ["track_failed"]),
    "track teleports": ({}, {"track": _teleporting_track()}, ["teleport_failed"]),
    "type always reviewed": ({}, {"auto_verify": False}, ["policy_requires_review"]),
    "another crew needed": ({"outcome": "needs_other_crew"}, {}, ["needs_other_crew"]),
}


@pytest.mark.parametrize("case", DOUBTFUL)
def test_doubtful_proof_waits_for_review_with_its_reason(
    db: Session, tmp_path: Path, case: str
) -> None:
    changes, job_changes, reasons = DOUBTFUL[case]
    job = make_job(db, tmp_path, **job_changes)
    request = job.wo.requests[0]
    result = complete_work_order(db, job.wo, good_proof(**changes), job.by, job.settings)
    c = result.completion
    assert (c.verdict, c.reasons, c.audit_sampled) == (closing.NEEDS_REVIEW, reasons, False)
    # Completed, not closed: the order and its request wait for the supervisor.
    assert job.wo.status == "completed" and request.detailed_status != "fixed"
    assert events(db, "completion", c.id) == [closing.NEEDS_REVIEW]
    assert events(db, "work_order", job.wo.id)[-1] == "completed"


def test_a_photo_from_another_job_is_doubtful_and_stored_once(db: Session, tmp_path: Path) -> None:
    job = make_job(db, tmp_path)
    # The same picture, sent earlier by a resident with another report.
    other = f.report(db, lon=f.LON + 0.01, lat=f.LAT).request
    (info,) = inspect_photos([photo(1)], PhotoLimits())
    earlier = store_photo(
        db, job.settings.storage, info, photo(1), kind="report", request_id=other.id
    )
    result = complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    assert result.completion.reasons == ["reuse_failed"]
    after = result.photos[0]
    assert after.original_key == earlier.original_key == original_key(info)
    assert list(tmp_path.rglob("*.jpg")) == [tmp_path / after.original_key]


def test_proof_drawn_for_an_audit_waits_for_review(db: Session, tmp_path: Path) -> None:
    job = make_job(db, tmp_path)
    settings = replace(job.settings, audit_sample_rate=0.5, draw=lambda: 0.25)
    c = complete_work_order(db, job.wo, good_proof(), job.by, settings).completion
    assert (c.verdict, c.auto_verdict, c.reasons, c.audit_sampled) == (
        closing.NEEDS_REVIEW,
        closing.AUTO_VERIFIED,
        [closing.AUDIT_SAMPLE],
        True,
    )
    assert job.wo.status == "completed"


def _nothing_stored(s: Session, media: Path, wo: WorkOrder) -> None:
    assert s.scalar(select(func.count()).select_from(Completion)) == 0
    assert s.scalar(select(func.count()).select_from(Photo)) == 0
    assert s.scalar(select(func.count()).where(StatusEvent.entity == "completion")) == 0
    assert not media.exists() or not any(media.rglob("*.jpg"))


def test_an_order_not_yet_dispatched_cannot_be_completed(db: Session, tmp_path: Path) -> None:
    job = make_job(db, tmp_path, dispatched=False)
    with pytest.raises(Conflict) as refused:
        complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    assert refused.value.details["current"] == "new"
    assert job.wo.status == "new"
    _nothing_stored(db, tmp_path, job.wo)


def test_proof_sent_again_after_it_was_accepted_is_refused_and_stores_nothing_twice(
    db: Session, tmp_path: Path
) -> None:
    job = make_job(db, tmp_path)
    first = complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    trail = events(db, "work_order", job.wo.id)
    with pytest.raises(Conflict) as refused:
        complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    assert refused.value.details["current"] == "verified"
    assert db.scalars(select(Completion.id)).all() == [first.completion.id]
    assert db.scalar(select(func.count()).select_from(Photo)) == 1
    assert events(db, "work_order", job.wo.id) == trail


def test_a_resend_under_the_same_key_gets_the_first_answer_and_stores_nothing_twice(
    db: Session, tmp_path: Path
) -> None:
    job = make_job(db, tmp_path)
    sub = SubmissionKey(job.by.user_id, "k-1", "fingerprint of the first submission")
    assert earlier_answer(db, sub) is None
    first = complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    remember_answer(db, sub, public_view(first), status_code=201)
    db.flush()
    db.expire_all()
    # The resend: the answer as it was given, read back from the database.
    seen = earlier_answer(db, sub)
    assert seen is not None and (seen.response, seen.status_code) == (public_view(first), 201)
    assert db.scalar(select(func.count()).select_from(Completion)) == 1
    # The same key with other content is a mistake, not a retry.
    with pytest.raises(KeyReused) as refused:
        earlier_answer(db, replace(sub, fingerprint="other content"))
    assert refused.value.field == "Idempotency-Key"
    # Keys are each member's own: another's key of the same name is a new submission.
    other = f.user(db, "pothole-2@test", "crew", crew=f.crew(db, "pothole-2"))
    assert earlier_answer(db, replace(sub, user_id=other.id)) is None


def test_bad_input_is_refused_before_anything_is_stored(db: Session, tmp_path: Path) -> None:
    job = make_job(db, tmp_path)
    for bad, field in (
        ({"outcome": "done"}, "outcome"),
        ({"accuracy_m": None}, "lat"),
        ({"fix_time": NOW + timedelta(hours=1)}, "fix_time"),
        ({"photos": [photo(k) for k in range(11)]}, "photos"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            complete_work_order(db, job.wo, good_proof(**bad), job.by, job.settings)
        assert refused.value.field == field
    assert job.wo.status == "dispatched"
    _nothing_stored(db, tmp_path, job.wo)


def test_the_completion_and_its_audit_events_are_one_transaction(
    committed: sessionmaker[Session], tmp_path: Path
) -> None:
    with committed() as s:
        job = make_job(s, tmp_path)
        wo_id, request_id = job.wo.id, job.wo.requests[0].id
        s.commit()
    trail_before = {"work_order": 0, "service_request": 0, "completion": 0}
    with committed() as outside:
        for entity, entity_id in (("work_order", wo_id), ("service_request", request_id)):
            trail_before[entity] = len(events(outside, entity, entity_id))

    def seen_from_outside() -> tuple[int, str, dict[str, int]]:
        with committed() as outside:
            wo = outside.get(WorkOrder, wo_id)
            assert wo is not None
            trail = {
                "work_order": len(events(outside, "work_order", wo_id)),
                "service_request": len(events(outside, "service_request", request_id)),
                "completion": outside.scalar(
                    select(func.count()).where(StatusEvent.entity == "completion")
                )
                or 0,
            }
            return (
                outside.scalar(select(func.count()).select_from(Completion)) or 0,
                wo.status,
                trail,
            )

    # Rolled back: neither the completion nor any of its events were kept.
    with committed() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        complete_work_order(s, wo, good_proof(), job.by, job.settings)
        assert seen_from_outside() == (0, "dispatched", trail_before)
        s.rollback()
    assert seen_from_outside() == (0, "dispatched", trail_before)

    # Committed: all of them at once.
    with committed() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        complete_work_order(s, wo, good_proof(), job.by, job.settings)
        assert seen_from_outside() == (0, "dispatched", trail_before)
        s.commit()
    count, status, trail = seen_from_outside()
    assert (count, status) == (1, "verified")
    # on_site, completed, verified for the order; fixed for the request; one for the completion.
    assert trail["work_order"] == trail_before["work_order"] + 3
    assert trail["service_request"] > trail_before["service_request"]
    assert trail["completion"] == 1


def test_a_photo_belongs_to_a_request_or_a_completion(db: Session, tmp_path: Path) -> None:
    (info,) = inspect_photos([photo(1)], PhotoLimits())
    storage = LocalStorage(tmp_path)
    for owner in ({"kind": "report"}, {"kind": "after", "request_id": 1}, {"kind": "before"}):
        with pytest.raises(ValueError, match="belongs to"):
            store_photo(db, storage, info, photo(1), **owner)
    assert not any(tmp_path.rglob("*.jpg"))


def test_a_stored_ping_with_a_nonsense_accuracy_counts_as_one_of_unknown_accuracy(
    db: Session, tmp_path: Path
) -> None:
    # Before the positions endpoint refused them, a negative accuracy was stored as sent.
    # Such an old row must not break every later completion of that crew with a 500: the
    # track check reads it as a fix of unknown accuracy, which earns no credit.
    job = make_job(db, tmp_path)
    db.execute(
        update(PositionPing).where(PositionPing.crew_id == job.by.crew_id).values(accuracy_m=-5.0)
    )
    policy = ProofPolicy(max_distance_m=75, photo_required=True, auto_verify=True)
    pings = track_pings(db, job.by.crew_id, NOW, policy)
    assert pings and {p.accuracy_m for p in pings} == {None}
    result = complete_work_order(db, job.wo, good_proof(), job.by, job.settings)
    assert result.completion.verdict == closing.AUTO_VERIFIED
