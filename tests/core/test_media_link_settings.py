"""The photo-link settings: which hosts' links are copied, over what, to which addresses;
and the links a report may carry (core.media_links). No I/O here."""

from __future__ import annotations

import ipaddress

import pytest

from core.errors import ValidationFailed
from core.media_links import CopyPolicy, clean_media_links
from core.settings import Settings


def _env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://x@127.0.0.1/x", **extra}


def test_by_default_no_link_is_copied_and_a_report_has_up_to_ten_photos() -> None:
    s = Settings.from_env(_env())
    assert (
        s.media_copy_hosts,
        s.media_copy_http_hosts,
        s.media_copy_allow_internal,
        s.max_report_photos,
    ) == ((), (), False, 10)
    assert not CopyPolicy.from_settings(s).allows("https://fixmystreet.example.ad/photo/1.jpeg")


def test_hosts_from_the_environment_normalised() -> None:
    s = Settings.from_env(
        _env(
            STREETLOOP_MEDIA_COPY_HOSTS=" Photos.FixMyStreet.example.AD. , 2130706433",
            STREETLOOP_MEDIA_COPY_HTTP_HOSTS="127.0.0.1",
            STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL="yes",
            STREETLOOP_MAX_REPORT_PHOTOS="4",
        )
    )
    assert s.media_copy_hosts == ("photos.fixmystreet.example.ad", "127.0.0.1")
    assert (s.media_copy_http_hosts, s.media_copy_allow_internal, s.max_report_photos) == (
        ("127.0.0.1",),
        True,
        4,
    )


@pytest.mark.parametrize(
    ("env", "why"),
    [
        (
            {
                "STREETLOOP_MEDIA_COPY_HOSTS": "fms.example.ad",
                "STREETLOOP_MEDIA_COPY_HTTP_HOSTS": "other.example.ad",
            },
            "STREETLOOP_MEDIA_COPY_HTTP_HOSTS may only name hosts of STREETLOOP_MEDIA_COPY_HOSTS; "
            "not listed there: other",
        ),
        (
            {"STREETLOOP_MEDIA_COPY_HOSTS": "10.0.0.0/8"},
            "STREETLOOP_MEDIA_COPY_HOSTS names hosts, not networks",
        ),
        (
            {"STREETLOOP_MEDIA_COPY_HOSTS": "https://fms.example.ad/"},
            "STREETLOOP_MEDIA_COPY_HOSTS must be a comma-separated",
        ),
        (
            {"STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL": "maybe"},
            "STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL must be true or false",
        ),
        (
            {"STREETLOOP_MAX_REPORT_PHOTOS": "0"},
            "STREETLOOP_MAX_REPORT_PHOTOS must be between 1 and 50",
        ),
    ],
)
def test_a_bad_setting_stops_start_up_with_its_name(env: dict[str, str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Settings.from_env(_env(**env))


POLICY = CopyPolicy(
    hosts=frozenset({"fms.example.ad", "intranet.example.ad", "127.0.0.1"}),
    http_hosts=frozenset({"intranet.example.ad"}),
)


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("https://fms.example.ad/photo/1.full.jpeg", None),
        ("HTTPS://FMS.example.ad.:8443/photo/1.jpeg?x=1", None),
        ("http://fms.example.ad/photo/1.jpeg", "plain http"),
        ("http://intranet.example.ad/photo/1.jpeg", None),
        ("https://fms.example.ad.evil.example/1.jpeg", "host not allowed"),
        ("https://evil.example/?u=https://fms.example.ad/1.jpeg", "host not allowed"),
        (
            "https://fms.example.ad@evil.example/1.jpeg",
            "host not allowed",
        ),  # the user part is not the host
        (
            "https://2130706433/1.jpeg",
            None,
        ),  # 127.0.0.1 in another spelling: the address is what is listed
        ("https://fms.example.ad:99999/1.jpeg", "invalid URL"),
        ("ftp://fms.example.ad/1.jpeg", "plain http"),
    ],
)
def test_the_policy_allows_listed_hosts_over_https(url: str, refusal: str | None) -> None:
    assert POLICY.refusal(url) == refusal


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("93.184.216.34", None),
        ("127.0.0.1", "loopback address"),
        ("10.1.2.3", "private address"),
        ("::ffff:10.0.0.1", "private address"),
        ("fd00::1", "private address"),
        ("::1", "loopback address"),
    ],
)
def test_loopback_and_private_addresses_are_refused_unless_the_settings_allow_them(
    address: str, refusal: str | None
) -> None:
    ip = ipaddress.ip_address(address)
    assert POLICY.address_refusal(ip) == refusal
    assert CopyPolicy(hosts=POLICY.hosts, allow_internal=True).address_refusal(ip) is None


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        # The cloud's metadata service, also in IPv6 spellings that carry it.
        ("169.254.169.254", "link-local address"),
        ("::ffff:169.254.169.254", "link-local address"),
        ("64:ff9b::a9fe:a9fe", "link-local address"),
        ("fe80::1", "link-local address"),
        ("0.0.0.0", "unspecified address"),
        ("::", "unspecified address"),
        ("224.0.0.1", "multicast address"),
        ("ff02::1", "multicast address"),
        ("240.0.0.1", "reserved address"),
        ("100.64.0.1", "reserved address"),
    ],
)
def test_link_local_and_other_special_addresses_are_refused_even_when_internal_ones_are_allowed(
    address: str, refusal: str
) -> None:
    # STREETLOOP_MEDIA_COPY_ALLOW_INTERNAL is for a FixMyStreet on the city's network: a
    # listed name whose DNS is taken over must still not reach the metadata service.
    ip = ipaddress.ip_address(address)
    assert POLICY.address_refusal(ip) == refusal
    assert CopyPolicy(hosts=POLICY.hosts, allow_internal=True).address_refusal(ip) == refusal


def test_links_are_kept_in_order_without_repeats_or_empties() -> None:
    assert clean_media_links(
        [
            " https://a.example/1.jpg ",
            None,
            "",
            "http://b.example/2.jpg",
            "https://a.example/1.jpg",
        ],
        limit=2,
    ) == ["https://a.example/1.jpg", "http://b.example/2.jpg"]
    with pytest.raises(
        ValidationFailed, match="at most 1 media_url values per report, got 2"
    ) as caught:
        clean_media_links(["https://a.example/1.jpg", "https://a.example/2.jpg"], limit=1)
    assert caught.value.field == "media_url"
