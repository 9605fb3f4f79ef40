"""Per-request metadata, deadline and peer for handlers (spec section 11, pitfall 7).

betterproto's generated handlers receive only the request message, but some rules need more: the
`hasleader` metadata gate (spec section 3.1), the caller's deadline (section 8.3) and, for logs,
the peer. grpclib dispatches a `RecvRequest` event inside the task that then runs the handler, so
a listener that stores the event in a `ContextVar` makes it readable from the handler (and from
anything it awaits) without touching the generated signatures. Each request runs in its own
task, which copies the context, so requests never see one another's values.

Nothing happens at import: `install_request_context(server)` registers the listener on one
grpclib `Server`. Outside a request the accessors answer "nothing": empty metadata, no deadline,
no peer, no leader requirement.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType

from grpclib.events import RecvRequest, listen
from grpclib.metadata import Deadline
from grpclib.protocol import Peer
from grpclib.server import Server

__all__ = [
    "RequestContext",
    "current_deadline",
    "current_metadata",
    "current_peer",
    "current_request",
    "install_request_context",
    "requires_leader",
]

HASLEADER_KEY = "hasleader"
"""etcd's `rpctypes.MetadataRequireLeaderKey`; clientv3's `WithRequireLeader` sets it to "true"."""

_EMPTY_METADATA: Mapping[str, str | bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What grpclib knew about the request when it was routed."""

    method_name: str
    metadata: Mapping[str, str | bytes]
    """A grpclib MultiDict: `.getall(key)` gives repeated keys (typed as a Mapping, read-only)."""
    deadline: Deadline | None
    peer: Peer | None


_current: ContextVar[RequestContext | None] = ContextVar("raftnode_grpc_request", default=None)
_installed: weakref.WeakSet[Server] = weakref.WeakSet()


def install_request_context(server: Server) -> None:
    """Record each request's metadata, deadline and peer for `server`'s handlers (idempotent)."""
    if server in _installed:
        return
    listen(server, RecvRequest, _on_recv_request)
    _installed.add(server)


async def _on_recv_request(event: RecvRequest) -> None:
    _current.set(
        RequestContext(
            method_name=event.method_name,
            metadata=event.metadata.copy(),
            deadline=event.deadline,
            peer=event.peer,
        )
    )


def current_request() -> RequestContext | None:
    """The request being handled, or None outside a request (or without the listener)."""
    return _current.get()


def current_metadata() -> Mapping[str, str | bytes]:
    """The caller's invocation metadata (keys lower-case), read-only; empty outside a request."""
    request = _current.get()
    return _EMPTY_METADATA if request is None else request.metadata


def current_deadline() -> Deadline | None:
    """The caller's deadline (from `grpc-timeout`), or None if it set none."""
    request = _current.get()
    return None if request is None else request.deadline


def current_peer() -> Peer | None:
    """The caller's connection, for logs (`peer.addr()`)."""
    request = _current.get()
    return None if request is None else request.peer


def requires_leader() -> bool:
    """Whether the caller asked to fail fast without a leader (`hasleader: true`, spec 3.1)."""
    return current_metadata().get(HASLEADER_KEY) == "true"
