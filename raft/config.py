"""Configuration of one Raft node, validated on construction."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raft.types import Index, NodeId

#: No byte limit on one append message.
NO_LIMIT = 1 << 62


@dataclass(frozen=True, slots=True)
class Config:
    id: NodeId
    #: Ticks a follower waits without hearing from a leader before campaigning. The actual
    #: timeout is drawn from [election_tick, 2 * election_tick) on every reset.
    election_tick: int = 10
    #: Ticks between a leader's heartbeats; must be well below election_tick.
    heartbeat_tick: int = 1
    #: The injected source of election jitter. Seed it and the node is deterministic.
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    #: Last index the application has applied (when restarting from persisted state).
    applied: Index = Index(0)
    #: Byte budget of the entries in one append message (at least one entry is always sent).
    max_size_per_msg: int = 1024 * 1024
    #: Append messages in flight to one follower in the replicate state.
    max_inflight_msgs: int = 256
    #: Byte budget of committed entries handed out in one Ready.
    max_committed_size_per_ready: int = NO_LIMIT
    #: Run a pre-election first, so a partitioned node cannot disrupt the cluster with terms.
    pre_vote: bool = True
    #: Leader steps down when it has not heard from a quorum for an election timeout; followers
    #: with a live leader ignore vote requests (the lease).
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.id <= 0:
            raise ValueError("node id must be positive")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.max_size_per_msg <= 0 or self.max_committed_size_per_ready <= 0:
            raise ValueError("size limits must be greater than 0")
        if self.applied < 0:
            raise ValueError("applied index must not be negative")
