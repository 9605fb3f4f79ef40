"""Leadership transfer (TimeoutNow) and ReadIndex.

Transfer: to an up-to-date or a lagging follower, refused for learners and strangers, aborted
after an election timeout, proposals refused meanwhile. ReadIndex: on the leader after a quorum
heartbeat round, forwarded from a follower, deferred by a new leader until its own-term commit,
never answered by an isolated old leader, answered at once by a single voter.

Layer (b)/(c) of CONVENTIONS P8: in-memory clusters driven by ticks and explicit delivery.
"""

from __future__ import annotations

import pytest

from raft import (
    NONE,
    LeaderTransferRefused,
    MessageType,
    NodeId,
    ProposalDropped,
    ReadState,
    Role,
)
from raft.types import CAMPAIGN_TRANSFER
from tests.raft.harness import Cluster
from tests.raft.scenario_helpers import (
    Dropper,
    add_rule,
    cut_off,
    data_entries,
    delivered_since,
    leader_among,
    mark,
    node,
    remove_rule,
    role,
    tick_until,
)

ET = 10
MT = MessageType


# ---------------------------------------------------------------------------- leadership transfer


def test_transfer_to_an_up_to_date_follower():
    c = Cluster([1, 2, 3], seed=51)
    old = c.elect(1)
    c.propose(1, b"a")
    term = old.term
    since = mark(c)
    old.node.transfer_leader(NodeId(2))
    c.stabilize()
    assert len(delivered_since(c, since, MT.TIMEOUT_NOW, frm=1, to=2)) == 1
    # The transferee campaigns at once, skipping PreVote, and its requests bypass the lease.
    votes = delivered_since(c, since, MT.VOTE, frm=2)
    assert votes and all(m.context == CAMPAIGN_TRANSFER for m in votes)
    assert not delivered_since(c, since, MT.PRE_VOTE, frm=2)
    new = node(c, 2)
    assert role(new) is Role.LEADER and new.term == term + 1
    assert role(old) is Role.FOLLOWER and c.lead_of(1) == 2 and c.lead_of(3) == 2
    c.propose(2, b"b")
    assert all(s.applied == [b"a", b"b"] for s in c.nodes.values())


def test_transfer_requested_through_a_follower():
    c = Cluster([1, 2, 3], seed=52)
    old = c.elect(1)
    since = mark(c)
    term = old.term
    node(c, 3).node.transfer_leader(NodeId(3))  # forwarded to the leader
    c.stabilize()
    assert delivered_since(c, since, MT.TRANSFER_LEADER, frm=3, to=1)
    assert role(node(c, 3)) is Role.LEADER
    assert node(c, 3).term == term + 1


def test_transfer_to_a_lagging_follower_catches_it_up_first():
    c = Cluster([1, 2, 3], seed=53)
    old = c.elect(1)
    c.cut_link(1, 3)
    for i in range(5):
        c.propose(1, b"e%d" % i)
    assert data_entries(node(c, 3)) == []
    c.heal()  # no tick: node 3 is still behind when the transfer starts
    since = mark(c)
    term = old.term
    old.node.transfer_leader(NodeId(3))
    assert old.node.status().lead_transferee == 3
    c.stabilize()
    new = node(c, 3)
    assert role(new) is Role.LEADER and new.term == term + 1
    assert new.applied == [b"e%d" % i for i in range(5)]
    # The order on the wire: node 3 first acknowledged the leader's whole log, then it got
    # TimeoutNow.
    window = c.delivered[since:]
    timeout_now = next(i for i, m in enumerate(window) if m.type is MT.TIMEOUT_NOW)
    last = max(e.index for m in window[:timeout_now] if m.type is MT.APP for e in m.entries)
    caught_up = [
        i
        for i, m in enumerate(window)
        if m.type is MT.APP_RESP and m.frm == 3 and not m.reject and m.index >= last
    ]
    assert caught_up and caught_up[0] < timeout_now
    assert [m for m in window[:timeout_now] if m.type is MT.APP and m.to == 3 and m.entries]


def test_transfer_to_a_follower_that_first_needs_a_snapshot():
    c = Cluster([1, 2, 3], seed=58)
    old = c.elect(1)
    c.cut_link(1, 3)
    for i in range(5):
        c.propose(1, b"e%d" % i)
    c.snapshot_and_compact(1)
    c.propose(1, b"after-snapshot")
    c.heal()
    since = mark(c)
    term = old.term
    old.node.transfer_leader(NodeId(3))
    c.tick(3)
    assert delivered_since(c, since, MT.SNAP, to=3)
    new = node(c, 3)
    assert role(new) is Role.LEADER and new.term == term + 1
    assert new.applied == [*(b"e%d" % i for i in range(5)), b"after-snapshot"]


