"""Layer (a): the leader's per-follower flow control (raft/tracker.py) as tables.

Covers the inflight window, the PROBE / REPLICATE / SNAPSHOT state machine of a Progress (the
transitions, how acknowledgements and rejections move ``match`` and ``next``, when sending pauses)
and the ProgressTracker's configuration switch and quorum views.
"""

from __future__ import annotations

import pytest

from raft.quorum import VoteResult
from raft.tracker import Inflights, Progress, ProgressState, ProgressTracker
from raft.types import ConfState, Index, NodeId


def ids(*nodes: int) -> frozenset[NodeId]:
    return frozenset(NodeId(n) for n in nodes)


def progress(
    state: ProgressState = ProgressState.PROBE,
    *,
    match: int = 0,
    next_index: int = 1,
    pending_snapshot: int = 0,
    probe_sent: bool = False,
    max_inflight: int = 4,
) -> Progress:
    pr = Progress(Index(next_index), max_inflight, is_learner=False)
    pr.match = Index(match)
    pr.state = state
    pr.pending_snapshot = Index(pending_snapshot)
    pr.probe_sent = probe_sent
    pr.next = Index(next_index)
    return pr


# ----------------------------------------------------------------------------- Inflights


def test_inflights_fill_up_to_capacity_then_refuse():
    inflights = Inflights(3)
    for last in (5, 7, 9):
        assert not inflights.full()
        inflights.add(Index(last))
    assert inflights.full()
    assert len(inflights) == 3
    with pytest.raises(OverflowError):
        inflights.add(Index(11))
    assert len(inflights) == 3


@pytest.mark.parametrize(
    ("added", "free_to", "left"),
    [
        ((5, 7, 9), 4, 3),  # below the oldest: nothing acknowledged
        ((5, 7, 9), 5, 2),  # exactly the oldest
        ((5, 7, 9), 6, 2),  # between two: frees only the older
        ((5, 7, 9), 8, 1),
        ((5, 7, 9), 9, 0),  # exactly the newest
        ((5, 7, 9), 100, 0),  # past everything
        ((), 10, 0),  # empty window: a no-op
    ],
)
def test_inflights_free_le(added, free_to, left):
    inflights = Inflights(4)
    for last in added:
        inflights.add(Index(last))
    inflights.free_le(Index(free_to))
    assert len(inflights) == left


def test_inflights_free_le_makes_room_again():
    inflights = Inflights(2)
    inflights.add(Index(3))
    inflights.add(Index(6))
    assert inflights.full()
    inflights.free_le(Index(3))
    assert not inflights.full()
    inflights.add(Index(8))
    inflights.free_le(Index(6))
    assert len(inflights) == 1  # 8 is still outstanding


def test_inflights_free_first_one_frees_exactly_the_oldest():
    inflights = Inflights(3)
    for last in (5, 7, 9):
        inflights.add(Index(last))
    inflights.free_first_one()
    assert len(inflights) == 2
    inflights.free_le(Index(6))  # 5 is gone already, so this frees nothing
    assert len(inflights) == 2
    inflights.free_le(Index(7))
    assert len(inflights) == 1


def test_inflights_free_first_one_on_empty_is_a_no_op():
    inflights = Inflights(1)
    inflights.free_first_one()
    assert len(inflights) == 0
    inflights.add(Index(1))
    assert inflights.full()


def test_inflights_reset_empties():
    inflights = Inflights(2)
    inflights.add(Index(1))
    inflights.add(Index(2))
    inflights.reset()
    assert len(inflights) == 0
    assert not inflights.full()


# ----------------------------------------------------------------------------- Progress states


def test_new_progress_probes_from_the_given_next():
    pr = Progress(Index(7), 4, is_learner=True)
    assert pr.state is ProgressState.PROBE
    assert (pr.match, pr.next) == (0, 7)
    assert pr.is_learner
    assert not pr.probe_sent
    assert not pr.is_paused()


