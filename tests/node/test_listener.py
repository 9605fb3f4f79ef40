"""One client port for gRPC and the JSON gateway (spec §9.1), on a real loopback socket (layer f).

A tiny grpclib server and a gateway share fake services; a grpclib client, raw HTTP/1.1 over
asyncio streams, ``http.client`` and, in the slow tests, real ``curl`` and ``etcdctl`` all talk to
the same port. Gateway answers are compared with transcripts 03 and 15, except where spec §12.2
says raftnode answers differently (FAILED_PRECONDITION is 400, not 412; /version is 3.5.0). Waits
are bounded; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import grpclib.server
import h11
import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from node.domain_errors import (
    InvalidPeerURLs,
    LearnerNotReady,
    MemberNotFound,
    MemberNotLearner,
    PeerURLExists,
    TooManyLearners,
)
from node.errors import ERRORS, to_grpc_error
from node.gateway import Gateway
from node.listener import HTTP2_PREFACE, SNIFF_TIMEOUT, ClientPort, serve_client_port
from node.services import etcd_services
from proto import etcdserverpb as pb
from tests.node.gateway_wire import (
    INFRA1,
    T03_MEMBER_LIST,
    T03_STATUS,
    Blocker,
    FakeCluster,
    FakeMaintenance,
    Response,
    Script,
    read_response,
    request_bytes,
)

BOUND = 10.0  # seconds: a safety net for every wait on the network
#: How a call cut off by the server ends on the client side (a reset or a close).
ENDED = (StreamTerminatedError, GRPCError, ConnectionError, h11.RemoteProtocolError)


@dataclass
class Served:
    port: ClientPort
    grpc_server: grpclib.server.Server
    gateway: Gateway
    script: Script

    @property
    def number(self) -> int:
        return self.port.port


@asynccontextmanager
async def client_port(
    script: Script | None = None, *, sniff_timeout: float = SNIFF_TIMEOUT
) -> AsyncIterator[Served]:
    script = script if script is not None else Script()
    cluster, maintenance = FakeCluster(script), FakeMaintenance(script)
    grpc_server = grpclib.server.Server(etcd_services(cluster=cluster, maintenance=maintenance))
    gateway = Gateway(
        cluster=cluster, maintenance=maintenance, has_leader=lambda: True, request_timeout=BOUND
    )
    sock = socket.create_server(("127.0.0.1", 0))
    port = ClientPort(sock, grpc_server, gateway, sniff_timeout=sniff_timeout)
    await port.start()
    try:
        yield Served(port, grpc_server, gateway, script)
    finally:
        port.close()
        await asyncio.wait_for(port.wait_closed(), BOUND)


class HttpClient:
    """HTTP/1.1 over one asyncio stream, parsed with h11 (keep-alive across requests)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.client = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        self.writer.write(request_bytes(self.client, method, target, body, headers))
        async with asyncio.timeout(BOUND):
            return await read_response(self.client, self._more, method=method)

    async def _more(self) -> bytes:
        return await self.reader.read(65536)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def http_call(port: int, method: str, target: str, body: bytes = b"") -> Response:
    client = await HttpClient.connect(port)
    try:
        return await client.request(method, target, body)
    finally:
        await client.close()


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(BOUND):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


# ---- gRPC and HTTP/1.1 on one port --------------------------------------------------------------


@pytest.mark.asyncio
async def test_grpc_and_the_gateway_share_the_port() -> None:
    async with client_port() as served:
        channel = Channel("127.0.0.1", served.number)
        try:
            listed = await pb.ClusterStub(channel).member_list(pb.MemberListRequest())
            status = await pb.MaintenanceStub(channel).status(pb.StatusRequest())
        finally:
            channel.close()
        gateway_list = await http_call(served.number, "POST", "/v3/cluster/member/list")
        gateway_status = await http_call(served.number, "POST", "/v3/maintenance/status", b"{}")
    assert listed.header.member_id == INFRA1
    assert len(listed.members) == 3
    assert status.raft_index == 11
    assert (gateway_list.status, gateway_list.body) == (200, T03_MEMBER_LIST)
    assert (gateway_status.status, gateway_status.body) == (200, T03_STATUS)
    assert [name for name, _ in served.script.calls] == [
        "member_list",
        "status",
        "member_list",
        "status",
    ]


