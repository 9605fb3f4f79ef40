"""An in-memory cluster of RawNodes for tests: a network that can drop and cut, nodes that
persist into MemoryStorage, apply committed entries, and can crash and restart.

Deterministic: nothing here reads a clock or global randomness. Time passes only by ``tick``;
messages move only by ``deliver``/``stabilize``.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from raft import (
    NONE,
    ConfChange,
    ConfChangeError,
    Config,
    ConfState,
    Entry,
    EntryType,
    Index,
    MemoryStorage,
    Message,
    NodeId,
    RawNode,
    ReadState,
    Ready,
    RejectedProposal,
    Role,
    Snapshot,
    bootstrap_snapshot,
)
from raft.core import Raft

#: A predicate deciding whether a message is lost on the way.
DropRule = Callable[[Message], bool]


def encode_state(applied: list[bytes]) -> bytes:
    return repr(applied).encode()


def decode_state(data: bytes) -> list[bytes]:
    if not data:
        return []
    value = ast.literal_eval(data.decode())
    assert isinstance(value, list)
    return value


@dataclass
class SimNode:
    """One member: its durable storage survives a crash, everything else does not."""

    id: NodeId
    storage: MemoryStorage
    config: Config
    node: RawNode
    #: The application state machine: data of applied normal entries, in order.
    applied: list[bytes] = field(default_factory=list)
    #: Configuration as applied by the application (conf changes that passed).
    conf: ConfState = field(default_factory=ConfState)
    applied_index: Index = Index(0)
    read_states: list[ReadState] = field(default_factory=list)
    rejected: list[RejectedProposal] = field(default_factory=list)
    #: (index, change, accepted) of every conf change entry applied.
    conf_log: list[tuple[Index, ConfChange, bool]] = field(default_factory=list)
    alive: bool = True

    @property
    def raft(self) -> Raft:
        return self.node.raft

    @property
    def role(self) -> Role:
        return self.node.raft.role

    @property
    def term(self) -> int:
        return self.node.raft.term


class Cluster:
    def __init__(
        self,
        voters: Iterable[int],
        learners: Iterable[int] = (),
        *,
        seed: int = 0,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_size_per_msg: int = 1024 * 1024,
        max_inflight_msgs: int = 256,
    ) -> None:
        self.rng = random.Random(seed)
        self.config_template = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_size_per_msg=max_size_per_msg,
            max_inflight_msgs=max_inflight_msgs,
        )
        voter_ids = frozenset(NodeId(v) for v in voters)
        learner_ids = frozenset(NodeId(v) for v in learners)
        self.nodes: dict[NodeId, SimNode] = {}
        self.in_flight: list[Message] = []
        self.drop_rules: list[DropRule] = []
        self.cut: set[frozenset[NodeId]] = set()
        self.isolated: set[NodeId] = set()
        self.delivered: list[Message] = []
        base = bootstrap_snapshot(voter_ids)
        conf = ConfState(voters=voter_ids, learners=learner_ids)
        base = replace(base, metadata=replace(base.metadata, conf_state=conf))
        for node_id in sorted(voter_ids | learner_ids):
            storage = MemoryStorage()
            storage.apply_snapshot(base)
            self._start(node_id, storage, applied=Index(1), conf=conf)

    # -- membership of the simulation --

    def _make_config(self, node_id: NodeId, applied: Index) -> Config:
        node_seed = self.rng.randrange(1 << 30)
        return Config(
            id=node_id,
            rng=random.Random(node_seed),
            applied=applied,
            **self.config_template,  # type: ignore[arg-type]
        )

    def _start(
        self, node_id: NodeId, storage: MemoryStorage, applied: Index, conf: ConfState
    ) -> SimNode:
        config = self._make_config(node_id, applied)
        sim = SimNode(node_id, storage, config, RawNode(config, storage), conf=conf)
        sim.applied = decode_state(storage.snapshot().data)
        sim.applied_index = applied
        self.nodes[node_id] = sim
        return sim

    def add_empty_node(self, node_id: int) -> SimNode:
        """A brand-new member process with an empty data dir (it will get a snapshot)."""
        return self._start(NodeId(node_id), MemoryStorage(), Index(0), ConfState())

    def crash(self, node_id: int) -> None:
        """Lose all volatile state; the storage (what was persisted) survives."""
        self.nodes[NodeId(node_id)].alive = False
        self.in_flight = [m for m in self.in_flight if m.to != node_id]

    def restart(self, node_id: int) -> SimNode:
        old = self.nodes[NodeId(node_id)]
        snap = old.storage.snapshot()
        return self._start(old.id, old.storage, snap.metadata.index, snap.metadata.conf_state)

    # -- network --

    def isolate(self, node_id: int) -> None:
        self.isolated.add(NodeId(node_id))

    def cut_link(self, a: int, b: int) -> None:
        self.cut.add(frozenset({NodeId(a), NodeId(b)}))

    def heal(self) -> None:
        self.cut.clear()
        self.isolated.clear()
        self.drop_rules.clear()

    def _dropped(self, m: Message) -> bool:
        if m.to in self.isolated or m.frm in self.isolated:
            return True
        if frozenset({m.to, m.frm}) in self.cut:
            return True
        return any(rule(m) for rule in self.drop_rules)

    # -- driving the nodes --

    def handle_ready(self, sim: SimNode) -> Ready | None:
        """Persist, then send, then apply, then advance: the order in Ready's docstring."""
        if not sim.alive or not sim.node.has_ready():
            return None
        rd = sim.node.ready()
        if rd.snapshot is not None:
            sim.storage.apply_snapshot(rd.snapshot)
        sim.storage.append(rd.entries)
        if rd.hard_state is not None:
            sim.storage.set_hard_state(rd.hard_state)
        self.in_flight.extend(rd.messages)
        if rd.snapshot is not None:
            sim.applied = decode_state(rd.snapshot.data)
            sim.conf = rd.snapshot.metadata.conf_state
            sim.applied_index = rd.snapshot.metadata.index
        for entry in rd.committed_entries:
            self.apply_entry(sim, entry)
        sim.read_states.extend(rd.read_states)
        sim.rejected.extend(rd.rejected_proposals)
        sim.node.advance(rd)
        return rd

    def apply_entry(self, sim: SimNode, entry: Entry) -> None:
        assert entry.index == sim.applied_index + 1, (sim.id, entry.index, sim.applied_index)
        sim.applied_index = entry.index
        if entry.type is EntryType.NORMAL:
            if entry.data:
                sim.applied.append(entry.data)
            return
        assert entry.change is not None
        try:
            sim.conf = sim.node.apply_conf_change(entry.change)
            sim.conf_log.append((entry.index, entry.change, True))
        except ConfChangeError:
            sim.conf_log.append((entry.index, entry.change, False))

    def deliver(self, m: Message) -> None:
        target = self.nodes.get(m.to)
        if target is None or not target.alive or self._dropped(m):
            return
        self.delivered.append(m)
        target.node.step(m)

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            moved = False
            for sim in list(self.nodes.values()):
                if self.handle_ready(sim) is not None:
                    moved = True
            if self.in_flight:
                moved = True
                batch, self.in_flight = self.in_flight, []
                for m in batch:
                    self.deliver(m)
            if not moved:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, ticks: int = 1, nodes: Iterable[int] | None = None) -> None:
        chosen = [NodeId(n) for n in nodes] if nodes is not None else list(self.nodes)
        for _ in range(ticks):
            for node_id in chosen:
                sim = self.nodes[node_id]
                if sim.alive:
                    sim.node.tick()
            self.stabilize()

    def campaign(self, node_id: int) -> None:
        self.nodes[NodeId(node_id)].node.campaign()
        self.stabilize()

    def elect(self, node_id: int) -> SimNode:
        self.campaign(node_id)
        sim = self.nodes[NodeId(node_id)]
        assert sim.role is Role.LEADER, f"{node_id} is {sim.role} at term {sim.term}"
        return sim

    def leader(self) -> SimNode | None:
        leaders = [s for s in self.nodes.values() if s.alive and s.role is Role.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda s: s.term)

    def propose(self, node_id: int, data: bytes) -> None:
        self.nodes[NodeId(node_id)].node.propose(data)
        self.stabilize()

    def snapshot_and_compact(self, node_id: int) -> Snapshot:
        """The application's snapshot at its applied index, then compaction of the log."""
        sim = self.nodes[NodeId(node_id)]
        snap = sim.storage.create_snapshot(
            sim.applied_index, sim.node.raft.tracker.conf_state(), encode_state(sim.applied)
        )
        sim.storage.compact(sim.applied_index)
        return snap

    def lead_of(self, node_id: int) -> NodeId:
        return self.nodes[NodeId(node_id)].node.raft.lead

    def no_leader(self, node_id: int) -> bool:
        return self.lead_of(node_id) == NONE
