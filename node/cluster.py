"""The Cluster API's domain logic: gates, pre-raft checks, proposing, waiting, timeouts.

The gRPC handlers (``node.services.cluster``) only translate messages; everything etcd decides
lives here, in the order of spec §3.5: gates, validation, strict checks, propose one conf change,
wait for this node to apply it, answer with the post-apply membership or the apply's error.

Conf changes from one node are **serialised** (D3): a lock admits one at a time, and a refusal
because another node's change is still pending is retried with a backoff until the request's
bound (ReqTimeout), never silently dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from node.codec import encode
from node.domain_errors import (
    BadLeaderTransferee,
    LeaderChanged,
    LeaderTransferTimeout,
    LearnerNotReady,
    MemberNotFound,
    MemberNotLearner,
    NoLeader,
    NotLeader,
    NotSupportedForLearner,
    RequestTimeout,
    Stopped,
    TimeoutDueToConnectionLost,
    TimeoutDueToLeaderFail,
    TimeoutWaitAppliedIndex,
)
from node.driver import DriverStopped, RaftDriver, ReadIndexLost
from node.entries import ChangeRequest, PublishRequest
from node.ids import runtime_member_id
from node.membership import (
    ChangeKind,
    Member,
    Membership,
    MembershipChange,
    check_add,
    check_promote_started,
    check_remove,
    learner_ready,
)
from node.urls import normalize_peer_urls
from raft import NONE, ConfChangeInProgress, NodeId, ProposalDropped, Role

log = logging.getLogger(__name__)

#: How long the leader waits for applied to reach committed before judging a promotion.
APPLY_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class Header:
    cluster_id: int
    member_id: int
    raft_term: int


@dataclass(frozen=True, slots=True)
class Timing:
    """Time bounds derived from the node's flags (spec §3.5: ReqTimeout = 5 s + 2 × election)."""

    request_timeout: float
    heartbeat: float
    health_interval: float = 5.0


class ClusterManager:
    def __init__(
        self,
        driver: RaftDriver,
        membership: Callable[[], Membership],
        active_since: Callable[[int], float | None],
        timing: Timing,
        *,
        strict_reconfig_check: bool = True,
        forward_promote: Callable[[Member, int], Awaitable[Membership]] | None = None,
    ) -> None:
        self.driver = driver
        self._membership = membership
        self._active_since = active_since
        self.timing = timing
        self.strict = strict_reconfig_check
        self._forward_promote = forward_promote
        self._request_ids = itertools.count(int(time.time() * 1000) << 16)
        self._change_lock = asyncio.Lock()

    # ------------------------------------------------------------------ views

    @property
    def member_id(self) -> int:
        return int(self.driver.status.id)

    @property
    def membership(self) -> Membership:
        return self._membership()

    def header(self) -> Header:
        st = self.driver.status
        return Header(self.membership.cluster_id, int(st.id), int(st.applied_term))

    def is_learner(self) -> bool:
        return self.member_id in self.membership.learner_ids()

    def check_gates(self, requires_leader: bool) -> None:
        """Spec §3.1: a learner serves no Cluster RPC; ``hasleader`` needs a known leader."""
        if self.is_learner():
            raise NotSupportedForLearner()
        if requires_leader and self.driver.status.lead == NONE:
            raise NoLeader()

    def connected_voters(self) -> set[int]:
        """Voters this node has reached continuously for the health interval (self included)."""
        horizon = time.monotonic() - self.timing.health_interval
        connected = {self.member_id}
        for voter in self.membership.voter_ids():
            since = self._active_since(voter)
            if since is not None and since <= horizon:
                connected.add(voter)
        return connected

    # ------------------------------------------------------------------ the five RPCs

    async def member_list(self, linearizable: bool) -> Membership:
        if linearizable:
            await self._bounded(self._read_index())
        return self.membership

    async def member_add(
        self, peer_urls: Sequence[str], is_learner: bool
    ) -> tuple[Member, Membership]:
        urls = normalize_peer_urls(peer_urls)
        member_id = runtime_member_id(urls, int(time.time()))
        if self.strict:
            check_add(self.membership, is_learner, self.member_id, self.connected_voters())
        kind = ChangeKind.ADD_LEARNER if is_learner else ChangeKind.ADD_VOTER
        after = await self.change(MembershipChange(kind, member_id, urls))
        member = after.get(member_id)
        assert member is not None
        return member, after

    async def member_remove(self, member_id: int) -> Membership:
        if member_id == 0:
            raise MemberNotFound()  # raft cannot carry ID 0; etcd fails it at apply the same way
        if self.strict:
            target_active = self._active_since(member_id) is not None
            check_remove(
                self.membership,
                member_id,
                self.member_id,
                self.connected_voters(),
                target_active,
            )
        return await self.change(MembershipChange(ChangeKind.REMOVE, member_id))

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> Membership:
        urls = normalize_peer_urls(peer_urls)
        if member_id == 0:
            raise MemberNotFound()
        return await self.change(MembershipChange(ChangeKind.UPDATE, member_id, urls))

    async def member_promote(self, member_id: int) -> Membership:
        status = self.driver.status
        if member_id == 0 or member_id in self.membership.removed:
            raise MemberNotFound()  # D4: at once, from any node
        if status.role is not Role.LEADER:
            return await self._forward(member_id)
        await self._wait_applied_caught_up()
        status = self.driver.status
        progress = status.progress.get(NodeId(member_id))
        if progress is None:
            raise MemberNotFound()
        member = self.membership.get(member_id)
        if member is not None and not member.is_learner:
            raise MemberNotLearner()  # D6: pre-raft
        own = status.progress.get(status.id)
        if own is None or not learner_ready(progress.match, own.match):
            raise LearnerNotReady()
        if self.strict:
            check_promote_started(self.membership, member_id)
        return await self.change(MembershipChange(ChangeKind.PROMOTE, member_id))

    # ------------------------------------------------------------------ maintenance

    async def move_leader(self, target: int) -> None:
        status = self.driver.status
        if status.role is not Role.LEADER:
            raise NotLeader()
        if target not in self.membership.voter_ids():
            raise BadLeaderTransferee()
        if status.lead == target:
            return
        await self.driver.transfer_leader(NodeId(target))
        try:
            await asyncio.wait_for(
                self.driver.wait_status(lambda st: st.lead == target),
                self.timing.request_timeout,
            )
        except TimeoutError:
            raise LeaderTransferTimeout() from None

    async def publish(self, name: str, client_urls: Sequence[str]) -> Membership:
        """Propose this member's name and client URLs, retrying until applied (spec §5.1)."""
        while True:
            request = PublishRequest(self._next_id(), self.member_id, name, tuple(client_urls))
            try:
                result = await asyncio.wait_for(
                    self.driver.propose(encode(request), request.request_id),
                    self.timing.request_timeout,
                )
            except (ProposalDropped, TimeoutError):
                await asyncio.sleep(self.timing.heartbeat)
                continue
            assert isinstance(result, Membership)
            return result

    # ------------------------------------------------------------------ proposing

    async def change(self, change: MembershipChange) -> Membership:
        """Propose one conf change and wait for this node to apply it, within ReqTimeout."""
        started_without_leader = self.driver.status.lead == NONE
        leader_seen = self.driver.status.lead
        try:
            async with asyncio.timeout(self.timing.request_timeout):
                async with self._change_lock:
                    return await self._propose_until_taken(change)
        except TimeoutError:
            if started_without_leader:
                raise TimeoutDueToLeaderFail() from None
            if self.driver.status.lead != leader_seen:
                raise TimeoutDueToConnectionLost() from None
            raise RequestTimeout() from None
        except DriverStopped:
            raise Stopped() from None

    async def _propose_until_taken(self, change: MembershipChange) -> Membership:
        while True:
            request = ChangeRequest(self._next_id(), change)
            conf_change = change.to_conf_change(encode(request))
            try:
                result = await self.driver.propose_conf_change(conf_change, request.request_id)
            except (ConfChangeInProgress, ProposalDropped) as exc:
                # Another change is pending, or there is no leader yet: wait and retry (D3).
                log.debug("conf change %s not taken yet: %s", change.kind.value, exc)
                await asyncio.sleep(self.timing.heartbeat)
                continue
            assert isinstance(result, Membership)
            return result

    async def _read_index(self) -> None:
        while True:
            try:
                await self.driver.read_index()
                return
            except ReadIndexLost:
                raise LeaderChanged() from None
            except ProposalDropped:
                await asyncio.sleep(self.timing.heartbeat)  # no leader yet: wait within bound
            except DriverStopped:
                raise Stopped() from None

    async def _bounded(self, work: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(work, self.timing.request_timeout)
        except TimeoutError:
            raise RequestTimeout() from None

    async def _wait_applied_caught_up(self) -> None:
        status = self.driver.status
        try:
            await asyncio.wait_for(self.driver.wait_applied(status.commit), APPLY_WAIT)
        except TimeoutError:
            raise TimeoutWaitAppliedIndex() from None

    async def _forward(self, member_id: int) -> Membership:
        """Spec §3.10: hand a promote to the leader, retrying with a backoff within the bound."""
        forward = self._forward_promote
        if forward is None:
            raise NoLeader()

        async def attempt() -> Membership:
            while True:
                lead = self.driver.status.lead
                leader = self.membership.get(int(lead)) if lead != NONE else None
                if leader is None or not leader.client_urls:
                    await asyncio.sleep(self.timing.heartbeat)
                    continue
                try:
                    return await forward(leader, member_id)
                except (LearnerNotReady, MemberNotFound, MemberNotLearner):
                    raise
                except Exception as exc:  # a transport hiccup or a leader change: retry
                    log.debug("forwarding promote to %x failed: %s", lead, exc)
                    await asyncio.sleep(self.timing.heartbeat)

        try:
            return await asyncio.wait_for(attempt(), self.timing.request_timeout)
        except TimeoutError:
            if self.driver.status.lead == NONE:
                raise NoLeader() from None
            raise RequestTimeout() from None

    def _next_id(self) -> int:
        return next(self._request_ids) & (2**63 - 1)
