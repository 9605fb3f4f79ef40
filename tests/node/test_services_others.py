"""The unserved etcd services, Auth.Authenticate, the grpclib patch and the request context.

In memory through grpclib.testing.ChannelFor (layer e), plus two real-socket checks with Debian's
etcdctl 3.4 (layer f, marked slow) for what only grpc-go shows: a reply without `content-type`
reads as `missing content-type field` there (spec section 11, pitfall 1).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import grpclib.server
import pytest
from betterproto.grpc.grpclib_server import ServiceBase
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

import proto.etcdserverpb as etcdserverpb
from node.services import (
    AuthService,
    EtcdService,
    current_deadline,
    current_metadata,
    current_peer,
    current_request,
    etcd_services,
    grpclib_is_patched,
    install_request_context,
    patch_grpclib,
    requires_leader,
)
from proto.etcdserverpb import (
    AuthenticateRequest,
    AuthStub,
    ClusterBase,
    ClusterStub,
    KvStub,
    Member,
    MemberListRequest,
    MemberListResponse,
    PutRequest,
    ResponseHeader,
)

CLUSTER_ID = 0x59A05384C9B79EE
MEMBER_ID = 0xBF9071F4639C75CC


@dataclass
class Seen:
    metadata: dict[str, str | bytes]
    has_deadline: bool
    requires_leader: bool
    has_peer: bool
    method_name: str | None


class StubCluster(ClusterBase):
    """MemberList answers one fixed member and records what the request context held."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def member_list(self, member_list_request: MemberListRequest) -> MemberListResponse:
        request = current_request()
        self.seen.append(
            Seen(
                metadata=dict(current_metadata()),
                has_deadline=current_deadline() is not None,
                requires_leader=requires_leader(),
                has_peer=current_peer() is not None,
                method_name=None if request is None else request.method_name,
            )
        )
        return MemberListResponse(
            header=ResponseHeader(cluster_id=CLUSTER_ID, member_id=MEMBER_ID, raft_term=2),
            members=[
                Member(
                    id=MEMBER_ID,
                    name="infra1",
                    peer_ur_ls=["http://127.0.0.1:2380"],
                    client_ur_ls=["http://127.0.0.1:2379"],
                )
            ],
        )


@asynccontextmanager
async def in_memory(services: list[EtcdService]) -> AsyncIterator[Channel]:
    """ChannelFor, with the request-context listener on the server it builds."""
    harness = ChannelFor(services)
    async with harness as channel:
        # ChannelFor builds its Server inside __aenter__ and offers no accessor for it.
        install_request_context(harness._server)
        yield channel


@contextmanager
def grpclib_patched() -> Iterator[None]:
    """Apply patch_grpclib() for one test only, restoring grpclib afterwards."""
    original = grpclib.server._abort
    patch_grpclib()
    try:
        yield
    finally:
        setattr(grpclib.server, "_abort", original)  # noqa: B010 (private name)


@contextmanager
def grpclib_unpatched() -> Iterator[None]:
    """grpclib as shipped for one test, even if some other test left the patch applied."""
    current = grpclib.server._abort
    setattr(grpclib.server, "_abort", getattr(current, "__wrapped__", current))  # noqa: B010
    try:
        assert not grpclib_is_patched()
        yield
    finally:
        setattr(grpclib.server, "_abort", current)  # noqa: B010


def _all_handlers() -> dict[str, Handler]:
    mapping: dict[str, Handler] = {}
    for service in etcd_services():
        mapping.update(service.__mapping__())
    return mapping


# ---- Registration ------------------------------------------------------------------------------


def test_every_generated_etcd_service_is_registered_once() -> None:
    bases = {
        obj
        for name, obj in vars(etcdserverpb).items()
        if isinstance(obj, type)
        and issubclass(obj, ServiceBase)
        and obj.__module__ == etcdserverpb.__name__
    }
    services = etcd_services()
    assert {base for base in bases if any(isinstance(s, base) for s in services)} == bases
    assert len(services) == len(bases) == 6
    paths = [path for s in services for path in s.__mapping__()]
    # KV, Watch, Lease, Cluster, Maintenance, Auth
    assert len(paths) == len(set(paths)) == 5 + 1 + 5 + 5 + 8 + 17


def test_the_cluster_and_maintenance_given_are_the_ones_registered() -> None:
    cluster = StubCluster()
    services = etcd_services(cluster=cluster)
    assert cluster in services
    assert sum(isinstance(s, ClusterBase) for s in services) == 1


# ---- In memory: UNIMPLEMENTED, Authenticate, the request context -------------------------------


