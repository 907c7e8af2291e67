"""STREETLOOP_LOCALE: the language tag the screens format dates and numbers in."""

from __future__ import annotations

import pytest

from core.settings import Settings

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def test_the_screens_format_as_british_english_unless_told() -> None:
    assert Settings.from_env(BASE).locale == "en-GB"


@pytest.mark.parametrize("tag", ["ca", "fr-CA", "es-419", "sr-Latn-RS", "en-US"])
def test_a_language_tag_is_taken(tag: str) -> None:
    assert Settings.from_env({**BASE, "STREETLOOP_LOCALE": tag}).locale == tag


@pytest.mark.parametrize("tag", ["english", "en_GB", "en-GB; DROP", "e", "en--GB"])
def test_a_bad_language_tag_stops_start_up_with_its_name(tag: str) -> None:
    with pytest.raises(ValueError, match="STREETLOOP_LOCALE"):
        Settings.from_env({**BASE, "STREETLOOP_LOCALE": tag})


def test_app_config_tells_the_screens_the_city_s_zone_and_locale(client) -> None:  # noqa: ANN001
    config = client.get("/api/v1/app-config").get_json()
    assert config["time_zone"] == client.application.extensions["streetloop.settings"].timezone
    assert config["locale"] == "en-GB"
