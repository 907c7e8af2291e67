"""Which address a request comes from: REMOTE_ADDR, unless the setting trusts proxies."""

from __future__ import annotations

import dataclasses
import logging
from ipaddress import ip_network
from typing import Any

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
        # A Unix socket's peer has no address ("" or a path): networks mode cannot know it is
        # one of our proxies, so it believes no header and counts the peer as "unknown";
        # hop-count mode (the one for Unix sockets) still reads the header.
        (NETS, "", "198.51.100.7", "unknown"),
        (NETS, None, "198.51.100.7", "unknown"),
        (NETS, "unix:/run/streetloop.sock", "192.0.2.66, 198.51.100.7", "unknown"),
        (1, "", "192.0.2.66, 198.51.100.7", "198.51.100.7"),
        (1, "unix:/run/streetloop.sock", "198.51.100.7", "198.51.100.7"),
        (1, "", None, "unknown"),
    ],
)
def test_client_address(trusted: object, remote: str, forwarded: str | None, expected: str) -> None:
    assert client_address(remote, forwarded, trusted) == expected  # type: ignore[arg-type]


def _env(**values: str) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://x@127.0.0.1/x", **values}


def test_settings_read_hops_or_networks() -> None:
    assert Settings.from_env(_env()).trusted_proxies == 0
    assert Settings.from_env(_env(STREETLOOP_TRUSTED_PROXIES="2")).trusted_proxies == 2
    assert (
        Settings.from_env(
            _env(STREETLOOP_TRUSTED_PROXIES=" 127.0.0.1, 10.0.0.0/8 ")
        ).trusted_proxies
        == NETS
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("STREETLOOP_TRUSTED_PROXIES", "proxy.example"),
        ("STREETLOOP_TRUSTED_PROXIES", "-1"),
        ("STREETLOOP_TRUSTED_PROXIES", "10.0.0.1/8"),
        ("STREETLOOP_SIGN_IN_ACCOUNT_FAILURES", "0"),
        ("STREETLOOP_SIGN_IN_ACCOUNT_WINDOW_MINUTES", "five"),
        ("STREETLOOP_SIGN_IN_ADDRESS_FAILURES", "0"),
        ("STREETLOOP_SIGN_IN_ADDRESS_WINDOW_MINUTES", "0"),
    ],
)
def test_a_bad_value_stops_start_up_with_its_name(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env(_env(**{name: raw}))


def test_sign_in_limit_defaults() -> None:
    s = Settings.from_env(_env())
    assert (
        s.sign_in_account_failures,
        s.sign_in_account_window_minutes,
        s.sign_in_address_failures,
        s.sign_in_address_window_minutes,
    ) == (5, 15, 100, 15)


def _app(settings: Settings, sessions: Any, queue: Any, trusted: object):  # noqa: ANN202
    from api import create_app

    return create_app(
        dataclasses.replace(settings, trusted_proxies=trusted), sessions=sessions, queue=queue
    )


def _warnings(caplog: Any) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "api.client_address" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded"])
def test_a_forwarded_request_with_no_proxy_trusted_is_warned_of_once(
    settings: Settings, sessions: Any, queue: Any, caplog: Any, header: str
) -> None:
    """Behind a proxy that nobody told us about, every client counts as the proxy's address,
    so one address's sign-in limit locks everyone out: the log says so, once per process."""
    client = _app(settings, sessions, queue, 0).test_client()
    value = "198.51.100.7" if header == "X-Forwarded-For" else "for=198.51.100.7"
    with caplog.at_level(logging.WARNING, logger="api.client_address"):
        assert client.get("/healthz").status_code == 200
        assert _warnings(caplog) == []
        for _ in range(3):
            assert client.get("/healthz", headers={header: value}).status_code == 200
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    assert "STREETLOOP_TRUSTED_PROXIES" in warned[0]
    assert "198.51.100.7" not in warned[0]


def test_no_warning_when_the_proxy_is_trusted(
    settings: Settings, sessions: Any, queue: Any, caplog: Any
) -> None:
    client = _app(settings, sessions, queue, 1).test_client()
    with caplog.at_level(logging.WARNING, logger="api.client_address"):
        assert (
            client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        )
    assert _warnings(caplog) == []


def test_a_unix_socket_peer_in_networks_mode_is_warned_of_once(
    settings: Settings, sessions: Any, queue: Any, caplog: Any
) -> None:
    client = _app(settings, sessions, queue, NETS).test_client()
    with caplog.at_level(logging.WARNING, logger="api.client_address"):
        for _ in range(2):
            r = client.get(
                "/healthz",
                headers={"X-Forwarded-For": "198.51.100.7"},
                environ_overrides={"REMOTE_ADDR": ""},
            )
            assert r.status_code == 200
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    assert "STREETLOOP_TRUSTED_PROXIES" in warned[0] and "hop" in warned[0]