@pytest.mark.parametrize("at", [1, 2])
def test_transfer_refused_for_a_learner_or_a_stranger(at):
    c = Cluster([1, 2, 3], learners=[4], seed=54)
    leader = c.elect(1)
    since = mark(c)
    with pytest.raises(LeaderTransferRefused, match="learner"):
        node(c, at).node.transfer_leader(NodeId(4))
    with pytest.raises(LeaderTransferRefused, match="not a member"):
        node(c, at).node.transfer_leader(NodeId(9))
    c.stabilize()
    assert leader.node.status().lead_transferee == NONE
    assert not delivered_since(c, since, MT.TIMEOUT_NOW)
    assert not delivered_since(c, since, MT.TRANSFER_LEADER)
    c.propose(1, b"still leading")
    assert role(leader) is Role.LEADER


def test_transfer_aborted_after_an_election_timeout_when_transferee_unreachable():
    c = Cluster([1, 2, 3], seed=55)
    leader = c.elect(1)
    c.propose(1, b"a")
    cut = cut_off(c, 3)
    c.propose(1, b"b")  # node 3 lags, so the leader must catch it up before TimeoutNow
    term = leader.term
    leader.node.transfer_leader(NodeId(3))
    c.stabilize()
    assert leader.node.status().lead_transferee == 3
    c.tick(ET // 2)
    assert leader.node.status().lead_transferee == 3  # still trying
    ticks = tick_until(
        c, lambda: leader.node.status().lead_transferee == NONE, max_ticks=ET, nodes=[1, 2]
    )
    assert ticks >= 1
    assert role(leader) is Role.LEADER and leader.term == term
    assert not cut.of(MT.TIMEOUT_NOW)
    # The leader takes proposals again.
    c.propose(1, b"c")
    assert node(c, 2).applied == [b"a", b"b", b"c"]


def test_proposals_are_dropped_during_a_transfer():
    c = Cluster([1, 2, 3], seed=56)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    c.propose(1, b"a")
    leader.node.transfer_leader(NodeId(3))
    c.stabilize()
    last = leader.raft.log.last_index()
    with pytest.raises(ProposalDropped):
        leader.node.propose(b"local")
    follower = node(c, 2)
    follower.node.propose(b"forwarded")
    c.stabilize()
    (rejected,) = follower.rejected
    assert rejected.data == b"forwarded"
    assert leader.raft.log.last_index() == last
    # When node 3 is reachable again, the transfer completes and the new leader takes proposals.
    remove_rule(c, cut)
    c.tick(1)
    assert role(node(c, 3)) is Role.LEADER
    c.propose(3, b"after")
    assert node(c, 2).applied == [b"a", b"after"]


def test_transfer_to_the_leader_itself_is_a_no_op():
    c = Cluster([1, 2, 3], seed=57)
    leader = c.elect(1)
    since = mark(c)
    leader.node.transfer_leader(NodeId(1))
    c.stabilize()
    assert leader.node.status().lead_transferee == NONE
    assert not delivered_since(c, since, MT.TIMEOUT_NOW)
    c.propose(1, b"x")
    assert leader.applied == [b"x"]


# ---------------------------------------------------------------------------- ReadIndex


def test_read_index_on_the_leader_after_a_quorum_round():
    c = Cluster([1, 2, 3], seed=61)
    leader = c.elect(1)
    c.propose(1, b"a")
    commit = leader.raft.log.committed
    leader.node.read_index(b"r1")
    # Not before the heartbeat round: the leader must first prove it still leads.
    c.handle_ready(leader)
    assert leader.read_states == []
    beats = [m for m in c.in_flight if m.type is MT.HEARTBEAT]
    assert {m.to for m in beats} == {2, 3} and all(m.context == b"r1" for m in beats)
    c.stabilize()
    assert leader.read_states == [ReadState(commit, b"r1")]


def test_read_index_needs_a_voter_quorum_not_learner_acks():
    c = Cluster([1, 2, 3], learners=[4], seed=62)
    leader = c.elect(1)
    c.cut_link(1, 2)
    c.cut_link(1, 3)
    since = mark(c)
    leader.node.read_index(b"r")
    c.stabilize()
    assert [m for m in delivered_since(c, since, MT.HEARTBEAT_RESP, frm=4) if m.context == b"r"]
    assert leader.read_states == []
    # With voter 2 reachable again, a quorum confirms a later read, and the earlier one with it.
    c.heal()
    leader.node.read_index(b"r2")
    c.stabilize()
    assert [rs.request_ctx for rs in leader.read_states] == [b"r", b"r2"]


def test_read_index_survives_a_lost_heartbeat_round():
    # The heartbeat round a read starts can be lost like any message. The read must not hang
    # until another read comes along: later heartbeats have to confirm it (etcd-io/raft sends
    # the last pending read context with every heartbeat, bcastHeartbeat).
    c = Cluster([1, 2, 3], seed=69)
    leader = c.elect(1)
    lost = add_rule(c, Dropper(MT.HEARTBEAT, where=lambda m: m.context == b"r", limit=2))
    leader.node.read_index(b"r")
    c.stabilize()
    assert len(lost.dropped) == 2 and leader.read_states == []
    c.tick(2 * ET)
    assert role(leader) is Role.LEADER
    assert leader.read_states == [ReadState(leader.raft.log.committed, b"r")]


def test_read_index_forwarded_from_a_follower():
    c = Cluster([1, 2, 3], seed=63)
    leader = c.elect(1)
    c.propose(1, b"a")
    since = mark(c)
    follower = node(c, 2)
    follower.node.read_index(b"f1")
    c.stabilize()
    assert delivered_since(c, since, MT.READ_INDEX, frm=2, to=1)
    assert delivered_since(c, since, MT.READ_INDEX_RESP, frm=1, to=2)
    assert follower.read_states == [ReadState(leader.raft.log.committed, b"f1")]
    assert leader.read_states == []
    # The follower can serve the read once it has applied up to the read index.
    assert follower.applied_index >= follower.read_states[0].index
    assert follower.applied == [b"a"]


def test_read_index_from_a_learner_is_forwarded_too():
    c = Cluster([1, 2, 3], learners=[4], seed=64)
    leader = c.elect(1)
    node(c, 4).node.read_index(b"l1")
    c.stabilize()
    assert node(c, 4).read_states == [ReadState(leader.raft.log.committed, b"l1")]


def test_new_leader_defers_reads_until_its_own_term_commits():
    c = Cluster([1, 2, 3], seed=65)
    c.elect(1)
    c.propose(1, b"a")
    c.crash(1)
    acks = add_rule(c, Dropper(MT.APP_RESP))  # the new leader's empty entry stays uncommitted
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET, nodes=[2, 3])
    new = leader_among(c, [2, 3])
    assert new is not None
    other = 5 - new.id
    assert new.raft.log.term(new.raft.log.committed) < new.term
    new.node.read_index(b"local")
    node(c, other).node.read_index(b"forwarded")
    c.tick(3, nodes=[2, 3])
    # A commit index from an earlier term may be stale: no answer yet, local or forwarded.
    assert new.read_states == [] and node(c, other).read_states == []
    remove_rule(c, acks)
    c.tick(2, nodes=[2, 3])
    own_term_commit = new.raft.log.committed
    assert new.raft.log.term(own_term_commit) == new.term
    assert new.read_states == [ReadState(own_term_commit, b"local")]
    assert node(c, other).read_states == [ReadState(own_term_commit, b"forwarded")]


