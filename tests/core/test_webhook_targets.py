"""Where a webhook may point: addresses in every spelling, embedded IPv4 forms, the settings."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from core.settings import Settings
from core.webhook_targets import (
    INTERNAL_NAME,
    PLAIN_HTTP,
    Refusal,
    WebhookPolicy,
    address_refusal,
    literal_address,
)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("10.0.0.1.", "10.0.0.1"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_addresses_are_read_the_way_the_c_resolver_reads_them(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize(
    "host", ["example.org", "4294967296", "256.1.1.1", "1.2.3.4.5", "08", "0x", "1..2", "::g", ""]
)
def test_names_and_impossible_numbers_are_not_addresses(host: str) -> None:
    # "0x" alone is 0 for inet_aton; reading it as a name is the stricter choice, since
    # every name is checked after resolution anyway.
    expected = IPv4Address(0) if host == "0x" else None
    assert literal_address(host) == expected


@pytest.mark.parametrize(
    ("address", "reason", "refused"),
    [
        ("127.0.0.1", "loopback address", "127.0.0.1"),
        ("::1", "loopback address", "::1"),
        ("10.1.2.3", "private address", "10.1.2.3"),
        ("172.16.0.1", "private address", "172.16.0.1"),
        ("192.168.0.1", "private address", "192.168.0.1"),
        ("fd00::1", "private address", "fd00::1"),
        ("169.254.169.254", "link-local address", "169.254.169.254"),
        ("fe80::1", "link-local address", "fe80::1"),
        ("224.0.0.251", "multicast address", "224.0.0.251"),
        ("ff02::1", "multicast address", "ff02::1"),
        ("0.0.0.0", "unspecified address", "0.0.0.0"),
        ("::", "unspecified address", "::"),
        ("240.0.0.1", "reserved address", "240.0.0.1"),
        ("100.64.0.1", "reserved address", "100.64.0.1"),
        # IPv6 forms that carry an internal IPv4 address.
        ("::ffff:10.0.0.1", "private address", "10.0.0.1"),
        ("::ffff:169.254.169.254", "link-local address", "169.254.169.254"),
        ("64:ff9b::7f00:1", "loopback address", "127.0.0.1"),
        ("2002:c0a8:0101::", "private address", "192.168.1.1"),
        ("::10.0.0.1", "reserved address", "::a00:1"),  # IPv4-compatible: deprecated, reserved
    ],
)
def test_internal_addresses_are_refused_and_say_why(
    address: str, reason: str, refused: str
) -> None:
    assert address_refusal(ip_address(address)) == Refusal(reason, ip_address(refused))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ip_address(address)) is None


def test_the_allow_list_names_hosts_addresses_and_networks() -> None:
    policy = WebhookPolicy.of(
        ["relay.city.example", "127.0.0.1", "10.20.0.0/16", "fd00:20::/32"], ["127.0.0.1"]
    )
    assert policy.check_address("relay.city.example", IPv4Address("10.9.9.9")) is None
    assert policy.check_address("Relay.City.Example.", IPv4Address("10.9.9.9")) is None
    assert policy.check_address("other.city.example", IPv4Address("10.9.9.9")) == Refusal(
        "private address", IPv4Address("10.9.9.9")
    )
    assert policy.check_address("any.example", IPv4Address("127.0.0.1")) is None
    assert policy.check_address("any.example", IPv4Address("127.0.0.2")) == Refusal(
        "loopback address", IPv4Address("127.0.0.2")
    )
    assert policy.check_address("any.example", IPv4Address("10.20.255.1")) is None
    assert policy.check_address("any.example", IPv6Address("::ffff:10.20.0.1")) is None
    assert policy.check_address("any.example", IPv6Address("fd00:20::5")) is None
    assert policy.check_address("any.example", IPv6Address("fd00:21::5")) is not None

    assert policy.check_url("http://127.0.0.1:8080/hook") is None
    assert policy.check_url("http://2130706433:8080/hook") is None
    assert policy.check_url("http://relay.city.example/hook") == PLAIN_HTTP
    assert policy.check_url("https://relay.city.example/hook") is None
    assert policy.check_url("https://intranet/hook") == INTERNAL_NAME
    assert policy.check_url("ftp://app.example.org/") == PLAIN_HTTP


def test_no_exceptions_without_settings() -> None:
    policy = WebhookPolicy()
    assert policy.check_url("https://app.example.org/hook") is None
    assert policy.check_url("https://APP.example.org./hook") is None
    assert policy.check_url("https://127.0.0.1/hook") == Refusal(
        "loopback address", IPv4Address("127.0.0.1")
    )
    assert policy.check_url("https://localhost/hook") == INTERNAL_NAME
    assert policy.check_url("http://app.example.org/hook") == PLAIN_HTTP


def test_the_settings_are_read_normalised_and_checked_at_start_up(tmp_path) -> None:  # noqa: ANN001
    env = {
        "DATABASE_URL": "postgresql://x/y",
        "STREETLOOP_WEBHOOK_ALLOW_HOSTS": " 127.0.0.1, 10.20.0.0/16 ,Relay.City.Example., [::1], 2130706433,",
        "STREETLOOP_WEBHOOK_HTTP_HOSTS": "127.0.0.1,relay.city.example",
    }
    settings = Settings.from_env(env)
    assert settings.webhook_allow_hosts == (
        "127.0.0.1",
        "10.20.0.0/16",
        "relay.city.example",
        "::1",
    )
    assert settings.webhook_http_hosts == ("127.0.0.1", "relay.city.example")
    assert settings.webhook_ca_file is None
    assert WebhookPolicy.from_settings(settings).check_url("http://relay.city.example/") is None
    defaults = Settings.from_env({"DATABASE_URL": "postgresql://x/y"})
    assert (defaults.webhook_allow_hosts, defaults.webhook_http_hosts) == ((), ())

    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for name, value, message in [
        (
            "STREETLOOP_WEBHOOK_ALLOW_HOSTS",
            "https://relay.city.example",
            "STREETLOOP_WEBHOOK_ALLOW_HOSTS must be a comma-separated list of host names, "
            "IP addresses or networks (CIDR), "
            "got 'https://relay.city.example'",
        ),
        (
            "STREETLOOP_WEBHOOK_ALLOW_HOSTS",
            "10.0.0.0/33",
            "STREETLOOP_WEBHOOK_ALLOW_HOSTS must be a comma-separated list of host names, "
            "IP addresses or networks (CIDR), "
            "got '10.0.0.0/33'",
        ),
        (
            "STREETLOOP_WEBHOOK_HTTP_HOSTS",
            "10.0.0.0/8",
            "STREETLOOP_WEBHOOK_HTTP_HOSTS names hosts, not networks, got '10.0.0.0/8'",
        ),
        (
            "STREETLOOP_WEBHOOK_HTTP_HOSTS",
            "*.example.org",
            "STREETLOOP_WEBHOOK_HTTP_HOSTS must be a comma-separated list of host names or "
            "IP addresses, got '*.example.org'",
        ),
        (
            "STREETLOOP_WEBHOOK_CA_FILE",
            str(tmp_path / "missing.pem"),
            f"STREETLOOP_WEBHOOK_CA_FILE: no PEM certificates could be read from {str(tmp_path / 'missing.pem')!r}",
        ),
        (
            "STREETLOOP_WEBHOOK_CA_FILE",
            str(not_pem),
            f"STREETLOOP_WEBHOOK_CA_FILE: no PEM certificates could be read from {str(not_pem)!r}",
        ),
    ]:
        with pytest.raises(ValueError) as caught:
            Settings.from_env({**env, name: value})
        assert str(caught.value) == message
