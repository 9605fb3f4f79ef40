"""`ClusterClient`: etcd's Cluster and Maintenance APIs for asyncio code, over grpclib.

Every method returns plain frozen values (`node.client.types`) and raises the typed errors of
`node.client.errors`; failover between endpoints follows `node.client.rpc`. Every method takes a
``timeout=`` keyword that overrides the client's default for that call; it bounds the whole
call, failovers included.

``raw`` gives the same calls with etcd's own reply messages, for tools that must print the reply
exactly as etcd sent it (``raftnode member list -w json``).
"""

# ruff: noqa: ASYNC109 - ``timeout=`` is the documented per-call deadline, and it must reach
# the server as ``grpc-timeout``, which an ``asyncio.timeout`` around the call could not do.

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

import betterproto

from node.client.errors import LearnerNotReady, NoLeader
from node.client.rpc import ChannelFactory, Retry, RpcPool
from node.client.types import (
    Member,
    MemberAddResult,
    Status,
    member_from_pb,
    members_from_pb,
    status_from_pb,
)
from proto import etcdserverpb as pb

__all__ = ["ClusterClient", "RawCalls"]

R = TypeVar("R", bound=betterproto.Message)

_CLUSTER = "/etcdserverpb.Cluster/"
_MAINTENANCE = "/etcdserverpb.Maintenance/"

#: `ClusterClient.wait_promotable` polls this often at first, backing off to the maximum.
PROMOTE_POLL_S = 0.05
PROMOTE_MAX_POLL_S = 0.5


class RawCalls:
    """The RPCs with etcd's request and reply messages (betterproto), failover and typed errors
    included. Keyword ``timeout`` as in `ClusterClient`."""

    def __init__(self, pool: RpcPool) -> None:
        self._pool = pool

    async def member_list(
        self, linearizable: bool = False, *, timeout: float | None = None
    ) -> pb.MemberListResponse:
        request = pb.MemberListRequest(linearizable=linearizable)
        return await self._pool.call(
            _CLUSTER + "MemberList",
            request,
            pb.MemberListResponse,
            retry=Retry.READ,
            timeout=timeout,
        )

    async def member_add(
        self, peer_urls: Sequence[str], learner: bool = False, *, timeout: float | None = None
    ) -> pb.MemberAddResponse:
        request = pb.MemberAddRequest(peer_ur_ls=list(_urls(peer_urls)), is_learner=learner)
        return await self._mutate("MemberAdd", request, pb.MemberAddResponse, timeout)

    async def member_remove(
        self, member_id: int, *, timeout: float | None = None
    ) -> pb.MemberRemoveResponse:
        request = pb.MemberRemoveRequest(id=_checked_id(member_id))
        return await self._mutate("MemberRemove", request, pb.MemberRemoveResponse, timeout)

    async def member_update(
        self, member_id: int, peer_urls: Sequence[str], *, timeout: float | None = None
    ) -> pb.MemberUpdateResponse:
        request = pb.MemberUpdateRequest(id=_checked_id(member_id), peer_ur_ls=_urls(peer_urls))
        return await self._mutate("MemberUpdate", request, pb.MemberUpdateResponse, timeout)

    async def member_promote(
        self, member_id: int, *, timeout: float | None = None
    ) -> pb.MemberPromoteResponse:
        request = pb.MemberPromoteRequest(id=_checked_id(member_id))
        return await self._mutate("MemberPromote", request, pb.MemberPromoteResponse, timeout)

    async def status(self, endpoint: str, *, timeout: float | None = None) -> pb.StatusResponse:
        return await self._pool.call(
            _MAINTENANCE + "Status",
            pb.StatusRequest(),
            pb.StatusResponse,
            retry=Retry.PINNED,
            endpoint=endpoint,
            timeout=timeout,
        )

    async def move_leader(
        self, endpoint: str, target_id: int, *, timeout: float | None = None
    ) -> pb.MoveLeaderResponse:
        return await self._pool.call(
            _MAINTENANCE + "MoveLeader",
            pb.MoveLeaderRequest(target_id=_checked_id(target_id)),
            pb.MoveLeaderResponse,
            retry=Retry.PINNED,
            endpoint=endpoint,
            timeout=timeout,
        )

    async def range(
        self, endpoint: str, key: bytes, *, timeout: float | None = None
    ) -> pb.RangeResponse:
        """A linearizable KV.Range of ``key`` (what ``etcdctl endpoint health`` reads)."""
        return await self._pool.call(
            "/etcdserverpb.KV/Range",
            pb.RangeRequest(key=key),
            pb.RangeResponse,
            retry=Retry.PINNED,
            endpoint=endpoint,
            timeout=timeout,
        )

    async def _mutate(
        self, method: str, request: betterproto.Message, reply_type: type[R], timeout: float | None
    ) -> R:
        return await self._pool.call(
            _CLUSTER + method, request, reply_type, retry=Retry.MUTATION, timeout=timeout
        )


