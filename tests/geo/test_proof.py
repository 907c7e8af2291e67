"""Proof-of-work checks and verdict (geo.proof), with numbers checkable by hand.

At latitude 42.5° one degree of longitude is 111 195 m x cos(42.5°) = 81 981.6 m, and one
degree of latitude is 111 195 m (mean Earth radius 6 371 008.8 m).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from shapely.geometry import Point

from geo.photos import ExifFacts
from geo.proof import (
    Check,
    Fix,
    PhotoEvidence,
    Ping,
    ProofPolicy,
    Site,
    check_distance,
    check_exif,
    check_fix_age,
    check_photo,
    check_reuse,
    check_teleport,
    check_track,
    distance_m,
    full_detail,
    public_summary,
    verdict,
)

SITE = Site(lat=42.5, lon=1.5)
M_PER_DEG_LON = 81_981.6  # at 42.5°
M_PER_DEG_LAT = 111_195.08
T0 = datetime(2026, 3, 14, 13, 0, tzinfo=UTC)
POLICY = ProofPolicy(max_distance_m=75, photo_required=True, auto_verify=True)


def east(metres: float, lat: float = SITE.lat) -> float:
    return SITE.lon + metres / M_PER_DEG_LON


def north(metres: float) -> float:
    return SITE.lat + metres / M_PER_DEG_LAT


def fix(east_m: float = 0.0, accuracy: float = 10.0, at: datetime = T0) -> Fix:
    return Fix(lat=SITE.lat, lon=east(east_m), accuracy_m=accuracy, at=at)


def photo(
    sha: str = "a" * 64, phash: int | None = 0x0123_4567_89AB_CDEF, exif: ExifFacts | None = None
) -> PhotoEvidence:
    return PhotoEvidence(sha256=sha, phash=phash, exif=exif or ExifFacts())


# --------------------------------------------------------------------------- distance


def test_distance_helper_matches_hand_numbers() -> None:
    assert distance_m(42.5, 1.5, 42.5, east(100)) == pytest.approx(100, abs=0.05)
    assert distance_m(42.5, 1.5, north(1000), 1.5) == pytest.approx(1000, abs=0.05)
    assert Site.from_point(Point(1.5, 42.5)) == SITE  # shapely: x = lon, y = lat


def test_distance_gives_the_fix_the_benefit_of_its_accuracy() -> None:
    # 100 m away, accuracy 30 m: at best 70 m, within 75 m.
    check = check_distance(SITE, fix(100, accuracy=30), POLICY)
    assert (check.name, check.passed, check.value, check.limit) == ("distance", True, 70.0, 75)
    # 120 m away, accuracy 30 m: at best 90 m > 75 m.
    check = check_distance(SITE, fix(120, accuracy=30), POLICY)
    assert (check.passed, check.value) == (False, 90.0)
    # Exactly at the limit passes: 85 m - 10 m = 75 m.
    assert check_distance(SITE, fix(85, accuracy=10), POLICY).passed is True


def test_distance_fails_when_accuracy_is_useless() -> None:
    # Right on the site but "accurate to 2 km": 2000 > 2 x 75, proves nothing.
    check = check_distance(SITE, fix(0, accuracy=2000), POLICY)
    assert check.passed is False and "accuracy" in check.detail
    assert (
        check_distance(SITE, fix(0, accuracy=150), POLICY).passed is True
    )  # exactly 2x is still allowed


def test_fix_validation() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Fix(lat=42.5, lon=1.5, accuracy_m=5, at=datetime(2026, 3, 14, 13, 0))
    with pytest.raises(ValueError, match="coordinates"):
        Fix(lat=95, lon=1.5, accuracy_m=5, at=T0)
    with pytest.raises(ValueError, match="accuracy"):
        Ping(lat=42.5, lon=1.5, at=T0, accuracy_m=float("nan"))


# --------------------------------------------------------------------------- fix age


def test_fix_age() -> None:
    f = fix()
    assert check_fix_age(f, T0 + timedelta(seconds=600), POLICY).passed is True
    old = check_fix_age(f, T0 + timedelta(seconds=601), POLICY)
    assert (old.passed, old.value, old.limit) == (False, 601.0, 600)
    # A phone clock a minute ahead is tolerated; a fix from 10 minutes in the future is not.
    assert check_fix_age(f, T0 - timedelta(seconds=60), POLICY).passed is True
    future = check_fix_age(f, T0 - timedelta(seconds=600), POLICY)
    assert future.passed is False and "future" in future.detail
    # Zones do not matter, instants do.
    assert (
        check_fix_age(
            f, datetime(2026, 3, 14, 9, 5, tzinfo=timezone(timedelta(hours=-4))), POLICY
        ).value
        == 300.0
    )


# --------------------------------------------------------------------------- EXIF


def exif_at(east_m: float = 0.0, north_m: float = 0.0, **kwargs: object) -> ExifFacts:
    return ExifFacts(lat=north(north_m), lon=east(east_m), **kwargs)  # type: ignore[arg-type]


def test_exif_location_and_time_agree() -> None:
    taken = (T0 - timedelta(minutes=3)).astimezone(timezone(timedelta(hours=1)))
    p = photo(exif=exif_at(north_m=100, taken_at=taken))
    loc, when = check_exif(p, SITE, fix(), (T0 - timedelta(hours=1), T0), POLICY)
    assert (loc.name, loc.passed, loc.value, loc.limit) == ("exif_location", True, 100.0, 150)
    assert (when.name, when.passed, when.value, when.limit) == ("exif_time", True, 180.0, 1800)


def test_exif_photo_taken_elsewhere_or_long_before_fails() -> None:
    taken = T0 - timedelta(days=40)  # last month's photo of the same pothole
    p = photo(exif=exif_at(east_m=400, taken_at=taken))
    loc, when = check_exif(p, SITE, fix(), (T0 - timedelta(hours=1), T0), POLICY)
    assert (loc.passed, loc.value) == (False, 400.0)
    assert when.passed is False and when.value == 40 * 86400


def test_exif_time_outside_the_job_window_fails_even_near_the_fix() -> None:
    # Photo 20 min before the fix (fine vs 30 min skew) but 35 min before the job started.
    p = photo(exif=exif_at(taken_at=T0 - timedelta(minutes=20)))
    window = (T0 + timedelta(minutes=15), T0 + timedelta(minutes=30))
    _, when = check_exif(p, SITE, fix(), window, POLICY)
    assert (when.passed, when.value) == (False, 35 * 60.0)
    _, no_window = check_exif(p, SITE, fix(), None, POLICY)
    assert (no_window.passed, no_window.value) == (True, 1200.0)


def test_exif_absent_is_not_applicable() -> None:
    for p in (photo(), None):
        checks = check_exif(p, SITE, fix(), None, POLICY)
        assert [(c.name, c.passed, c.value) for c in checks] == [
            ("exif_location", None, None),
            ("exif_time", None, None),
        ]


def test_exif_naive_time_uses_gps_time_or_the_city_zone() -> None:
    naive = datetime(2026, 3, 14, 14, 10)  # 14:10 local in Andorra (UTC+1) = 13:10 UTC
    p = photo(exif=ExifFacts(taken_at=naive))
    assert check_exif(p, SITE, fix(), None, POLICY)[1].passed is None  # zone unknowable
    _, when = check_exif(p, SITE, fix(), None, POLICY, tz=ZoneInfo("Europe/Andorra"))
    assert (when.passed, when.value) == (True, 600.0)
    with_gps = photo(exif=ExifFacts(taken_at=naive, gps_at=T0 + timedelta(seconds=42)))
    assert check_exif(with_gps, SITE, fix(), None, POLICY)[1].value == 42.0


# --------------------------------------------------------------------------- reuse


def test_reuse_exact_file() -> None:
    earlier = [(7, "b" * 64, 0xFFFF_0000_FFFF_0000), (12, "a" * 64, None)]
    check = check_reuse(photo(), earlier, POLICY)
    assert (check.passed, check.value) == (False, 0)
    assert "12" in check.detail


def test_reuse_near_duplicate_by_hash() -> None:
    mine = 0x0123_4567_89AB_CDEF
    near = mine ^ 0b10_1010_1001  # 5 bits differ
    far = mine ^ 0xFFFF_FFFF  # 32 bits differ
    check = check_reuse(photo(phash=mine), [(3, "c" * 64, far), (9, "d" * 64, near)], POLICY)
    assert (check.passed, check.value, check.limit) == (False, 5, 6)
    assert "9" in check.detail
    ok = check_reuse(
        photo(phash=mine), [(3, "c" * 64, far), (4, "e" * 64, mine ^ 0x7F)], POLICY
    )  # 7 bits
    assert (ok.passed, ok.value) == (True, 7)


def test_reuse_without_history_or_photo() -> None:
    assert check_reuse(photo(), [], POLICY).passed is True
    assert check_reuse(photo(phash=None), [(1, "f" * 64, 0)], POLICY).passed is True
    assert check_reuse(None, [(1, "a" * 64, 0)], POLICY).passed is None


# --------------------------------------------------------------------------- track and teleport


def test_track_near_the_site_around_completion() -> None:
    pings = [
        Ping(lat=SITE.lat, lon=east(3000), at=T0 - timedelta(minutes=50)),  # outside the window
        Ping(lat=SITE.lat, lon=east(140), at=T0 - timedelta(minutes=10), accuracy_m=20),
    ]
    check = check_track(SITE, pings, T0, POLICY)
    assert (check.passed, check.value, check.limit) == (True, 120.0, 150)


def test_track_far_from_the_site_fails_and_no_pings_is_unknown() -> None:
    far = [Ping(lat=north(500), lon=SITE.lon, at=T0 + timedelta(minutes=m)) for m in (-20, 0, 20)]
    check = check_track(SITE, far, T0, POLICY)
    assert (check.passed, check.value) == (False, 500.0)
    # A vague ping gets at most the radius as credit: 500 m with "accuracy 1 km" is 350 m.
    vague = [Ping(lat=north(500), lon=SITE.lon, at=T0, accuracy_m=1000)]
    assert check_track(SITE, vague, T0, POLICY).value == 350.0
    old = [Ping(lat=SITE.lat, lon=SITE.lon, at=T0 - timedelta(hours=2))]
    assert check_track(SITE, old, T0, POLICY).passed is None
    assert check_track(SITE, [], T0, POLICY).passed is None


def test_teleport_10_km_in_60_s_fails() -> None:
    pings = [
        Ping(lat=north(10_000), lon=SITE.lon, at=T0 + timedelta(seconds=60)),  # given out of order
        Ping(lat=SITE.lat, lon=SITE.lon, at=T0),
    ]
    check = check_teleport(pings, POLICY)
    # 10 000 m / 60 s = 166.7 m/s = 600 km/h
    assert (check.passed, check.value, check.limit) == (False, 600.0, 200)


def test_teleport_driving_and_jitter_pass() -> None:
    drive = [
        Ping(lat=north(1000 * i), lon=SITE.lon, at=T0 + timedelta(minutes=i)) for i in range(4)
    ]  # 60 km/h
    check = check_teleport(drive, POLICY)
    assert (check.passed, check.value) == (True, 60.0)
    # 50 m apart within one second, but each "accurate to 30 m": could be the same spot.
    jitter = [
        Ping(lat=SITE.lat, lon=SITE.lon, at=T0, accuracy_m=30),
        Ping(lat=north(50), lon=SITE.lon, at=T0 + timedelta(seconds=1), accuracy_m=30),
    ]
    assert check_teleport(jitter, POLICY).value == 0.0
    assert check_teleport(drive[:1], POLICY).passed is None
    # The completion fix can join the track: here it is 10 km from a ping 2 minutes earlier.
    jumped = [Ping(lat=north(10_000), lon=SITE.lon, at=T0 - timedelta(minutes=2)), fix().as_ping()]
    assert check_teleport(jumped, POLICY).passed is False  # (10 000 - 10) m / 120 s = 299.7 km/h


def test_same_second_pings_stay_finite() -> None:
    pings = [Ping(lat=SITE.lat, lon=SITE.lon, at=T0), Ping(lat=north(1000), lon=SITE.lon, at=T0)]
    check = check_teleport(pings, POLICY)
    assert check.passed is False and check.value == 3600.0  # counted as 1 s
    json.dumps(full_detail([check]), allow_nan=False)


# --------------------------------------------------------------------------- verdict


def good_checks(policy: ProofPolicy = POLICY) -> list[Check]:
    f = fix(40, accuracy=10)
    p = photo(exif=exif_at(taken_at=T0 - timedelta(minutes=2)))
    return [
        check_distance(SITE, f, policy),
        check_fix_age(f, T0 + timedelta(seconds=30), policy),
        check_photo(p, policy),
        *check_exif(p, SITE, f, (T0 - timedelta(hours=1), T0 + timedelta(minutes=1)), policy),
        check_reuse(p, [(1, "9" * 64, ~p.phash & (2**64 - 1))], policy),
        check_track(SITE, [Ping(lat=SITE.lat, lon=SITE.lon, at=T0)], T0, policy),
        check_teleport(
            [Ping(lat=SITE.lat, lon=SITE.lon, at=T0 - timedelta(minutes=5)), f.as_ping()], policy
        ),
    ]


def test_all_good_is_auto_verified() -> None:
    checks = good_checks()
    assert all(c.passed for c in checks)
    assert verdict(checks, POLICY) == ("auto_verified", [])


def test_policy_without_auto_verify_always_needs_review() -> None:
    policy = ProofPolicy(max_distance_m=75, photo_required=True, auto_verify=False)
    assert verdict(good_checks(policy), policy) == ("needs_review", ["policy_requires_review"])


def test_failures_become_reason_codes() -> None:
    checks = good_checks()
    checks[0] = check_distance(SITE, fix(500), POLICY)
    checks.append(
        check_teleport(
            [
                Ping(lat=SITE.lat, lon=SITE.lon, at=T0),
                Ping(lat=north(10_000), lon=SITE.lon, at=T0 + timedelta(seconds=60)),
            ],
            POLICY,
        )
    )
    assert verdict(checks, POLICY) == ("needs_review", ["distance_failed", "teleport_failed"])


def test_missing_photo() -> None:
    checks = [c for c in good_checks() if c.name != "photo_present"]
    assert verdict(checks, POLICY) == ("needs_review", ["photo_missing"])
    checks.append(check_photo(None, POLICY))
    assert verdict(checks, POLICY) == ("needs_review", ["photo_missing"])
    optional = ProofPolicy(max_distance_m=75, photo_required=False, auto_verify=True)
    no_photo = [
        check_distance(SITE, fix(), optional),
        check_fix_age(fix(), T0, optional),
        check_photo(None, optional),
        *check_exif(None, SITE, fix(), None, optional),
        check_reuse(None, [], optional),
        check_track(SITE, [], T0, optional),
        check_teleport([], optional),
    ]
    assert verdict(no_photo, optional) == ("auto_verified", [])


def test_not_applicable_checks_do_not_block_but_missing_location_does() -> None:
    checks = good_checks()
    checks[3] = Check("exif_location", None, None, None, "stripped")
    assert verdict(checks, POLICY) == ("auto_verified", [])
    without_location = [c for c in checks if c.name not in ("distance", "fix_age")]
    assert verdict(without_location, POLICY) == (
        "needs_review",
        ["distance_missing", "fix_age_missing"],
    )


def test_public_summary_hides_every_number() -> None:
    checks = good_checks()
    checks[0] = check_distance(SITE, fix(500), POLICY)
    summary = public_summary(checks)
    assert summary[0] == {"name": "distance", "passed": False}
    assert all(set(item) == {"name", "passed"} for item in summary)
    text = json.dumps(summary)
    assert not any(ch.isdigit() for ch in text.replace("sha256", ""))
    detail = full_detail(checks)
    assert detail[0] == {
        "name": "distance",
        "passed": False,
        "value": 490.0,
        "limit": 75,
        "detail": detail[0]["detail"],
    }
    json.dumps(detail, allow_nan=False)
