"""Proof of work: is a crew's "done" backed by where they were, when, and a fresh photo?

Pure functions. Each check returns a `Check` with the measured number, the limit it was
held to and pass/fail, so the verdict can be stored and explained later. Crew members
only ever get `public_summary` (names and pass/fail): showing them the thresholds
would tell a cheater exactly how far away they may close a job from.

Conventions: coordinates are WGS84 degrees given by name (lat=, lon=), never as a bare
tuple, because the rest of the code base uses (lon, lat) points; datetimes must be
timezone-aware (naive EXIF times are handled explicitly in `check_exif`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from geo.earth import EARTH_RADIUS_M
from geo.photos import ExifFacts, hamming

CLOCK_SKEW_S = 120  # phones' clocks drift; a fix this far "in the future" is still plausible
AUTO_VERIFIED = "auto_verified"
NEEDS_REVIEW = "needs_review"
# Without these two there is no location evidence at all, so no automatic verification.
REQUIRED_CHECKS = ("distance", "fix_age")


@dataclass(frozen=True)
class ProofPolicy:
    """A service type's proof rules; the first three come from the type, the rest are defaults."""

    max_distance_m: int
    photo_required: bool
    auto_verify: bool
    max_fix_age_s: int = 600
    max_exif_distance_m: int = 150
    max_exif_time_skew_s: int = 1800
    max_speed_kmh: float = 200
    track_radius_m: int = 150
    track_window_s: int = 1800
    phash_max_distance: int = 6


def _validate(lat: float, lon: float, at: datetime, accuracy_m: float | None) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"invalid coordinates lat={lat} lon={lon}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("position times must be timezone-aware")
    if accuracy_m is not None and not (math.isfinite(accuracy_m) and accuracy_m >= 0):
        raise ValueError(f"invalid accuracy {accuracy_m}")


@dataclass(frozen=True)
class Site:
    """Where the work was supposed to happen."""

    lat: float
    lon: float

    @classmethod
    def from_point(cls, point: Any) -> Site:  # noqa: ANN401 - any shapely-like point
        """From a shapely Point (x = lon, y = lat), e.g. `to_shape(request.location)`."""
        return cls(lat=float(point.y), lon=float(point.x))


@dataclass(frozen=True)
class Fix:
    """The phone's position sent with the completion; accuracy is the 68% radius in metres."""

    lat: float
    lon: float
    accuracy_m: float
    at: datetime

    def __post_init__(self) -> None:
        _validate(self.lat, self.lon, self.at, self.accuracy_m)

    def as_ping(self) -> Ping:
        """The completion fix is also a point of the crew's track (for `check_teleport`)."""
        return Ping(lat=self.lat, lon=self.lon, at=self.at, accuracy_m=self.accuracy_m)


@dataclass(frozen=True)
class Ping:
    """One point of the crew's background GPS track, as the phone sends it (core.field
    stores it) and as the track and teleport checks read it. A position that cannot be
    on Earth, or a time without a zone, is refused here, so no stored ping can break a
    check later. Speed and heading are kept for the map; no check reads them."""

    lat: float
    lon: float
    at: datetime
    accuracy_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None

    def __post_init__(self) -> None:
        _validate(self.lat, self.lon, self.at, self.accuracy_m)


@dataclass(frozen=True)
class PhotoEvidence:
    """What the checks need from a stored photo; phash None when it could not be computed."""

    sha256: str
    phash: int | None
    exif: ExifFacts = field(default_factory=ExifFacts)


@dataclass(frozen=True)
class Check:
    """One stored check. passed None = not applicable or unknown (does not block verification)."""

    name: str
    passed: bool | None
    value: float | None
    limit: float | None
    detail: str


# What each check's number measures and which side of its limit passes, so a supervisor
# reads "312 m, at most 75 m" rather than two bare numbers. `reuse` is the other way round:
# its number is the perceptual-hash distance (bits of 64) to the closest earlier photo, and
# a small one means the same picture again.
AT_MOST, ABOVE = "at_most", "above"
MEASURES: dict[str, tuple[str | None, str | None]] = {
    "distance": ("m", AT_MOST),
    "fix_age": ("s", AT_MOST),
    "exif_location": ("m", AT_MOST),
    "exif_time": ("s", AT_MOST),
    "track": ("m", AT_MOST),
    "teleport": ("km/h", AT_MOST),
    "reuse": ("bits", ABOVE),
    "photo_present": (None, None),
}


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def _r(x: float) -> float:
    # Decisions are made on the stored (rounded) number, so a stored "75.0 vs limit 75"
    # can never have failed on a float's last bit.
    return round(x, 1)


# --------------------------------------------------------------------------- checks


