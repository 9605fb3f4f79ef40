"""HTTP/1.1 over h11 for the gateway: framing, keep-alive, limits, lifecycle. No etcd knowledge.

`Http11Server` turns connections into calls of one ``respond(method, target, body) -> Reply``
coroutine and owns the connections (P10). Each connection (`Http11Connection`, an asyncio Protocol
around an ``h11.Connection``) runs one task that reads a request, answers it and, with keep-alive,
goes on to the next; requests on one connection are answered in order, one at a time.

Limits, so that no client can crash the node or hold it:
- the body is capped (`Limits.max_body`): a larger declared length is refused before it is read,
  a larger chunked body as soon as the cap is passed, with `Limits.too_large` and a close;
- the request line and headers are capped by h11 (431), and bytes that cannot start a request line
  (a TLS hello, binary noise) get a 400 at once, without waiting for a line end;
- h11's `RemoteProtocolError` gets Go's plain answer (``400 Bad Request``) and a close;
- a close after a request that was not read to the end is a lingering one (`Limits.linger`);
- the client has `Limits.idle_timeout` to send each complete request (keep-alive idle included):
  then the connection closes without a word, as Go's timeouts do;
- the socket is read only while a request is awaited (a pipelining client is paused after a
  little buffering), and nothing is read before the last reply is flushed below the high-water mark.

Closing: `close()` closes idle connections at once and lets a request being handled finish (its
reply says ``Connection: close``); `wait_closed()` waits for every connection; `abort()` cancels
them all. A connection that goes away cancels the request it was waiting on, as gRPC does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

import h11

__all__ = [
    "CORS_HEADERS",
    "JSON",
    "TEXT",
    "Http11Connection",
    "Http11Server",
    "Limits",
    "Reply",
    "Responder",
    "plausible_request_start",
]

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
#: etcd sends these on every gateway answer (spec §9.3: optional; transcript 03 shows them).
CORS_HEADERS = (
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer, before framing (``Date``, ``Content-Length`` are added when sent)."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    """Close the connection after this reply."""

    @staticmethod
    def text(status: int, body: str, *headers: tuple[str, str], close: bool = False) -> Reply:
        """Go's ``http.Error``: a text body with ``nosniff``."""
        nosniff = ("X-Content-Type-Options", "nosniff")
        return Reply(status, body.encode(), TEXT, (nosniff, *headers), close)


Responder = Callable[[str, str, bytes], Awaitable[Reply]]
"""``respond(method, target, body)``: the answer to one complete request; it must not raise."""


@dataclass(frozen=True, slots=True)
class Limits:
    too_large: Reply
    """The answer to a body over `max_body` (the connection then closes)."""
    max_body: int
    max_head: int
    """Request line plus headers (h11's ``max_incomplete_event_size``)."""
    idle_timeout: float
    linger: float = 0.5
    """After answering a request it did not read to the end (too large, unparsable), the server
    half-closes and discards what still comes for up to this long, so that closing does not reset
    the connection before the client has read the answer (Go's ``rstAvoidanceDelay``)."""


class Http11Server:
    """The HTTP/1.1 connections of one responder (P10: close, wait_closed, abort)."""

    def __init__(self, respond: Responder, limits: Limits) -> None:
        self.respond = respond
        self.limits = limits
        self.closing = False
        self._connections: set[Http11Connection] = set()

    def protocol_factory(self) -> asyncio.Protocol:
        """A protocol for one new connection (``loop.create_server`` or a hand-over)."""
        return Http11Connection(self)

    def close(self) -> None:
        """Idle connections close now; a request being handled finishes first."""
        self.closing = True
        for connection in list(self._connections):
            connection.close_if_idle()

    async def wait_closed(self) -> None:
        """Wait for every connection to finish; if this wait is cancelled, `abort()`."""
        try:
            while pending := [c.task for c in self._connections if not c.task.done()]:
                await asyncio.wait(pending)
        except asyncio.CancelledError:
            self.abort()
            raise

    def abort(self) -> None:
        """Close every connection now, cancelling requests in progress."""
        self.closing = True
        for connection in list(self._connections):
            connection.stop()

    def _track(self, connection: Http11Connection) -> None:
        self._connections.add(connection)
        connection.task.add_done_callback(lambda _: self._connections.discard(connection))


# ---- Recognising garbage early ------------------------------------------------------------------

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MAX_METHOD = 32


def plausible_request_start(data: bytes) -> bool:
    """Whether ``data`` can begin an HTTP request line (a method token, then a space).

    h11 judges a request line only once it has all of it; this refuses binary garbage at once
    instead of waiting for a line end that may never come.
    """
    head = data[: _MAX_METHOD + 1]
    space = head.find(b" ")
    method = head if space < 0 else head[:space]
    if space == 0 or (space < 0 and len(method) > _MAX_METHOD):
        return False
    return all(byte in _TCHAR for byte in method)


# ---- One connection -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str
    body: bytes


class _TooLarge(Exception):
    pass


