"""Elections: randomized timeouts, PreVote, CheckQuorum, the follower lease, and who may
campaign at all (learners never; a voter with a committed but unapplied conf change not yet).

Layer (b)/(c) of CONVENTIONS P8: in-memory clusters driven by ticks and explicit delivery.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Index,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    Term,
    bootstrap_snapshot,
)
from raft.types import CAMPAIGN_TRANSFER
from tests.raft.harness import Cluster, SimNode
from tests.raft.scenario_helpers import (
    cut_off,
    delivered_since,
    leader_among,
    mark,
    node,
    remove_rule,
    role,
    tick_until,
)

ET = 10  # election_tick used throughout
MT = MessageType


# ---------------------------------------------------------------------------- helpers


def bootstrapped(node_id: int, seed: int, *, pre_vote: bool = True) -> RawNode:
    """A founding member of {1, 2, 3} with its own seeded jitter source."""
    storage = MemoryStorage()
    storage.apply_snapshot(bootstrap_snapshot(frozenset({NodeId(1), NodeId(2), NodeId(3)})))
    config = Config(
        id=NodeId(node_id),
        election_tick=ET,
        rng=random.Random(seed),
        applied=Index(1),
        pre_vote=pre_vote,
    )
    return RawNode(config, storage)


def ticks_until_campaign(raw: RawNode, limit: int = 10 * ET) -> int:
    """Ticks a lone node waits before it sends its first (pre-)vote request."""
    for ticks in range(1, limit + 1):
        raw.tick()
        if any(m.type in (MT.PRE_VOTE, MT.VOTE) for m in drain(raw)):
            return ticks
    raise AssertionError("node never campaigned")


def drain(raw: RawNode) -> tuple[Message, ...]:
    """Collect and acknowledge a lone node's Ready (nothing to persist for these tests)."""
    if not raw.has_ready():
        return ()
    rd = raw.ready()
    raw.advance(rd)
    return rd.messages


