"""The gateway's routes (spec §1, §9): which handler a request reaches, and how its outcome reads.

`Gateway.respond(method, target, body)` is the whole of it, with no sockets: tests call it
directly. It calls the very handler methods grpclib calls (``ClusterBase.member_add`` and so on),
so both APIs behave alike; whatever a handler raises (a ``GRPCError`` built from the one error
table, or a fault) is answered through ``node.errors.describe``, whose row also gives the HTTP
status (§9.4). Each call is bounded by ReqTimeout (D4b: then 503 with code 14, where etcd's gateway
would hang).

Routes: ``POST /v3/<rpc>`` and its ``/v3beta/`` alias; another method there is 405. Go's two 404
bodies are kept (transcripts 03, 15): ``Not Found`` for an unknown path under a gateway prefix,
``404 page not found`` elsewhere (``/v3alpha/`` included). ``GET /version``, ``GET /health`` and
``GET /metrics`` (Prometheus text, when the node passes a renderer) are plain handlers (GET
only). ``OPTIONS`` anywhere is etcd's empty CORS answer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

import betterproto
from grpclib.const import Status

from node.domain_errors import RequestTimeout, RequestTooLarge
from node.errors import ErrorRow, describe
from node.gateway.codec import BadRequest, decode_request, dump_json, encode_response
from node.gateway.http11 import TEXT, Http11Server, Limits, Reply
from node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from node.services.maintenance import VERSION
from node.services.others import AuthService
from proto import etcdserverpb as pb

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_BYTES",
    "Gateway",
    "HealthCheck",
    "error_reply",
]

log = logging.getLogger(__name__)

#: etcd's default ``--max-request-bytes`` (1.5 MiB).
MAX_REQUEST_BYTES = 1536 * 1024
#: The request line and headers together.
MAX_HEADER_BYTES = 64 * 1024
#: How long a client may take to send its next complete request (keep-alive idle included).
IDLE_TIMEOUT = 120.0

HealthCheck = Callable[[], bool | Awaitable[bool]]
"""``/health``'s verdict. A coroutine function also fits, for a check that waits; the wait is
bounded by ReqTimeout. The node passes ``ClusterManager.healthy``: a leader is known **and** a
ReadIndex round through it completes within a second (issue 5, item 3), as etcd's own check
commits a quorum read."""

Req = TypeVar("Req", bound=betterproto.Message)
Resp = TypeVar("Resp", bound=betterproto.Message)

_GATEWAY_PREFIXES = ("/v3/", "/v3beta/")
_GRPC_METADATA = (("Grpc-Metadata-Content-Type", "application/grpc"),)
_NOT_FOUND = Reply.text(404, "404 page not found\n")  # Go's ServeMux (transcript 03, /v3alpha/)
_GATEWAY_NOT_FOUND = Reply.text(404, "Not Found\n")  # grpc-gateway's own (transcript 15)
_NOT_ALLOWED = Reply.text(405, "Method Not Allowed\n")
_GET_ONLY = Reply.text(405, "Method Not Allowed\n", ("Allow", "GET"))
_HEALTHY = Reply(200, b'{"health":"true"}', TEXT)  # etcd writes it unlabelled; Go sniffs text
_UNHEALTHY = Reply(503, b'{"health":"false"}', TEXT)


def error_reply(row: ErrorRow, *, close: bool = False) -> Reply:
    """etcd's error body (spec §9.4) with the HTTP status of node.errors' table."""
    body = {"error": row.message, "code": row.code, "message": row.message}
    return Reply(row.http_status, dump_json(body), close=close)


_TIMED_OUT = error_reply(describe(RequestTimeout()))


@dataclass(frozen=True, slots=True)
class _Route(Generic[Req, Resp]):
    request_type: type[Req]
    call: Callable[[Req], Awaitable[Resp]]


class Gateway:
    """etcd's JSON gateway: HTTP requests answered by the gRPC services' handler methods."""

    def __init__(
        self,
        *,
        cluster: pb.ClusterBase,
        maintenance: pb.MaintenanceBase,
        has_leader: HealthCheck,
        request_timeout: float,
        auth: pb.AuthBase | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        metrics: Callable[[], str] | None = None,
    ) -> None:
        """``request_timeout`` is ReqTimeout (``ClusterManager.timing.request_timeout``);
        ``auth`` defaults to the refusing ``AuthService``; ``metrics`` renders ``GET /metrics``
        (Prometheus text), which is a 404 without it."""
        auth = auth if auth is not None else AuthService()
        self._routes: Mapping[str, _Route[Any, Any]] = {
            "cluster/member/add": _Route(pb.MemberAddRequest, cluster.member_add),
            "cluster/member/remove": _Route(pb.MemberRemoveRequest, cluster.member_remove),
            "cluster/member/update": _Route(pb.MemberUpdateRequest, cluster.member_update),
            "cluster/member/list": _Route(pb.MemberListRequest, cluster.member_list),
            "cluster/member/promote": _Route(pb.MemberPromoteRequest, cluster.member_promote),
            "maintenance/status": _Route(pb.StatusRequest, maintenance.status),
            "maintenance/transfer-leadership": _Route(
                pb.MoveLeaderRequest, maintenance.move_leader
            ),
            "auth/authenticate": _Route(pb.AuthenticateRequest, auth.authenticate),
        }
        self._has_leader = has_leader
        self._metrics = metrics
        self.request_timeout = request_timeout
        too_large = error_reply(describe(RequestTooLarge()), close=True)
        limits = Limits(too_large, max_request_bytes, max_header_bytes, idle_timeout)
        self.http = Http11Server(self.respond, limits)

    # ---- requests

    async def respond(self, method: str, target: str, body: bytes) -> Reply:
        """The answer to one request. Never raises (it may be cancelled)."""
        path = _path_of(target)
        if method == "OPTIONS":
            return Reply(200, content_type=None)  # etcd's CORS preflight answer
        if path == "/version":
            if method != "GET":
                return _GET_ONLY
            return Reply(200, dump_json({"etcdserver": VERSION, "etcdcluster": VERSION}))
        if path == "/health":
            return await self._health() if method == "GET" else _GET_ONLY
        if path == "/metrics" and self._metrics is not None:
            if method != "GET":
                return _GET_ONLY
            return Reply(200, self._metrics().encode(), METRICS_CONTENT_TYPE)
        for prefix in _GATEWAY_PREFIXES:
            if path.startswith(prefix):
                route = self._routes.get(path[len(prefix) :])
                if route is None:
                    return _GATEWAY_NOT_FOUND
                if method != "POST":
                    return _NOT_ALLOWED
                return await self._call(route, body)
        return _NOT_FOUND

    async def _call(self, route: _Route[Req, Resp], body: bytes) -> Reply:
        try:
            request = decode_request(route.request_type, body)
        except BadRequest as exc:
            return error_reply(ErrorRow(Status.INVALID_ARGUMENT, str(exc)))
        try:
            async with asyncio.timeout(self.request_timeout):
                reply = await route.call(request)
            return Reply(200, encode_response(reply), headers=_GRPC_METADATA)
        except TimeoutError:
            return _TIMED_OUT
        except Exception as exc:  # a GRPCError from the handler; anything else is logged
            return error_reply(describe(exc))

    async def _health(self) -> Reply:
        try:
            async with asyncio.timeout(self.request_timeout):
                verdict = self._has_leader()
                healthy = bool(await verdict) if inspect.isawaitable(verdict) else bool(verdict)
        except Exception:
            log.warning("the health check failed", exc_info=True)
            healthy = False
        return _HEALTHY if healthy else _UNHEALTHY

    # ---- connections and lifecycle (P10)

    def protocol_factory(self) -> asyncio.Protocol:
        """A protocol for one new HTTP/1.1 connection (``loop.create_server`` or the listener)."""
        return self.http.protocol_factory()

    @property
    def closing(self) -> bool:
        return self.http.closing

    def close(self) -> None:
        """Idle connections close now; a request being handled finishes first."""
        self.http.close()

    async def wait_closed(self) -> None:
        """Wait for every connection to finish; if this wait is cancelled, `abort()`."""
        await self.http.wait_closed()

    def abort(self) -> None:
        """Close every connection now, cancelling requests in progress."""
        self.http.abort()


def _path_of(target: str) -> str:
    """The decoded path of a request target, in origin form or absolute form."""
    path = urlsplit(target).path if "://" in target[:8] else target.partition("?")[0]
    return unquote(path)