def check_distance(site: Site, fix: Fix, policy: ProofPolicy) -> Check:
    """The fix, given the benefit of its accuracy, is within the type's limit of the site."""
    limit = policy.max_distance_m
    raw = distance_m(site.lat, site.lon, fix.lat, fix.lon)
    effective = _r(max(0.0, raw - fix.accuracy_m))
    detail = (
        f"{raw:.0f} m from the site, accuracy {fix.accuracy_m:.0f} m, {effective:.0f} m at best"
    )
    if fix.accuracy_m > 2 * limit:
        # Subtracting a 2 km accuracy would "prove" presence anywhere in town.
        return Check(
            "distance", False, effective, limit, f"{detail}; accuracy too poor to prove presence"
        )
    return Check("distance", effective <= limit, effective, limit, detail)


def check_fix_age(fix: Fix, submitted_at: datetime, policy: ProofPolicy) -> Check:
    """The fix was taken shortly before submission (an old fix proves an old visit)."""
    age = _r((submitted_at - fix.at).total_seconds())
    limit = policy.max_fix_age_s
    if age < -CLOCK_SKEW_S:
        return Check(
            "fix_age", False, age, limit, f"fix is {-age:.0f} s in the future of the submission"
        )
    return Check("fix_age", age <= limit, age, limit, f"fix {max(age, 0):.0f} s old at submission")


def _photo_time(exif: ExifFacts, tz: tzinfo | None) -> datetime | None:
    """The photo's capture time as an aware datetime, or None if its zone is unknowable."""
    if exif.taken_at is not None and exif.taken_at.tzinfo is not None:
        return exif.taken_at
    if exif.gps_at is not None:
        return exif.gps_at  # satellite time, UTC by definition
    if exif.taken_at is not None and tz is not None:
        # Phones set their clock's zone from the network: local time where the job is.
        return exif.taken_at.replace(tzinfo=tz)
    return None


def check_exif(
    photo: PhotoEvidence | None,
    site: Site,
    fix: Fix,
    job_window: tuple[datetime, datetime] | None,
    policy: ProofPolicy,
    *,
    tz: tzinfo | None = None,
) -> list[Check]:
    """Two checks, `exif_location` and `exif_time`: does the photo's own metadata agree?

    Many apps strip EXIF, so a photo without it is reported passed=None, not failed.
    `tz` (the city's zone) interprets a naive DateTimeOriginal when no offset/GPS time exists.
    """
    exif = photo.exif if photo is not None else ExifFacts()
    checks = []
    if exif.lat is not None and exif.lon is not None:
        to_site = _r(distance_m(site.lat, site.lon, exif.lat, exif.lon))
        to_fix = distance_m(fix.lat, fix.lon, exif.lat, exif.lon)
        checks.append(
            Check(
                "exif_location",
                to_site <= policy.max_exif_distance_m,
                to_site,
                policy.max_exif_distance_m,
                f"photo GPS {to_site:.0f} m from the site, {to_fix:.0f} m from the fix",
            )
        )
    else:
        checks.append(Check("exif_location", None, None, None, "photo carries no GPS"))

    taken = _photo_time(exif, tz)
    if taken is None:
        what = "photo time has no zone" if exif.taken_at is not None else "photo carries no time"
        checks.append(Check("exif_time", None, None, None, what))
        return checks
    skew = abs((taken - fix.at).total_seconds())
    detail = f"photo taken {skew:.0f} s from the fix"
    if job_window is not None:
        start, end = job_window
        # Before the job started means an old photo; after it ended, a later one.
        outside = max(0.0, (start - taken).total_seconds(), (taken - end).total_seconds())
        if outside > 0:
            detail += f", {outside:.0f} s outside the job's time"
        skew = max(skew, outside)
    limit = policy.max_exif_time_skew_s
    skew = _r(skew)
    checks.append(Check("exif_time", skew <= limit, skew, limit, detail))
    return checks


def check_photo(photo: PhotoEvidence | None, policy: ProofPolicy) -> Check:
    """A photo was sent; passed None when the type doesn't require one and none came."""
    if photo is not None:
        return Check("photo_present", True, None, None, "photo attached")
    if policy.photo_required:
        return Check("photo_present", False, None, None, "this type requires a photo")
    return Check("photo_present", None, None, None, "no photo (not required)")