class LaggingApplyCluster(Cluster):
    """A cluster whose nodes in ``lagging`` persist and send but do not apply: the application
    has fallen behind, so the core knows entries are committed that it has not applied."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lagging: set[NodeId] = set()

    def handle_ready(self, sim: SimNode) -> Ready | None:
        if sim.id not in self.lagging:
            return super().handle_ready(sim)
        if not sim.alive or not sim.node.has_ready():
            return None
        rd = replace(sim.node.ready(), committed_entries=())
        assert rd.snapshot is None
        sim.storage.append(rd.entries)
        if rd.hard_state is not None:
            sim.storage.set_hard_state(rd.hard_state)
        self.in_flight.extend(rd.messages)
        sim.node.advance(rd)
        return None if rd.is_empty() else rd


def campaign_requests(cluster: Cluster, since: int, frm: int) -> list[Message]:
    return [m for m in delivered_since(cluster, since, frm=frm) if m.type in (MT.PRE_VOTE, MT.VOTE)]


# ---------------------------------------------------------------------------- randomized timeout


def test_election_timeout_jitter_stays_in_range_and_varies_with_seed():
    waits = [ticks_until_campaign(bootstrapped(1, seed)) for seed in range(60)]
    assert all(ET <= w < 2 * ET for w in waits), waits
    # The jitter really depends on the seed: many different timeouts, not one.
    assert len(set(waits)) >= 5, waits


def test_election_timeout_is_deterministic_for_a_seed():
    first = [ticks_until_campaign(bootstrapped(1, seed)) for seed in range(20)]
    again = [ticks_until_campaign(bootstrapped(1, seed)) for seed in range(20)]
    assert first == again


def test_election_timeout_is_redrawn_on_every_new_term():
    # Without PreVote, a lone node campaigns again and again, one term per timeout; each new
    # term draws a new timeout from [ET, 2 * ET).
    raw = bootstrapped(1, seed=7, pre_vote=False)
    gaps: list[int] = []
    terms: list[int] = []
    since = 0
    for _ in range(40 * ET):
        raw.tick()
        since += 1
        if any(m.type is MT.VOTE for m in drain(raw)):
            gaps.append(since)
            terms.append(raw.status().hard_state.term)
            since = 0
    assert len(gaps) >= 15
    assert all(ET <= g < 2 * ET for g in gaps), gaps
    assert len(set(gaps[1:])) > 1, gaps
    assert terms == list(range(terms[0], terms[0] + len(terms)))


def test_split_vote_resolves_thanks_to_jitter():
    # All three campaign at the very same moment (a split vote in the first term at worst);
    # randomized timeouts then let one of them win within a few election timeouts.
    c = Cluster([1, 2, 3], seed=3, pre_vote=False)
    for i in (1, 2, 3):
        node(c, i).node.campaign()
    c.stabilize()
    tick_until(c, lambda: c.leader() is not None, max_ticks=10 * ET)
    leader = c.leader()
    assert leader is not None
    assert sum(1 for s in c.nodes.values() if s.role is Role.LEADER) == 1


# ---------------------------------------------------------------------------- PreVote


def test_prevote_partitioned_node_does_not_bump_its_term():
    c = Cluster([1, 2, 3], seed=1)
    c.elect(1)
    c.tick(3)
    n3 = node(c, 3)
    term, vote = n3.term, n3.raft.vote
    cut = cut_off(c, 3)
    c.tick(10 * ET)
    # It tried, several times, but only with pre-votes, and its term never moved.
    pre_votes = cut.of(MT.PRE_VOTE)
    assert len([m for m in pre_votes if m.frm == 3]) >= 4
    assert all(m.term == term + 1 for m in pre_votes if m.frm == 3)
    assert not [m for m in cut.dropped if m.type is MT.VOTE and m.frm == 3]
    assert role(n3) is Role.PRE_CANDIDATE
    assert n3.term == term
    assert n3.raft.vote == vote
    assert n3.storage.hard_state.term == term


def test_prevote_rejoining_node_does_not_disrupt_the_cluster():
    c = Cluster([1, 2, 3], seed=1)
    leader = c.elect(1)
    c.propose(1, b"a")
    term = leader.term
    cut = cut_off(c, 3)
    c.tick(10 * ET)
    remove_rule(c, cut)
    c.tick(10 * ET)
    assert c.leader() is leader
    assert {s.term for s in c.nodes.values()} == {term}
    assert role(node(c, 3)) is Role.FOLLOWER
    assert c.lead_of(3) == 1
    c.propose(1, b"b")
    assert all(s.applied == [b"a", b"b"] for s in c.nodes.values())


def test_without_prevote_a_rejoining_node_forces_a_new_term():
    # The contrast that motivates PreVote: the isolated node's term runs ahead while it is cut
    # off, and when it comes back the cluster has to move past that term.
    c = Cluster([1, 2, 3], seed=1, pre_vote=False)
    leader = c.elect(1)
    term = leader.term
    cut = cut_off(c, 3)
    c.propose(1, b"while 3 is away")
    c.tick(10 * ET)
    assert node(c, 3).term > term + 3
    isolated_term = node(c, 3).term
    remove_rule(c, cut)
    tick_until(c, lambda: leader.role is not Role.LEADER, max_ticks=2 * ET)
    assert leader.term >= isolated_term  # deposed by the rejoining node's term
    tick_until(c, lambda: c.leader() is not None, max_ticks=20 * ET)
    new = c.leader()
    assert new is not None
    assert new.term > isolated_term
    # The stale log of node 3 still cannot win.
    assert new.id != 3


# ---------------------------------------------------------------------------- CheckQuorum


def test_check_quorum_isolated_leader_steps_down_after_an_election_timeout():
    c = Cluster([1, 2, 3], seed=2)
    leader = c.elect(1)
    c.tick(ET // 2 + 2)
    term = leader.term
    cut = cut_off(c, 1)
    ticks = tick_until(c, lambda: leader.role is not Role.LEADER, max_ticks=2 * ET, nodes=[1])
    # It had heard from its followers right before the cut, so it needs one full election
    # timeout of silence, and at most two CheckQuorum rounds.
    assert ET <= ticks <= 2 * ET
    assert role(leader) is Role.FOLLOWER
    assert leader.term == term  # stepping down is not a new term
    assert c.no_leader(1)
    with pytest.raises(ProposalDropped):
        leader.node.propose(b"x")
    # Meanwhile it still sent heartbeats; none got through.
    assert cut.of(MT.HEARTBEAT)


def test_check_quorum_leader_with_a_quorum_stays():
    c = Cluster([1, 2, 3], seed=2)
    leader = c.elect(1)
    term = leader.term
    cut = cut_off(c, 3)  # 1 and 2 are still a quorum
    c.tick(20 * ET, nodes=[1, 2])
    assert role(leader) is Role.LEADER
    assert leader.term == term
    c.propose(1, b"x")
    assert node(c, 2).applied == [b"x"]
    assert cut.dropped


def test_check_quorum_does_not_count_learners():
    c = Cluster([1, 2, 3], learners=[4, 5], seed=2)
    leader = c.elect(1)
    c.tick(2)
    # Both voters gone; the two learners still answer every heartbeat.
    c.cut_link(1, 2)
    c.cut_link(1, 3)
    since = mark(c)
    tick_until(c, lambda: role(leader) is not Role.LEADER, max_ticks=2 * ET, nodes=[1, 4, 5])
    assert delivered_since(c, since, MT.HEARTBEAT_RESP, frm=4)
    assert delivered_since(c, since, MT.HEARTBEAT_RESP, frm=5)
    assert c.no_leader(1)


def test_check_quorum_majority_side_elects_while_old_leader_steps_down():
    c = Cluster([1, 2, 3, 4, 5], seed=4)
    old = c.elect(1)
    c.tick(2)
    # 1 and 2 on one side, 3, 4, 5 on the other.
    for a in (1, 2):
        for b in (3, 4, 5):
            c.cut_link(a, b)
    tick_until(
        c,
        lambda: old.role is not Role.LEADER and leader_among(c, [3, 4, 5]) is not None,
        max_ticks=6 * ET,
    )
    new = leader_among(c, [3, 4, 5])
    assert new is not None and new.term > old.term
    assert leader_among(c, [1, 2]) is None


# ---------------------------------------------------------------------------- the lease


def _vote_request(c: Cluster, kind: MessageType, frm: int, to: int, term: int) -> Message:
    lead = node(c, to).raft.log
    return Message(
        type=kind,
        to=NodeId(to),
        frm=NodeId(frm),
        term=Term(term),
        index=lead.last_index(),
        log_term=lead.last_term(),
    )


@pytest.mark.parametrize("kind", [MT.VOTE, MT.PRE_VOTE])
def test_lease_follower_with_live_leader_ignores_higher_term_vote_requests(kind):
    c = Cluster([1, 2, 3], seed=5)
    c.elect(1)
    c.tick(2)
    n2 = node(c, 2)
    term, vote = n2.term, n2.raft.vote
    # Node 3 turns disruptive: a request for a much higher term, with an up-to-date log.
    n2.node.step(_vote_request(c, kind, frm=3, to=2, term=term + 5))
    rd = c.handle_ready(n2)
    assert rd is None or not [m for m in rd.messages if m.type is not MT.HEARTBEAT_RESP]
    assert n2.term == term
    assert n2.raft.vote == vote
    assert c.lead_of(2) == 1
    c.stabilize()
    assert c.leader() is node(c, 1)
    assert {s.term for s in c.nodes.values()} == {term}


def test_lease_is_bypassed_by_a_leadership_transfer_campaign():
    c = Cluster([1, 2, 3], seed=5)
    c.elect(1)
    c.tick(2)
    n2 = node(c, 2)
    term = n2.term
    request = replace(_vote_request(c, MT.VOTE, frm=3, to=2, term=term + 1), context=b"")
    n2.node.step(replace(request, context=CAMPAIGN_TRANSFER))
    rd = n2.node.ready()
    n2.node.advance(rd)
    grants = [m for m in rd.messages if m.type is MT.VOTE_RESP and m.to == 3]
    assert len(grants) == 1 and not grants[0].reject
    assert n2.term == term + 1
    assert n2.raft.vote == 3


def test_lease_expires_after_an_election_timeout_without_the_leader():
    c = Cluster([1, 2, 3], seed=5)
    c.elect(1)
    c.tick(2)
    n2 = node(c, 2)
    term = n2.term
    c.cut_link(1, 2)
    c.tick(ET, nodes=[2])  # node 2 hears nothing from 1 for a whole election timeout
    n2.node.step(_vote_request(c, MT.VOTE, frm=3, to=2, term=term + 5))
    rd = n2.node.ready()
    n2.node.advance(rd)
    grants = [m for m in rd.messages if m.type is MT.VOTE_RESP and m.to == 3]
    assert len(grants) == 1 and not grants[0].reject
    assert n2.term == term + 5
    assert n2.raft.vote == 3


def test_leader_ignores_higher_term_vote_request_within_its_lease():
    c = Cluster([1, 2, 3], seed=5)
    leader = c.elect(1)
    c.tick(2)
    term = leader.term
    leader.node.step(_vote_request(c, MT.VOTE, frm=3, to=1, term=term + 3))
    c.stabilize()
    assert role(leader) is Role.LEADER
    assert leader.term == term


# ---------------------------------------------------------------------------- who may campaign


def test_learner_never_campaigns_even_after_long_timeouts():
    c = Cluster([1, 2, 3], learners=[4], seed=6)
    c.elect(1)
    c.tick(2)
    learner = node(c, 4)
    term = learner.term
    cut = cut_off(c, 4)
    for _ in range(30 * ET):
        c.tick(1)
        assert role(learner) is Role.FOLLOWER
    assert learner.term == term
    assert not [m for m in cut.dropped if m.frm == 4 and m.type in (MT.PRE_VOTE, MT.VOTE)]
    assert learner.storage.hard_state.vote == 0


def test_learner_never_campaigns_when_the_leader_dies():
    c = Cluster([1, 2, 3], learners=[4], seed=6)
    c.elect(1)
    since = mark(c)
    c.crash(1)
    tick_until(c, lambda: leader_among(c, [2, 3]) is not None, max_ticks=10 * ET)
    c.tick(10 * ET)
    assert campaign_requests(c, since, frm=4) == []
    assert role(node(c, 4)) is Role.FOLLOWER
    # The learner follows the new leader.
    new = leader_among(c, [2, 3])
    assert new is not None and c.lead_of(4) == new.id


def test_learner_ignores_timeout_now():
    c = Cluster([1, 2, 3], learners=[4], seed=6)
    leader = c.elect(1)
    learner = node(c, 4)
    term = learner.term
    learner.node.step(Message(type=MT.TIMEOUT_NOW, to=NodeId(4), frm=NodeId(1), term=Term(term)))
    c.stabilize()
    assert role(learner) is Role.FOLLOWER and learner.term == term
    assert role(leader) is Role.LEADER


def test_promoted_learner_campaigns_once_promotion_is_applied():
    c = Cluster([1, 2, 3], learners=[4], seed=6)
    c.elect(1)
    node(c, 1).node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, NodeId(4)))
    c.stabilize()
    assert NodeId(4) in node(c, 4).conf.voters
    for i in (1, 2, 3):
        c.crash(i)
    c.tick(3 * ET, nodes=[4])
    # Now a voter, node 4 stands for election when it hears from no leader.
    assert role(node(c, 4)) is Role.PRE_CANDIDATE


def test_node_with_committed_but_unapplied_conf_change_does_not_campaign():
    c = LaggingApplyCluster([1, 2, 3], learners=[4], seed=8)
    c.elect(1)
    n3 = node(c, 3)
    c.lagging.add(NodeId(3))
    node(c, 1).node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, NodeId(4)))
    c.stabilize()
    cc_index = node(c, 1).conf_log[-1][0]
    assert n3.raft.log.committed >= cc_index > n3.raft.log.applied
    c.crash(1)

    since = mark(c)
    c.tick(8 * ET, nodes=[3])
    assert campaign_requests(c, since, frm=3) == []
    assert role(n3) is Role.FOLLOWER

    # An up-to-date peer in the same position does campaign (the contrast).
    c.tick(3 * ET, nodes=[2])
    assert campaign_requests(c, since, frm=2)

    # Once node 3's application catches up, it may campaign again.
    c.lagging.clear()
    c.stabilize()
    assert n3.raft.log.applied >= cc_index
    assert NodeId(4) in n3.conf.voters
    since = mark(c)
    c.tick(3 * ET, nodes=[3])
    assert campaign_requests(c, since, frm=3)


def test_node_with_unapplied_conf_change_ignores_timeout_now():
    c = LaggingApplyCluster([1, 2, 3], learners=[4], seed=8)
    leader = c.elect(1)
    c.lagging.add(NodeId(3))
    leader.node.propose_conf_change(ConfChange(ConfChangeType.PROMOTE, NodeId(4)))
    c.stabilize()
    n3 = node(c, 3)
    term = n3.term
    n3.node.step(Message(type=MT.TIMEOUT_NOW, to=NodeId(3), frm=NodeId(1), term=Term(term)))
    c.stabilize()
    assert role(n3) is Role.FOLLOWER and n3.term == term
    assert role(leader) is Role.LEADER


def test_forget_leader_lets_followers_elect_without_waiting_out_the_lease():
    """Crash failover: followers that saw the leader's connection close forget it; PreVote then
    succeeds at once instead of after an election timeout (issue 5, item 6)."""
    c = Cluster([1, 2, 3], seed=11)
    c.elect(1)
    c.crash(1)
    for node_id in (2, 3):
        c.nodes[NodeId(node_id)].node.forget_leader(campaign_within=3)
    for _ in range(3):
        c.tick(1, nodes=[2, 3])
    new = leader_among(c, [2, 3])
    assert new is not None, "a new leader within campaign_within ticks"


def test_forget_leader_without_the_leader_dying_changes_nothing_lasting():
    c = Cluster([1, 2, 3], seed=12)
    leader = c.elect(1)
    term = leader.term
    c.nodes[NodeId(2)].node.forget_leader()
    assert c.lead_of(2) == 0
    c.tick(1)  # the next heartbeat restores it
    assert c.lead_of(2) == 1 and leader.term == term and leader.role is Role.LEADER
