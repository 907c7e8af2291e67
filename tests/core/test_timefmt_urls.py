"""The one ISO time format (`core.timefmt.iso`) and the one way a link of ours is made
absolute (`core.urls.absolute_url`) that Open311, the status page, the crews' feed and
the notifications share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from core.timefmt import iso
from core.urls import absolute_url

ANDORRA = ZoneInfo("Europe/Andorra")


def test_iso_is_the_zones_local_time_to_the_second() -> None:
    winter = datetime(2026, 3, 2, 8, 0, 30, 999_999, tzinfo=UTC)
    summer = datetime(2026, 7, 2, 8, 0, tzinfo=UTC)
    assert iso(winter, ANDORRA) == "2026-03-02T09:00:30+01:00"
    assert iso(summer, ANDORRA) == "2026-07-02T10:00:00+02:00"
    assert iso(datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))), UTC) == (
        "2026-03-02T08:00:00+00:00"
    )
    assert iso(None, ANDORRA) is None


def test_a_path_of_ours_is_put_on_the_base_and_any_other_link_kept() -> None:
    base = "https://311.example.ad"
    assert absolute_url("/media/public/photos/1.jpg", base) == (
        "https://311.example.ad/media/public/photos/1.jpg"
    )
    assert absolute_url("https://example.org/p.jpg", base) == "https://example.org/p.jpg"
    assert absolute_url("http://example.org/p.jpg", "") == "http://example.org/p.jpg"
    # Without a base, a path leads nowhere for a reader elsewhere (an e-mail's link).
    assert absolute_url("/media/public/photos/1.jpg", "") is None
    assert absolute_url(None, base) is None
    assert absolute_url("", base) is None
