"""The photo decoding caps come from the environment; a bad one stops start-up by name."""

from __future__ import annotations

import pytest

from core.settings import Settings
from geo.photos import PhotoLimits


def _env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://x@127.0.0.1/x", **extra}


def test_defaults_and_values_from_the_environment() -> None:
    s = Settings.from_env(_env())
    assert (s.max_image_pixels, s.max_image_pixels_other, s.max_request_pixels) == (
        50_000_000,
        16_000_000,
        250_000_000,
    )
    assert PhotoLimits.from_settings(s) == PhotoLimits()  # the code's defaults are the settings'
    s = Settings.from_env(
        _env(
            STREETLOOP_MAX_IMAGE_PIXELS="24000000",
            STREETLOOP_MAX_IMAGE_PIXELS_OTHER="8000000",
            STREETLOOP_MAX_REQUEST_PIXELS="100000000",
        )
    )
    limits = PhotoLimits.from_settings(s)
    assert (limits.max_pixels, limits.max_pixels_other, limits.max_request_pixels) == (
        24_000_000,
        8_000_000,
        100_000_000,
    )
    assert (
        limits.pixel_cap("JPEG"),
        limits.pixel_cap("HEIF"),
        limits.pixel_cap("PNG"),
        limits.pixel_cap("WEBP"),
    ) == (24_000_000, 24_000_000, 8_000_000, 8_000_000)
    # A lower camera cap lowers the defaults that may not exceed it, and raises none.
    s = Settings.from_env(_env(STREETLOOP_MAX_IMAGE_PIXELS="12000000"))
    assert (s.max_image_pixels, s.max_image_pixels_other, s.max_request_pixels) == (
        12_000_000,
        12_000_000,
        250_000_000,
    )


@pytest.mark.parametrize(
    ("name", "raw", "why"),
    [
        ("STREETLOOP_MAX_IMAGE_PIXELS", "lots", "must be an integer"),
        ("STREETLOOP_MAX_IMAGE_PIXELS", "500000", "must be between 1000000 and 89000000"),
        (
            "STREETLOOP_MAX_IMAGE_PIXELS",
            "100000000",
            "must be between 1000000 and 89000000",
        ),  # Pillow refuses above ~89 MP
        (
            "STREETLOOP_MAX_IMAGE_PIXELS_OTHER",
            "60000000",
            "must be between 100000 and 50000000",
        ),  # above the camera cap
        ("STREETLOOP_MAX_IMAGE_PIXELS_OTHER", "1.5e7", "must be an integer"),
        (
            "STREETLOOP_MAX_REQUEST_PIXELS",
            "40000000",
            "must be between 50000000 and 2000000000",
        ),  # not even one photo
    ],
)
def test_a_bad_cap_stops_start_up_with_its_name(name: str, raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"{name} {why}"):
        Settings.from_env(_env(**{name: raw}))
