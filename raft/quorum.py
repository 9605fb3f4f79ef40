"""Majority-quorum arithmetic over a set of voters. Pure functions, table-tested.

Learners never appear here: callers pass the voter set only, which is the single place where
"a learner's ack does not count" is enforced.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from raft.types import Index, NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority(voter_count: int) -> int:
    return voter_count // 2 + 1


def committed_index(voters: Collection[NodeId], match: Mapping[NodeId, Index]) -> Index:
    """The largest index replicated on a majority of ``voters`` (missing voters count as 0).

    With no voters there is nothing to wait for; like etcd we answer "infinitely committed" so
    that joint-free callers need no special case. Our configurations always keep a voter.
    """
    if not voters:
        return Index(1 << 62)
    indexes = sorted((match.get(v, Index(0)) for v in voters), reverse=True)
    return indexes[majority(len(indexes)) - 1]


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """Won once a majority granted; lost once a majority can no longer be reached."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected >= need:
        return VoteResult.PENDING
    return VoteResult.LOST


def has_quorum(voters: Collection[NodeId], active: Collection[NodeId]) -> bool:
    """Whether the ``active`` nodes include a majority of ``voters`` (vacuously true for none,
    like ``committed_index`` and ``vote_result``)."""
    if not voters:
        return True
    return sum(1 for v in voters if v in active) >= majority(len(voters))