def test_isolated_old_leader_never_answers_a_read():
    c = Cluster([1, 2, 3], seed=66)
    old = c.elect(1)
    c.propose(1, b"a")
    cut = cut_off(c, 1)
    old.node.read_index(b"stale?")
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET)
    new = leader_among(c, [2, 3])
    assert new is not None
    # Meanwhile the majority moves on: a read served by the old leader would be stale.
    c.propose(new.id, b"b")
    c.tick(3 * ET)
    assert old.read_states == []
    assert role(old) is not Role.LEADER
    assert cut.of(MT.HEARTBEAT) and any(m.context == b"stale?" for m in cut.of(MT.HEARTBEAT))
    remove_rule(c, cut)
    c.tick(3 * ET)
    assert old.read_states == []
    assert old.applied == [b"a", b"b"]


def test_read_index_of_a_single_voter_is_answered_at_once():
    c = Cluster([1], learners=[2], seed=67)
    leader = c.elect(1)
    c.propose(1, b"a")
    leader.node.read_index(b"solo")
    rd = c.handle_ready(leader)
    assert rd is not None
    assert rd.read_states == (ReadState(leader.raft.log.committed, b"solo"),)
    assert not [m for m in rd.messages if m.type is MT.HEARTBEAT]


def test_read_index_without_a_leader_raises():
    c = Cluster([1, 2, 3], seed=68)
    with pytest.raises(ProposalDropped):
        node(c, 2).node.read_index(b"nobody")
    with pytest.raises(ValueError):
        node(c, 2).node.read_index(b"")
