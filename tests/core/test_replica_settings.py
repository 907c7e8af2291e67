"""DATABASE_REPLICA_URL and its bounds: optional, read once, refused at start-up when bad."""

from __future__ import annotations

import socket

import pytest

from core.replica import Replica
from core.settings import Settings

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1/db"}


def test_without_a_replica_every_read_is_the_primary_s() -> None:
    s = Settings.from_env(BASE)
    assert s.database_replica_url is None
    assert Replica.from_settings(s) is None


def test_a_replica_is_taken_with_its_bounds() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "DATABASE_REPLICA_URL": " postgresql://u@127.0.0.1:5433/db ",
            "STREETLOOP_REPLICA_MAX_LAG_S": "10",
            "STREETLOOP_REPLICA_CHECK_S": "2",
            "STREETLOOP_REPLICA_CONNECT_TIMEOUT_S": "3",
        }
    )
    assert s.database_replica_url == "postgresql+psycopg://u@127.0.0.1:5433/db"
    assert (s.replica_max_lag_s, s.replica_check_s, s.replica_connect_timeout_s) == (10, 2, 3)
    replica = Replica.from_settings(s)  # no connection is made until a report reads
    assert replica is not None
    assert (replica.max_lag_s, replica.check_every_s) == (10, 2)
    assert replica.engine.url.port == 5433
    replica.dispose()


def test_the_defaults_are_half_a_minute_of_lag_and_a_look_every_five_seconds() -> None:
    s = Settings.from_env({**BASE, "DATABASE_REPLICA_URL": "postgresql://u@127.0.0.1:5433/db"})
    assert (s.replica_max_lag_s, s.replica_check_s, s.replica_connect_timeout_s) == (30, 5, 2)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STREETLOOP_REPLICA_MAX_LAG_S", "0", "must be between 1 and 86400"),
        ("STREETLOOP_REPLICA_MAX_LAG_S", "soon", "must be an integer"),
        ("STREETLOOP_REPLICA_CHECK_S", "0", "must be between 1 and 300"),
        ("STREETLOOP_REPLICA_CONNECT_TIMEOUT_S", "1", "must be between 2 and 60"),
    ],
)
def test_a_bad_bound_stops_start_up_with_its_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"{name} {message}"):
        Settings.from_env({**BASE, name: value})


def test_a_replica_connection_gives_up_on_a_silent_host_and_a_full_pool(database_url: str) -> None:
    """Not only a new connection (connect timeout): one already in the pool fails once what
    it sent has gone unacknowledged for the connect timeout (TCP_USER_TIMEOUT, set on its
    socket), keepalives probe it while idle, and a read waits a second for a free one."""
    s = Settings.from_env(
        {
            **BASE,
            "DATABASE_REPLICA_URL": database_url,
            "STREETLOOP_REPLICA_CONNECT_TIMEOUT_S": "3",
        }
    )
    replica = Replica.from_settings(s)
    assert replica is not None
    try:
        assert replica.engine.pool.timeout() == 1.0  # type: ignore[attr-defined]  # QueuePool's
        with replica.engine.connect() as conn:
            pg = conn.connection.dbapi_connection
            assert pg is not None
            params = pg.info.get_parameters()
            assert (params["tcp_user_timeout"], params["keepalives"]) == ("3000", "1")
            sock = socket.socket(fileno=pg.fileno())
            try:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 3000
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            finally:
                sock.detach()  # the connection's socket, not this object's to close
    finally:
        replica.dispose()
