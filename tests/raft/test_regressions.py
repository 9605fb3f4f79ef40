"""Bugs the simulator found, pinned as plain tests (seed and scenario)."""

from __future__ import annotations

import pytest

from raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    Index,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    RawNode,
    Role,
    Term,
    bootstrap_snapshot,
)
from tests.raft.harness import Cluster
from tests.raft.sim import run_seed


@pytest.mark.parametrize("seed", [4, 234, 296, 870, 2427, 6759])
def test_seeds_that_once_failed_now_pass(seed: int) -> None:
    run_seed(seed)


def test_a_proposal_forwarded_back_to_its_origin_never_raises_from_step() -> None:
    """Seed 2427: a follower forwarded a conf change to the old leader, which forwarded it back
    after the follower became leader itself; step() raised ConfChangeInProgress from a peer's
    message. Now the refusal is reported as a rejected proposal instead."""
    c = Cluster([1, 2, 3])
    c.elect(1)
    c.nodes[NodeId(1)].node.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(9)))
    leader = c.nodes[NodeId(1)]
    change = ConfChange(ConfChangeType.ADD_LEARNER, NodeId(8))
    entry = Entry(Term(0), Index(0), EntryType.CONF_CHANGE, b"mine", change)
    # A PROP that originated at node 1 and comes back to it from a peer.
    leader.node.step(Message(MessageType.PROP, to=NodeId(1), frm=NodeId(1), entries=(entry,)))
    c.stabilize()
    assert leader.role is Role.LEADER
    assert [r.data for r in leader.rejected] == [b"mine"]
    assert "already pending" in leader.rejected[0].reason


def test_a_removed_leader_hands_over_to_a_lagging_voter_once_it_caught_up() -> None:
    """D7: the transferee must hold the whole log before TimeoutNow; until then the removed
    leader keeps replicating but takes no proposals and does not count toward commit."""
    c = Cluster([1, 2, 3], seed=5)
    c.elect(1)
    c.isolate(3)
    for i in range(5):
        c.propose(1, b"x%d" % i)
    c.heal()
    c.cut_link(1, 2)  # 2 cannot hear the leader: 3 is the one that must be handed over to
    c.nodes[NodeId(1)].node.propose_conf_change(ConfChange(ConfChangeType.REMOVE, NodeId(1)))
    c.stabilize()
    c.tick(3)
    new = c.leader()
    assert new is not None and new.id == 3
    assert c.nodes[NodeId(1)].role is Role.FOLLOWER
    assert c.nodes[NodeId(3)].applied == [b"x%d" % i for i in range(5)]


def test_a_timeout_now_before_the_removal_is_applied_waits_for_the_apply() -> None:
    """Found by the in-memory service tests: the successor stepped TimeoutNow before applying
    the commit of the leader's removal, refused to campaign (unapplied conf change) and dropped
    it; the survivors sat leaderless for an election timeout. Now it campaigns right after."""
    c = Cluster([1, 2, 3], seed=21)
    c.elect(1)
    successor = c.nodes[NodeId(2)]
    change = ConfChange(ConfChangeType.REMOVE, NodeId(1))
    entry = Entry(Term(1), Index(3), EntryType.CONF_CHANGE, b"", change)
    # The successor holds the removal, learns it is committed, and gets TimeoutNow, all before
    # its application applies anything.
    successor.node.step(
        Message(
            MessageType.APP,
            to=NodeId(2),
            frm=NodeId(1),
            term=Term(1),
            index=Index(2),
            log_term=Term(1),
            entries=(entry,),
            commit=Index(3),
        )
    )
    successor.node.step(Message(MessageType.TIMEOUT_NOW, to=NodeId(2), frm=NodeId(1), term=Term(1)))
    assert successor.role is Role.FOLLOWER  # deferred, not dropped
    c.crash(1)
    c.handle_ready(successor)  # applies the removal: the deferred campaign starts
    c.stabilize()
    assert c.leader() is successor


def test_must_sync_is_false_only_for_a_commit_index_change() -> None:
    """Ready.must_sync: entries, a snapshot, a new term or vote need fsync; a commit alone not."""
    storage = MemoryStorage()
    storage.apply_snapshot(bootstrap_snapshot(frozenset({NodeId(1), NodeId(2), NodeId(3)})))
    follower = RawNode(Config(id=NodeId(2), applied=Index(1)), storage)
    app = Entry(Term(2), Index(2), data=b"x")
    follower.step(
        Message(
            MessageType.APP,
            to=NodeId(2),
            frm=NodeId(1),
            term=Term(2),
            index=Index(1),
            log_term=Term(1),
            entries=(app,),
            commit=Index(1),
        )
    )
    rd = follower.ready()
    assert rd.entries and rd.must_sync
    storage.append(rd.entries)
    follower.advance(rd)
    follower.step(
        Message(MessageType.HEARTBEAT, to=NodeId(2), frm=NodeId(1), term=Term(2), commit=Index(2))
    )
    rd = follower.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert not rd.entries and not rd.must_sync
