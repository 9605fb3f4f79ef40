"""Snapshots: the application compacts at an applied index; the leader sends a snapshot to a
follower (or learner) whose next entry is compacted; a lost snapshot is retried; nodes restart
from their snapshot.

Layer (b)/(c) of CONVENTIONS P8: in-memory clusters driven by ticks and explicit delivery.
"""

from __future__ import annotations

from raft import (
    ConfChange,
    ConfChangeType,
    Index,
    MessageType,
    NodeId,
    ProgressState,
    Role,
)
from tests.raft.harness import Cluster, decode_state
from tests.raft.scenario_helpers import (
    Dropper,
    add_rule,
    cut_off,
    delivered_since,
    leader_among,
    log_terms,
    mark,
    node,
    remove_rule,
    role,
    tick_until,
)

ET = 10
MT = MessageType


def fill(c: Cluster, at: int, prefix: bytes, count: int) -> list[bytes]:
    values = [prefix + b"%d" % i for i in range(count)]
    for v in values:
        c.propose(at, v)
    return values


def test_lagging_follower_gets_a_snapshot_and_recovers_the_applied_state():
    c = Cluster([1, 2, 3], seed=71)
    leader = c.elect(1)
    early = fill(c, 1, b"early-", 5)
    cut = cut_off(c, 3)
    middle = fill(c, 1, b"mid-", 20)
    snap = c.snapshot_and_compact(1)
    assert leader.storage.first_index() == snap.metadata.index + 1
    late = fill(c, 1, b"late-", 5)
    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: node(c, 3).applied == leader.applied, max_ticks=3 * ET)
    snaps = [m.snapshot for m in delivered_since(c, since, MT.SNAP, to=3) if m.snapshot]
    assert [s.metadata.index for s in snaps] == [snap.metadata.index]
    n3 = node(c, 3)
    assert n3.applied == early + middle + late
    assert n3.storage.snapshot().metadata == snap.metadata
    assert decode_state(n3.storage.snapshot().data) == early + middle
    # After the snapshot, the remaining entries arrived as appends, and replication is normal.
    assert log_terms(n3)[-len(late) :] == log_terms(leader)[-len(late) :]
    assert leader.node.status().progress[NodeId(3)].state is ProgressState.REPLICATE
    c.propose(1, b"after")
    assert n3.applied[-1] == b"after"


def test_follower_whose_next_entry_survives_compaction_gets_no_snapshot():
    c = Cluster([1, 2, 3], seed=72)
    leader = c.elect(1)
    fill(c, 1, b"a", 5)
    cut = cut_off(c, 3)
    fill(c, 1, b"b", 5)
    # Compact only up to what node 3 already has: it needs no snapshot.
    n3_last = node(c, 3).raft.log.last_index()
    leader.storage.create_snapshot(
        Index(n3_last), leader.raft.tracker.conf_state(), repr(leader.applied[:5]).encode()
    )
    leader.storage.compact(Index(n3_last))
    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: node(c, 3).applied == leader.applied, max_ticks=3 * ET)
    assert not delivered_since(c, since, MT.SNAP)


def test_lost_snapshot_is_retried():
    c = Cluster([1, 2, 3], seed=73)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    values = fill(c, 1, b"v", 10)
    snap = c.snapshot_and_compact(1)
    remove_rule(c, cut)
    lost = add_rule(c, Dropper(MT.SNAP, to=3, limit=1))
    assert isinstance(lost, Dropper)
    tick_until(c, lambda: len(lost.dropped) == 1, max_ticks=2 * ET)
    assert leader.node.status().progress[NodeId(3)].state is ProgressState.SNAPSHOT
    assert node(c, 3).applied == []
    since = mark(c)
    tick_until(c, lambda: node(c, 3).applied == values, max_ticks=6 * ET)
    retried = [m.snapshot for m in delivered_since(c, since, MT.SNAP, to=3) if m.snapshot]
    assert [s.metadata.index for s in retried] == [snap.metadata.index]
    assert role(leader) is Role.LEADER
    assert leader.node.status().progress[NodeId(3)].state is ProgressState.REPLICATE


