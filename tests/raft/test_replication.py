"""Log replication: fast conflict backtracking, the current-term commit rule, the empty entry of a
new leader, flow control (max bytes per message, max in-flight messages, probe/replicate), and
proposal forwarding.

Layer (b)/(c) of CONVENTIONS P8: in-memory clusters driven by ticks and explicit delivery.
"""

from __future__ import annotations

import pytest

from raft import (
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MessageType,
    NodeId,
    ProgressState,
    ProgressView,
    ProposalDropped,
    Role,
    Term,
)
from tests.raft.harness import Cluster, SimNode
from tests.raft.scenario_helpers import (
    Dropper,
    add_rule,
    cut_off,
    data_entries,
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


def progress(sim: SimNode, peer: int) -> ProgressView:
    return sim.node.status().progress[NodeId(peer)]


def appends_with_entries(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.type is MT.APP and m.entries]


# ---------------------------------------------------------------------------- fast backtracking


def test_fast_backtracking_repairs_a_long_divergent_log_in_few_round_trips():
    stale = 60
    c = Cluster([1, 2, 3], seed=11)
    old = c.elect(1)
    cut = cut_off(c, 1)
    # The cut-off leader keeps accepting proposals of its old term that nobody else sees.
    for i in range(stale):
        old.node.propose(b"stale-%d" % i)
    c.stabilize()
    # 2 and 3 elect a leader of a newer term and commit a long log of their own...
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET, nodes=[2, 3])
    first = leader_among(c, [2, 3])
    assert first is not None
    for i in range(stale):
        first.node.propose(b"new-%d" % i)
    c.stabilize()
    # ...and hand leadership over once more, so the leader probing node 1 starts far ahead of
    # the divergence point (its next index for node 1 is its last index + 1).
    other = 5 - first.id
    first.node.transfer_leader(NodeId(other))
    c.stabilize()
    new = node(c, other)
    assert role(new) is Role.LEADER
    assert new.raft.log.last_index() > stale

    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: log_terms(old) == log_terms(new), max_ticks=3, nodes=[other])
    apps = delivered_since(c, since, MT.APP, to=1)
    rejections = [m for m in delivered_since(c, since, MT.APP_RESP, frm=1) if m.reject]
    # One probe is rejected, the hint skips the whole stale term, the next probe matches.
    assert 1 <= len(rejections) <= 2, rejections
    assert len(apps) <= 4, [(m.index, m.log_term, len(m.entries)) for m in apps]
    assert len(apps) < stale // 10
    assert data_entries(old) == [b"new-%d" % i for i in range(stale)]
    c.tick(2)
    assert old.applied == new.applied == [b"new-%d" % i for i in range(stale)]


def test_fast_backtracking_for_a_follower_missing_many_entries():
    c = Cluster([1, 2, 3], seed=12)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    for i in range(40):
        leader.node.propose(b"e%d" % i)
    c.stabilize()
    # Reset the leader's knowledge of node 3 so that it probes from its own last index.
    leader.node.transfer_leader(NodeId(2))
    c.stabilize()
    new = node(c, 2)
    assert role(new) is Role.LEADER
    behind = node(c, 3).raft.log.last_index()
    assert new.raft.log.last_index() > behind + 40
    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: log_terms(node(c, 3)) == log_terms(new), max_ticks=3, nodes=[2])
    rejections = [m for m in delivered_since(c, since, MT.APP_RESP, frm=3) if m.reject]
    # The rejection says where node 3's log ends, so the leader jumps straight there instead
    # of stepping back one entry per round trip.
    assert len(rejections) == 1
    assert rejections[0].reject_hint == behind
    # After the one rejected probe, a single append carries everything node 3 lacks.
    probe, repair = appends_with_entries(delivered_since(c, since, MT.APP, to=3))
    assert probe.index == rejections[0].index
    assert repair.index == behind
    assert len(repair.entries) == new.raft.log.last_index() - behind


