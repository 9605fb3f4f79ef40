"""One client port for gRPC and the JSON gateway (spec §9.1), as etcd serves them without TLS.

Each accepted connection starts on a `_Sniffer` that buffers its first bytes. If they are the
HTTP/2 client preface (``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``) the connection goes to grpclib;
as soon as they cannot be (the first byte that differs), it goes to the gateway. A connection that
says nothing for `SNIFF_TIMEOUT` is closed. The hand-over creates the protocol the receiver would
have created for the connection, switches the transport to it (``set_protocol``), calls its
``connection_made`` and replays the buffered bytes to its ``data_received``.

grpclib has no API for a connection accepted elsewhere, so `ClientPort` uses the same internals
``grpclib.server.Server.start`` does (grpclib 0.4.9), and checks that they are there:
- ``Server._protocol_factory()`` builds a connection's ``H2Protocol`` **and** registers its
  request ``Handler`` in ``Server._handlers``, the set ``close()`` cancels and ``wait_closed()``
  waits for, so draining covers these connections;
- ``Server._server`` and ``Server._server_closed_fut`` are what ``start()`` sets. `ClientPort`
  sets them to a stand-in for the listening socket (`_PortHandle`) and a future, so the unchanged
  ``close()``/``wait_closed()`` of the grpclib Server work: they close this whole port (the
  listening socket, the gateway) and wait for the gRPC handlers and the gateway's connections.

Lifecycle (P10): `serve_client_port` (or `ClientPort.start`) starts accepting; `close()` stops
accepting, cancels gRPC requests in progress (grpclib's ``close()``) and closes idle gateway
connections; `wait_closed()` waits for the gRPC handlers and the gateway's requests in progress,
then closes what connections are left (grpclib itself never closes one, so a client would wait for
its own deadline). The caller bounds the wait (``asyncio.wait_for``); abandoning it cancels the
gateway's requests too. `drain(grace)` is the graceful `close()` (spec §11, pitfall 3): it lets
the requests in progress on both APIs finish first, for up to ``grace`` seconds; it reads the
in-flight tasks of grpclib's handlers (``Handler._tasks``, 0.4.9). Once draining has begun, a new
gRPC call on a connection already open is refused with REFUSED_STREAM (the handler's public
``accept`` is wrapped per connection), so its client retries it elsewhere instead of seeing the
connection close under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import grpclib.server
from h2.errors import ErrorCodes

from node.gateway import Gateway

__all__ = ["HTTP2_PREFACE", "SNIFF_TIMEOUT", "ClientPort", "serve_client_port"]

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: How long a new connection may stay silent before it is closed. gRPC clients send the preface at
#: once, HTTP clients their request.
SNIFF_TIMEOUT = 10.0

_GRPCLIB_INTERNALS = ("_protocol_factory", "_server", "_server_closed_fut", "_handlers")


class ClientPort:
    """The client port: one listening socket serving grpclib and the gateway."""

    def __init__(
        self,
        sock: socket.socket,
        grpc_server: grpclib.server.Server,
        gateway: Gateway,
        *,
        sniff_timeout: float = SNIFF_TIMEOUT,
    ) -> None:
        missing = [name for name in _GRPCLIB_INTERNALS if not hasattr(grpc_server, name)]
        if missing:
            raise RuntimeError(f"grpclib.server.Server lacks {missing}: not the 0.4.9 internals")
        self._sock = sock
        self._grpc = grpc_server
        self.gateway = gateway
        self._sniff_timeout = sniff_timeout
        self._server: asyncio.Server | None = None
        self._accepting = False
        self._connections: set[asyncio.Transport] = set()

    @property
    def port(self) -> int:
        """The bound TCP port (spec §11, pitfall 11)."""
        return int(self._sock.getsockname()[1])

    async def start(self) -> None:
        if self._server is not None or self._grpc._server is not None:
            raise RuntimeError("the client port or its grpclib Server is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_sniffer, sock=self._sock)
        self._accepting = True
        # What grpclib's Server.start would have set (see the module docstring).
        self._grpc._server = cast(asyncio.AbstractServer, _PortHandle(self))
        self._grpc._server_closed_fut = loop.create_future()

    async def drain(self, grace: float) -> None:
        """Stop gracefully (spec §11, pitfall 3): stop accepting, give the requests in progress on
        both APIs up to ``grace`` seconds to finish, then `close()`, cancelling what is left.
        Call `wait_closed()` after it."""
        if self._server is None:
            raise RuntimeError("the client port is not started")
        self._stop_accepting()
        gateway = asyncio.ensure_future(self.gateway.wait_closed())
        grpc_requests = [
            task
            for handler in self._grpc._handlers
            for task in getattr(handler, "_tasks", {}).values()
            if not task.done()
        ]
        try:
            await asyncio.wait([gateway, *grpc_requests], timeout=grace)
        finally:
            gateway.cancel()  # still waiting: the gateway aborts what is left
            self.close()

    def close(self) -> None:
        """Stop accepting; cancel gRPC requests in progress; close idle gateway connections."""
        if self._server is None:
            raise RuntimeError("the client port is not started")
        self._grpc.close()  # calls _PortHandle.close, so _stop_accepting, as well

    async def wait_closed(self) -> None:
        """Wait for the gRPC handlers and the gateway's requests, then close what is left."""
        if self._server is None:
            raise RuntimeError("the client port is not started")
        try:
            await self._grpc.wait_closed()  # awaits _PortHandle.wait_closed: the gateway too
        finally:
            for transport in self._connections:
                transport.close()
            self._connections.clear()
        await self._server.wait_closed()

    async def __aenter__(self) -> ClientPort:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # ---- connections

    def _new_sniffer(self) -> asyncio.Protocol:
        return _Sniffer(self)

    def _accepted(self, transport: asyncio.Transport) -> bool:
        """Track a new connection; False if the port is closing (the connection is closed)."""
        if not self._accepting:
            transport.close()
            return False
        self._connections = {t for t in self._connections if not t.is_closing()}
        self._connections.add(transport)
        return True

    def _grpc_protocol(self) -> asyncio.Protocol:
        """grpclib's protocol for a handed-over connection, whose new streams are refused with
        REFUSED_STREAM once the port stops accepting: the server has not touched them, so a
        client may safely retry them elsewhere (gRPC clients do so transparently)."""
        protocol = self._grpc._protocol_factory()
        handler = protocol.handler
        accept = handler.accept

        def accept_unless_draining(
            stream: Any, headers: Any, release_stream: Callable[[], None]
        ) -> None:
            if self._accepting:
                accept(stream, headers, release_stream)
                return
            stream.reset_nowait(ErrorCodes.REFUSED_STREAM)
            release_stream()

        handler.accept = accept_unless_draining  # type: ignore[method-assign]
        return protocol

    def _stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        if self._server is not None:
            self._server.close()
        self.gateway.close()
        for transport in self._connections:
            protocol = transport.get_protocol()
            if isinstance(protocol, _Sniffer):  # not yet handed over
                transport.close()