def check_reuse(
    photo: PhotoEvidence | None,
    earlier: Iterable[tuple[Any, str, int | None]],
    policy: ProofPolicy,
) -> Check:
    """The photo is not an earlier one again: same bytes, or the same picture re-encoded.

    `earlier` is (photo_id, sha256, phash) of photos from *other* jobs: two photos of the
    same job may legitimately look alike. value = the smallest hash distance found.
    """
    limit = policy.phash_max_distance
    if photo is None:
        return Check("reuse", None, None, limit, "no photo")
    best: tuple[int, Any] | None = None
    for photo_id, sha256, phash in earlier:
        if sha256 == photo.sha256:
            return Check("reuse", False, 0, limit, f"same file as earlier photo {photo_id}")
        if photo.phash is not None and phash is not None:
            dist = hamming(photo.phash, phash)
            if best is None or dist < best[0]:
                best = (dist, photo_id)
    if best is None:
        return Check("reuse", True, None, limit, "no comparable earlier photo")
    dist, photo_id = best
    if dist <= limit:
        return Check(
            "reuse",
            False,
            dist,
            limit,
            f"near-duplicate of earlier photo {photo_id} (distance {dist})",
        )
    return Check("reuse", True, dist, limit, f"closest earlier photo {photo_id} at distance {dist}")


def check_track(site: Site, pings: Iterable[Ping], done_at: datetime, policy: ProofPolicy) -> Check:
    """The crew's own track passed near the site around completion time."""
    radius, window = policy.track_radius_m, policy.track_window_s
    nearest: float | None = None
    for ping in pings:
        if abs((ping.at - done_at).total_seconds()) > window:
            continue
        d = distance_m(site.lat, site.lon, ping.lat, ping.lon)
        # Credit accuracy, but at most the radius: a vague ping must not vouch from far away.
        effective = max(0.0, d - min(ping.accuracy_m or 0.0, radius))
        nearest = effective if nearest is None else min(nearest, effective)
    if nearest is None:
        return Check("track", None, None, radius, "no track pings around completion time")
    nearest = _r(nearest)
    return Check(
        "track", nearest <= radius, nearest, radius, f"closest ping {nearest:.0f} m from the site"
    )


def check_teleport(pings: Iterable[Ping], policy: ProofPolicy) -> Check:
    """No impossible jump between consecutive pings (mock-location apps teleport)."""
    ordered = sorted(pings, key=lambda p: p.at)
    limit = policy.max_speed_kmh
    if len(ordered) < 2:
        return Check("teleport", None, None, limit, "fewer than two pings")
    top, where = 0.0, ""
    for a, b in zip(ordered, ordered[1:], strict=False):
        d = distance_m(a.lat, a.lon, b.lat, b.lon)
        slack = (a.accuracy_m or 0.0) + (b.accuracy_m or 0.0)
        if d <= slack:
            continue  # both could be the same spot: jitter, not movement
        # Lower bound on true speed; same-second pairs count as 1 s to stay finite.
        dt = max((b.at - a.at).total_seconds(), 1.0)
        speed = (d - slack) / dt * 3.6
        if speed > top:
            top, where = speed, f" ({d:.0f} m in {dt:.0f} s at {b.at.isoformat()})"
    top = _r(top)
    return Check(
        "teleport", top <= limit, top, limit, f"fastest implied speed {top:.0f} km/h{where}"
    )


# --------------------------------------------------------------------------- verdict


def verdict(checks: Iterable[Check], policy: ProofPolicy) -> tuple[str, list[str]]:
    """("auto_verified", []) only when the policy allows it and all evidence agrees, else
    ("needs_review", reason codes) with codes like "distance_failed", "photo_missing"."""
    checks = list(checks)
    reasons: list[str] = []
    if not policy.auto_verify:
        reasons.append("policy_requires_review")
    by_name: dict[str, list[Check]] = {}
    for check in checks:
        by_name.setdefault(check.name, []).append(check)
    for name in REQUIRED_CHECKS:
        if not any(c.passed is not None for c in by_name.get(name, [])):
            reasons.append(f"{name}_missing")
    if policy.photo_required and not any(c.passed for c in by_name.get("photo_present", [])):
        reasons.append("photo_missing")
    for check in checks:
        code = f"{check.name}_failed"
        if (
            check.passed is False
            and code not in reasons
            and not (check.name == "photo_present" and "photo_missing" in reasons)
        ):
            reasons.append(code)
    return (NEEDS_REVIEW, reasons) if reasons else (AUTO_VERIFIED, [])


def public_summary(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """What a crew member may see: which checks passed, never values or thresholds."""
    return [{"name": c.name, "passed": c.passed} for c in checks]


def full_detail(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """Everything, for supervisors and storage (JSON-serialisable)."""
    return [asdict(c) for c in checks]


def explained(stored: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored checks (`full_detail`) with the unit of their number and the side of the limit
    that passes, for supervisors. Units are not stored: they follow from the check's name."""
    out = []
    for check in stored:
        unit, pass_when = MEASURES.get(check.get("name", ""), (None, None))
        out.append(
            {
                **check,
                "unit": unit,
                "pass_when": pass_when if check.get("limit") is not None else None,
            }
        )
    return out