# The logs of Figure 7 of the Raft paper: index 1 (term 1) is the bootstrap snapshot, the lists
# give the terms of indexes 2, 3, ...
FIGURE_7_LEADER = [1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 4],
    "c": [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 4, 4, 4, 4],
    "f": [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def install_log(c: Cluster, node_id: int, terms: list[int], term: int) -> SimNode:
    """Give a node a persisted log of the given terms (from index 2) and restart it on it."""
    sim = node(c, node_id)
    sim.storage.append(
        [Entry(Term(t), Index(i + 2), data=b"%d@%d" % (i + 2, t)) for i, t in enumerate(terms)]
    )
    sim.storage.set_hard_state(HardState(term=Term(term), commit=Index(1)))
    c.crash(node_id)
    return c.restart(node_id)


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_figure_7_follower_logs_are_repaired_with_at_most_one_rejection(case):
    c = Cluster([1, 2, 3], seed=26)
    install_log(c, 1, FIGURE_7_LEADER, term=7)
    install_log(c, 3, FIGURE_7_LEADER, term=7)
    follower = install_log(c, 2, FIGURE_7_FOLLOWERS[case], term=7)
    since = mark(c)
    leader = c.elect(1)
    assert leader.term == 8
    c.tick(2)
    assert log_terms(follower) == log_terms(leader)
    assert [t for _, t in log_terms(leader)] == [*FIGURE_7_LEADER, 8]
    rejections = [m for m in delivered_since(c, since, MT.APP_RESP, frm=2) if m.reject]
    # Without the term hint, case (f) alone would take seven round trips.
    assert len(rejections) <= 1, [(m.index, m.reject_hint, m.log_term) for m in rejections]
    assert follower.applied == leader.applied


# ---------------------------------------------------------------------------- commit rules


def test_new_leader_appends_an_empty_entry_of_its_term_and_commits_it():
    c = Cluster([1, 2, 3], seed=13)
    c.elect(1)
    c.propose(1, b"a")
    c.crash(1)
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET)
    new = leader_among(c, [2, 3])
    assert new is not None
    last = new.raft.log.last_index()
    (entry,) = new.raft.log.slice(last, Index(last + 1))
    assert entry.type is EntryType.NORMAL and entry.data == b""
    assert entry.term == new.term
    assert new.raft.log.committed == last
    # The empty entry is invisible to the state machine.
    assert new.applied == [b"a"]


def test_old_term_entry_on_a_majority_is_not_committed_by_counting():
    # Raft §5.4.2 (Figure 8): an entry from an earlier term is committed only indirectly, by
    # committing an entry of the leader's current term after it.
    c = Cluster([1, 2, 3], seed=14, pre_vote=False, check_quorum=False)
    c.elect(1)
    to3 = add_rule(c, Dropper(to=3))
    acks = add_rule(c, Dropper(MT.APP_RESP, to=1))
    node(c, 1).node.propose(b"X")
    c.stabilize()
    x_index = node(c, 1).raft.log.last_index()
    assert data_entries(node(c, 2)) == [b"X"]
    assert node(c, 1).raft.log.committed < x_index
    remove_rule(c, to3)

    # Node 1 restarts and wins term 2 (its log, like node 2's, holds X of term 1).
    c.crash(1)
    c.restart(1)
    leader = c.elect(1)
    assert leader.term == 2
    assert leader.raft.log.term(Index(x_index)) == 1
    assert leader.raft.log.committed < x_index

    # Node 2 acknowledges X, but not yet the new term's empty entry: X is now on a majority
    # (nodes 1 and 2), yet it is of term 1, so counting replicas must not commit it.
    leader.node.step(
        Message(
            type=MT.APP_RESP, to=NodeId(1), frm=NodeId(2), term=Term(leader.term), index=x_index
        )
    )
    c.stabilize()
    assert progress(leader, 2).match == x_index
    assert leader.raft.log.committed < x_index
    assert leader.applied == []

    # Once a majority holds the term-2 entry, it and X before it commit together.
    remove_rule(c, acks)
    c.tick(2)
    assert leader.raft.log.committed >= x_index + 1
    assert all(s.applied == [b"X"] for s in c.nodes.values())


# ---------------------------------------------------------------------------- flow control


