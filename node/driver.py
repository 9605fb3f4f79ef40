"""The one task that owns the Raft core (CONVENTIONS P2, P3).

Everything that wants something from Raft (gRPC handlers, the peer transport, the ticker) puts an
event on the driver's inbox and, for requests, awaits a Future. The driver alone touches the
``RawNode``: it drains the inbox, then handles every Ready in the fixed order

1. persist (one group-committed fsync, off the event loop, inside ``LogStore.save``);
2. send the Ready's messages (the transport only enqueues; a slow peer never blocks the loop);
3. apply committed entries to the state machine (conf changes also to Raft) and resolve the
   waiting Futures with what the apply produced;
4. advance.

Proposals are resolved **at apply time**, never at append time, so a reply always describes state
that is committed. A proposal the leader refuses (a conf change while another is pending) fails
its Future at once with the leader's reason. Futures that no apply will ever reach (the entry was
lost with its leader) are left to the caller's deadline, as in etcd.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from raft import (
    NONE,
    ConfChange,
    Config,
    ConfState,
    Entry,
    HardState,
    Index,
    LeaderTransferRefused,
    Message,
    NodeId,
    NotLeader,
    ProgressView,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    Snapshot,
    Storage,
    Term,
)

log = logging.getLogger(__name__)


class LogStore(Storage, Protocol):
    """Raft's read-side storage plus the durable writes the driver needs."""

    async def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None: ...

    async def create_snapshot(
        self, index: Index, conf_state: ConfState, data: bytes
    ) -> Snapshot: ...

    def should_snapshot(self, applied: Index) -> bool: ...