def _http_client_session(port: int) -> list[tuple[int, str | None, bytes]]:
    """Python's own HTTP client, keep-alive across three requests (run in a thread)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
    answers = []
    try:
        for method, target, body in (
            ("POST", "/v3/cluster/member/list", b"{}"),
            ("GET", "/version", None),
            ("GET", "/health", None),
        ):
            connection.request(method, target, body=body)
            reply = connection.getresponse()
            answers.append((reply.status, reply.getheader("Content-Type"), reply.read()))
    finally:
        connection.close()
    return answers


@pytest.mark.asyncio
async def test_pythons_http_client_keeps_its_connection() -> None:
    async with client_port() as served:
        answers = await asyncio.to_thread(_http_client_session, served.number)
    assert answers == [
        (200, "application/json", T03_MEMBER_LIST),
        (200, "application/json", b'{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}'),
        (200, "text/plain; charset=utf-8", b'{"health":"true"}'),
    ]


@pytest.mark.asyncio
async def test_keep_alive_beside_grpc_traffic() -> None:
    async with client_port() as served:
        client = await HttpClient.connect(served.number)
        channel = Channel("127.0.0.1", served.number)
        try:
            first = await client.request("POST", "/v3/cluster/member/list")
            grpc_reply = await pb.ClusterStub(channel).member_list(pb.MemberListRequest())
            second = await client.request("POST", "/v3beta/cluster/member/list", b"{}")
        finally:
            channel.close()
            await client.close()
    assert first.body == second.body == T03_MEMBER_LIST
    assert len(grpc_reply.members) == 3


# ---- Transcripts 03 and 15 over the socket ------------------------------------------------------


@pytest.mark.asyncio
async def test_transcript_03_over_the_socket() -> None:
    async with client_port() as served:
        n = served.number
        listed = await http_call(n, "POST", "/v3/cluster/member/list")
        listed_empty_object = await http_call(n, "POST", "/v3/cluster/member/list", b"{}")
        got = await http_call(n, "GET", "/v3/cluster/member/list")
        beta = await http_call(n, "POST", "/v3beta/cluster/member/list", b"{}")
        alpha = await http_call(n, "POST", "/v3alpha/cluster/member/list", b"{}")
        status = await http_call(n, "POST", "/v3/maintenance/status", b"{}")
        health = await http_call(n, "GET", "/health")
        version = await http_call(n, "GET", "/version")
    for ok in (listed, listed_empty_object, beta):
        assert (ok.status, ok.body) == (200, T03_MEMBER_LIST)
        assert ok.header_names == [
            "access-control-allow-headers",
            "access-control-allow-methods",
            "access-control-allow-origin",
            "content-type",
            "grpc-metadata-content-type",
            "date",
            "content-length",
        ]
        assert ok.header("content-length") == "479"
    assert (got.status, got.body) == (405, b"Method Not Allowed\n")
    assert got.header("content-type") == "text/plain; charset=utf-8"
    assert got.header("x-content-type-options") == "nosniff"
    assert (alpha.status, alpha.body) == (404, b"404 page not found\n")
    assert (status.status, status.body) == (200, T03_STATUS)
    assert (health.status, health.body) == (200, b'{"health":"true"}')
    assert health.header("content-type") == "text/plain; charset=utf-8"
    # §12.2: raftnode reports 3.5.0 where Debian's etcd says 3.4.23 / 3.4.0.
    assert (version.status, version.body) == (200, b'{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}')
    assert version.header("content-type") == "application/json"


# (RPC, body, error raised by the handler, HTTP status, gRPC code). Debian's gateway says 412 where
# raftnode (and upstream etcd) say 400 (spec §12.2).
TRANSCRIPT_15 = [
    ("member/promote", b'{"ID":"10370959452141089457"}', LearnerNotReady(), 400, 9),
    ("member/promote", b'{"ID":10370959452141089457}', LearnerNotReady(), 400, 9),
    ("member/promote", b'{"ID":"10501334649042878790"}', MemberNotLearner(), 400, 9),
    ("member/promote", b'{"ID":"4660"}', MemberNotFound(), 404, 5),
    (
        "member/update",
        b'{"ID":"10370959452141089457","peerURLs":["http://127.0.0.1:2380"]}',
        PeerURLExists(),
        400,
        9,
    ),
    (
        "member/update",
        b'{"ID":"4660","peerURLs":["http://127.0.0.1:62380"]}',
        MemberNotFound(),
        404,
        5,
    ),
    ("member/remove", b'{"ID":"4660"}', MemberNotFound(), 404, 5),
    ("member/remove", b"{}", MemberNotFound(), 404, 5),
    (
        "member/add",
        b'{"peerURLs":["http://127.0.0.1:52380"],"isLearner":true}',
        TooManyLearners(),
        400,
        9,
    ),
    ("member/add", b'{"peerURLs":["http://127.0.0.1:2380"]}', PeerURLExists(), 400, 9),
    ("member/add", b'{"peerURLs":["foo"]}', InvalidPeerURLs(), 400, 3),
    ("member/add", b"{}", InvalidPeerURLs(), 400, 3),
    ("member/add", b'{"peer_urls":["http://127.0.0.1:52380"]}', InvalidPeerURLs(), 400, 3),
]


@pytest.mark.asyncio
async def test_transcript_15_errors_over_the_socket() -> None:
    async with client_port() as served:
        for rpc, body, error, status, code in TRANSCRIPT_15:
            method = "member_" + rpc.split("/")[1]
            served.script.answers = {method: to_grpc_error(error)}
            reply = await http_call(served.number, "POST", "/v3/cluster/" + rpc, body)
            message = ERRORS[type(error)].message
            assert reply.status == status, (rpc, body)
            assert reply.header("content-type") == "application/json"
            assert json.loads(reply.body) == {"error": message, "code": code, "message": message}


@pytest.mark.asyncio
async def test_transcript_15_decoding_errors_and_routes() -> None:
    async with client_port() as served:
        n = served.number
        refused = [
            await http_call(
                n, "POST", "/v3/cluster/member/add", b'{"peerURLs":"http://127.0.0.1:52380"}'
            ),
            await http_call(n, "POST", "/v3/cluster/member/add", b"not json"),
            await http_call(n, "POST", "/v3/cluster/member/remove", b'{"ID":"0x1234"}'),
            await http_call(n, "POST", "/v3/cluster/member/remove", b'{"ID":-1}'),
        ]
        linearizable = await http_call(
            n, "POST", "/v3/cluster/member/list", b'{"linearizable":true}'
        )
        nope = await http_call(n, "POST", "/v3/cluster/member/nope", b"{}")
    for reply in refused:
        assert reply.status == 400
        assert json.loads(reply.body)["code"] == 3
    assert served.script.calls[-1][1].linearizable is True
    assert [name for name, _ in served.script.calls] == ["member_list"]
    assert (linearizable.status, linearizable.body) == (200, T03_MEMBER_LIST)
    assert (nope.status, nope.body) == (404, b"Not Found\n")


# ---- Garbage, silence, broken connections -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("garbage", "head"),
    [
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", b"HTTP/1.1 400 Bad Request\r\n"),
        (b"\xde\xad\xbe\xef" * 64, b"HTTP/1.1 400 Bad Request\r\n"),
        (b"hello\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n"),
        # Diverges from the preface after its request line: not gRPC, and HTTP/2.0 is not 1.x.
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"HTTP/1.1 505 HTTP Version Not Supported\r\n"),
    ],
)
async def test_garbage_is_answered_and_closed(garbage: bytes, head: bytes) -> None:
    async with client_port() as served:
        answer = await raw_exchange(served.number, garbage)
        # The port still serves afterwards.
        after = await http_call(served.number, "POST", "/v3/cluster/member/list")
    assert answer.startswith(head)
    assert b"Connection: close\r\n" in answer
    assert after.status == 200


@pytest.mark.asyncio
async def test_a_client_streaming_an_oversized_body_reads_the_refusal() -> None:
    """No Expect: 100-continue, 2 MiB sent regardless: the lingering close lets the 400 arrive."""
    async with client_port() as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
        size = 2 * 1024 * 1024
        head = b"POST /v3/cluster/member/add HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        try:
            writer.write(head % size + b"x" * size)
            async with asyncio.timeout(BOUND):
                answer = await reader.read()  # until the server's half-close
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    message = b"etcdserver: request is too large"
    assert answer.endswith(b'{"error":"%s","code":3,"message":"%s"}' % (message, message))
    assert served.script.calls == []


@pytest.mark.asyncio
async def test_a_silent_connection_is_closed() -> None:
    async with client_port(sniff_timeout=0.05) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
        try:
            async with asyncio.timeout(BOUND):
                assert await reader.read() == b""
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2", HTTP2_PREFACE[:-1]])
async def test_connections_that_end_before_deciding_do_no_harm(sent: bytes) -> None:
    async with client_port() as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
        writer.write(sent)
        writer.write_eof()
        async with asyncio.timeout(BOUND):
            assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert (await http_call(served.number, "GET", "/health")).status == 200


@pytest.mark.asyncio
async def test_a_preface_sent_a_byte_at_a_time_reaches_grpc() -> None:
    async with client_port() as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
        try:
            for byte in HTTP2_PREFACE:
                writer.write(bytes([byte]))
                await writer.drain()
            async with asyncio.timeout(BOUND):
                frame = await reader.readexactly(9)
        finally:
            writer.close()
            await writer.wait_closed()
    assert frame[3] == 0x4  # grpclib's first frame: SETTINGS


# ---- grpclib's bookkeeping and closing ----------------------------------------------------------


@pytest.mark.asyncio
async def test_grpclib_close_cancels_handed_over_requests_and_closes_the_port() -> None:
    blocker = Blocker(pb.MemberListResponse())
    async with client_port(Script({"member_list": blocker})) as served:
        channel = Channel("127.0.0.1", served.number)
        try:
            stub = pb.ClusterStub(channel)
            call = asyncio.ensure_future(stub.member_list(pb.MemberListRequest()))
            async with asyncio.timeout(BOUND):
                await blocker.started.wait()
            assert len(served.grpc_server._handlers) == 1  # registered as Server.start does
            # The composition root's shutdown so far: close and wait on the grpclib Server. It
            # cancels the handler and stops the listening socket, as grpclib's own start() would.
            served.grpc_server.close()
            await asyncio.wait_for(served.grpc_server.wait_closed(), BOUND)
            assert blocker.cancelled
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", served.number)  # not listening
            # grpclib sends nothing for a cancelled handler and keeps the connection: the client
            # would wait for its deadline. The port's wait_closed closes the connection.
            assert not call.done()
            await asyncio.wait_for(served.port.wait_closed(), BOUND)
            with pytest.raises(ENDED):
                await asyncio.wait_for(call, BOUND)
        finally:
            channel.close()


@pytest.mark.asyncio
async def test_close_lets_a_gateway_request_finish() -> None:
    blocker = Blocker(pb.MemberListResponse(header=pb.ResponseHeader(member_id=INFRA1)))
    async with client_port(Script({"member_list": blocker})) as served:
        client = await HttpClient.connect(served.number)
        idle = await HttpClient.connect(served.number)
        await idle.request("GET", "/health")  # handed over to the gateway, then idle
        reply = asyncio.ensure_future(client.request("POST", "/v3/cluster/member/list"))
        async with asyncio.timeout(BOUND):
            await blocker.started.wait()
        served.port.close()
        async with asyncio.timeout(BOUND):
            assert await idle.reader.read() == b""  # the idle one is closed at once
        blocker.release.set()
        answer = await asyncio.wait_for(reply, BOUND)
        await asyncio.wait_for(served.port.wait_closed(), BOUND)
        await client.close()
        await idle.close()
    assert answer.status == 200
    assert answer.header("connection") == "close"
    assert answer.body == b'{"header":{"member_id":"13803658152347727308"}}'


@pytest.mark.asyncio
async def test_drain_lets_requests_on_both_apis_finish() -> None:
    grpc_blocker = Blocker(pb.MemberListResponse(header=pb.ResponseHeader(member_id=INFRA1)))
    http_blocker = Blocker(pb.StatusResponse(version="3.5.0"))
    script = Script({"member_list": grpc_blocker, "status": http_blocker})
    async with client_port(script) as served:
        channel = Channel("127.0.0.1", served.number)
        client = await HttpClient.connect(served.number)
        try:
            call = asyncio.ensure_future(
                pb.ClusterStub(channel).member_list(pb.MemberListRequest())
            )
            reply = asyncio.ensure_future(client.request("POST", "/v3/maintenance/status"))
            async with asyncio.timeout(BOUND):
                await grpc_blocker.started.wait()
                await http_blocker.started.wait()
            draining = asyncio.ensure_future(served.port.drain(BOUND))
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", served.number)  # not accepting
            assert not draining.done()
            grpc_blocker.release.set()
            http_blocker.release.set()
            listed = await asyncio.wait_for(call, BOUND)
            status = await asyncio.wait_for(reply, BOUND)
            await asyncio.wait_for(draining, BOUND)
            await asyncio.wait_for(served.port.wait_closed(), BOUND)
        finally:
            channel.close()
            await client.close()
    assert listed.header.member_id == INFRA1
    assert (status.status, status.body) == (200, b'{"version":"3.5.0"}')
    assert status.header("connection") == "close"
    assert not grpc_blocker.cancelled and not http_blocker.cancelled


@pytest.mark.asyncio
async def test_a_call_started_during_the_drain_is_refused_unprocessed() -> None:
    blocker = Blocker(pb.MemberListResponse())
    script = Script({"member_list": blocker})
    async with client_port(script) as served:
        channel = Channel("127.0.0.1", served.number)
        try:
            stub = pb.ClusterStub(channel)
            first = asyncio.ensure_future(stub.member_list(pb.MemberListRequest()))
            async with asyncio.timeout(BOUND):
                await blocker.started.wait()
            draining = asyncio.ensure_future(served.port.drain(BOUND))
            with pytest.raises(StreamTerminatedError, match="error_code: 7"):  # REFUSED_STREAM
                await asyncio.wait_for(stub.member_update(pb.MemberUpdateRequest(id=1)), BOUND)
            blocker.release.set()
            await asyncio.wait_for(first, BOUND)  # the call in progress still finishes
            await asyncio.wait_for(draining, BOUND)
        finally:
            channel.close()
    assert [name for name, _ in script.calls] == ["member_list"]


@pytest.mark.asyncio
async def test_drain_cancels_what_outlives_the_grace() -> None:
    grpc_blocker = Blocker(pb.MemberListResponse())
    http_blocker = Blocker(pb.StatusResponse())
    script = Script({"member_list": grpc_blocker, "status": http_blocker})
    async with client_port(script) as served:
        channel = Channel("127.0.0.1", served.number)
        client = await HttpClient.connect(served.number)
        try:
            call = asyncio.ensure_future(
                pb.ClusterStub(channel).member_list(pb.MemberListRequest())
            )
            reply = asyncio.ensure_future(client.request("POST", "/v3/maintenance/status"))
            async with asyncio.timeout(BOUND):
                await grpc_blocker.started.wait()
                await http_blocker.started.wait()
            await asyncio.wait_for(served.port.drain(0), BOUND)
            await asyncio.wait_for(served.port.wait_closed(), BOUND)
            for pending in (call, reply):
                with pytest.raises(ENDED):
                    await asyncio.wait_for(pending, BOUND)
        finally:
            channel.close()
            await client.close()
    assert grpc_blocker.cancelled and http_blocker.cancelled


@pytest.mark.asyncio
async def test_wait_closed_closes_the_grpc_connections_grpclib_leaves_open() -> None:
    async with client_port() as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.number)
        writer.write(HTTP2_PREFACE + bytes.fromhex("000000040000000000"))  # preface + SETTINGS
        async with asyncio.timeout(BOUND):
            await reader.readexactly(9)
        served.port.close()
        await asyncio.wait_for(served.port.wait_closed(), BOUND)
        async with asyncio.timeout(BOUND):
            while await reader.read(65536):
                pass  # what grpclib had sent, then EOF
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_serve_client_port_and_refusals() -> None:
    cluster = FakeCluster(Script())
    gateway = Gateway(
        cluster=cluster,
        maintenance=pb.MaintenanceBase(),
        has_leader=lambda: True,
        request_timeout=1,
    )
    grpc_server = grpclib.server.Server(etcd_services(cluster=cluster))
    sock = socket.create_server(("127.0.0.1", 0))
    port = await serve_client_port(sock, grpc_server, gateway)
    try:
        assert port.port == sock.getsockname()[1]
        assert (await http_call(port.port, "POST", "/v3/cluster/member/list")).status == 200
        with pytest.raises(RuntimeError):
            await port.start()
        other = ClientPort(socket.create_server(("127.0.0.1", 0)), grpc_server, gateway)
        with pytest.raises(RuntimeError):
            await other.start()  # that grpclib Server is already serving
        other._sock.close()
    finally:
        port.close()
        await port.wait_closed()
    unstarted = ClientPort(sock, grpclib.server.Server([]), gateway)
    with pytest.raises(RuntimeError):
        unstarted.close()
    with pytest.raises(RuntimeError):
        await unstarted.wait_closed()
    with pytest.raises(RuntimeError):
        ClientPort(sock, cast(Any, SimpleNamespace()), gateway)


# ---- Real clients (slow) ------------------------------------------------------------------------


async def run(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _without_date(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith("Date: "))


@pytest.mark.slow
@pytest.mark.asyncio
async def test_curl_against_the_shared_port() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    script = Script({"member_promote": to_grpc_error(LearnerNotReady())})
    async with client_port(script) as served:
        url = f"http://127.0.0.1:{served.number}"
        listed = await run("curl", "-s", "-i", "-X", "POST", url + "/v3/cluster/member/list")
        got = await run("curl", "-s", "-i", url + "/v3/cluster/member/list")
        promote = await run(
            "curl",
            "-s",
            "-i",
            "-X",
            "POST",
            url + "/v3/cluster/member/promote",
            "-d",
            '{"ID":"10370959452141089457"}',
        )
        keep_alive = await run("curl", "-s", url + "/health", url + "/version")
    cors = (
        "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"
        "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"
        "Access-Control-Allow-Origin: *\r\n"
    )
    # Transcript 03, less the Date line.
    assert _without_date(listed[1]) == (
        "HTTP/1.1 200 OK\r\n" + cors + "Content-Type: application/json\r\n"
        "Grpc-Metadata-Content-Type: application/grpc\r\nContent-Length: 479\r\n\r\n"
        + T03_MEMBER_LIST.decode()
    )
    assert _without_date(got[1]) == (
        "HTTP/1.1 405 Method Not Allowed\r\n" + cors + "Content-Type: text/plain; charset=utf-8\r\n"
        "X-Content-Type-Options: nosniff\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n"
    )
    # Transcript 15 says 412 (Debian's gateway); upstream etcd and raftnode say 400 (§12.2).
    head, _, body = promote[1].partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 Bad Request\r\n")
    message = "etcdserver: can only promote a learner member which is in sync with leader"
    assert json.loads(body) == {"error": message, "message": message, "code": 9}
    assert keep_alive[1] == '{"health":"true"}{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}'


@pytest.mark.slow
@pytest.mark.asyncio
async def test_etcdctl_and_curl_on_one_port() -> None:
    if shutil.which("etcdctl") is None or shutil.which("curl") is None:
        pytest.skip("etcdctl or curl is not installed")
    async with client_port() as served:
        endpoint = f"127.0.0.1:{served.number}"
        code, out, err = await run(
            "etcdctl",
            "--endpoints",
            endpoint,
            "--command-timeout=5s",
            "member",
            "list",
            "-w",
            "json",
        )
        _, curl_out, _ = await run(
            "curl", "-s", "-X", "POST", f"http://{endpoint}/v3/cluster/member/list"
        )
    assert code == 0, err
    document = json.loads(out)
    assert document["header"]["member_id"] == INFRA1  # etcdctl prints uint64 as numbers
    assert len(document["members"]) == 3
    assert curl_out.encode() == T03_MEMBER_LIST
