"""Membership scenarios: Ongaro's dissertation ch. 4 and the issue's list.

Learner catch-up, learners never counting, promotion changing the quorum, removing the leader,
the disruptive removed server, the 2015 single-server-change bug, the promotion race, one pending
conf change at a time (refused explicitly, locally or back to a forwarding follower), refusing to
remove the last voter, UPDATE having no Raft effect, the voters/learners invariants, a joining
empty node getting a snapshot, and restart from persisted state.

Layer (b)/(c) of CONVENTIONS P8: in-memory clusters driven by ticks and explicit delivery.
"""

from __future__ import annotations

import pytest

from raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    Entry,
    EntryType,
    Index,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    Role,
    Term,
    check_invariants,
)
from tests.raft.harness import Cluster, SimNode
from tests.raft.scenario_helpers import (
    Dropper,
    add_rule,
    cut_between,
    cut_off,
    data_entries,
    delivered_since,
    leader_among,
    log_terms,
    mark,
    node,
    remove_rule,
    role,
    stored_entries,
    tick_until,
)

ET = 10
MT = MessageType
CT = ConfChangeType


def cc(kind: ConfChangeType, node_id: int, context: bytes = b"") -> ConfChange:
    return ConfChange(kind, NodeId(node_id), context)


def ids(*values: int) -> frozenset[NodeId]:
    return frozenset(NodeId(v) for v in values)


def change_and_settle(c: Cluster, at: int, change: ConfChange) -> None:
    node(c, at).node.propose_conf_change(change)
    c.stabilize()


def conf_entries(sim: SimNode) -> list[Entry]:
    log = sim.raft.log
    entries = log.slice(log.first_index(), Index(log.last_index() + 1))
    return [e for e in entries if e.type is EntryType.CONF_CHANGE]


def assert_confs_agree(c: Cluster, members: list[int]) -> None:
    """Every listed node applied the same configuration, and it keeps the invariants."""
    confs = {node(c, i).conf for i in members}
    assert len(confs) == 1, {i: node(c, i).conf for i in members}
    for i in members:
        sim = node(c, i)
        check_invariants(sim.conf)
        assert not sim.conf.voters & sim.conf.learners
        assert sim.raft.tracker.conf_state() == sim.conf