class _PortHandle:
    """Stands in, inside grpclib's Server, for the asyncio server ``start()`` would have made."""

    def __init__(self, port: ClientPort) -> None:
        self._port = port

    def close(self) -> None:
        self._port._stop_accepting()

    async def wait_closed(self) -> None:
        await self._port.gateway.wait_closed()


class _Sniffer(asyncio.Protocol):
    """A new connection's first protocol: it decides between gRPC and HTTP/1.1."""

    def __init__(self, port: ClientPort) -> None:
        self._port = port
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        _disable_nagle(self._transport)
        if self._port._accepted(self._transport):
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._port._sniff_timeout, self._transport.close)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._buffer.startswith(HTTP2_PREFACE):
            self._hand_over(self._port._grpc_protocol)
        elif not HTTP2_PREFACE.startswith(self._buffer):
            self._hand_over(self._port.gateway.protocol_factory)
        # else: a prefix of the preface so far; wait for more

    def eof_received(self) -> bool:
        return False  # closed before saying what it is: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _hand_over(self, factory: Callable[[], asyncio.Protocol]) -> None:
        assert self._transport is not None
        if self._timer is not None:
            self._timer.cancel()
        transport = self._transport
        if transport.is_closing():
            return
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if not transport.is_closing():
            protocol.data_received(bytes(self._buffer))
        self._buffer.clear()


async def serve_client_port(
    sock: socket.socket, grpc_server: grpclib.server.Server, gateway: Gateway
) -> ClientPort:
    """Start serving gRPC (``grpc_server``, not started) and ``gateway`` on the listening ``sock``.

    ``grpc_server.close()``/``wait_closed()`` then also close this port; `ClientPort.close` and
    `ClientPort.wait_closed` do the same and also close the connections grpclib leaves open.
    """
    port = ClientPort(sock, grpc_server, gateway)
    await port.start()
    return port


def _disable_nagle(transport: asyncio.BaseTransport) -> None:
    """asyncio sets TCP_NODELAY only on sockets it created as IPPROTO_TCP; a socket bound by
    the caller (protocol 0) keeps Nagle on, and every reply then waits ~40 ms for the client's
    delayed ACK. Measured by bench/cluster.py: 44 ms -> 2 ms per RPC."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
