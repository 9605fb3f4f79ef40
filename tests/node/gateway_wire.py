"""Test helpers for the gateway and the client port: fake services, an in-memory HTTP/1.1 wire,
an h11 response reader, and the reference bodies of transcripts 03 and 15.

`Wire` drives a gateway connection with no socket (layer e): a `FakeTransport` records what the
server writes, and an h11 client connection parses it. `read_response` parses the same from an
asyncio stream for the real-socket tests (layer f).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import betterproto
import h11

from node.gateway import Gateway
from proto import etcdserverpb as pb

# ---- Transcript 03 / 15 (Debian etcd 3.4.23): the three founding members ------------------------

CLUSTER_ID = 403640855964645870  # 59a05384c9b79ee
INFRA1 = 13803658152347727308  # bf9071f4639c75cc
INFRA2 = 10501334649042878790  # 91bc3c398fb3c146
INFRA3 = 18249187646912138824  # fd422379fda50e48
LEARNER = 10370959452141089457  # infra4, added as a learner in transcript 15


def founding_members() -> list[pb.Member]:
    return [
        pb.Member(
            id=INFRA2,
            name="infra2",
            peer_ur_ls=["http://127.0.0.1:22380"],
            client_ur_ls=["http://127.0.0.1:22379"],
        ),
        pb.Member(
            id=INFRA1,
            name="infra1",
            peer_ur_ls=["http://127.0.0.1:2380"],
            client_ur_ls=["http://127.0.0.1:2379"],
        ),
        pb.Member(
            id=INFRA3,
            name="infra3",
            peer_ur_ls=["http://127.0.0.1:32380"],
            client_ur_ls=["http://127.0.0.1:32379"],
        ),
    ]


def learner() -> pb.Member:
    return pb.Member(id=LEARNER, peer_ur_ls=["http://127.0.0.1:42380"], is_learner=True)


def header(revision: int = 0) -> pb.ResponseHeader:
    return pb.ResponseHeader(
        cluster_id=CLUSTER_ID, member_id=INFRA1, revision=revision, raft_term=2
    )


# The bodies exactly as etcd sent them.
T03_MEMBER_LIST = (
    b'{"header":{"cluster_id":"403640855964645870","member_id":"13803658152347727308",'
    b'"raft_term":"2"},"members":[{"ID":"10501334649042878790","name":"infra2","peerURLs":'
    b'["http://127.0.0.1:22380"],"clientURLs":["http://127.0.0.1:22379"]},{"ID":'
    b'"13803658152347727308","name":"infra1","peerURLs":["http://127.0.0.1:2380"],"clientURLs":'
    b'["http://127.0.0.1:2379"]},{"ID":"18249187646912138824","name":"infra3","peerURLs":'
    b'["http://127.0.0.1:32380"],"clientURLs":["http://127.0.0.1:32379"]}]}'
)
T03_STATUS = (
    b'{"header":{"cluster_id":"403640855964645870","member_id":"13803658152347727308",'
    b'"revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":'
    b'"18249187646912138824","raftIndex":"11","raftTerm":"2","raftAppliedIndex":"11",'
    b'"dbSizeInUse":"16384"}'
)
T15_LEARNER_ADD = (
    b'{"header":{"cluster_id":"403640855964645870","member_id":"13803658152347727308",'
    b'"raft_term":"2"},"member":{"ID":"10370959452141089457","peerURLs":'
    b'["http://127.0.0.1:42380"],"isLearner":true},"members":[{"ID":"10370959452141089457",'
    b'"peerURLs":["http://127.0.0.1:42380"],"isLearner":true},{"ID":"10501334649042878790",'
    b'"name":"infra2","peerURLs":["http://127.0.0.1:22380"],"clientURLs":'
    b'["http://127.0.0.1:22379"]},{"ID":"13803658152347727308","name":"infra1","peerURLs":'
    b'["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},{"ID":'
    b'"18249187646912138824","name":"infra3","peerURLs":["http://127.0.0.1:32380"],'
    b'"clientURLs":["http://127.0.0.1:32379"]}]}'
)


def transcript_status() -> pb.StatusResponse:
    """Transcript 03's Status reply (version 3.4.23 there; raftnode's own says 3.5.0)."""
    return pb.StatusResponse(
        header=header(revision=1),
        version="3.4.23",
        db_size=20480,
        leader=INFRA3,
        raft_index=11,
        raft_term=2,
        raft_applied_index=11,
        db_size_in_use=16384,
    )


# ---- Fake services ------------------------------------------------------------------------------

Answer = betterproto.Message | BaseException | Callable[[Any], Awaitable[Any]]
T = TypeVar("T")


@dataclass
class Script:
    """What each fake handler answers, and what it was asked."""

    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def answer(self, method: str, request: Any, default: T) -> T:
        self.calls.append((method, request))
        outcome = self.answers.get(method, default)
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return cast(T, await outcome(request))
        return cast(T, outcome)


class FakeCluster(pb.ClusterBase):
    """Answers by `Script`; by default MemberList returns transcript 03's three members."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def member_add(self, member_add_request: pb.MemberAddRequest) -> pb.MemberAddResponse:
        added = learner()
        default = pb.MemberAddResponse(
            header=header(), member=added, members=[added, *founding_members()]
        )
        return await self.script.answer("member_add", member_add_request, default)

    async def member_remove(
        self, member_remove_request: pb.MemberRemoveRequest
    ) -> pb.MemberRemoveResponse:
        default = pb.MemberRemoveResponse(header=header(), members=founding_members())
        return await self.script.answer("member_remove", member_remove_request, default)

    async def member_update(
        self, member_update_request: pb.MemberUpdateRequest
    ) -> pb.MemberUpdateResponse:
        default = pb.MemberUpdateResponse(header=header(), members=founding_members())
        return await self.script.answer("member_update", member_update_request, default)

    async def member_list(self, member_list_request: pb.MemberListRequest) -> pb.MemberListResponse:
        default = pb.MemberListResponse(header=header(), members=founding_members())
        return await self.script.answer("member_list", member_list_request, default)

    async def member_promote(
        self, member_promote_request: pb.MemberPromoteRequest
    ) -> pb.MemberPromoteResponse:
        default = pb.MemberPromoteResponse(header=header(), members=founding_members())
        return await self.script.answer("member_promote", member_promote_request, default)