class ClusterClient:
    """``async with ClusterClient(["127.0.0.1:2379", ...], timeout=5.0) as client: ...``"""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = 5.0,
        *,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        self._pool = RpcPool(endpoints, timeout, channel_factory=channel_factory)
        self.raw = RawCalls(self._pool)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._pool.endpoints

    @property
    def timeout(self) -> float:
        return self._pool.timeout

    async def __aenter__(self) -> ClusterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> Any:
        """Close the connections at once (``await client.close()`` works too)."""
        return self._pool.close()

    async def wait_closed(self) -> None:
        """Nothing is left to wait for once `close` returns (P10's lifecycle, for symmetry)."""

    # ---- Cluster -----------------------------------------------------------------------------

    async def member_list(
        self, linearizable: bool = False, *, timeout: float | None = None
    ) -> tuple[Member, ...]:
        """The members, sorted by ID. Not linearizable by default: the answering member's own
        applied view, served even without a leader (spec §3.9)."""
        reply = await self.raw.member_list(linearizable, timeout=timeout)
        return members_from_pb(reply.members)

    async def member_add(
        self, peer_urls: Sequence[str], learner: bool = False, *, timeout: float | None = None
    ) -> MemberAddResult:
        reply = await self.raw.member_add(peer_urls, learner, timeout=timeout)
        return MemberAddResult(member_from_pb(reply.member), members_from_pb(reply.members))

    async def member_remove(
        self, member_id: int, *, timeout: float | None = None
    ) -> tuple[Member, ...]:
        reply = await self.raw.member_remove(member_id, timeout=timeout)
        return members_from_pb(reply.members)

    async def member_update(
        self, member_id: int, peer_urls: Sequence[str], *, timeout: float | None = None
    ) -> tuple[Member, ...]:
        reply = await self.raw.member_update(member_id, peer_urls, timeout=timeout)
        return members_from_pb(reply.members)

    async def member_promote(
        self, member_id: int, *, timeout: float | None = None
    ) -> tuple[Member, ...]:
        reply = await self.raw.member_promote(member_id, timeout=timeout)
        return members_from_pb(reply.members)

    async def wait_promotable(
        self, member_id: int, timeout: float = 30.0, *, call_timeout: float | None = None
    ) -> tuple[Member, ...]:
        """Promote the learner ``member_id`` as soon as it is in sync, polling MemberPromote while
        the answer is `LearnerNotReady` (a cheap pre-raft refusal, spec §3.10) for at most
        ``timeout`` seconds. At the bound the last `LearnerNotReady` is raised: every attempt was
        refused, so nothing changed. Any other error is raised at once. Returns the members
        after the promotion."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = PROMOTE_POLL_S
        while True:
            remaining = deadline - loop.time()
            per_call = remaining if call_timeout is None else min(call_timeout, remaining)
            try:
                return await self.member_promote(member_id, timeout=max(per_call, 1e-3))
            except LearnerNotReady:
                if loop.time() + delay >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, PROMOTE_MAX_POLL_S)

    # ---- Maintenance -------------------------------------------------------------------------

    async def status(self, endpoint: str, *, timeout: float | None = None) -> Status:
        """Maintenance.Status of ``endpoint`` (any endpoint, not only the client's); served by
        learners and by members without a leader too."""
        reply = await self.raw.status(endpoint, timeout=timeout)
        return status_from_pb(endpoint, reply)

    async def statuses(self, *, timeout: float | None = None) -> tuple[Status, ...]:
        """Status of every endpoint, in order, asked concurrently. Every call is awaited; then
        the first failure (in endpoint order) is raised."""
        calls = [self.status(e, timeout=timeout) for e in self.endpoints]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return tuple(r for r in results if isinstance(r, Status))

    async def leader_endpoint(self, *, timeout: float | None = None) -> str:
        """The endpoint whose member leads, found as etcdctl does: Status on each endpoint until
        one reports itself as leader. Unreachable endpoints are skipped."""
        for endpoint in self.endpoints:
            try:
                status = await self.status(endpoint, timeout=timeout)
            except Exception:  # noqa: BLE001 - any endpoint that cannot answer is just not it
                continue
            if status.is_leader:
                return endpoint
        raise NoLeader(None, f"no leader endpoint given at {list(self.endpoints)}")

    async def move_leader(self, member_id: int, *, timeout: float | None = None) -> None:
        """Hand leadership to the voter ``member_id``; sent to the current leader's endpoint,
        which must be among the client's endpoints (raises `NoLeader` otherwise)."""
        endpoint = await self.leader_endpoint(timeout=timeout)
        await self.raw.move_leader(endpoint, member_id, timeout=timeout)

    async def health(self, endpoint: str, *, timeout: float | None = None) -> float:
        """Seconds a linearizable read on ``endpoint`` took: it proves the member reaches a
        quorum through its leader. Raises the read's error otherwise."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.raw.range(endpoint, b"health", timeout=timeout)
        return loop.time() - started


def _checked_id(member_id: int) -> int:
    """IDs go on the wire as uint64 without a range check (spec §11 item 5): check here."""
    if isinstance(member_id, bool) or not isinstance(member_id, int):
        raise TypeError(f"member ID must be an int, not {type(member_id).__name__}")
    if not 0 <= member_id < 2**64:
        raise ValueError(f"member ID out of the uint64 range: {member_id}")
    return member_id


def _urls(peer_urls: Sequence[str]) -> list[str]:
    if isinstance(peer_urls, str):
        raise TypeError("peer_urls must be a sequence of URLs, not one string")
    return list(peer_urls)