def test_snapshot_reported_undelivered_is_resent():
    c = Cluster([1, 2, 3], seed=74)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    values = fill(c, 1, b"v", 10)
    c.snapshot_and_compact(1)
    remove_rule(c, cut)
    lost = add_rule(c, Dropper(MT.SNAP, to=3, limit=1))
    tick_until(c, lambda: len(lost.dropped) == 1, max_ticks=2 * ET)
    # The transport tells the leader the snapshot did not make it: it probes again at the next
    # heartbeat answer, well before the snapshot timeout.
    leader.node.report_snapshot(NodeId(3), delivered=False)
    assert leader.node.status().progress[NodeId(3)].state is ProgressState.PROBE
    ticks = tick_until(c, lambda: node(c, 3).applied == values, max_ticks=ET)
    assert ticks <= 3


def test_snapshot_carries_the_configuration():
    c = Cluster([1, 2, 3], seed=75)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    c.add_empty_node(4)
    leader.node.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(4)))
    c.stabilize()
    fill(c, 1, b"x", 3)
    snap = c.snapshot_and_compact(1)
    assert snap.metadata.conf_state.learners == {4}
    remove_rule(c, cut)
    tick_until(c, lambda: node(c, 3).applied == leader.applied, max_ticks=3 * ET)
    n3 = node(c, 3)
    # Node 3 never applied the ADD_LEARNER entry; it learned the configuration from the snapshot.
    assert n3.conf_log == []
    assert n3.conf == leader.conf
    assert n3.raft.tracker.conf_state() == leader.conf
    assert n3.conf.learners == {4}


def test_restart_from_a_snapshot():
    c = Cluster([1, 2, 3], seed=76)
    c.elect(1)
    before = fill(c, 1, b"a", 8)
    n2 = node(c, 2)
    snap = c.snapshot_and_compact(2)
    after = fill(c, 1, b"b", 3)
    term, vote = n2.term, n2.raft.vote
    c.crash(2)
    n2 = c.restart(2)
    # The restarted node starts from its snapshot, then re-applies the entries after it.
    assert n2.raft.log.first_index() == snap.metadata.index + 1
    assert n2.applied == before
    assert (n2.term, n2.raft.vote) == (term, vote)
    c.stabilize()
    assert n2.applied == before + after
    c.propose(1, b"c")
    assert n2.applied == before + after + [b"c"]


def test_leader_restarts_from_its_snapshot_and_serves_it_to_a_new_member():
    c = Cluster([1, 2, 3], seed=77)
    c.elect(1)
    values = fill(c, 1, b"v", 6)
    snap = c.snapshot_and_compact(1)
    for i in (1, 2, 3):
        c.crash(i)
    for i in (1, 2, 3):
        c.restart(i)
    c.stabilize()
    assert node(c, 1).applied == values
    tick_until(c, lambda: c.leader() is not None, max_ticks=10 * ET)
    leader = c.leader()
    assert leader is not None
    # If node 1 leads, it serves its own snapshot; otherwise compact the new leader too.
    if leader.id != 1:
        snap = c.snapshot_and_compact(leader.id)
    joiner = c.add_empty_node(4)
    since = mark(c)
    leader.node.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(4)))
    c.stabilize()
    c.tick(2)
    snaps = [m.snapshot for m in delivered_since(c, since, MT.SNAP, to=4) if m.snapshot]
    assert [s.metadata.index for s in snaps] == [snap.metadata.index]
    assert joiner.applied == values


def test_follower_restarts_from_a_snapshot_it_received():
    c = Cluster([1, 2, 3], seed=78)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    values = fill(c, 1, b"v", 6)
    c.snapshot_and_compact(1)
    remove_rule(c, cut)
    tick_until(c, lambda: node(c, 3).applied == values, max_ticks=3 * ET)
    c.crash(3)
    n3 = c.restart(3)
    assert n3.applied == values  # straight from the installed snapshot
    c.stabilize()
    assert n3.conf == leader.conf
    c.propose(1, b"more")
    assert n3.applied == [*values, b"more"]
    assert leader_among(c, [1, 2, 3]) is leader