class PeerSender(Protocol):
    def send(self, messages: Sequence[Message]) -> None:
        """Queue messages for their peers; never blocks, may drop (Raft retries)."""
        ...


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one entry produced, for the Future of the request that proposed it.

    Every node answers the local request whose id an applied entry carries, whoever proposed
    it, so request ids must be unique across the whole cluster (the membership layer puts the
    member ID in their top bytes, as etcd's ID generator does)."""

    request_id: int | None
    #: The state machine's answer; an Exception instance is raised to the waiter.
    result: object


class StateMachine(Protocol):
    """The application: turns committed entries into state (the membership, for raftnode)."""

    def apply(self, entry: Entry, apply_conf_change: Callable[[ConfChange], ConfState]) -> Applied:
        """Apply one committed entry. For a conf change that the application accepts, call
        ``apply_conf_change`` so Raft's voter/learner sets change in the same step."""
        ...

    def request_id(self, data: bytes, change: ConfChange | None) -> int | None:
        """The request id carried by a proposal's payload (to fail it when refused)."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class DriverStopped(Exception):
    """The driver stopped while the request waited."""


class ReadIndexLost(Exception):
    """The leader changed while a ReadIndex request waited (etcd: leader changed)."""


class EventKind(enum.Enum):
    TICK = "tick"
    STEP = "step"
    PROPOSE = "propose"
    PROPOSE_CONF_CHANGE = "propose-conf-change"
    READ_INDEX = "read-index"
    TRANSFER_LEADER = "transfer-leader"
    CALL = "call"


@dataclass(slots=True)
class _Event:
    kind: EventKind
    message: Message | None = None
    data: bytes = b""
    change: ConfChange | None = None
    target: NodeId = NONE
    request_id: int | None = None
    future: asyncio.Future[object] | None = None
    call: Callable[[RawNode], object] | None = None


@dataclass(frozen=True, slots=True)
class DriverStatus:
    """A read-only picture of the core, republished after every loop iteration, so handlers
    never touch the RawNode (P3)."""

    id: NodeId
    lead: NodeId = NONE
    role: Role = Role.FOLLOWER
    term: Term = Term(0)
    commit: Index = Index(0)
    applied: Index = Index(0)
    #: Term of the last applied entry (etcd's header.raft_term).
    applied_term: Term = Term(0)
    conf_state: ConfState = field(default_factory=ConfState)
    #: On the leader: each member's replication progress.
    progress: dict[NodeId, ProgressView] = field(default_factory=dict)
    lead_transferee: NodeId = NONE


class RaftDriver:
    def __init__(
        self,
        config: Config,
        storage: LogStore,
        sender: PeerSender,
        state_machine: StateMachine,
    ) -> None:
        self._config = config
        self._storage = storage
        self._sender = sender
        self._sm = state_machine
        self._node = RawNode(config, storage)
        self._inbox: asyncio.Queue[_Event] = asyncio.Queue()
        self._waiters: dict[int, asyncio.Future[object]] = {}
        self._reads: dict[bytes, asyncio.Future[object]] = {}
        self._apply_waiters: list[tuple[Index, asyncio.Future[object]]] = []
        self._status_waiters: list[
            tuple[Callable[[DriverStatus], bool], asyncio.Future[object]]
        ] = []
        # ReadIndex contexts must be unique across the cluster: the leader tracks pending reads
        # by context, and a second request with a context already pending is merged into the
        # first (whose requester alone is answered). So: our member ID, a per-start nonce (a
        # restarted member must not match a read its earlier life left pending), a counter.
        self._read_prefix = int(config.id).to_bytes(8, "big") + os.urandom(8)
        self._read_ids = itertools.count(1)
        self._applied_term = Term(storage.snapshot().metadata.term)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._status_listeners: list[Callable[[DriverStatus, DriverStatus], None]] = []
        #: Proposals that were never applied: refused, dropped, or abandoned by their caller.
        self.failed_proposals = 0
        self.status = self._build_status()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"raft-driver-{self._config.id:x}")

    async def close(self) -> None:
        """Stop the loop and fail every waiter with DriverStopped."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._fail_all(DriverStopped("the node is stopping"))

    def add_status_listener(self, listener: Callable[[DriverStatus, DriverStatus], None]) -> None:
        """Called with (old, new) whenever the published status changes."""
        self._status_listeners.append(listener)

    # ------------------------------------------------------------------ requests

    def tick(self) -> None:
        self._put(_Event(EventKind.TICK))

    def step(self, message: Message) -> None:
        self._put(_Event(EventKind.STEP, message=message))

    async def propose(self, data: bytes, request_id: int) -> object:
        """Propose a normal entry; returns what applying it produced."""
        return await self._request(
            _Event(EventKind.PROPOSE, data=data, request_id=request_id), request_id
        )

    async def propose_conf_change(self, change: ConfChange, request_id: int) -> object:
        """Propose a conf change; returns what applying it produced (or raises its error)."""
        return await self._request(
            _Event(EventKind.PROPOSE_CONF_CHANGE, change=change, request_id=request_id),
            request_id,
        )

    async def read_index(self) -> Index:
        """A linearizable read point: returns once this node has applied up to it."""
        ctx = self._read_prefix + next(self._read_ids).to_bytes(8, "big")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = future
        try:
            self._put(_Event(EventKind.READ_INDEX, data=ctx, future=future))
            index = await future
        finally:
            self._reads.pop(ctx, None)
        assert isinstance(index, int)
        await self.wait_applied(Index(index))
        return Index(index)

    async def wait_applied(self, index: Index) -> None:
        if self.status.applied >= index:
            return
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._apply_waiters.append((index, future))
        await future

    async def wait_status(self, predicate: Callable[[DriverStatus], bool]) -> DriverStatus:
        """Return the first published status for which ``predicate`` holds."""
        if predicate(self.status):
            return self.status
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._status_waiters.append((predicate, future))
        result = await future
        assert isinstance(result, DriverStatus)
        return result

    async def transfer_leader(self, target: NodeId) -> None:
        """Ask Raft to hand leadership to ``target``; returns once the request is taken."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._put(_Event(EventKind.TRANSFER_LEADER, target=target, future=future))
        await future

    def peer_lost(self, peer: NodeId, campaign_within: int = 3) -> None:
        """A peer's connection closed (its process likely died). If it was our leader, stop
        trusting its lease and campaign within a few ticks (issue 5: crash failover)."""

        def forget(node: RawNode) -> None:
            if node.raft.lead == peer:
                node.forget_leader(campaign_within)

        self._put(_Event(EventKind.CALL, call=forget))

    def report_unreachable(self, peer: NodeId) -> None:
        """The transport could not reach ``peer``: Raft stops pipelining to it."""
        self._put(_Event(EventKind.CALL, call=lambda node: node.report_unreachable(peer)))

    async def call(self, fn: Callable[[RawNode], object]) -> object:
        """Run ``fn`` on the RawNode inside the driver task (for rare reads or reports)."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._put(_Event(EventKind.CALL, call=fn, future=future))
        return await future

    async def _request(self, event: _Event, request_id: int) -> object:
        if request_id in self._waiters:
            raise ValueError(f"request id {request_id} is already waiting")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        event.future = future
        self._waiters[request_id] = future
        try:
            self._put(event)
            return await future  # an error the apply produced is raised here
        except (ProposalDropped, NotLeader, DriverStopped, asyncio.CancelledError):
            # Never applied (refused, dropped, or abandoned at its deadline): etcd's
            # proposals_failed_total. An error the apply produced was committed, so not failed.
            self.failed_proposals += 1
            raise
        finally:
            self._waiters.pop(request_id, None)

    @property
    def pending_proposals(self) -> int:
        """Proposals waiting for their apply (etcd's proposals_pending)."""
        return len(self._waiters)

    def _put(self, event: _Event) -> None:
        if self._stopped:
            if event.future is not None and not event.future.done():
                event.future.set_exception(DriverStopped("the node is stopping"))
            return
        self._inbox.put_nowait(event)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        try:
            while True:
                self._handle(await self._inbox.get())
                while not self._inbox.empty():  # drain: one Ready for a burst of events
                    self._handle(self._inbox.get_nowait())
                await self._process_readies()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("raft driver crashed; the node stops serving")
            self._stopped = True
            self._fail_all(DriverStopped("the raft driver failed"))
            raise

    async def run_until_idle(self) -> None:
        """Handle everything queued and every Ready (tests drive the driver this way)."""
        while not self._inbox.empty():
            self._handle(self._inbox.get_nowait())
        await self._process_readies()

    def _handle(self, event: _Event) -> None:
        try:
            self._handlers[event.kind](self, event)
        except (ProposalDropped, NotLeader, LeaderTransferRefused) as exc:
            self._resolve(event.future, exc)

    def _on_tick(self, event: _Event) -> None:
        self._node.tick()

    def _on_step(self, event: _Event) -> None:
        assert event.message is not None
        self._node.step(event.message)

    def _on_propose(self, event: _Event) -> None:
        self._node.propose(event.data)

    def _on_propose_conf_change(self, event: _Event) -> None:
        assert event.change is not None
        self._node.propose_conf_change(event.change)

    def _on_read_index(self, event: _Event) -> None:
        self._node.read_index(event.data)

    def _on_transfer_leader(self, event: _Event) -> None:
        self._node.transfer_leader(event.target)
        self._resolve(event.future, None)

    def _on_call(self, event: _Event) -> None:
        assert event.call is not None
        self._resolve(event.future, event.call(self._node))

    _handlers: dict[EventKind, Callable[[RaftDriver, _Event], None]] = {
        EventKind.TICK: _on_tick,
        EventKind.STEP: _on_step,
        EventKind.PROPOSE: _on_propose,
        EventKind.PROPOSE_CONF_CHANGE: _on_propose_conf_change,
        EventKind.READ_INDEX: _on_read_index,
        EventKind.TRANSFER_LEADER: _on_transfer_leader,
        EventKind.CALL: _on_call,
    }

    async def _process_readies(self) -> None:
        while self._node.has_ready():
            rd = self._node.ready()
            await self._persist(rd)
            self._sender.send(rd.messages)
            self._apply(rd)
            self._node.advance(rd)
            self._notify(rd)
            await self._maybe_snapshot()
        self._publish_status()

    async def _persist(self, rd: Ready) -> None:
        if rd.snapshot is not None or rd.entries or rd.hard_state is not None:
            await self._storage.save(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)

    def _apply(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._sm.restore(rd.snapshot.data)
            self._applied_term = rd.snapshot.metadata.term
        for entry in rd.committed_entries:
            applied = self._sm.apply(entry, self._node.apply_conf_change)
            self._applied_term = entry.term
            if applied.request_id is not None:
                self._resolve(self._waiters.get(applied.request_id), applied.result)

    def _notify(self, rd: Ready) -> None:
        for read in rd.read_states:
            self._resolve(self._reads.get(read.request_ctx), int(read.index))
        for rejected in rd.rejected_proposals:
            request_id = self._sm.request_id(rejected.data, rejected.change)
            if request_id is not None:
                self._resolve(self._waiters.get(request_id), ProposalDropped(rejected.reason))
        if rd.soft_state is not None and self._reads:
            # ReadIndex requests in flight when the leader changes may never be answered.
            for future in self._reads.values():
                self._resolve(future, ReadIndexLost("leader changed"))

    async def _maybe_snapshot(self) -> None:
        applied = self._node.raft.log.applied
        if applied and self._storage.should_snapshot(applied):
            conf = self._node.raft.tracker.conf_state()
            await self._storage.create_snapshot(applied, conf, self._sm.snapshot())

    def _publish_status(self) -> None:
        old, self.status = self.status, self._build_status()
        if self.status.applied > old.applied and self._apply_waiters:
            waiting = []
            for index, future in self._apply_waiters:
                if index <= self.status.applied:
                    self._resolve(future, None)
                else:
                    waiting.append((index, future))
            self._apply_waiters = waiting
        if old != self.status:
            for listener in self._status_listeners:
                listener(old, self.status)
            if self._status_waiters:
                still: list[tuple[Callable[[DriverStatus], bool], asyncio.Future[object]]] = []
                for predicate, future in self._status_waiters:
                    if future.done():
                        continue
                    if predicate(self.status):
                        self._resolve(future, self.status)
                    else:
                        still.append((predicate, future))
                self._status_waiters = still

    def _build_status(self) -> DriverStatus:
        st = self._node.status()
        return DriverStatus(
            id=st.id,
            lead=st.soft_state.lead,
            role=st.soft_state.role,
            term=st.hard_state.term,
            commit=st.hard_state.commit,
            applied=st.applied,
            applied_term=self._applied_term,
            conf_state=st.conf_state,
            progress=st.progress,
            lead_transferee=st.lead_transferee,
        )

    # ------------------------------------------------------------------ futures

    @staticmethod
    def _resolve(future: asyncio.Future[object] | None, result: object) -> None:
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def _fail_all(self, error: Exception) -> None:
        futures: list[asyncio.Future[object]] = [
            *self._waiters.values(),
            *self._reads.values(),
            *(f for _, f in self._apply_waiters),
            *(f for _, f in self._status_waiters),
        ]
        while not self._inbox.empty():
            event = self._inbox.get_nowait()
            if event.future is not None:
                futures.append(event.future)
        for future in futures:
            self._resolve(future, error)
