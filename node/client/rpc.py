"""Unary calls over a list of endpoints, with clientv3's failover rules and typed errors.

One channel per endpoint, dialled lazily; the endpoint that last answered is *pinned* and tried
first. Each call has one deadline for all of its attempts (the ``timeout``); grpclib gets the time
remaining, so the server sees it as ``grpc-timeout``. What happens when an attempt fails depends
on the call's `Retry` policy:

- ``READ`` (MemberList): idempotent, so any UNAVAILABLE answer (a learner, no leader, a server
  stopping) or transport failure moves to the next endpoint, and after a full round the client
  backs off and goes round again until the deadline, as clientv3 retries MemberList.
- ``MUTATION`` (Add, Remove, Update, Promote): moves to the next endpoint **only** when the request
  provably had no effect: the connection could not be opened or the request headers not written
  (no request bytes left this process), the server reset the stream with HTTP/2 REFUSED_STREAM
  (unprocessed by definition; a draining member answers so), or the endpoint is a learner, which
  refuses at its gate before doing anything (``rpc not supported for learner``). Any other
  failure after the request was sent is surfaced as it is: a reset connection is an ambiguous
  `Unavailable`, a deadline an ambiguous `Timeout` (``definitely_failed`` False). Nothing is
  retried on the same endpoint.
- ``PINNED`` (Status, MoveLeader, the health read): the caller named the endpoint; no failover.

When every endpoint failed to connect, the error is `Unavailable` listing each failure, with
``definitely_failed`` True since no request was sent. A deadline is always `Timeout`, never a bare
``asyncio.TimeoutError`` (grpclib raises that on its own deadline, spec §11 item 8).
"""

# ruff: noqa: ASYNC109 - ``timeout=`` is the documented per-call deadline, and it must reach
# the server as ``grpc-timeout``, which an ``asyncio.timeout`` around the call could not do.

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import betterproto
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from node.client.endpoints import Endpoint, parse_endpoint
from node.client.errors import (
    ClientError,
    NotSupportedForLearner,
    Timeout,
    Unavailable,
    from_status,
)

__all__ = ["ChannelFactory", "Retry", "RpcPool"]

R = TypeVar("R", bound=betterproto.Message)

#: Makes the channel for an endpoint. Channels from an injected factory stay the caller's (the
#: pool never closes them); the default dials ``host:port`` and is closed with the pool.
ChannelFactory = Callable[[str], Channel]

#: First pause between two rounds of READ retries, and the longest (clientv3 waits ~25 ms).
BACKOFF_S = 0.025
MAX_BACKOFF_S = 0.5

#: Failures of the connection itself (as opposed to an answer from the server).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    StreamTerminatedError,
    ProtocolError,
)


class Retry(enum.Enum):
    READ = "read"
    MUTATION = "mutation"
    PINNED = "pinned"


class _NotSent(Exception):
    """The attempt failed before any request bytes left this process."""


@dataclass
class _Attempts:
    """What one call has done so far, to decide whether its failure is definite."""

    sent: bool = False
    unreachable: list[str] | None = None


