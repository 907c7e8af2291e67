"""The suite-wide guard (tests/conftest.py): a test that would connect beyond this machine
fails before a packet leaves it. Checked without ever trying such a connection: were the
guard missing, the attempt itself would be the traffic it is there to stop."""

from __future__ import annotations

import socket
import types

import pytest

from tests.conftest import _loopback_only


def test_the_guard_is_installed_on_every_socket() -> None:
    # The C methods were replaced by the guard's Python functions for the whole session.
    assert isinstance(socket.socket.connect, types.FunctionType)
    assert isinstance(socket.socket.connect_ex, types.FunctionType)


@pytest.mark.parametrize(
    "address",
    [
        ("10.0.0.1", 80),
        ("169.254.169.254", 80),
        ("192.0.2.1", 443),
        ("::ffff:10.0.0.1", 80),
        ("2001:db8::1", 443, 0, 0),
        ("example.org", 80),
    ],
)
def test_addresses_beyond_loopback_are_refused(address: tuple) -> None:
    with pytest.raises(OSError, match="test guard"):
        _loopback_only(address)


@pytest.mark.parametrize(
    "address",
    [("127.0.0.1", 80), ("127.8.9.10", 5432), ("::1", 80, 0, 0), ("::ffff:127.0.0.1", 80)],
)
def test_loopback_is_allowed(address: tuple) -> None:
    _loopback_only(address)


def test_loopback_still_connects() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
