"""Endpoint strings as etcdctl takes them: ``host:port`` or ``http://host:port``.

TLS is not supported (raftnode serves plain HTTP/2), so ``https://`` is refused up front rather
than failing later as a confusing transport error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Endpoint", "parse_endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """``text`` is the endpoint as given (what etcdctl prints); host and port are where to dial."""

    text: str
    host: str
    port: int


def parse_endpoint(text: str) -> Endpoint:
    """The endpoint for ``text``; ValueError says what is wrong with it."""
    address = text.strip()
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme.lower() == "https":
            raise ValueError(f"TLS endpoints are not supported: {text}")
        if scheme.lower() != "http":
            raise ValueError(f"endpoint scheme must be http: {text}")
        address = rest.rstrip("/")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'endpoint must have the form "host:port": {text}')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Endpoint(text=text, host=host, port=int(port))