@pytest.mark.asyncio
async def test_kv_put_answers_unimplemented() -> None:
    async with in_memory(etcd_services()) as channel:
        with pytest.raises(GRPCError) as caught:
            await KvStub(channel).put(PutRequest(key=b"a", value=b"b"))
    assert caught.value.status is Status.UNIMPLEMENTED


UNSERVED = sorted(
    path
    for path in _all_handlers()
    if path.startswith(("/etcdserverpb.KV/", "/etcdserverpb.Watch/", "/etcdserverpb.Lease/"))
    or (path.startswith("/etcdserverpb.Auth/") and path != "/etcdserverpb.Auth/Authenticate")
)


@pytest.mark.asyncio
@pytest.mark.parametrize("path", UNSERVED)
async def test_every_unserved_method_answers_unimplemented(path: str) -> None:
    handler = _all_handlers()[path]
    async with in_memory(etcd_services()) as channel:
        with pytest.raises(GRPCError) as caught:
            async with channel.request(
                path, handler.cardinality, handler.request_type, handler.reply_type, timeout=5
            ) as stream:
                await stream.send_message(handler.request_type(), end=True)
                await stream.recv_message()
    assert caught.value.status is Status.UNIMPLEMENTED


def test_the_unserved_list_covers_the_streams() -> None:
    streaming = {p for p in UNSERVED if _all_handlers()[p].cardinality is Cardinality.STREAM_STREAM}
    assert streaming == {"/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"}
    assert len(UNSERVED) == 5 + 1 + 5 + 16


@pytest.mark.asyncio
async def test_authenticate_answers_auth_not_enabled() -> None:
    async with in_memory([AuthService()]) as channel:
        with pytest.raises(GRPCError) as caught:
            await AuthStub(channel).authenticate(AuthenticateRequest(name="root", password="x"))
    assert caught.value.status is Status.FAILED_PRECONDITION
    assert caught.value.message == "etcdserver: authentication is not enabled"


@pytest.mark.asyncio
async def test_the_request_context_carries_metadata_deadline_and_peer() -> None:
    cluster = StubCluster()
    async with in_memory(etcd_services(cluster=cluster)) as channel:
        stub = ClusterStub(channel)
        await stub.member_list(
            MemberListRequest(), metadata={"hasleader": "true", "token": "t"}, timeout=5
        )
        await stub.member_list(MemberListRequest(linearizable=True))
    first, second = cluster.seen
    assert first.metadata == {"hasleader": "true", "token": "t"}
    assert first.requires_leader and first.has_deadline and first.has_peer
    assert first.method_name == "/etcdserverpb.Cluster/MemberList"
    # Requests run in their own tasks: nothing leaks from the first into the second.
    assert second.metadata == {}
    assert not second.requires_leader and not second.has_deadline


def test_outside_a_request_the_accessors_answer_nothing() -> None:
    assert current_request() is None
    assert dict(current_metadata()) == {}
    assert current_deadline() is None
    assert current_peer() is None
    assert not requires_leader()


@pytest.mark.asyncio
async def test_installing_the_listener_twice_adds_it_once() -> None:
    server = grpclib.server.Server(etcd_services())
    install_request_context(server)
    install_request_context(server)
    assert len(server.__dispatch__._listeners[grpclib.events.RecvRequest]) == 1


# ---- The abort-path patch (in memory) ----------------------------------------------------------

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


async def _call_unregistered(channel: Channel) -> GRPCError:
    # The error must leave the `async with`: after a reply grpclib could not read, its __aexit__
    # would otherwise wait for trailers that never come.
    with pytest.raises(GRPCError) as caught:
        async with channel.request(
            HEALTH_CHECK,
            Cardinality.UNARY_UNARY,
            MemberListRequest,  # any message type: the server never decodes it
            MemberListResponse,
            timeout=5,
        ) as stream:
            await stream.send_message(MemberListRequest(), end=True)
            await stream.recv_message()
    return caught.value


@pytest.mark.asyncio
async def test_without_the_patch_an_unregistered_path_lacks_content_type() -> None:
    with grpclib_unpatched():
        async with in_memory(etcd_services()) as channel:
            error = await _call_unregistered(channel)
    assert error.status is Status.UNKNOWN
    assert error.message == "Missing content-type header"


@pytest.mark.asyncio
async def test_with_the_patch_an_unregistered_path_answers_unimplemented() -> None:
    with grpclib_unpatched(), grpclib_patched():
        patch_grpclib()  # idempotent
        assert grpclib_is_patched()
        wrapped = grpclib.server._abort.__wrapped__  # type: ignore[attr-defined]
        assert wrapped.__module__ == "grpclib.server"  # wrapped once, not twice
        async with in_memory(etcd_services()) as channel:
            error = await _call_unregistered(channel)
    assert error.status is Status.UNIMPLEMENTED
    assert error.message == "Method not found"