class ApplyRecordingCluster(Cluster):
    """Records each node's role just before and after it applies a conf change entry."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.applies: list[tuple[NodeId, Index, Role, Role]] = []

    def apply_entry(self, sim: SimNode, entry: Entry) -> None:
        before = sim.role
        super().apply_entry(sim, entry)
        if entry.change is not None:
            self.applies.append((sim.id, entry.index, before, sim.role))


# ---------------------------------------------------------------------------- learners


def test_learner_catches_up_through_the_log():
    c = Cluster([1, 2, 3], seed=31)
    leader = c.elect(1)
    for i in range(30):
        c.propose(1, b"e%d" % i)
    learner = c.add_empty_node(4)
    since = mark(c)
    change_and_settle(c, 1, cc(CT.ADD_LEARNER, 4))
    c.tick(2)
    assert learner.applied == leader.applied == [b"e%d" % i for i in range(30)]
    assert learner.conf.learners == ids(4) and learner.conf.voters == ids(1, 2, 3)
    # Nothing was compacted: besides the founding snapshot, the entries came as appends.
    snaps = delivered_since(c, since, MT.SNAP, to=4)
    assert [m.snapshot.metadata.index for m in snaps if m.snapshot] == [1]
    shipped = sum(len(m.entries) for m in delivered_since(c, since, MT.APP, to=4))
    assert shipped >= 30
    assert log_terms(learner) == log_terms(leader)
    assert role(learner) is Role.FOLLOWER and not learner.raft.promotable()


def test_learner_catches_up_through_a_snapshot_after_compaction():
    c = Cluster([1, 2, 3], seed=32)
    leader = c.elect(1)
    for i in range(30):
        c.propose(1, b"e%d" % i)
    snap = c.snapshot_and_compact(1)
    learner = c.add_empty_node(4)
    since = mark(c)
    change_and_settle(c, 1, cc(CT.ADD_LEARNER, 4))
    c.tick(2)
    snaps = [m.snapshot for m in delivered_since(c, since, MT.SNAP, to=4) if m.snapshot]
    assert [s.metadata.index for s in snaps] == [snap.metadata.index]
    assert learner.storage.snapshot().metadata.index == snap.metadata.index
    assert learner.applied == leader.applied == [b"e%d" % i for i in range(30)]
    assert_confs_agree(c, [1, 2, 3, 4])


def test_learner_acks_never_count_for_commit():
    c = Cluster([1, 2, 3], learners=[4], seed=33)
    leader = c.elect(1)
    committed = leader.raft.log.committed
    c.cut_link(1, 2)
    c.cut_link(1, 3)
    c.propose(1, b"x")
    c.tick(3, nodes=[1, 4])
    # The learner holds the entry and acknowledged it...
    assert data_entries(node(c, 4)) == [b"x"]
    assert leader.node.status().progress[NodeId(4)].match == leader.raft.log.last_index()
    # ...but 1 voter of 3 plus a learner is no quorum: nothing commits, nothing is applied.
    assert leader.raft.log.committed == committed
    assert all(s.applied == [] for s in c.nodes.values())
    c.heal()
    c.tick(2)
    assert all(s.applied == [b"x"] for s in c.nodes.values())


def test_learner_votes_are_not_counted():
    c = Cluster([1, 2, 3], learners=[4], seed=34)
    c.elect(1)
    c.crash(1)
    cut_off(c, 3)
    n2 = node(c, 2)
    tick_until(c, lambda: n2.role is Role.PRE_CANDIDATE, max_ticks=3 * ET, nodes=[2])
    grant = Message(type=MT.PRE_VOTE_RESP, to=NodeId(2), frm=NodeId(4), term=Term(n2.term + 1))
    # A granted answer from the learner (it was never asked) must not make a majority.
    n2.node.step(grant)
    assert role(n2) is Role.PRE_CANDIDATE
    # The very same answer from voter 3 does.
    n2.node.step(Message(type=MT.PRE_VOTE_RESP, to=NodeId(2), frm=NodeId(3), term=grant.term))
    assert role(n2) is Role.CANDIDATE


# ---------------------------------------------------------------------------- promotion


def test_promotion_changes_who_votes_and_the_quorum():
    c = Cluster([1, 2, 3], learners=[4], seed=35)
    c.elect(1)
    # Before: {1, 2} is a majority of three voters.
    c.cut_link(1, 3)
    c.cut_link(1, 4)
    c.propose(1, b"before")
    assert node(c, 2).applied == [b"before"]
    c.heal()
    c.tick(2)

    change_and_settle(c, 1, cc(CT.PROMOTE, 4))
    assert_confs_agree(c, [1, 2, 3, 4])
    assert node(c, 1).conf.voters == ids(1, 2, 3, 4) and not node(c, 1).conf.learners
    assert not node(c, 4).raft.is_learner

    # After: the same {1, 2} is only 2 of 4 voters; nothing commits.
    c.cut_link(1, 3)
    link_1_4 = cut_between(c, 1, 4)
    leader = node(c, 1)
    leader.node.propose(b"after")
    c.stabilize()
    assert leader.applied == [b"before"]
    # Node 4's acknowledgement now counts: {1, 2, 4} is 3 of 4.
    remove_rule(c, link_1_4)
    c.tick(2, nodes=[1, 2, 4])
    assert leader.applied == [b"before", b"after"]
    assert node(c, 4).applied == [b"before", b"after"]


def test_promotion_race_unapplied_promotion_still_answers_votes():
    def run(drop_votes_of_4: bool) -> tuple[Cluster, list[bool]]:
        c = Cluster([1, 2, 3], learners=[4], seed=36)
        leader = c.elect(1)
        leader.node.propose_conf_change(cc(CT.PROMOTE, 4))
        promote_index = leader.raft.log.last_index()
        # Node 4 receives the promotion entry but never learns that it committed.
        add_rule(
            c,
            Dropper(
                (MT.APP, MT.HEARTBEAT),
                to=4,
                where=lambda m: m.commit >= promote_index,
            ),
        )
        c.stabilize()
        assert node(c, 2).conf.voters == ids(1, 2, 3, 4)
        assert node(c, 4).raft.log.last_index() >= promote_index
        assert node(c, 4).raft.log.committed < promote_index
        assert node(c, 4).raft.is_learner
        c.crash(1)
        c.drop_rules.clear()

        learner_state_when_voting: list[bool] = []

        def observe(m: Message) -> bool:
            if m.type is MT.VOTE_RESP and m.frm == 4:
                learner_state_when_voting.append(node(c, 4).raft.is_learner)
                return drop_votes_of_4
            return False

        add_rule(c, observe)
        for _ in range(15 * ET):
            if leader_among(c, [2, 3]) is not None:
                break
            c.tick(1)
        return c, learner_state_when_voting

    # Voters are now {1, 2, 3, 4} on 2 and 3; with 1 down, a leader needs 2, 3 and 4.
    c, answers = run(drop_votes_of_4=False)
    new = leader_among(c, [2, 3])
    assert new is not None
    # Node 4 answered while it still considered itself a learner, and its vote counted.
    assert answers and answers[0] is True
    assert not node(c, 4).raft.is_learner  # it applies the promotion from the new leader
    assert_confs_agree(c, [2, 3, 4])

    # Without node 4's answers, nobody can win.
    c, answers = run(drop_votes_of_4=True)
    assert answers
    assert leader_among(c, [2, 3]) is None


# ---------------------------------------------------------------------------- removal


def test_removing_the_leader():
    c = ApplyRecordingCluster([1, 2, 3], seed=37)
    old = c.elect(1)
    c.propose(1, b"a")
    old_term = old.term
    change = cc(CT.REMOVE, 1)
    change_and_settle(c, 1, change)
    (index,) = [e.index for e in conf_entries(old)]
    # It led until it applied its own removal, then sent TimeoutNow to an up-to-date remaining
    # voter and stepped down (D7): no leaderless election timeout, no tick needed.
    assert (NodeId(1), index, Role.LEADER, Role.FOLLOWER) in c.applies
    assert role(old) is Role.FOLLOWER
    handed_to = leader_among(c, [2, 3])
    assert handed_to is not None and handed_to.term == old_term + 1
    assert all(node(c, i).conf_log == [(index, change, True)] for i in (1, 2, 3))
    assert_confs_agree(c, [1, 2, 3])
    assert node(c, 2).conf.voters == ids(2, 3)
    # The removed leader's log still holds the entry that removed it.
    assert [e.change for e in stored_entries(old) if e.change] == [change]

    since = mark(c)
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET)
    new = leader_among(c, [2, 3])
    assert new is not None and new.term > old_term
    c.propose(new.id, b"b")
    assert node(c, 2).applied == node(c, 3).applied == [b"a", b"b"]
    # The removed node takes no part any more: it neither campaigns nor receives anything.
    c.tick(5 * ET)
    assert not [m for m in delivered_since(c, since, frm=1) if m.type in (MT.PRE_VOTE, MT.VOTE)]
    assert not delivered_since(c, since, to=1)
    assert old.applied == [b"a"]
    with pytest.raises(ProposalDropped):
        old.node.propose(b"c")


@pytest.mark.parametrize("pre_vote", [True, False])
def test_disruptive_removed_server_cannot_disrupt_the_cluster(pre_vote):
    c = Cluster([1, 2, 3], seed=38, pre_vote=pre_vote)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    change_and_settle(c, 1, cc(CT.REMOVE, 3))
    assert node(c, 1).conf.voters == ids(1, 2)
    # Node 3 never heard of its removal: it times out and campaigns, over and over.
    n3 = node(c, 3)
    assert n3.conf.voters == ids(1, 2, 3)
    c.tick(4 * ET)
    assert [m for m in cut.dropped if m.frm == 3 and m.type in (MT.PRE_VOTE, MT.VOTE)]
    term = leader.term
    remove_rule(c, cut)
    since = mark(c)
    c.tick(20 * ET)
    # Its requests reach the cluster, which ignores them: the leader holds a lease.
    requests = [m for m in delivered_since(c, since, frm=3) if m.type in (MT.PRE_VOTE, MT.VOTE)]
    assert requests and all(m.term > term for m in requests)
    assert not delivered_since(c, since, to=3)
    assert c.leader() is leader
    assert leader.term == node(c, 2).term == term
    c.propose(1, b"still working")
    assert node(c, 2).applied == [b"still working"]
    if pre_vote:
        assert n3.term == term  # pre-votes never raise its own term either


def test_removed_server_disrupts_without_prevote_and_check_quorum():
    # The contrast of the previous test (dissertation §4.2.3): with neither defence, the removed
    # server's higher terms depose a healthy leader.
    c = Cluster([1, 2, 3], seed=38, pre_vote=False, check_quorum=False)
    leader = c.elect(1)
    cut = cut_off(c, 3)
    change_and_settle(c, 1, cc(CT.REMOVE, 3))
    c.tick(4 * ET)
    term = leader.term
    assert node(c, 3).term > term
    remove_rule(c, cut)
    c.tick(3 * ET)
    assert max(node(c, 1).term, node(c, 2).term) > term


# ---------------------------------------------------------------------------- one at a time


def test_new_leader_accepts_no_conf_change_before_committing_its_term():
    # The 2015 single-server-change bug (raft-dev, Ongaro): a leader holding an uncommitted
    # change of an old term and a new leader making its own change could commit two
    # configurations with disjoint majorities. The fix: a new leader commits an entry of its own
    # term before it accepts a conf change.
    c = Cluster([1, 2, 3, 4], seed=39)
    old = c.elect(1)
    c.add_empty_node(5)
    cut1 = cut_off(c, 1)
    old.node.propose_conf_change(cc(CT.ADD_VOTER, 5))  # reaches nobody
    c.stabilize()
    assert [e.change for e in conf_entries(old)] == [cc(CT.ADD_VOTER, 5)]

    acks = add_rule(c, Dropper(MT.APP_RESP))
    tick_until(
        c, lambda: leader_among(c, [2, 3, 4]) is not None, max_ticks=10 * ET, nodes=[2, 3, 4]
    )
    new = leader_among(c, [2, 3, 4])
    assert new is not None
    assert new.raft.log.term(new.raft.log.committed) < new.term
    target = next(i for i in (2, 3, 4) if i != new.id)
    follower = next(i for i in (2, 3, 4) if i not in (new.id, target))
    before = new.raft.log.last_index()

    with pytest.raises(ConfChangeInProgress):
        new.node.propose_conf_change(cc(CT.REMOVE, target))
    # The same refusal reaches a follower that forwards a change, explicitly.
    change_and_settle(c, follower, cc(CT.REMOVE, target))
    (rejected,) = node(c, follower).rejected
    assert rejected.change == cc(CT.REMOVE, target)
    assert new.raft.log.last_index() == before  # no entry for either

    remove_rule(c, acks)
    c.tick(2, nodes=[2, 3, 4])
    assert new.raft.log.term(new.raft.log.committed) == new.term
    change_and_settle(c, new.id, cc(CT.REMOVE, target))
    assert node(c, follower).conf.voters == ids(1, 2, 3, 4) - ids(target)

    # Node 1 rejoins: its stale change is overwritten, never applied, and everybody agrees.
    remove_rule(c, cut1)
    c.tick(3 * ET)
    members = [i for i in (1, 2, 3, 4) if i != target]
    assert_confs_agree(c, members)
    assert NodeId(5) not in node(c, 1).conf.members()
    assert all(change.node_id != 5 for _, change, _ in node(c, 1).conf_log)
    assert cc(CT.ADD_VOTER, 5) not in [e.change for e in conf_entries(old)]


def test_new_leader_finishes_an_inherited_conf_change_before_taking_another():
    c = Cluster([1, 2, 3], seed=47)
    old = c.elect(1)
    c.add_empty_node(4)
    acks = add_rule(c, Dropper(MT.APP_RESP, to=1))
    old.node.propose_conf_change(cc(CT.ADD_LEARNER, 4))
    c.stabilize()
    # Nodes 2 and 3 hold the change, uncommitted; the leader that proposed it dies.
    assert [e.change for e in conf_entries(node(c, 2))] == [cc(CT.ADD_LEARNER, 4)]
    c.crash(1)
    remove_rule(c, acks)
    held = add_rule(c, Dropper(MT.APP_RESP))
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET, nodes=[2, 3])
    new = leader_among(c, [2, 3])
    assert new is not None
    # The inherited change is still pending: nothing new until it (and the term's entry) apply.
    with pytest.raises(ConfChangeInProgress):
        new.node.propose_conf_change(cc(CT.REMOVE, 1))
    remove_rule(c, held)
    c.tick(2, nodes=[2, 3, 4])
    assert new.conf.learners == ids(4)
    change_and_settle(c, new.id, cc(CT.REMOVE, 1))
    c.tick(2, nodes=[2, 3, 4])
    assert_confs_agree(c, [2, 3, 4])
    assert new.conf.voters == ids(2, 3) and new.conf.learners == ids(4)
    assert [ch for _, ch, _ in node(c, 4).conf_log] == [cc(CT.ADD_LEARNER, 4), cc(CT.REMOVE, 1)]


def test_adding_an_empty_voter_directly_grows_the_quorum():
    c = Cluster([1], seed=48)
    leader = c.elect(1)
    c.propose(1, b"a")
    joiner = c.add_empty_node(2)
    change_and_settle(c, 1, cc(CT.ADD_VOTER, 2))
    c.tick(2)
    assert_confs_agree(c, [1, 2])
    assert joiner.applied == [b"a"] and joiner.raft.promotable()
    # With two voters, the leader alone is no longer a quorum.
    c.crash(2)
    leader.node.propose(b"b")
    c.stabilize()
    assert leader.applied == [b"a"]
    restarted = c.restart(2)
    c.tick(2)
    assert leader.applied == restarted.applied == [b"a", b"b"]


def test_only_one_pending_conf_change_local_and_forwarded():
    c = Cluster([1, 2, 3], seed=40)
    leader = c.elect(1)
    c.add_empty_node(4)
    c.add_empty_node(5)
    hold = add_rule(c, Dropper(MT.APP_RESP, to=1))  # keep the first change uncommitted
    leader.node.propose_conf_change(cc(CT.ADD_LEARNER, 4))
    c.stabilize()
    last = leader.raft.log.last_index()

    with pytest.raises(ConfChangeInProgress):
        leader.node.propose_conf_change(cc(CT.ADD_LEARNER, 5))
    follower = node(c, 2)
    follower.node.propose_conf_change(cc(CT.ADD_LEARNER, 5), b"req-7")
    c.stabilize()
    (rejected,) = follower.rejected
    assert rejected.entry_type is EntryType.CONF_CHANGE
    assert rejected.change == cc(CT.ADD_LEARNER, 5)
    assert rejected.data == b"req-7"
    assert "pending" in rejected.reason
    # Never silently turned into an empty entry (etcd's behaviour): the log did not grow.
    assert leader.raft.log.last_index() == last
    assert follower.raft.log.last_index() <= last

    # Normal proposals are still welcome meanwhile.
    leader.node.propose(b"n")
    c.stabilize()
    remove_rule(c, hold)
    c.tick(3)
    assert_confs_agree(c, [1, 2, 3, 4])
    assert node(c, 1).conf.learners == ids(4)
    for i in (1, 2, 3, 4):
        assert [e.change for e in conf_entries(node(c, i))] == [cc(CT.ADD_LEARNER, 4)]
        assert [ch for _, ch, _ in node(c, i).conf_log] == [cc(CT.ADD_LEARNER, 4)]
    assert node(c, 1).applied == [b"n"]
    # The empty entries in the log are exactly the leader's own term entry.
    empties = [e for e in stored_entries(leader) if e.type is EntryType.NORMAL and not e.data]
    assert [e.index for e in empties] == [2]

    # Once applied, the next change is accepted.
    change_and_settle(c, 1, cc(CT.ADD_LEARNER, 5))
    assert node(c, 3).conf.learners == ids(4, 5)


def test_removing_the_last_voter_is_refused_at_apply():
    c = Cluster([1], learners=[2], seed=41)
    leader = c.elect(1)
    change = cc(CT.REMOVE, 1)
    change_and_settle(c, 1, change)
    (index,) = [e.index for e in conf_entries(leader)]
    for i in (1, 2):
        assert node(c, i).conf_log == [(index, change, False)]
        assert node(c, i).conf.voters == ids(1)
    assert role(leader) is Role.LEADER
    assert_confs_agree(c, [1, 2])
    # The refused change is no longer pending: the next one goes through.
    change_and_settle(c, 1, cc(CT.PROMOTE, 2))
    assert node(c, 2).conf.voters == ids(1, 2)


def test_update_has_no_raft_effect():
    c = Cluster([1, 2, 3], learners=[4], seed=42)
    leader = c.elect(1)
    term = leader.term
    conf = leader.conf
    change = cc(CT.UPDATE, 2, b"peer-urls=http://10.0.0.2:2380")
    change_and_settle(c, 1, change)
    (entry,) = conf_entries(node(c, 3))
    assert entry.change == change  # the application's data travels with it
    for i in (1, 2, 3, 4):
        assert node(c, i).conf_log == [(entry.index, change, True)]
        assert node(c, i).conf == conf
    assert role(leader) is Role.LEADER and leader.term == term
    assert set(leader.node.status().progress) == ids(1, 2, 3, 4)
    # Quorum arithmetic is unchanged: {1, 2} still commits.
    c.cut_link(1, 3)
    c.propose(1, b"x")
    assert node(c, 2).applied == [b"x"]
    # Updating a stranger is refused at apply.
    c.heal()
    change_and_settle(c, 1, cc(CT.UPDATE, 9))
    assert node(c, 2).conf_log[-1][1:] == (cc(CT.UPDATE, 9), False)


def test_voters_and_learners_stay_disjoint_after_every_change():
    c = Cluster([1, 2, 3], seed=43)
    c.elect(1)
    for new in (4, 5, 6):
        c.add_empty_node(new)
    steps = [
        (cc(CT.ADD_LEARNER, 4), True),
        (cc(CT.ADD_VOTER, 4), False),  # already a member (a learner)
        (cc(CT.ADD_LEARNER, 2), False),  # already a member (a voter)
        (cc(CT.PROMOTE, 4), True),
        (cc(CT.PROMOTE, 4), False),  # not a learner any more
        (cc(CT.ADD_LEARNER, 5), True),
        (cc(CT.REMOVE, 2), True),
        (cc(CT.UPDATE, 3), True),
        (cc(CT.ADD_VOTER, 6), True),
        (cc(CT.REMOVE, 5), True),
        (cc(CT.REMOVE, 5), False),  # not a member any more
    ]
    members = [1, 2, 3]
    for change, accepted in steps:
        leader = c.leader()
        assert leader is not None
        change_and_settle(c, leader.id, change)
        c.tick(2)
        assert leader.conf_log[-1][1:] == (change, accepted)
        if change.type in (CT.ADD_LEARNER, CT.ADD_VOTER) and accepted:
            members.append(change.node_id)
        if change.type is CT.REMOVE and accepted:
            members.remove(change.node_id)
        assert_confs_agree(c, members)
    final = node(c, 1).conf
    assert final.voters == ids(1, 3, 4, 6) and final.learners == frozenset()


# ---------------------------------------------------------------------------- joining, restart


def test_joining_empty_node_receives_a_snapshot_then_votes_after_promotion():
    c = Cluster([1, 2, 3], seed=44)
    c.elect(1)
    for i in range(5):
        c.propose(1, b"e%d" % i)
    joiner = c.add_empty_node(4)
    assert joiner.storage.last_index() == 0
    since = mark(c)
    change_and_settle(c, 1, cc(CT.ADD_LEARNER, 4))
    c.tick(2)
    assert len(delivered_since(c, since, MT.SNAP, to=4)) == 1
    assert not joiner.storage.snapshot().is_empty()
    assert joiner.applied == [b"e%d" % i for i in range(5)]
    change_and_settle(c, 1, cc(CT.PROMOTE, 4))
    assert_confs_agree(c, [1, 2, 3, 4])
    # As a voter it now helps make a quorum: with 2 and 3 down, 1 and 4 are 2 of 4 (not
    # enough); bring 3 back and {1, 3, 4} commits.
    c.crash(2)
    c.crash(3)
    node(c, 1).node.propose(b"needs-4")
    c.stabilize()
    assert node(c, 1).applied[-1] != b"needs-4"
    c.restart(3)
    c.tick(2, nodes=[1, 3, 4])
    assert node(c, 1).applied[-1] == b"needs-4"
    assert joiner.applied[-1] == b"needs-4"


def test_restart_preserves_committed_entries_term_vote_and_configuration():
    c = Cluster([1, 2, 3], seed=45)
    c.elect(1)
    c.propose(1, b"a")
    c.add_empty_node(4)
    change_and_settle(c, 1, cc(CT.ADD_LEARNER, 4))
    c.propose(2, b"b")
    c.tick(2)
    before = {
        i: (node(c, i).term, node(c, i).raft.vote, node(c, i).applied, node(c, i).conf)
        for i in (1, 2, 3, 4)
    }
    committed = {i: node(c, i).raft.log.committed for i in (1, 2, 3, 4)}
    for i in (1, 2, 3, 4):
        c.crash(i)
    for i in (1, 2, 3, 4):
        sim = c.restart(i)
        assert sim.term == before[i][0]
        assert sim.raft.vote == before[i][1]
        assert sim.raft.log.committed == committed[i]
    c.stabilize()  # the restarted applications re-apply what was committed
    for i in (1, 2, 3, 4):
        sim = node(c, i)
        assert (sim.term, sim.raft.vote, sim.applied, sim.conf) == before[i]
    assert_confs_agree(c, [1, 2, 3, 4])
    tick_until(c, lambda: c.leader() is not None, max_ticks=10 * ET)
    leader = c.leader()
    assert leader is not None and leader.term > before[1][0]
    assert leader.id != 4
    c.propose(leader.id, b"c")
    assert all(node(c, i).applied == [b"a", b"b", b"c"] for i in (1, 2, 3, 4))


def test_restarted_voter_keeps_its_vote_within_a_term():
    c = Cluster([1, 2, 3], seed=46, pre_vote=False)
    n1 = node(c, 1)
    n1.node.campaign()
    c.handle_ready(n1)  # persists term 1 / vote for itself, sends the requests
    batch, c.in_flight = c.in_flight, []
    to2 = next(m for m in batch if m.to == 2)
    c.deliver(to2)
    c.handle_ready(node(c, 2))  # node 2 persists its vote for 1
    assert node(c, 2).storage.hard_state.vote == 1
    c.in_flight.clear()  # ...and its answer is lost in the crash
    c.crash(2)
    n2 = c.restart(2)
    assert n2.raft.vote == 1 and n2.term == to2.term
    # A competing candidate of the same term does not get node 2's vote after the restart.
    rival = Message(
        type=MT.VOTE,
        to=NodeId(2),
        frm=NodeId(3),
        term=to2.term,
        index=n2.raft.log.last_index(),
        log_term=n2.raft.log.last_term(),
    )
    n2.node.step(rival)
    rd = n2.node.ready()
    n2.node.advance(rd)
    (answer,) = [m for m in rd.messages if m.type is MT.VOTE_RESP]
    assert answer.reject
    # The original candidate asking again still gets it.
    n2.node.step(to2)
    rd = n2.node.ready()
    n2.node.advance(rd)
    (answer,) = [m for m in rd.messages if m.type is MT.VOTE_RESP]
    assert not answer.reject
