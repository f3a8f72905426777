"""Which Host headers `cifarlab serve` answers.

A page on another site can point its own name at 127.0.0.1 (DNS rebinding) and then read this app as if it
were its own origin. The browser still sends that other name as the Host header, so the app answers only
the names it was started for: the address it binds to, the loopback names when it binds to loopback or to
every address, and each --allowed-host. Other requests get a 400 before anything is read.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ..errors import CifarlabError

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
_NAME = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")  # a DNS name or an IPv4 address; *.domain


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `host` is (IPv6 with or without brackets), None for a name."""
    try:
        return ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def is_local(host: str) -> bool:
    """Whether binding to `host` keeps the app on this machine."""
    address = _address(host)
    return host == "localhost" or address is not None and address.is_loopback


def as_host_header(host: str) -> str:
    """How a Host header names `host`: lower case, an IP address in its usual form, IPv6 in brackets."""
    address = _address(host)
    if address is None:
        return host.strip().lower()
    return f"[{address}]" if address.version == 6 else str(address)


def allowed_host(name: str) -> str:
    """An --allowed-host value as the Host header names it; a one-line error for what no Host header holds
    (a URL, a port, a misplaced *)."""
    host = as_host_header(name)
    if host == "*" or _address(host) is not None:
        return host
    if "/" in host:
        raise CifarlabError(f"--allowed-host takes a host name, not a URL: {name!r}")
    if ":" in host:
        raise CifarlabError(f"--allowed-host takes a host name without a port: {name!r}")
    if not _NAME.fullmatch(host):
        raise CifarlabError(f"--allowed-host: {name!r} is not a host name (a name, an IP address, "
                            "*.example.com for its subdomains, or * for any)")
    return host


def accepted_hosts(bound: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names the app answers when bound to `bound`, plus `extra` (--allowed-host)."""
    names = [as_host_header(bound)]
    address = _address(bound)
    if is_local(bound) or address is not None and address.is_unspecified:  # 0.0.0.0 and :: include loopback
        names += LOOPBACK_HOSTS
    names += [allowed_host(name) for name in extra]
    return list(dict.fromkeys(names))  # in order, once each
