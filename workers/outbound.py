"""Outgoing HTTP from the worker to hosts outside StreetLoop (webhooks, copies of linked
photos): a host name is resolved once, by a resolver the caller may replace (tests map
made-up names to 127.0.0.1), the caller checks every address it gave, and the socket is
opened to a checked address only. TLS still proves the URL's host name (SNI and
certificate), and the Host header still names it.

A connection may be given a deadline for the whole exchange (`pinned_connection`): then
every step (connect, TLS handshake, each read of the status line, the headers and the
body) waits only for what is left of it, so a host that trickles its header lines a
little faster than the per-read timeout cannot hold the worker for timeout x lines."""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import sys
import time
from collections.abc import Buffer, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from core.webhook_targets import IPAddress, literal_address

type Resolver = Callable[[str, int], Iterable[str]]
# Why an address may not be connected to (a short phrase of our own), or None when it may.
type AddressCheck = Callable[[IPAddress], str | None]


class Unreachable(Exception):
    """The host is not called. `refused`: an address it resolved to is not allowed (asking
    again will not change that); else its name was not found. `reason` is what admins
    read: "host name not found", or "refused: <why>"."""

    def __init__(self, reason: str, *, refused: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


def resolve_host(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    # typeshed promises IPv4 and IPv6 answers only, so mypy finds the filter always true;
    # it keeps that so whatever the platform's resolver answers.
    return list(
        dict.fromkeys(
            str(info[4][0])
            for info in infos
            if info[0] in (socket.AF_INET, socket.AF_INET6)  # type: ignore[redundant-expr]
        )
    )


def checked_addresses(
    host: str, port: int, resolve: Resolver, check: AddressCheck
) -> list[IPAddress]:
    """The addresses to connect to for `host`: the one it is when written as an address,
    else what `resolve` answers, asked once. Every one must pass `check`, not only the one
    used: a name that points inside the network at all is refused, whatever else it
    answers. Raises Unreachable."""
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve(host, port)]
        # socket.gaierror is an OSError; a resolver answer that is no address, a ValueError.
        except (OSError, UnicodeError, ValueError):
            raise Unreachable("host name not found", refused=False) from None
        if not addresses:
            raise Unreachable("host name not found", refused=False)
    for address in addresses:
        refusal = check(address)
        if refusal is not None:
            raise Unreachable(f"refused: {refusal}", refused=True)
    return addresses


def _open_socket(addresses: Sequence[IPAddress], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers. A numeric address goes
    to connect() as it is: nothing here looks a name up."""
    error = OSError("no address to connect to")
    for address in addresses:
        sock = socket.socket(
            socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM
        )
        try:
            sock.settimeout(timeout)
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


def _wait(timeout: float, deadline: float | None) -> float:
    """How long the next step may wait: `timeout`, or less when the deadline (a
    time.monotonic() value) is nearer; TimeoutError once it has passed."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the exchange's deadline has passed")
    return min(timeout, left)


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read allowed only what is left of the deadline. What
    http.client reads the status line, headers and body through (in place of
    sock.makefile, whose reads each get the full socket timeout). It reads through a
    socket file of its own: that keeps the connection open after http.client closes its
    socket for a `Connection: close` answer, as http.client's own file does."""

    def __init__(self, sock: socket.socket, timeout: float, deadline: float) -> None:
        super().__init__()
        self._sock, self._timeout, self._deadline = sock, timeout, deadline
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer) -> int | None:
        self._sock.settimeout(_wait(self._timeout, self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """A response read under the connection's deadline (see _DeadlineReader)."""

    def __init__(
        self, sock: socket.socket, *args: Any, timeout: float, deadline: float, **kwargs: Any
    ) -> None:
        # Whatever http.client passes on (method=...), as it would to HTTPResponse itself.
        super().__init__(sock, *args, **kwargs)
        plain, self.fp = self.fp, io.BufferedReader(_DeadlineReader(sock, timeout, deadline))
        plain.close()  # the file http.client made; nothing was read from it yet


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `host` that opens its socket to addresses checked beforehand
    instead of resolving `host` again (which could answer differently: DNS rebinding)."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: Sequence[IPAddress],
        timeout: float,
        deadline: float | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        # http.client's own `timeout` may be None (wait for ever); ours never is.
        self._timeout = timeout
        self._deadline = deadline
        if deadline is not None:
            # http.client only calls response_class(sock, method=...): a callable that makes
            # an HTTPResponse serves, though typeshed asks for the class itself.
            self.response_class = functools.partial(  # type: ignore[assignment]
                _DeadlineResponse, timeout=timeout, deadline=deadline
            )

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        self.sock = _open_socket(self._addresses, self.port, _wait(self._timeout, self._deadline))


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The same for https: TCP to the checked address, then TLS for the URL's host name
    (SNI, and the certificate must be valid for that name, not for the address)."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: Sequence[IPAddress],
        timeout: float,
        context: ssl.SSLContext,
        deadline: float | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context
        self._timeout = timeout  # as above
        self._deadline = deadline
        if deadline is not None:
            self.response_class = functools.partial(  # type: ignore[assignment]  # as above
                _DeadlineResponse, timeout=timeout, deadline=deadline
            )

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        sock = _open_socket(self._addresses, self.port, _wait(self._timeout, self._deadline))
        try:
            sock.settimeout(_wait(self._timeout, self._deadline))  # the handshake's share
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@functools.cache
def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs and those of STREETLOOP_WEBHOOK_CA_FILE (the city's CA for all
    outgoing https: webhooks and copies of linked photos), hostname checks on. Built once
    per CA file: loading the system's store takes a while, and a context can be shared."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def failure_words(exc: BaseException) -> str:
    """What admins read for a failed call: our own words, never the target's or the OS's
    (an error text may carry an internal service's banner or an address)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS error: certificate not accepted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "no reply"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP reply"
    return "connection failed"


def pinned_connection(
    scheme: str,
    host: str,
    port: int,
    addresses: Sequence[IPAddress],
    timeout: float,
    ca_file: Path | None = None,
    *,
    deadline: float | None = None,
) -> http.client.HTTPConnection:
    """An http or https connection to `host` that connects to `addresses` only. Each step
    waits at most `timeout`; with `deadline` (a time.monotonic() value), the exchange as a
    whole ends by then too (TimeoutError)."""
    if scheme == "https":
        return _PinnedHTTPSConnection(
            host, port, addresses, timeout, tls_context(ca_file), deadline
        )
    return _PinnedHTTPConnection(host, port, addresses, timeout, deadline)
