"""grpclib fixes that gRPC clients need, applied by an explicit call (spec section 11, pitfall 1).

grpclib 0.4.9 answers a request it cannot route (an unregistered method such as
`/grpc.health.v1.Health/Check`, or a bad `grpc-timeout` header) with a Trailers-Only HEADERS frame
of `:status 200`, `grpc-status` and `grpc-message`, but no `content-type`. grpc-go (so etcdctl)
then reports `code = Unknown desc = OK: HTTP status code 200; transport: missing content-type
field` instead of the real status, and the grpclib client says `Missing content-type header`.
Registering every etcd service (node.services.others) keeps etcd's own paths off this route; this
patch fixes the rest by adding `content-type: application/grpc` to those gRPC answers.

The patch replaces the private module function `grpclib.server._abort`. Importing this module
changes nothing: call `patch_grpclib()` once, in the composition root, before serving. It is
idempotent, and it refuses (raises) if grpclib's internals are not the ones it was written for.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpclib.server
from grpclib.const import Status
from grpclib.encoding.base import GRPC_CONTENT_TYPE

__all__ = ["grpclib_is_patched", "patch_grpclib"]

_AbortFunc = Callable[..., Awaitable[None]]
_EXPECTED_PARAMETERS = ("h2_stream", "h2_status", "grpc_status", "grpc_message")
_PATCHED_MARK = "__raftnode_content_type_patch__"


def patch_grpclib() -> None:
    """Make grpclib's Trailers-Only error answers carry `content-type: application/grpc`."""
    original: _AbortFunc = grpclib.server._abort
    if getattr(original, _PATCHED_MARK, False):
        return
    parameters = tuple(inspect.signature(original).parameters)
    if parameters != _EXPECTED_PARAMETERS:
        raise RuntimeError(
            f"grpclib.server._abort{parameters} is not the 0.4.9 function this patch expects"
        )
    setattr(grpclib.server, "_abort", _with_content_type(original))  # noqa: B010 (private name)


def grpclib_is_patched() -> bool:
    """Whether `patch_grpclib()` is in effect."""
    return bool(getattr(grpclib.server._abort, _PATCHED_MARK, False))


def _with_content_type(original: _AbortFunc) -> _AbortFunc:
    async def abort(
        h2_stream: Any,
        h2_status: int,
        grpc_status: Status | None = None,
        grpc_message: str | None = None,
    ) -> None:
        if h2_status == 200 and grpc_status is not None:
            # A gRPC answer (not an HTTP-level refusal such as 405 or 415): send it the way
            # Stream.send_trailing_metadata sends a Trailers-Only reply.
            headers = [
                (":status", "200"),
                ("content-type", GRPC_CONTENT_TYPE),
                ("grpc-status", str(grpc_status.value)),
            ]
            if grpc_message is not None:
                headers.append(("grpc-message", grpc_message))
            await h2_stream.send_headers(headers, end_stream=True)
            if h2_stream.closable:
                h2_stream.reset_nowait()
            return
        await original(h2_stream, h2_status, grpc_status, grpc_message)

    setattr(abort, _PATCHED_MARK, True)
    abort.__wrapped__ = original  # type: ignore[attr-defined]
    return abort