def test_max_inflight_caps_unacknowledged_appends_in_replicate_state():
    c = Cluster([1, 2, 3], seed=15, max_inflight_msgs=3)
    leader = c.elect(1)
    assert progress(leader, 2).state is ProgressState.REPLICATE
    acks = add_rule(c, Dropper(MT.APP_RESP, frm=2))
    since = mark(c)
    for i in range(10):
        c.propose(1, b"p%d" % i)
    to2 = appends_with_entries(delivered_since(c, since, MT.APP, to=2))
    to3 = appends_with_entries(delivered_since(c, since, MT.APP, to=3))
    assert len(to2) == 3  # the window is full: nothing more until an acknowledgement
    assert len(to3) == 10  # node 3 acknowledges, so its window keeps moving
    pr = progress(leader, 2)
    assert pr.state is ProgressState.REPLICATE
    assert pr.next == 2 + 3 + 1  # bootstrap 1, empty entry 2, then the 3 entries sent
    # Everything still commits with node 3.
    assert node(c, 3).applied == [b"p%d" % i for i in range(10)]

    # Acknowledgements flow again: node 2 catches up, still window by window.
    remove_rule(c, acks)
    tick_until(c, lambda: node(c, 2).applied == node(c, 3).applied, max_ticks=5)
    for m in appends_with_entries(delivered_since(c, since, MT.APP, to=2)):
        assert len(m.entries) >= 1


def test_heartbeat_response_frees_one_inflight_slot():
    c = Cluster([1, 2], seed=16, max_inflight_msgs=2)
    leader = c.elect(1)
    acks = add_rule(c, Dropper(MT.APP_RESP, frm=2))
    since = mark(c)
    for i in range(6):
        leader.node.propose(b"p%d" % i)
        c.stabilize()  # one Ready per proposal: one append each while the window allows
    assert len(appends_with_entries(delivered_since(c, since, MT.APP, to=2))) == 2
    since = mark(c)
    c.tick(1)  # a heartbeat round trip: node 2 is alive, so one more append may go
    (sent,) = appends_with_entries(delivered_since(c, since, MT.APP, to=2))
    assert [e.data for e in sent.entries] == [b"p2", b"p3", b"p4", b"p5"]
    assert leader.applied == []  # two voters, no acknowledgement: nothing committed
    remove_rule(c, acks)
    c.tick(1)
    assert leader.applied == node(c, 2).applied == [b"p%d" % i for i in range(6)]


def test_max_size_per_msg_splits_batches():
    entry_size = 16 + 50  # raft.types.Entry.size(): 16 bytes of overhead plus the data
    c = Cluster([1, 2, 3], seed=17, max_size_per_msg=2 * entry_size + 10)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    payloads = [bytes([65 + i]) * 50 for i in range(10)]
    for p in payloads:
        c.propose(1, p)
    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: node(c, 3).applied == payloads, max_ticks=5)
    batches = [len(m.entries) for m in appends_with_entries(delivered_since(c, since, to=3))]
    assert batches and max(batches) == 2, batches
    assert sum(batches) >= len(payloads)
    for m in appends_with_entries(delivered_since(c, since, to=3)):
        assert sum(e.size() for e in m.entries) <= 2 * entry_size + 10
    assert role(leader) is Role.LEADER


def test_max_size_per_msg_always_sends_at_least_one_entry():
    c = Cluster([1, 2, 3], seed=18, max_size_per_msg=64)
    c.elect(1)
    cut = cut_off(c, 3)
    big = [bytes([97 + i]) * 300 for i in range(5)]  # each entry alone exceeds the budget
    for p in big:
        c.propose(1, p)
    assert node(c, 2).applied == big
    remove_rule(c, cut)
    since = mark(c)
    tick_until(c, lambda: node(c, 3).applied == big, max_ticks=10)
    batches = [len(m.entries) for m in appends_with_entries(delivered_since(c, since, to=3))]
    assert batches and set(batches) == {1}, batches