@pytest.mark.parametrize(
    ("start", "match", "next_index", "pending", "expected_next"),
    [
        # from REPLICATE or PROBE, probing restarts right after match
        (ProgressState.REPLICATE, 5, 9, 0, 6),
        (ProgressState.PROBE, 5, 9, 0, 6),
        # from SNAPSHOT, probing resumes after the snapshot, or after match if that is further
        (ProgressState.SNAPSHOT, 5, 6, 10, 11),
        (ProgressState.SNAPSHOT, 12, 13, 10, 13),
        # a snapshot reported as failed (pending reset to 0) falls back to match + 1
        (ProgressState.SNAPSHOT, 5, 6, 0, 6),
    ],
)
def test_become_probe(start, match, next_index, pending, expected_next):
    pr = progress(start, match=match, next_index=next_index, pending_snapshot=pending)
    pr.inflights.add(Index(8))
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert pr.next == expected_next
    assert pr.match == match
    assert pr.pending_snapshot == 0
    assert len(pr.inflights) == 0
    assert not pr.probe_sent


@pytest.mark.parametrize("start", list(ProgressState))
def test_become_replicate_pipelines_right_after_match(start):
    pr = progress(start, match=5, next_index=3, pending_snapshot=9, probe_sent=True)
    pr.become_replicate()
    assert pr.state is ProgressState.REPLICATE
    assert pr.next == 6
    assert not pr.probe_sent
    assert pr.pending_snapshot == 0
    assert len(pr.inflights) == 0


@pytest.mark.parametrize("start", list(ProgressState))
def test_become_snapshot_records_the_pending_index_and_pauses(start):
    pr = progress(start, match=2, next_index=5)
    pr.inflights.add(Index(4))
    pr.become_snapshot(Index(20))
    assert pr.state is ProgressState.SNAPSHOT
    assert pr.pending_snapshot == 20
    assert pr.match == 2
    assert len(pr.inflights) == 0
    assert pr.is_paused()


@pytest.mark.parametrize(
    ("match", "next_index", "ack", "updated", "expected_match", "expected_next"),
    [
        (3, 5, 2, False, 3, 5),  # stale ack below match: nothing moves
        (3, 5, 3, False, 3, 5),  # duplicate ack of match
        (3, 5, 4, True, 4, 5),  # match moves, next already ahead
        (3, 5, 7, True, 7, 8),  # both move
        (0, 1, 0, False, 0, 1),
    ],
)
def test_maybe_update(match, next_index, ack, updated, expected_match, expected_next):
    pr = progress(ProgressState.PROBE, match=match, next_index=next_index, probe_sent=True)
    assert pr.maybe_update(Index(ack)) is updated
    assert (pr.match, pr.next) == (expected_match, expected_next)
    # an ack that moves match also answers the outstanding probe
    assert pr.probe_sent is (not updated)


@pytest.mark.parametrize(
    ("state", "match", "next_index", "rejected", "hint", "changed", "expected_next"),
    [
        # REPLICATE: a rejection at or below match is stale (answer to an old message)
        (ProgressState.REPLICATE, 5, 10, 5, 5, False, 10),
        (ProgressState.REPLICATE, 5, 10, 3, 3, False, 10),
        # REPLICATE: a real rejection falls back to right after match
        (ProgressState.REPLICATE, 5, 10, 9, 9, True, 6),
        (ProgressState.REPLICATE, 5, 10, 7, 2, True, 6),
        # PROBE: only the answer to the outstanding probe (next - 1) counts
        (ProgressState.PROBE, 0, 10, 8, 3, False, 10),
        (ProgressState.PROBE, 0, 10, 10, 3, False, 10),
        # PROBE: back off to the follower's hint + 1 ...
        (ProgressState.PROBE, 0, 10, 9, 3, True, 4),
        # ... but never past the rejected index itself ...
        (ProgressState.PROBE, 0, 10, 9, 20, True, 9),
        # ... and never below 1
        (ProgressState.PROBE, 0, 2, 1, 0, True, 1),
    ],
)
def test_maybe_decr_to(state, match, next_index, rejected, hint, changed, expected_next):
    pr = progress(state, match=match, next_index=next_index, probe_sent=True)
    assert pr.maybe_decr_to(Index(rejected), Index(hint)) is changed
    assert pr.next == expected_next
    assert pr.match == match
    if state is ProgressState.PROBE:
        # a counted rejection answers the probe; a stale one leaves it outstanding
        assert pr.probe_sent is (not changed)


