"""What a leader knows about each follower's log, and the voter/learner sets.

A ``Progress`` is in one of three states (the flow-control design of etcd-io/raft):

* PROBE: the leader does not know where the follower's log ends. It sends one append and waits
  for the answer (or a heartbeat) before sending another, backing ``next`` off on rejection.
* REPLICATE: the follower is known to match; appends are pipelined optimistically, at most
  ``max_inflight`` unacknowledged messages at a time.
* SNAPSHOT: the entries the follower needs are compacted; a snapshot is on its way and appends
  pause until it is acknowledged (or given up on after a timeout).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator

from raft import quorum
from raft.types import ConfState, Index, NodeId


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The last indexes of append messages sent but not yet acknowledged, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._indexes: deque[Index] = deque()

    def __len__(self) -> int:
        return len(self._indexes)

    def full(self) -> bool:
        return len(self._indexes) >= self.capacity

    def add(self, last_index: Index) -> None:
        if self.full():
            raise OverflowError("cannot add into a full inflights window")
        self._indexes.append(last_index)

    def free_le(self, index: Index) -> None:
        """Forget every message whose last index is <= ``index`` (it was acknowledged)."""
        while self._indexes and self._indexes[0] <= index:
            self._indexes.popleft()

    def free_first_one(self) -> None:
        """Make room for one message: a heartbeat answer shows the follower is alive."""
        if self._indexes:
            self._indexes.popleft()

    def reset(self) -> None:
        self._indexes.clear()


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "pending_snapshot",
        "snapshot_ticks",
        "recent_active",
        "probe_sent",
        "inflights",
        "is_learner",
    )

    def __init__(self, next_index: Index, max_inflight: int, is_learner: bool) -> None:
        self.match = Index(0)
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = Index(0)
        #: Ticks spent in SNAPSHOT state; a snapshot lost on the way is retried after a while.
        self.snapshot_ticks = 0
        #: Heard from since the last CheckQuorum round.
        self.recent_active = False
        #: In PROBE, an append is outstanding: don't send another until a response.
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"learner={self.is_learner}, inflight={len(self.inflights)})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = Index(0)
        self.snapshot_ticks = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot, probing resumes right after it (or after match if that is further).
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = Index(max(self.match + 1, pending + 1))
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = Index(self.match + 1)

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = Index(self.match + 1)

    def become_snapshot(self, snapshot_index: Index) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: Index) -> bool:
        """The follower acknowledged up to ``index``; returns whether match moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = Index(max(self.next, index + 1))
        return updated

    def sent_entries(self, last_index: Index, count: int) -> None:
        """Record an append carrying ``count`` entries ending at ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = Index(last_index + 1)
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decr_to(self, rejected: Index, match_hint: Index) -> bool:
        """The follower rejected the append at ``rejected``; move ``next`` back (at most to
        ``match_hint`` + 1). Stale rejections are ignored; returns whether anything changed."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: already known to match past it
            self.next = Index(self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we are waiting for
        self.next = Index(max(min(rejected, match_hint + 1), 1))
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether appends to this follower must wait (flow control)."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True


class ProgressTracker:
    """The configuration (voters, learners) and, on a leader, one Progress per member."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: frozenset[NodeId] = frozenset()
        self.learners: frozenset[NodeId] = frozenset()
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}

    def conf_state(self) -> ConfState:
        return ConfState(voters=self.voters, learners=self.learners)

    def set_conf(self, conf: ConfState, next_index: Index) -> None:
        """Switch to ``conf``: keep the progress of members that stay, add fresh ones."""
        self.voters, self.learners = conf.voters, conf.learners
        members = conf.members()
        for node in list(self.progress):
            if node not in members:
                del self.progress[node]
        for node in members:
            pr = self.progress.get(node)
            if pr is None:
                pr = Progress(next_index, self.max_inflight, node in conf.learners)
                # A new member must not count as inactive before it had a chance to answer.
                pr.recent_active = True
                self.progress[node] = pr
            pr.is_learner = node in conf.learners

    def reset_progress(self, next_index: Index) -> None:
        self.progress = {}
        self.set_conf(self.conf_state(), next_index)

    def items(self) -> Iterator[tuple[NodeId, Progress]]:
        return iter(sorted(self.progress.items()))

    def committed(self) -> Index:
        return quorum.committed_index(
            self.voters, {n: p.match for n, p in self.progress.items() if n in self.voters}
        )

    def quorum_active(self) -> bool:
        active = [n for n, p in self.progress.items() if p.recent_active]
        return quorum.has_quorum(self.voters, active)

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node: NodeId, granted: bool) -> None:
        self.votes.setdefault(node, granted)

    def vote_result(self) -> quorum.VoteResult:
        return quorum.vote_result(self.voters, self.votes)

    def tally(self) -> tuple[int, int]:
        granted = sum(1 for n, v in self.votes.items() if v and n in self.voters)
        rejected = sum(1 for n, v in self.votes.items() if not v and n in self.voters)
        return granted, rejected