class FakeMaintenance(pb.MaintenanceBase):
    """Status answers transcript 03's reply; MoveLeader answers etcd's header-less reply."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def status(self, status_request: pb.StatusRequest) -> pb.StatusResponse:
        return await self.script.answer("status", status_request, transcript_status())

    async def move_leader(self, move_leader_request: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        default = pb.MoveLeaderResponse()
        return await self.script.answer("move_leader", move_leader_request, default)


def make_gateway(
    script: Script | None = None,
    *,
    has_leader: Callable[[], Any] = lambda: True,
    request_timeout: float = 5.0,
    **limits: Any,
) -> tuple[Gateway, Script]:
    script = script if script is not None else Script()
    gateway = Gateway(
        cluster=FakeCluster(script),
        maintenance=FakeMaintenance(script),
        has_leader=has_leader,
        request_timeout=request_timeout,
        **limits,
    )
    return gateway, script


class Blocker:
    """A handler answer that waits until released, and tells when it started or was cancelled."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False

    async def __call__(self, request: Any) -> Any:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.reply


# ---- Parsing responses --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    informational: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return values[0] if values else None

    @property
    def header_names(self) -> list[str]:
        return [k for k, _ in self.headers]


def _response_from(events: list[h11.Event], informational: list[int]) -> Response:
    head = events[0]
    assert isinstance(head, h11.Response)
    body = b"".join(e.data for e in events if isinstance(e, h11.Data))
    headers = [(k.decode().lower(), v.decode()) for k, v in head.headers]
    return Response(head.status_code, headers, body, informational)


async def read_response(
    client: h11.Connection, more: Callable[[], Awaitable[bytes]], *, method: str = "POST"
) -> Response:
    """Parse one response with an h11 client connection, pulling bytes from ``more()``."""
    events: list[h11.Event] = []
    informational: list[int] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await more())
            continue
        if isinstance(event, h11.InformationalResponse):
            informational.append(event.status_code)
            continue
        assert isinstance(event, h11.Event), event
        events.append(event)
        if isinstance(event, h11.EndOfMessage):
            break
    if client.our_state is h11.DONE and client.their_state is h11.DONE:
        client.start_next_cycle()
    return _response_from(events, informational)


def request_bytes(
    client: h11.Connection,
    method: str,
    target: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    all_headers = [("Host", "127.0.0.1"), *(headers or [("Content-Length", str(len(body)))])]
    out = client.send(h11.Request(method=method, target=target, headers=all_headers)) or b""
    if body:
        out += client.send(h11.Data(data=body)) or b""
    return out + (client.send(h11.EndOfMessage()) or b"")


def expect_request(client: h11.Connection) -> None:
    """Put ``client`` in the state of having sent a request written by hand (pipelining)."""
    client.send(
        h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")])
    )
    client.send(h11.EndOfMessage())


# ---- An in-memory connection --------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """Records writes; closing calls the protocol's connection_lost soon after, as asyncio does."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: asyncio.Protocol | None = None
        self.written = bytearray()
        self.closed = False
        self.reading_paused = False
        self.eof_written = False
        self.peer_answers_eof = True
        self._cursor = 0
        self._changed = asyncio.Event()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data
        self._changed.set()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._changed.set()
        protocol = self.protocol
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The server half-closes; this fake peer then closes its side too, as curl does
        (unless `peer_answers_eof` is False)."""
        self.eof_written = True
        protocol = self.protocol
        if protocol is not None and self.peer_answers_eof:
            asyncio.get_running_loop().call_soon(protocol.eof_received)

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def is_reading(self) -> bool:
        return not self.reading_paused

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    async def more(self) -> bytes:
        """The bytes written since the last call; b"" once closed with nothing left."""
        while self._cursor == len(self.written) and not self.closed:
            self._changed.clear()
            await self._changed.wait()
        data = bytes(self.written[self._cursor :])
        self._cursor = len(self.written)
        return data

    async def wait_closed(self) -> None:
        while not self.closed:
            self._changed.clear()
            await self._changed.wait()


class Wire:
    """A client connected to a gateway in memory."""

    def __init__(self, gateway: Gateway) -> None:
        self.transport = FakeTransport()
        self.protocol = gateway.protocol_factory()
        self.transport.set_protocol(self.protocol)
        self.protocol.connection_made(self.transport)
        self.client = h11.Connection(h11.CLIENT)

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def eof(self) -> None:
        self.protocol.eof_received()

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        self.send(request_bytes(self.client, method, target, body, headers))
        return await self.response(method)

    async def response(self, method: str = "POST") -> Response:
        async with asyncio.timeout(10):  # a safety net only: nothing here waits on time
            return await read_response(self.client, self.transport.more, method=method)

    async def rest(self) -> bytes:
        """Everything written until the server closes the connection."""
        async with asyncio.timeout(10):
            await self.transport.wait_closed()
        return await self.transport.more()