class Http11Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: its task reads a request, answers it, and goes on (keep-alive)."""

    task: asyncio.Task[None]

    def __init__(self, server: Http11Server) -> None:
        self._server = server
        self._limits = server.limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_head)
        self._transport: asyncio.Transport | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading = False  # the task waits for the client's bytes
        self._handling = False  # a request is being answered: let it finish on close
        self._unread = 0  # bytes that came while not reading
        self._paused = False
        self._eof = False
        self._discarding = False

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.task = asyncio.get_running_loop().create_task(self._serve(), name="http11-connection")
        self._server._track(self)
        if self._server.closing:
            self.stop()

    def data_received(self, data: bytes) -> None:
        if self._eof or self._discarding:
            return
        self._h11.receive_data(data)
        self._readable.set()
        if not self._reading:
            self._unread += len(data)
            if self._unread > self._limits.max_head and not self._paused:
                self._paused = True
                self._transport_().pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        if not self._discarding:
            self._h11.receive_data(b"")
        self._readable.set()
        return True  # keep the transport: a half-closed client still gets its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        self.task.cancel()  # nobody to answer: a request in progress is cancelled

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ---- lifecycle

    def close_if_idle(self) -> None:
        if not self._handling:
            self.stop()

    def stop(self) -> None:
        """Close now. The task may not have run yet, so the transport is closed here too."""
        self._transport_().close()
        self.task.cancel()

    def _transport_(self) -> asyncio.Transport:
        assert self._transport is not None
        return self._transport

    # ---- the exchange loop

    async def _serve(self) -> None:
        try:
            while await self._exchange():
                pass
        except Exception:
            log.exception("HTTP/1.1 connection failed")  # a bug here must not stop the node
        finally:
            self._transport_().close()

    async def _exchange(self) -> bool:
        """Read one request and answer it; whether the connection goes on."""
        try:
            async with asyncio.timeout(self._limits.idle_timeout):
                await self._writable.wait()
                request = await self._read_request()
        except h11.RemoteProtocolError as exc:
            self._send_protocol_error(exc.error_status_hint)
            await self._linger()
            return False
        except _TooLarge:
            self._send(self._limits.too_large, head=False)
            await self._linger()
            return False
        except TimeoutError:
            return False
        if request is None:
            return False
        self._handling = True
        try:
            reply = await self._server.respond(request.method, request.target, request.body)
            return self._send(reply, head=request.method == "HEAD")
        finally:
            self._handling = False

    async def _read_request(self) -> _Request | None:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
        if not event.http_version.startswith(b"1."):  # h11 takes any x.y; Go answers 505
            raise h11.RemoteProtocolError("unsupported HTTP version", 505)
        declared = _content_length(event.headers)
        if declared is not None and declared > self._limits.max_body:
            raise _TooLarge
        if self._h11.they_are_waiting_for_100_continue:
            self._write(self._h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while True:
            part = await self._next_event()
            if isinstance(part, h11.EndOfMessage):
                break
            if not isinstance(part, h11.Data):
                raise h11.RemoteProtocolError(f"unexpected {type(part).__name__}")
            body += part.data
            if len(body) > self._limits.max_body:
                raise _TooLarge
        return _Request(event.method.decode("ascii"), event.target.decode("ascii"), bytes(body))

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return cast(h11.Event, event)
            if self._h11.their_state is h11.IDLE:
                if not plausible_request_start(self._h11.trailing_data[0]):
                    raise h11.RemoteProtocolError("not an HTTP/1.x request")
            await self._wait_for_data()

    async def _linger(self) -> None:
        """Half-close, then discard input until the client closes too, or `Limits.linger`."""
        transport = self._transport_()
        if transport.is_closing() or not transport.can_write_eof():
            return
        self._discarding = True
        transport.write_eof()
        if self._paused:
            self._paused = False
            transport.resume_reading()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._limits.linger):
                while not self._eof:
                    self._readable.clear()
                    await self._readable.wait()

    async def _wait_for_data(self) -> None:
        self._readable.clear()
        self._reading, self._unread = True, 0
        if self._paused:
            self._paused = False
            self._transport_().resume_reading()
        try:
            await self._readable.wait()
        finally:
            self._reading = False

    # ---- answering

    def _send(self, reply: Reply, *, head: bool) -> bool:
        """Write ``reply``; whether the connection can carry another request."""
        close = reply.close or self._server.closing or self._h11.their_state is not h11.DONE
        headers = [*CORS_HEADERS]
        if reply.content_type is not None:
            headers.append(("Content-Type", reply.content_type))
        headers += [*reply.headers, ("Date", formatdate(usegmt=True))]
        headers.append(("Content-Length", str(len(reply.body))))
        if close:
            headers.append(("Connection", "close"))
        reason = HTTPStatus(reply.status).phrase.encode()
        try:
            out = [
                self._h11.send(
                    h11.Response(status_code=reply.status, headers=headers, reason=reason)
                )
            ]
            if reply.body and not head:  # a reply to HEAD has no body, only its length
                out.append(self._h11.send(h11.Data(data=reply.body)))
            out.append(self._h11.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            log.exception("a reply could not be framed")
            return False
        self._write(b"".join(chunk for chunk in out if chunk))
        if close or self._h11.our_state is not h11.DONE:
            return False
        self._h11.start_next_cycle()
        return True

    def _send_protocol_error(self, status: int) -> None:
        """Go's answer to a request it cannot parse (``400 Bad Request`` as text), then close."""
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            phrase = HTTPStatus(status).phrase
            self._send(Reply(status, f"{status} {phrase}".encode(), TEXT, close=True), head=False)

    def _write(self, data: bytes | None) -> None:
        transport = self._transport_()
        if data and not transport.is_closing():
            transport.write(data)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is one decimal number
    return None