class _Closed:
    """`RpcPool.close` works at once; this lets callers ``await`` it all the same."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


def _may_try_next(err: ClientError, retry: Retry) -> bool:
    """Whether a failed attempt lets the call move on to the next endpoint (module docstring)."""
    never_sent = err.code is None and err.definitely_failed
    if retry is Retry.READ:
        return isinstance(err, Unavailable)
    if retry is Retry.MUTATION:
        return never_sent or isinstance(err, NotSupportedForLearner)
    return False


def refused_stream(exc: BaseException) -> bool:
    """HTTP/2 REFUSED_STREAM (code 7): the server did not process the request (a draining
    member refuses new calls this way), so it counts as never sent."""
    text = str(exc)
    return isinstance(exc, StreamTerminatedError) and (
        text.endswith("error_code: 7") or "REFUSED_STREAM" in text
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RpcPool:
    """Channels to the endpoints and the one call path of the client."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        *,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            raise TypeError("endpoints must be a sequence of strings, not one string")
        parsed = [parse_endpoint(e) for e in endpoints]
        if not parsed:
            raise ValueError("at least one endpoint is needed")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._endpoints = parsed
        self._pinned = 0
        self._factory = channel_factory
        self._channels: dict[str, Channel] = {}
        self._closed = False

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(e.text for e in self._endpoints)

    def close(self) -> _Closed:
        """Close the channels this pool dialled; later calls raise RuntimeError."""
        self._closed = True
        if self._factory is None:
            for channel in self._channels.values():
                channel.close()
        self._channels.clear()
        return _Closed()

    # ---- calls -------------------------------------------------------------------------------

    async def call(
        self,
        path: str,
        request: betterproto.Message,
        reply_type: type[R],
        *,
        retry: Retry,
        endpoint: str | None = None,
        timeout: float | None = None,
    ) -> R:
        """Send ``request`` to ``path`` (``/etcdserverpb.Cluster/MemberList``) and return the reply.

        ``endpoint`` is required for PINNED calls and must not be given otherwise.
        """
        if self._closed:
            raise RuntimeError("the client is closed")
        if (endpoint is None) == (retry is Retry.PINNED):
            raise ValueError("an endpoint is given exactly for PINNED calls")
        budget = self.timeout if timeout is None else timeout
        if budget <= 0:
            raise ValueError("timeout must be positive")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        state = _Attempts()
        if endpoint is not None:
            target = parse_endpoint(endpoint)
            return await self._attempt(target, path, request, reply_type, deadline, state)
        rounds = 0
        while True:
            last = await self._round(path, request, reply_type, retry, deadline, state)
            if not isinstance(last, ClientError):
                return last
            delay = min(BACKOFF_S * 2**rounds, MAX_BACKOFF_S)
            if retry is not Retry.READ or loop.time() + delay >= deadline:
                raise last
            rounds += 1
            await asyncio.sleep(delay)

    async def _round(
        self,
        path: str,
        request: betterproto.Message,
        reply_type: type[R],
        retry: Retry,
        deadline: float,
        state: _Attempts,
    ) -> R | ClientError:
        """One pass over the endpoints from the pinned one: the reply, or the error to give up
        with (or to retry after, for READ)."""
        count = len(self._endpoints)
        state.unreachable = []
        last: ClientError | None = None
        for step in range(count):
            index = (self._pinned + step) % count
            try:
                reply = await self._attempt(
                    self._endpoints[index], path, request, reply_type, deadline, state
                )
            except Timeout:
                raise
            except ClientError as err:
                if not _may_try_next(err, retry):
                    raise
                last = err
                continue
            self._pinned = index
            return reply
        assert last is not None
        if state.unreachable and len(state.unreachable) == count:
            return Unavailable(
                None,
                "no endpoint could be reached: " + "; ".join(state.unreachable),
                definitely_failed=not state.sent,
            )
        return last

    async def _attempt(
        self,
        endpoint: Endpoint,
        path: str,
        request: betterproto.Message,
        reply_type: type[R],
        deadline: float,
        state: _Attempts,
    ) -> R:
        """One request to one endpoint; every failure comes out as a ClientError."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise self._timeout(endpoint, state)
        channel = self._channel(endpoint)
        try:
            async with channel.request(
                path, Cardinality.UNARY_UNARY, type(request), reply_type, timeout=remaining
            ) as stream:
                try:
                    await stream.send_request()
                except TRANSPORT_ERRORS as exc:
                    raise _NotSent(_describe(exc)) from exc
                state.sent = True
                await stream.send_message(request, end=True)
                reply = await stream.recv_message()
        except GRPCError as err:
            raise from_status(err.status, err.message, endpoint.text) from err
        except TimeoutError as err:
            raise self._timeout(endpoint, state) from err
        except _NotSent as err:
            if state.unreachable is not None:
                state.unreachable.append(f"{endpoint.text}: {err}")
            raise Unavailable(
                None, f"{endpoint.text}: {err}", endpoint=endpoint.text, definitely_failed=True
            ) from err
        except TRANSPORT_ERRORS as err:
            if refused_stream(err):
                state.sent = False  # the server refused it unprocessed (draining)
                raise Unavailable(
                    None,
                    f"{endpoint.text}: {_describe(err)}",
                    endpoint=endpoint.text,
                    definitely_failed=True,
                ) from err
            raise Unavailable(
                None,
                f"{endpoint.text}: {_describe(err)}",
                endpoint=endpoint.text,
                definitely_failed=False,
            ) from err
        if reply is None:
            raise Unavailable(
                None, f"{endpoint.text}: no reply", endpoint=endpoint.text, definitely_failed=False
            )
        return reply

    @staticmethod
    def _timeout(endpoint: Endpoint, state: _Attempts) -> Timeout:
        """The caller's deadline passed; grpc-go's own text, which etcdctl prints."""
        return Timeout(
            Status.DEADLINE_EXCEEDED,
            "context deadline exceeded",
            endpoint=endpoint.text,
            definitely_failed=not state.sent,
        )

    def _channel(self, endpoint: Endpoint) -> Channel:
        channel = self._channels.get(endpoint.text)
        if channel is None:
            if self._factory is not None:
                channel = self._factory(endpoint.text)
            else:
                channel = Channel(endpoint.host, endpoint.port)
            self._channels[endpoint.text] = channel
        return channel
