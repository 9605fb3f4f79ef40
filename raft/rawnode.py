"""RawNode: the synchronous facade the driver talks to.

One owner calls it (the node's driver task, or a test). Inputs: ``tick``, ``step``,
``propose``, ``propose_conf_change``, ``transfer_leader``, ``read_index``. Output: ``ready()``,
to be handled as ``raft.ready.Ready`` documents, then ``advance(ready)``. Every ``ready()``
must be followed by ``advance`` before the next ``ready()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from raft.config import Config
from raft.core import Raft
from raft.errors import LeaderTransferRefused, NotLeader
from raft.ready import Ready
from raft.storage import Storage
from raft.tracker import ProgressState
from raft.types import (
    LOCAL_MESSAGES,
    NONE,
    RESPONSE_MESSAGES,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MessageType,
    NodeId,
    Role,
    SoftState,
    Term,
)


@dataclass(frozen=True, slots=True)
class ProgressView:
    """A leader's view of one member's replication (used e.g. for learner readiness)."""

    match: Index
    next: Index
    state: ProgressState
    is_learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    hard_state: HardState
    soft_state: SoftState
    applied: Index
    conf_state: ConfState
    #: Filled on the leader only.
    progress: dict[NodeId, ProgressView]
    lead_transferee: NodeId


class RawNode:
    def __init__(self, config: Config, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    # -- inputs --

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (tests and bootstrap of a single node)."""
        self.raft.step_local(Message(type=MessageType.HUP, frm=self.raft.id))

    def step(self, m: Message) -> None:
        """Feed a message from a peer. Local-only types and answers from strangers are dropped."""
        if m.type in LOCAL_MESSAGES:
            return
        if m.type in RESPONSE_MESSAGES and m.frm not in self.raft.tracker.progress:
            if m.type is not MessageType.PROP_REJECT:
                return
        self.raft.step(m)

    def propose(self, data: bytes) -> None:
        """Propose a normal entry; raises ProposalDropped if no leader can take it."""
        entry = Entry(Term(0), Index(0), EntryType.NORMAL, data)
        self.raft.step_local(Message(type=MessageType.PROP, frm=self.raft.id, entries=(entry,)))

    def propose_conf_change(self, change: ConfChange, data: bytes = b"") -> None:
        """Propose a conf change; raises ConfChangeInProgress if one is pending here."""
        entry = Entry(Term(0), Index(0), EntryType.CONF_CHANGE, data, change)
        self.raft.step_local(Message(type=MessageType.PROP, frm=self.raft.id, entries=(entry,)))

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed conf change; raises ConfChangeError and changes nothing if invalid."""
        return self.raft.apply_conf_change(change)

    def transfer_leader(self, transferee: NodeId) -> None:
        """Ask the leader to hand over to ``transferee`` (a voter)."""
        if transferee not in self.raft.tracker.voters:
            kind = "a learner" if transferee in self.raft.tracker.learners else "not a member"
            raise LeaderTransferRefused(f"cannot transfer leadership to {transferee:x}: {kind}")
        if self.raft.lead == NONE:
            raise NotLeader("no leader to transfer leadership from")
        self.raft.step_local(Message(type=MessageType.TRANSFER_LEADER, frm=transferee))

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point; the answer arrives as a ReadState with ``ctx``."""
        if not ctx:
            raise ValueError("read_index needs a non-empty, unique context")
        self.raft.step_local(Message(type=MessageType.READ_INDEX, frm=self.raft.id, context=ctx))

    def forget_leader(self, campaign_within: int = 0) -> None:
        """The application has strong evidence the leader is gone (its connection closed as its
        process died): stop trusting the leader's lease now, so PreVote can succeed without
        waiting out the election timeout. With ``campaign_within`` > 0 this node's own election
        timer fires within that many ticks (a random share of them, so nodes do not collide).
        Safe: it changes no term or vote, and a live leader's next message restores it."""
        r = self.raft
        if r.role is not Role.FOLLOWER or r.lead == NONE:
            return
        r.lead = NONE
        if campaign_within > 0:
            soon = r.randomized_election_timeout - 1 - r.cfg.rng.randrange(campaign_within)
            r.election_elapsed = max(r.election_elapsed, soon)

    def report_unreachable(self, node: NodeId) -> None:
        """The transport failed to reach ``node``: stop pipelining to it and probe instead."""
        pr = self.raft.tracker.progress.get(node)
        if self.raft.role is Role.LEADER and pr is not None:
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()

    def report_snapshot(self, node: NodeId, delivered: bool) -> None:
        """The transport finished sending a snapshot to ``node``."""
        pr = self.raft.tracker.progress.get(node)
        if self.raft.role is not Role.LEADER or pr is None:
            return
        if pr.state is ProgressState.SNAPSHOT:
            if not delivered:
                pr.pending_snapshot = Index(0)
            pr.become_probe()
            pr.probe_sent = True  # wait for the next heartbeat answer before probing

    # -- outputs --

    def has_ready(self) -> bool:
        r = self.raft
        r.flush_appends()
        return bool(
            r.soft_state() != self._prev_soft
            or (r.hard_state() != self._prev_hard)
            or r.log.unstable
            or r.log.unstable_snapshot is not None
            or r.msgs
            or r.read_states
            or r.rejected
            or r.log.has_next_committed()
        )

    def ready(self) -> Ready:
        r = self.raft
        r.flush_appends()
        soft, hard = r.soft_state(), r.hard_state()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=tuple(r.log.unstable),
            snapshot=r.log.unstable_snapshot,
            committed_entries=tuple(r.log.next_committed()),
            messages=tuple(r.msgs),
            read_states=tuple(r.read_states),
            rejected_proposals=tuple(r.rejected),
            must_sync=bool(
                r.log.unstable
                or r.log.unstable_snapshot is not None
                or (hard.term, hard.vote) != (self._prev_hard.term, self._prev_hard.vote)
            ),
        )
        r.msgs, r.read_states, r.rejected = [], [], []
        return rd

    def advance(self, rd: Ready) -> None:
        """The Ready was persisted, sent and applied."""
        r = self.raft
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            r.log.stable_snapshot_to(rd.snapshot.metadata.index)
            r.log.applied_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
            r.resume_deferred_transfer()

    # -- observation --

    def status(self) -> Status:
        r = self.raft
        progress: dict[NodeId, ProgressView] = {}
        if r.role is Role.LEADER:
            progress = {
                node: ProgressView(pr.match, pr.next, pr.state, pr.is_learner, pr.recent_active)
                for node, pr in r.tracker.items()
            }
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.log.applied,
            conf_state=r.tracker.conf_state(),
            progress=progress,
            lead_transferee=r.lead_transferee,
        )
