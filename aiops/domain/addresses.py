"""Network addresses in the agent's configuration: which listen addresses only this machine reaches, and the
normal form of a peer's base URL (so two spellings of one address compare equal)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_key(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a base URL, or None when it is not a plain ``http(s)://host[:port][/]`` (user
    info, a path, a query or a fragment are refused: a peer's base URL has none)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return parts.scheme, normal_host(parts.hostname), port or _DEFAULT_PORTS[parts.scheme]


def normal_host(host: str) -> str:
    """An IP address in its canonical form (``::1`` for ``0:0::1``), a host name in lowercase."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything
