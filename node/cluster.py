"""The Cluster API's domain logic: gates, pre-raft checks, proposing, waiting, timeouts.

The gRPC handlers (``node.services.cluster``) only translate messages; everything etcd decides
lives here, in the order of spec §3.5: gates, validation, strict checks, propose one conf change,
wait for this node to apply it, answer with the post-apply membership or the apply's error.

Conf changes from one node are **serialised** (D3): a lock admits one at a time, and a refusal
because another node's change is still pending is retried with a backoff until the request's
bound (ReqTimeout), never silently dropped.

Every use of time goes through one injected ``Clock`` (P4): ReqTimeout and the other bounds,
the retry backoffs, the strict checks' health horizon and the second hashed into a runtime
member ID. Production uses ``SystemClock``; tests use ``node.testing.ManualClock``, whose time
moves only when the test advances it, so no test here waits on the wall clock (P8).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from node.codec import encode
from node.domain_errors import (
    BadLeaderTransferee,
    EmptyKey,
    EtcdError,
    FutureRevision,
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
from node.driver import DriverStatus, DriverStopped, RaftDriver, ReadIndexLost
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
from raft import (
    NONE,
    ConfChangeInProgress,
    LeaderTransferRefused,
    NodeId,
    ProposalDropped,
    Role,
)
from raft import NotLeader as RaftNotLeader

log = logging.getLogger(__name__)

#: How long the leader waits for applied to reach committed before judging a promotion.
APPLY_WAIT = 1.0
#: The first and the longest wait before an automatic promotion that was refused is retried.
AUTO_PROMOTE_BACKOFF = 1.0
AUTO_PROMOTE_BACKOFF_MAX = 30.0
#: The KV revision of an empty etcd: raftnode keeps no keys (spec §7.1).
KV_REVISION = 1
#: How long ``/health`` gives its probe through the commit path (etcd's own bound: 1 s).
HEALTH_PROBE_TIMEOUT = 1.0


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


class Clock(Protocol):
    """The time the Cluster API reads: one edge, so tests can replace it (P4)."""

    def monotonic(self) -> float:
        """Seconds on the clock the transport's ``active_since`` times are read from."""
        ...

    def time(self) -> float:
        """Unix time in seconds (its whole seconds go into a runtime member ID, spec §3.3)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Like ``asyncio.timeout``: cancel the body after ``seconds``, raise TimeoutError."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` (as the peer transport uses), ``time.time``, asyncio."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)


@dataclass
class PromotionStats:
    """Promotions this node judged as leader (etcd's learner_promote metrics): failures are
    counted by the error's class name."""

    successes: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)


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
        clock: Clock | None = None,
    ) -> None:
        """``active_since(peer)``: since when (on ``clock.monotonic()``) this node's link to
        ``peer`` has been continuously up, or None. ``forward_promote(leader, id)`` sends a
        promote to the leader and returns its post-apply membership (spec §3.10)."""
        self.driver = driver
        self._membership = membership
        self._active_since = active_since
        self.timing = timing
        self.strict = strict_reconfig_check
        self._forward_promote = forward_promote
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._request_ids = request_ids(int(driver.status.id), int(time.time() * 1000))
        self._change_lock = asyncio.Lock()
        self.promotions = PromotionStats()

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

    def check_gates(self, requires_leader: bool, *, served_on_learners: bool = False) -> None:
        """Spec §3.1, in order: a learner serves nothing but Status (``served_on_learners``);
        ``hasleader: true`` needs a known leader, on every RPC, Status included (as etcd's
        interceptor does)."""
        if not served_on_learners and self.is_learner():
            raise NotSupportedForLearner()
        if requires_leader and self.driver.status.lead == NONE:
            raise NoLeader()

    def connected_voters(self) -> set[int]:
        """Voters this node has reached continuously for the health interval (self included)."""
        horizon = self.clock.monotonic() - self.timing.health_interval
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
        member_id = runtime_member_id(urls, int(self.clock.time()))

        def strict_checks() -> None:
            if self.strict:
                check_add(self.membership, is_learner, self.member_id, self.connected_voters())

        kind = ChangeKind.ADD_LEARNER if is_learner else ChangeKind.ADD_VOTER
        after = await self.change(MembershipChange(kind, member_id, urls), strict_checks)
        member = after.get(member_id)
        assert member is not None
        return member, after

    async def member_remove(self, member_id: int) -> Membership:
        def checks() -> None:
            if self.strict:
                check_remove(
                    self.membership,
                    member_id,
                    self.member_id,
                    self.connected_voters(),
                    self._active_since(member_id) is not None,
                )
            if member_id == 0:
                # etcd fails ID 0 at apply, after the strict checks; raft cannot carry ID 0,
                # so the same error comes at the same point in the order, with no log entry.
                raise MemberNotFound()

        return await self.change(MembershipChange(ChangeKind.REMOVE, member_id), checks)

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> Membership:
        urls = normalize_peer_urls(peer_urls)  # D1: validated pre-raft, like MemberAdd
        if member_id == 0:
            raise MemberNotFound()
        return await self.change(MembershipChange(ChangeKind.UPDATE, member_id, urls))

    async def member_promote(self, member_id: int) -> Membership:
        """Spec §3.10, in upstream's order; only the leader judges readiness."""
        if member_id == 0 or member_id in self.membership.removed:
            raise MemberNotFound()  # D4: at once, from any node
        if self.driver.status.role is not Role.LEADER:
            return await self._forward(member_id)
        try:
            membership = await self._promote_as_leader(member_id)
        except EtcdError as exc:
            self.promotions.failures[type(exc).__name__] += 1
            raise
        self.promotions.successes += 1
        return membership

    async def _promote_as_leader(self, member_id: int) -> Membership:
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

        def strict_checks() -> None:
            if self.strict:
                check_promote_started(self.membership, member_id)

        return await self.change(MembershipChange(ChangeKind.PROMOTE, member_id), strict_checks)

    # ------------------------------------------------------------------ reads and health

    async def kv_range(self, key: bytes, revision: int, serializable: bool) -> Header:
        """KV.Range over raftnode's key space, which is always empty at revision 1: what it
        proves is the read path (``etcdctl endpoint health``). A linearizable read waits for a
        ReadIndex round (the leader confirms it still leads a quorum) and for this node to apply
        up to it, within ReqTimeout; a serializable one answers from local state at once."""
        if not key:
            raise EmptyKey()
        if revision > KV_REVISION:
            raise FutureRevision()
        if not serializable:
            await self._bounded(self._read_index())
        return self.header()

    async def healthy(self) -> bool:
        """``GET /health``: a leader is known **and** the commit path works, i.e. a ReadIndex
        round (a heartbeat quorum of the leader) completes within `HEALTH_PROBE_TIMEOUT`."""
        if self.driver.status.lead == NONE:
            return False
        try:
            async with self.clock.timeout(HEALTH_PROBE_TIMEOUT):
                await self._read_index()
        except (TimeoutError, EtcdError):
            return False
        return True

    # ------------------------------------------------------------------ maintenance

    async def move_leader(self, target: int) -> None:
        status = self.driver.status
        if status.role is not Role.LEADER:
            raise NotLeader()
        if target not in self.membership.voter_ids():
            raise BadLeaderTransferee()
        if status.lead == target:
            return
        try:
            async with self.clock.timeout(self.timing.request_timeout):
                await self.driver.transfer_leader(NodeId(target))
                await self.driver.wait_status(lambda st: st.lead == target)
        except TimeoutError:
            raise LeaderTransferTimeout() from None
        except LeaderTransferRefused:
            raise BadLeaderTransferee() from None  # raft's view of the voters disagreed
        except RaftNotLeader:
            raise NotLeader() from None  # we lost leadership before raft took the request
        except DriverStopped:
            raise Stopped() from None

    async def hand_over_leadership(self, bound: float) -> int | None:
        """A leader about to stop hands leadership to its most up-to-date reachable voter and
        waits, at most ``bound`` seconds, until it follows a new leader (issue 5, item 4): the
        cluster then has a leader within about one round trip, instead of an election timeout
        after this node's connections close. Returns the new leader, or None if this node does
        not lead, has no voter to hand over to, or the transfer did not finish in time (raft
        aborts it after an election timeout; the followers then campaign as after a crash)."""
        status = self.driver.status
        if status.role is not Role.LEADER:
            return None
        target = transfer_target(status, self.membership.voter_ids(), self._active_since)
        if target is None:
            return None
        try:
            async with self.clock.timeout(bound):
                await self.driver.transfer_leader(NodeId(target))
                after = await self.driver.wait_status(lambda st: st.lead not in (NONE, st.id))
        except (TimeoutError, LeaderTransferRefused, RaftNotLeader, DriverStopped) as exc:
            log.warning("could not hand leadership to %x before stopping: %r", target, exc)
            return None
        return int(after.lead)

    async def publish(self, name: str, client_urls: Sequence[str]) -> Membership:
        """Propose this member's name and client URLs, retrying until applied (spec §5.1)."""
        while True:
            request = PublishRequest(self._next_id(), self.member_id, name, tuple(client_urls))
            try:
                async with self.clock.timeout(self.timing.request_timeout):
                    result = await self.driver.propose(encode(request), request.request_id)
            except (ProposalDropped, TimeoutError) as exc:
                st = self.driver.status
                # Dropped: no leader yet, retried every heartbeat (debug); a timeout is news.
                log.log(
                    logging.WARNING if isinstance(exc, TimeoutError) else logging.DEBUG,
                    "publishing member %x is taking long (%s); will retry: leader %x, term %d, "
                    "commit %d, applied %d",
                    self.member_id,
                    type(exc).__name__,
                    st.lead,
                    st.term,
                    st.commit,
                    st.applied,
                )
                await self.clock.sleep(self.timing.heartbeat)
                continue
            assert isinstance(result, Membership)
            return result

    # ------------------------------------------------------------------ proposing

    async def change(
        self, change: MembershipChange, checks: Callable[[], None] | None = None
    ) -> Membership:
        """Propose one conf change and wait for this node to apply it, within ReqTimeout.

        ``checks`` (the strict reconfiguration checks) run when the change's turn comes, under
        the lock and again before every retry, so they judge the membership the change will be
        applied to, not one that an earlier queued change is about to replace (D3).
        """
        started_without_leader = self.driver.status.lead == NONE
        leader_seen = self.driver.status.lead
        try:
            async with self.clock.timeout(self.timing.request_timeout):
                async with self._change_lock:
                    return await self._propose_until_taken(change, checks)
        except TimeoutError:
            if started_without_leader:
                raise TimeoutDueToLeaderFail() from None
            if self.driver.status.lead != leader_seen:
                raise TimeoutDueToConnectionLost() from None
            raise RequestTimeout() from None
        except DriverStopped:
            raise Stopped() from None

    async def _propose_until_taken(
        self, change: MembershipChange, checks: Callable[[], None] | None
    ) -> Membership:
        while True:
            if checks is not None:
                checks()
            request = ChangeRequest(self._next_id(), change)
            conf_change = change.to_conf_change(encode(request))
            try:
                result = await self.driver.propose_conf_change(conf_change, request.request_id)
            except (ConfChangeInProgress, ProposalDropped) as exc:
                # Another change is pending, or there is no leader yet: wait and retry (D3).
                log.debug("conf change %s not taken yet: %s", change.kind.value, exc)
                await self._before_retry()
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
                await self._before_retry()  # no leader yet: wait within the caller's bound
            except DriverStopped:
                raise Stopped() from None

    async def _before_retry(self) -> None:
        """The pause before a refused proposal or read is tried again, within the caller's
        bound. Without a leader, the retry goes as soon as one is known. Otherwise the refusal
        was a change still pending (a new leader refuses changes until it has applied its whole
        log) or a transfer: the retry goes when this node applies something new, at the latest
        after a heartbeat. Measured by bench/failover.py, this takes about a heartbeat off the
        first change after a leader crash."""
        status = self.driver.status
        if status.lead == NONE:
            await self.driver.wait_status(lambda st: st.lead != NONE)
            return
        applied = status.applied
        with contextlib.suppress(TimeoutError):
            async with self.clock.timeout(self.timing.heartbeat):
                await self.driver.wait_status(lambda st: st.applied > applied or st.lead == NONE)

    async def _bounded(self, work: Awaitable[None]) -> None:
        try:
            async with self.clock.timeout(self.timing.request_timeout):
                await work
        except TimeoutError:
            raise RequestTimeout() from None

    async def _wait_applied_caught_up(self) -> None:
        status = self.driver.status
        try:
            async with self.clock.timeout(APPLY_WAIT):
                await self.driver.wait_applied(status.commit)
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
                    await self.clock.sleep(self.timing.heartbeat)
                    continue
                try:
                    return await forward(leader, member_id)
                except (LearnerNotReady, MemberNotFound, MemberNotLearner):
                    raise
                except Exception as exc:  # a transport hiccup or a leader change: retry
                    log.debug("forwarding promote to %x failed: %s", lead, exc)
                    await self.clock.sleep(self.timing.heartbeat)

        try:
            async with self.clock.timeout(self.timing.request_timeout):
                return await attempt()
        except TimeoutError:
            if self.driver.status.lead == NONE:
                raise NoLeader() from None
            raise RequestTimeout() from None

    def _next_id(self) -> int:
        return next(self._request_ids)


class AutoPromoter:
    """``--auto-promote-learners`` (issue 5, item 7): the leader promotes each learner that passes
    the readiness rule (spec §3.10: its Match is at least 90 % of the leader's), as one more conf
    change through `ClusterManager.member_promote`, so with the very checks an operator's
    MemberPromote gets (readiness again, applied index caught up, the started-voters rule).

    It watches the driver's published status, so it does nothing while no learner is in sync.
    One promotion runs at a time. A refused one (too few started voters, leadership lost, a
    timeout) is retried after a backoff that doubles per learner, from `AUTO_PROMOTE_BACKOFF`
    up to `AUTO_PROMOTE_BACKOFF_MAX`; the task that waits it out is the one in flight, so a
    refusal never turns into a promotion attempt per status change. Off unless asked for: etcd
    has no such thing, and promoting changes the quorum size."""

    def __init__(self, manager: ClusterManager) -> None:
        self.manager = manager
        #: Learners promoted by this node, in order (for logs and tests).
        self.promoted: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._backoff: dict[int, float] = {}
        self._closed = False
        manager.driver.add_status_listener(self._on_status)

    def ready_learners(self, status: DriverStatus) -> list[int]:
        """Learners this node, if it leads, would promote now (lowest ID first)."""
        own = status.progress.get(status.id)
        if status.role is not Role.LEADER or own is None:
            return []
        ready = []
        for learner in self.manager.membership.learner_ids():
            progress = status.progress.get(NodeId(learner))
            if progress is not None and learner_ready(progress.match, own.match):
                ready.append(learner)
        return sorted(ready)

    def _on_status(self, old: DriverStatus | None, new: DriverStatus) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        ready = self.ready_learners(new)
        if ready:
            self._task = asyncio.create_task(
                self._promote(ready[0]), name=f"auto-promote-{ready[0]:x}"
            )

    async def _promote(self, learner: int) -> None:
        try:
            await self.manager.member_promote(learner)
        except Exception as exc:  # a refusal (an etcd error) or a fault: both retry later
            delay = self._backoff.get(learner, AUTO_PROMOTE_BACKOFF)
            self._backoff[learner] = min(2 * delay, AUTO_PROMOTE_BACKOFF_MAX)
            log.log(
                logging.INFO if isinstance(exc, EtcdError) else logging.WARNING,
                "automatic promotion of learner %x refused (%s); next try in %.1f s",
                learner,
                type(exc).__name__,
                delay,
                exc_info=not isinstance(exc, EtcdError),
            )
            await self.manager.clock.sleep(delay)
        else:
            self._backoff.pop(learner, None)
            self.promoted.append(learner)
            log.info("promoted learner %x automatically: it is in sync", learner)
        self._task = None
        self._on_status(None, self.manager.driver.status)  # another learner, or a retry

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def transfer_target(
    status: DriverStatus,
    voters: Iterable[int],
    active_since: Callable[[int], float | None],
) -> int | None:
    """The voter a stopping leader hands over to: among the other voters this node is connected
    to, the one with the highest replicated index (Match), then the lowest ID (so the choice is
    deterministic). None if there is none: a transfer could not complete anyway."""
    candidates = [
        v
        for v in voters
        if v != status.id and NodeId(v) in status.progress and active_since(v) is not None
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda v: (int(status.progress[NodeId(v)].match), -v))


def request_ids(member_id: int, now_ms: int) -> Iterator[int]:
    """Request ids unique across the cluster and across restarts (etcd's ``idutil.Generator``).

    Every node resolves the waiter whose id an applied entry carries, whoever proposed it, so
    two members must never use the same id: the top 2 bytes are the member ID's low 2 bytes,
    the next 5 the start time in milliseconds (a restart does not reuse ids), the last byte a
    counter that carries into the time bytes.
    """
    prefix = (member_id & 0xFFFF) << 48
    suffix_mask = (1 << 48) - 1
    for suffix in itertools.count((now_ms & 0xFF_FFFF_FFFF) << 8):
        yield prefix | (suffix & suffix_mask)
