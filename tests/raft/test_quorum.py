"""Layer (a): majority-quorum arithmetic as tables (raft/quorum.py).

Every case names its voters and the acknowledgements it has; even cluster sizes, voters missing
from the map and ids that are not voters at all are part of each table, since those are where an
off-by-one in ``majority`` would hide.
"""

from __future__ import annotations

import pytest

from raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result
from raft.types import Index, NodeId


def ids(*nodes: int) -> frozenset[NodeId]:
    return frozenset(NodeId(n) for n in nodes)


def matches(**by_node: int) -> dict[NodeId, Index]:
    """``matches(n1=5, n2=3)`` -> {1: 5, 2: 3}: keyword names keep the tables readable."""
    return {NodeId(int(k[1:])): Index(v) for k, v in by_node.items()}


def votes(**by_node: bool) -> dict[NodeId, bool]:
    return {NodeId(int(k[1:])): v for k, v in by_node.items()}


@pytest.mark.parametrize(
    ("voter_count", "expected"),
    [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)],
)
def test_majority(voter_count, expected):
    assert majority(voter_count) == expected


@pytest.mark.parametrize(
    ("voters", "match", "expected"),
    [
        # one voter: its own match is the commit point
        (ids(1), matches(n1=5), 5),
        (ids(1), matches(), 0),
        # two voters: both are needed, so the smaller match wins
        (ids(1, 2), matches(n1=5, n2=3), 3),
        (ids(1, 2), matches(n1=5), 0),
        # three voters: the middle value
        (ids(1, 2, 3), matches(n1=5, n2=3, n3=1), 3),
        (ids(1, 2, 3), matches(n1=5, n2=5, n3=1), 5),
        (ids(1, 2, 3), matches(n1=1, n2=3, n3=5), 3),
        (ids(1, 2, 3), matches(n1=2, n2=2, n3=2), 2),
        # a missing voter counts as 0
        (ids(1, 2, 3), matches(n1=5, n2=3), 3),
        (ids(1, 2, 3), matches(n1=5), 0),
        # four voters: three must have it
        (ids(1, 2, 3, 4), matches(n1=4, n2=3, n3=2, n4=1), 2),
        (ids(1, 2, 3, 4), matches(n1=4, n2=4, n3=1, n4=1), 1),
        (ids(1, 2, 3, 4), matches(n1=4, n2=4, n3=4), 4),
        # five voters: three must have it
        (ids(1, 2, 3, 4, 5), matches(n1=5, n2=4, n3=3, n4=2, n5=1), 3),
        (ids(1, 2, 3, 4, 5), matches(n1=9, n2=9), 0),
        # six voters: four must have it
        (ids(1, 2, 3, 4, 5, 6), matches(n1=6, n2=5, n3=4, n4=3, n5=2, n6=1), 3),
        # acknowledgements from non-voters (learners, removed nodes) are ignored
        (ids(1, 2, 3), matches(n1=5, n4=100, n5=100), 0),
        (ids(1, 2, 3), matches(n1=5, n2=4, n4=100, n5=100), 4),
    ],
)
def test_committed_index(voters, match, expected):
    assert committed_index(voters, match) == expected


def test_committed_index_with_no_voters_is_unbounded():
    """Documented: no voters means nothing to wait for ("infinitely committed", as etcd)."""
    assert committed_index(frozenset(), {}) >= 1 << 62


@pytest.mark.parametrize(
    ("voters", "cast", "expected"),
    [
        # no voters: nothing to win
        (ids(), votes(), VoteResult.WON),
        # one voter
        (ids(1), votes(), VoteResult.PENDING),
        (ids(1), votes(n1=True), VoteResult.WON),
        (ids(1), votes(n1=False), VoteResult.LOST),
        # two voters: both needed
        (ids(1, 2), votes(n1=True), VoteResult.PENDING),
        (ids(1, 2), votes(n1=True, n2=True), VoteResult.WON),
        (ids(1, 2), votes(n1=True, n2=False), VoteResult.LOST),
        (ids(1, 2), votes(n2=False), VoteResult.LOST),
        # three voters
        (ids(1, 2, 3), votes(), VoteResult.PENDING),
        (ids(1, 2, 3), votes(n1=True), VoteResult.PENDING),
        (ids(1, 2, 3), votes(n1=True, n2=True), VoteResult.WON),
        (ids(1, 2, 3), votes(n1=True, n2=False), VoteResult.PENDING),
        (ids(1, 2, 3), votes(n1=True, n2=False, n3=True), VoteResult.WON),
        (ids(1, 2, 3), votes(n1=True, n2=False, n3=False), VoteResult.LOST),
        (ids(1, 2, 3), votes(n2=False, n3=False), VoteResult.LOST),
        # four voters: three needed, so two rejections already lose
        (ids(1, 2, 3, 4), votes(n1=True, n2=True), VoteResult.PENDING),
        (ids(1, 2, 3, 4), votes(n1=True, n2=True, n3=True), VoteResult.WON),
        (ids(1, 2, 3, 4), votes(n1=True, n2=True, n3=False), VoteResult.PENDING),
        (ids(1, 2, 3, 4), votes(n1=True, n2=True, n3=False, n4=False), VoteResult.LOST),
        (ids(1, 2, 3, 4), votes(n1=False, n2=False), VoteResult.LOST),
        # five voters
        (ids(1, 2, 3, 4, 5), votes(n1=True, n2=True), VoteResult.PENDING),
        (ids(1, 2, 3, 4, 5), votes(n1=True, n2=True, n3=True), VoteResult.WON),
        (ids(1, 2, 3, 4, 5), votes(n1=True, n2=False, n3=False), VoteResult.PENDING),
        (ids(1, 2, 3, 4, 5), votes(n1=True, n2=False, n3=False, n4=False), VoteResult.LOST),
        # votes of non-voters do not count, either way
        (ids(1, 2, 3), votes(n1=True, n4=True, n5=True), VoteResult.PENDING),
        (ids(1, 2, 3), votes(n1=True, n4=False, n5=False, n6=False), VoteResult.PENDING),
    ],
)
def test_vote_result(voters, cast, expected):
    assert vote_result(voters, cast) is expected


@pytest.mark.parametrize(
    ("voters", "active", "expected"),
    [
        (ids(1), ids(1), True),
        (ids(1), ids(), False),
        (ids(1, 2), ids(1), False),
        (ids(1, 2), ids(1, 2), True),
        (ids(1, 2, 3), ids(1, 2), True),
        (ids(1, 2, 3), ids(3), False),
        (ids(1, 2, 3), ids(), False),
        (ids(1, 2, 3, 4), ids(1, 2), False),
        (ids(1, 2, 3, 4), ids(1, 2, 4), True),
        (ids(1, 2, 3, 4, 5), ids(1, 2), False),
        (ids(1, 2, 3, 4, 5), ids(3, 4, 5), True),
        (ids(1, 2, 3, 4, 5, 6), ids(1, 2, 3), False),
        (ids(1, 2, 3, 4, 5, 6), ids(1, 2, 3, 6), True),
        # active nodes that are not voters (learners) never make a quorum
        (ids(1, 2, 3), ids(1, 4, 5, 6), False),
        (ids(1, 2, 3), ids(1, 3, 4), True),
    ],
)
def test_has_quorum(voters, active, expected):
    assert has_quorum(voters, active) is expected