def test_probe_state_sends_one_append_at_a_time():
    c = Cluster([1, 2, 3], seed=19)
    leader = c.elect(1)
    leader.node.report_unreachable(NodeId(2))
    assert progress(leader, 2).state is ProgressState.PROBE
    acks = add_rule(c, Dropper(MT.APP_RESP, frm=2))
    since = mark(c)
    for i in range(5):
        c.propose(1, b"p%d" % i)
    # Only the first proposal produced an append to node 2; the rest wait for its answer.
    assert len(delivered_since(c, since, MT.APP, to=2)) == 1
    assert len(appends_with_entries(delivered_since(c, since, MT.APP, to=3))) == 5
    assert progress(leader, 2).state is ProgressState.PROBE

    # A heartbeat answer shows node 2 is alive: one more probe (carrying everything it lacks).
    since = mark(c)
    c.tick(1)
    assert len(delivered_since(c, since, MT.APP, to=2)) == 1

    # Once an append is acknowledged, node 2 goes back to replicate and catches up.
    remove_rule(c, acks)
    c.tick(1)
    assert progress(leader, 2).state is ProgressState.REPLICATE
    assert node(c, 2).applied == [b"p%d" % i for i in range(5)]


def test_stale_rejection_is_ignored_and_unreachable_follower_is_probed():
    c = Cluster([1, 2, 3], seed=20)
    leader = c.elect(1)
    c.propose(1, b"a")
    pr = progress(leader, 2)
    assert pr.state is ProgressState.REPLICATE
    # A rejection of an index node 2 already acknowledged (a reordered, stale answer).
    leader.node.step(
        Message(
            type=MT.APP_RESP,
            to=NodeId(1),
            frm=NodeId(2),
            term=Term(leader.term),
            index=leader.raft.log.last_index(),
            reject=True,
            reject_hint=Index(leader.raft.log.last_index() - 1),
        )
    )
    assert progress(leader, 2).state is ProgressState.REPLICATE
    assert progress(leader, 2).match == leader.raft.log.last_index()
    # The transport reports node 2 unreachable: stop pipelining, probe instead.
    leader.node.report_unreachable(NodeId(2))
    assert progress(leader, 2).state is ProgressState.PROBE
    # The next append is a probe; its acknowledgement resumes pipelining.
    c.propose(1, b"b")
    assert progress(leader, 2).state is ProgressState.REPLICATE
    assert node(c, 2).applied == [b"a", b"b"]


# ---------------------------------------------------------------------------- proposals


def test_proposal_forwarded_from_a_follower():
    c = Cluster([1, 2, 3], seed=21)
    c.elect(1)
    since = mark(c)
    c.propose(2, b"from-2")
    props = delivered_since(c, since, MT.PROP, frm=2, to=1)
    assert len(props) == 1
    assert all(s.applied == [b"from-2"] for s in c.nodes.values())
    # The follower's own log only got it from the leader, at the leader's term.
    (entry,) = [e for e in node(c, 2).storage.entries(Index(2), Index(4)) if e.data]
    assert entry.term == node(c, 1).term


def test_proposal_forwarded_from_a_learner():
    c = Cluster([1, 2, 3], learners=[4], seed=22)
    c.elect(1)
    since = mark(c)
    c.propose(4, b"from-learner")
    assert len(delivered_since(c, since, MT.PROP, frm=4, to=1)) == 1
    assert all(s.applied == [b"from-learner"] for s in c.nodes.values())


def test_proposal_without_a_leader_raises_proposal_dropped():
    c = Cluster([1, 2, 3], seed=23)
    for sim in c.nodes.values():
        with pytest.raises(ProposalDropped):
            sim.node.propose(b"x")
    c.stabilize()
    assert all(s.raft.log.last_index() == 1 for s in c.nodes.values())


def test_proposal_during_an_election_raises_proposal_dropped():
    c = Cluster([1, 2, 3], seed=24)
    n1 = node(c, 1)
    n1.node.campaign()  # pre-candidate until the answers arrive
    assert role(n1) is Role.PRE_CANDIDATE
    with pytest.raises(ProposalDropped):
        n1.node.propose(b"x")
    c.stabilize()
    assert role(n1) is Role.LEADER
    c.propose(1, b"y")
    assert n1.applied == [b"y"]


def test_proposal_at_a_follower_whose_leader_stepped_down_raises():
    c = Cluster([1, 2, 3], seed=25)
    c.elect(1)
    cut_off(c, 1)
    c.tick(3 * ET, nodes=[1])
    n1 = node(c, 1)
    assert role(n1) is not Role.LEADER and c.no_leader(1)
    with pytest.raises(ProposalDropped):
        n1.node.propose(b"x")