@pytest.mark.parametrize(
    ("state", "probe_sent", "inflight", "paused"),
    [
        (ProgressState.PROBE, False, 0, False),
        (ProgressState.PROBE, True, 0, True),
        (ProgressState.REPLICATE, False, 0, False),
        (ProgressState.REPLICATE, False, 1, False),
        (ProgressState.REPLICATE, False, 2, True),  # window of 2 is full
        (ProgressState.REPLICATE, True, 0, False),  # probe_sent means nothing here
        (ProgressState.SNAPSHOT, False, 0, True),  # always paused
    ],
)
def test_is_paused(state, probe_sent, inflight, paused):
    pr = progress(state, probe_sent=probe_sent, max_inflight=2)
    for i in range(inflight):
        pr.inflights.add(Index(i + 1))
    assert pr.is_paused() is paused


def test_sent_entries_in_replicate_advances_next_and_fills_the_window():
    pr = progress(ProgressState.REPLICATE, match=3, next_index=4, max_inflight=2)
    pr.sent_entries(Index(6), 3)
    assert pr.next == 7
    assert len(pr.inflights) == 1
    pr.sent_entries(Index(6), 0)  # an empty append (e.g. commit only) takes no slot
    assert (pr.next, len(pr.inflights)) == (7, 1)
    pr.sent_entries(Index(8), 2)
    assert pr.next == 9
    assert pr.is_paused()


def test_sent_entries_in_probe_sends_one_at_a_time():
    pr = progress(ProgressState.PROBE, match=0, next_index=4)
    pr.sent_entries(Index(6), 3)
    assert pr.next == 4  # optimistic advance only in REPLICATE
    assert pr.probe_sent
    assert pr.is_paused()
    assert len(pr.inflights) == 0


def test_sent_entries_in_snapshot_changes_nothing():
    pr = progress(ProgressState.SNAPSHOT, match=0, next_index=4, pending_snapshot=10)
    pr.sent_entries(Index(6), 3)
    assert (pr.next, pr.probe_sent, len(pr.inflights)) == (4, False, 0)


def test_full_flow_probe_replicate_snapshot_probe():
    """The life of one follower: probed, then pipelined, then behind a compaction."""
    pr = Progress(Index(11), 2, is_learner=False)
    pr.sent_entries(Index(11), 1)
    assert pr.is_paused()  # waiting for the probe's answer
    assert pr.maybe_decr_to(Index(10), Index(4))  # rejected: follower's log ends near 4
    assert pr.next == 5 and not pr.is_paused()
    assert pr.maybe_update(Index(8))  # the retry matched
    pr.become_replicate()
    assert pr.next == 9
    pr.sent_entries(Index(10), 2)
    pr.sent_entries(Index(12), 2)
    assert pr.is_paused()  # window full
    pr.inflights.free_le(Index(10))
    assert not pr.is_paused()
    pr.become_snapshot(Index(30))
    assert pr.is_paused()
    assert pr.maybe_update(Index(30))  # snapshot applied
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert pr.next == 31


# ----------------------------------------------------------------------------- ProgressTracker


def tracker_with(
    voters: frozenset[NodeId], learners: frozenset[NodeId] = frozenset()
) -> ProgressTracker:
    tracker = ProgressTracker(max_inflight=8)
    tracker.set_conf(ConfState(voters=voters, learners=learners), Index(5))
    return tracker


def test_set_conf_creates_fresh_active_progress():
    tracker = tracker_with(ids(1, 2), ids(3))
    assert set(tracker.progress) == {1, 2, 3}
    for node, pr in tracker.progress.items():
        assert pr.next == 5
        assert pr.match == 0
        assert pr.recent_active  # a new member is not counted as dead before it could answer
        assert pr.is_learner is (node == 3)
        assert pr.inflights.capacity == 8
    assert tracker.conf_state() == ConfState(voters=ids(1, 2), learners=ids(3))


