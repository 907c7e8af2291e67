"""Which address a request comes from: REMOTE_ADDR, unless the setting trusts proxies."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from api.client_address import client_address
from core.settings import Settings

NETS = (ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        # No proxy trusted: X-Forwarded-For is anyone's to write, so it is ignored.
        (0, "198.51.100.7", "192.0.2.1", "198.51.100.7"),
        (0, "198.51.100.7", None, "198.51.100.7"),
        # One hop: the last entry, which that proxy appended; a client's own entries before it do not count.
        (1, "127.0.0.1", "192.0.2.66, 198.51.100.7", "198.51.100.7"),
        (2, "127.0.0.1", "192.0.2.66, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
        # Fewer entries than hops: not through all the proxies; the peer is what we know.
        (2, "127.0.0.1", "198.51.100.7", "127.0.0.1"),
        (1, "127.0.0.1", None, "127.0.0.1"),
        # A proxy's entry that is not an address: the peer, not a made-up key.
        (1, "127.0.0.1", "198.51.100.7, unknown", "127.0.0.1"),
        # Proxy networks: walk back from the peer while the hop is a trusted proxy.
        (NETS, "127.0.0.1", "192.0.2.66, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
        (NETS, "127.0.0.1", "10.9.9.9, 10.1.2.3", "10.9.9.9"),
        # A peer that is no trusted proxy: its header is not believed.
        (NETS, "198.51.100.7", "192.0.2.66", "198.51.100.7"),
        # IPv4 seen through an IPv6 socket is the IPv4 address; IPv6 counts per /64 (one
        # subscriber's whole range), else every guess could come from a new address.
        (0, "::ffff:198.51.100.7", None, "198.51.100.7"),
        (0, "2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),
        (1, "127.0.0.1", "[2001:db8:1:2::5]", "2001:db8:1:2::/64"),
        (0, "", None, "unknown"),
    ],
)
def test_client_address(trusted: object, remote: str, forwarded: str | None, expected: str) -> None:
    assert client_address(remote, forwarded, trusted) == expected  # type: ignore[arg-type]


def _env(**values: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://x@127.0.0.1/x", **values}


def test_settings_read_hops_or_networks() -> None:
    assert Settings.from_env(_env()).trusted_proxies == 0
    assert Settings.from_env(_env(STREETLOOP_TRUSTED_PROXIES="2")).trusted_proxies == 2
    assert Settings.from_env(_env(STREETLOOP_TRUSTED_PROXIES=" 127.0.0.1, 10.0.0.0/8 ")).trusted_proxies == NETS


@pytest.mark.parametrize(("name", "raw"), [
    ("STREETLOOP_TRUSTED_PROXIES", "proxy.example"),
    ("STREETLOOP_TRUSTED_PROXIES", "-1"),
    ("STREETLOOP_TRUSTED_PROXIES", "10.0.0.1/8"),
    ("STREETLOOP_SIGN_IN_ACCOUNT_FAILURES", "0"),
    ("STREETLOOP_SIGN_IN_ACCOUNT_WINDOW_MINUTES", "five"),
    ("STREETLOOP_SIGN_IN_ADDRESS_FAILURES", "0"),
    ("STREETLOOP_SIGN_IN_ADDRESS_WINDOW_MINUTES", "0"),
])
def test_a_bad_value_stops_start_up_with_its_name(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env(_env(**{name: raw}))


def test_sign_in_limit_defaults() -> None:
    s = Settings.from_env(_env())
    assert (s.sign_in_account_failures, s.sign_in_account_window_minutes,
            s.sign_in_address_failures, s.sign_in_address_window_minutes) == (5, 15, 100, 15)
