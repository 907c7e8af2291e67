"""The address a request comes from, as sign-in limits count it.

X-Forwarded-For is written by whoever sends the request, so it is believed only as far
as `STREETLOOP_TRUSTED_PROXIES` says (see core/settings.py):

- 0 (unset): no proxy is trusted; the TCP peer (REMOTE_ADDR) is the client.
- N hops: each of our N proxies appended the address it saw, so the N-th entry from the
  right is the client's; whatever the client itself put before those is ignored.
- proxy networks: walk back from the peer while the hop is one of our proxies; the first
  address that is not is the client's.

When the header has fewer entries than that, or a trusted entry is not an address, the
peer is used: a misconfigured proxy lumps its clients together (the loose per-address
limit), it never lets a client pick its own address.

A proxy that talks to us over a Unix socket has no address (REMOTE_ADDR is empty, or a
path), so proxy-networks mode can never recognise it: the peer counts as "unknown" and the
header is not believed. Hop-count mode is the one for Unix sockets: it trusts the header's
last N entries whatever the peer is. Both misconfigurations (a forwarded request while no
proxy is trusted; an address-less peer in networks mode) are logged once per process.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

log = logging.getLogger(__name__)

Networks = tuple[IPv4Network | IPv6Network, ...]
UNKNOWN = "unknown"


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip().removeprefix("[").removesuffix("]")
    try:
        address = ip_address(value)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket ("::ffff:198.51.100.7") is that IPv4 client.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: IPv4Address | IPv6Address | None) -> str:
    """IPv6 counts per /64: one subscriber usually holds a whole /64, so counting single
    IPv6 addresses would give every guess a fresh address."""
    if address is None:
        return UNKNOWN
    if isinstance(address, IPv6Address):
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, trusted: int | Networks
) -> str:
    """The client's address (or IPv6 /64), from the peer and the X-Forwarded-For header."""
    peer = _parse(remote_addr or "")
    hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
    if isinstance(trusted, int):
        if trusted <= 0 or len(hops) < trusted:
            return _key(peer)
        return _key(_parse(hops[-trusted]) or peer)
    if not trusted:
        return _key(peer)
    if peer is None:
        # No address to match against our proxies' networks (a Unix socket): believe no header.
        return UNKNOWN
    current = peer
    while any(current in net for net in trusted) and hops:
        previous = _parse(hops.pop())
        if previous is None:
            # One of our proxies wrote something that is not an address: stop at that proxy.
            break
        current = previous
    return _key(current)


def request_client_address() -> str:
    """The current Flask request's client address, under the app's trusted-proxy setting."""
    from flask import request

    from api.db import settings

    forwarded = ",".join(request.headers.getlist("X-Forwarded-For")) or None
    return client_address(request.remote_addr, forwarded, settings().trusted_proxies)


def warn_of_untrusted_forwarding() -> None:
    """A before_request hook: say once per process (the app's lifetime) when the setting
    cannot be right for the requests we get. Behind a proxy nobody told us about, every
    client counts as the proxy's address, and one address's failed sign-ins lock everyone
    out; the log names the setting, never a client's address."""
    from flask import current_app, request

    from api.db import settings

    warned: set[str] = current_app.extensions.setdefault("streetloop.forwarding_warned", set())
    if len(warned) == 2 or not (
        request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded")
    ):
        return
    trusted = settings().trusted_proxies
    if not trusted and "untrusted" not in warned:
        warned.add("untrusted")
        log.warning(
            "requests arrive with X-Forwarded-For or Forwarded but STREETLOOP_TRUSTED_PROXIES is unset: every "
            "client counts as the proxy's address, so sign-in limits per address lump them together; set it "
            "to the number of proxy hops or to the proxies' networks"
        )
    elif (
        isinstance(trusted, tuple)
        and trusted
        and _parse(request.remote_addr or "") is None
        and "unix" not in warned
    ):
        warned.add("unix")
        log.warning(
            "a forwarded request came from a peer with no IP address (a Unix socket?), which "
            "STREETLOOP_TRUSTED_PROXIES as networks can never trust, so its clients count as one; "
            "behind a Unix socket, set STREETLOOP_TRUSTED_PROXIES to the number of proxy hops instead"
        )