def test_set_conf_keeps_progress_of_staying_members_and_drops_the_removed():
    tracker = tracker_with(ids(1, 2, 3), ids(4))
    kept = tracker.progress[NodeId(2)]
    kept.match = Index(9)
    kept.become_replicate()
    kept.recent_active = False
    tracker.set_conf(ConfState(voters=ids(1, 2), learners=ids(4, 5)), Index(20))
    assert set(tracker.progress) == {1, 2, 4, 5}
    assert tracker.progress[NodeId(2)] is kept
    assert (kept.match, kept.next, kept.state) == (9, 10, ProgressState.REPLICATE)
    assert not kept.recent_active  # only new members get the benefit of the doubt
    assert tracker.progress[NodeId(5)].next == 20
    assert tracker.voters == ids(1, 2)
    assert tracker.learners == ids(4, 5)


def test_set_conf_promotion_flips_is_learner_but_keeps_progress():
    tracker = tracker_with(ids(1), ids(2))
    pr = tracker.progress[NodeId(2)]
    pr.match = Index(7)
    tracker.set_conf(ConfState(voters=ids(1, 2)), Index(20))
    assert tracker.progress[NodeId(2)] is pr
    assert not pr.is_learner
    assert pr.match == 7


def test_reset_progress_starts_everyone_over():
    tracker = tracker_with(ids(1, 2, 3))
    tracker.progress[NodeId(2)].match = Index(4)
    tracker.reset_progress(Index(12))
    assert {n: (p.match, p.next) for n, p in tracker.progress.items()} == {
        1: (0, 12),
        2: (0, 12),
        3: (0, 12),
    }


@pytest.mark.parametrize(
    ("voters", "learners", "match", "expected"),
    [
        (ids(1, 2, 3), ids(), {1: 5, 2: 4, 3: 1}, 4),
        # learners far ahead do not make an entry committed
        (ids(1, 2, 3), ids(4, 5), {1: 5, 2: 1, 3: 1, 4: 9, 5: 9}, 1),
        # learners lagging do not hold it back
        (ids(1, 2, 3), ids(4, 5), {1: 5, 2: 5, 3: 1, 4: 0, 5: 0}, 5),
        (ids(1), ids(2), {1: 3, 2: 0}, 3),
        (ids(1, 2, 3, 4), ids(5), {1: 6, 2: 5, 3: 4, 4: 3, 5: 9}, 4),
    ],
)
def test_committed_counts_voters_only(voters, learners, match, expected):
    tracker = tracker_with(voters, learners)
    for node, index in match.items():
        tracker.progress[NodeId(node)].match = Index(index)
    assert tracker.committed() == expected


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        ({1, 2}, True),
        ({1}, False),
        ({1, 4, 5}, False),  # active learners are not a quorum
        ({2, 3, 4}, True),
    ],
)
def test_quorum_active(active, expected):
    tracker = tracker_with(ids(1, 2, 3), ids(4, 5))
    for node, pr in tracker.progress.items():
        pr.recent_active = node in active
    assert tracker.quorum_active() is expected


def test_votes_first_answer_counts_and_learners_are_ignored():
    tracker = tracker_with(ids(1, 2, 3), ids(4))
    tracker.record_vote(NodeId(1), True)
    tracker.record_vote(NodeId(2), False)
    tracker.record_vote(NodeId(2), True)  # a duplicate answer does not flip the first
    tracker.record_vote(NodeId(4), True)  # learners' votes are recorded but never counted
    assert tracker.tally() == (1, 1)
    assert tracker.vote_result() is VoteResult.PENDING
    tracker.record_vote(NodeId(3), True)
    assert tracker.tally() == (2, 1)
    assert tracker.vote_result() is VoteResult.WON
    tracker.reset_votes()
    assert tracker.tally() == (0, 0)
    assert tracker.vote_result() is VoteResult.PENDING


def test_items_are_sorted_by_node_id():
    tracker = tracker_with(ids(7, 3, 5), ids(1))
    assert [node for node, _ in tracker.items()] == [1, 3, 5, 7]