class FakeH2Stream:
    """Records what an abort sends; `closable` False so no RST_STREAM follows."""

    closable = False

    def __init__(self) -> None:
        self.sent: list[tuple[list[tuple[str, str]], bool]] = []

    async def send_headers(self, headers: list[tuple[str, str]], end_stream: bool) -> None:
        self.sent.append((headers, end_stream))


@pytest.mark.asyncio
async def test_the_patched_abort_adds_content_type_only_to_grpc_answers() -> None:
    with grpclib_patched():
        abort: Any = grpclib.server._abort
        grpc_answer, http_refusal = FakeH2Stream(), FakeH2Stream()
        await abort(grpc_answer, 200, Status.UNIMPLEMENTED)
        await abort(http_refusal, 405)
    assert grpc_answer.sent == [
        ([(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")], True)
    ]
    assert http_refusal.sent == [([(":status", "405")], True)]


def test_the_patch_refuses_an_unknown_grpclib(monkeypatch: pytest.MonkeyPatch) -> None:
    async def other_abort(stream: object, status: int) -> None: ...

    monkeypatch.setattr(grpclib.server, "_abort", other_abort)
    with pytest.raises(RuntimeError, match="not the 0.4.9 function"):
        patch_grpclib()
    assert grpclib.server._abort is other_abort


def test_importing_the_services_patches_nothing() -> None:
    code = (
        "import grpclib.server, node.services, node.services.grpc_patches as p\n"
        "assert not p.grpclib_is_patched()\n"
        "assert grpclib.server._abort.__module__ == 'grpclib.server'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---- Real sockets: etcdctl (grpc-go) against the services --------------------------------------

ETCDCTL = shutil.which("etcdctl")
needs_etcdctl = pytest.mark.skipif(
    ETCDCTL is None,
    reason="etcdctl not installed (Debian's etcd-client; .ci/run installs it)",
)


@asynccontextmanager
async def serving(services: list[EtcdService]) -> AsyncIterator[int]:
    """A grpclib Server on 127.0.0.1, port 0; yields the bound port (spec pitfall 11)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = grpclib.server.Server(services)
    install_request_context(server)
    await server.start(sock=sock)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Run:
    code: int
    out: str
    err: str


async def etcdctl(port: int, *args: str) -> Run:
    assert ETCDCTL is not None
    env = {**os.environ, "ETCDCTL_API": "3"}
    proc = await asyncio.create_subprocess_exec(
        ETCDCTL,
        f"--endpoints=127.0.0.1:{port}",
        "--dial-timeout=3s",
        "--command-timeout=5s",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.mark.slow
@needs_etcdctl
@pytest.mark.asyncio
async def test_etcdctl_against_the_registered_services() -> None:
    with grpclib_patched():
        cluster = StubCluster()
        async with serving(etcd_services(cluster=cluster)) as port:
            listed = await etcdctl(port, "member", "list", "-w", "json")
            put = await etcdctl(port, "put", "a", "b")
            with_user = await etcdctl(port, "--user", "root:secret", "member", "list")

    assert listed.code == 0, listed
    reply = json.loads(listed.out)
    assert reply["header"]["cluster_id"] == CLUSTER_ID
    assert [m["ID"] for m in reply["members"]] == [MEMBER_ID]
    assert reply["members"][0]["name"] == "infra1"

    assert put.code == 1, put
    assert "code = Unimplemented" in put.err, put
    assert "content-type" not in put.err, put

    # Pitfall 2: Authenticate's FAILED_PRECONDITION lets etcdctl go on without a token.
    assert with_user.code == 0, with_user
    assert with_user.out == (
        "bf9071f4639c75cc, started, infra1, http://127.0.0.1:2380, http://127.0.0.1:2379, false\n"
    )
    assert len(cluster.seen) == 2


@pytest.mark.slow
@needs_etcdctl
@pytest.mark.asyncio
async def test_etcdctl_reads_the_patched_answer_for_an_unregistered_service() -> None:
    # Only Cluster is registered, so KV.Put takes grpclib's abort path; grpclib looks `_abort` up
    # per request, so the patch can be applied while the server runs.
    async with serving([StubCluster()]) as port:
        with grpclib_unpatched():
            unpatched = await etcdctl(port, "put", "a", "b")
            with grpclib_patched():
                patched = await etcdctl(port, "put", "a", "b")
    assert unpatched.code == 1, unpatched
    assert "transport: missing content-type field" in unpatched.err, unpatched
    assert patched.code == 1, patched
    assert "Error: rpc error: code = Unimplemented desc = Method not found" in patched.err, patched
    assert "content-type" not in patched.err, patched
