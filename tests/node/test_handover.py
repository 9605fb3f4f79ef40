"""A stopping leader hands leadership over first (issue 5, item 4), in memory (layer e).

``ClusterManager.hand_over_leadership`` is what the composition root calls on SIGTERM before it
drains: it picks the most up-to-date connected voter (`transfer_target`, a table here), asks raft
to transfer, and waits, bounded, until this node follows the new leader.
"""

from __future__ import annotations

import pytest

from node.cluster import transfer_target
from node.driver import DriverStatus
from proto import etcdserverpb as pb
from raft import Index, MessageType, NodeId, ProgressState, ProgressView, Role
from tests.node.cluster_harness import INFRA1, INFRA2, INFRA3, ClusterHarness

BOUND = 2.5  # two election timeouts of the harness (2 x 10 ticks of 0.125 s)


def status_with(matches: dict[int, int]) -> DriverStatus:
    return DriverStatus(
        id=NodeId(INFRA1),
        lead=NodeId(INFRA1),
        role=Role.LEADER,
        progress={
            NodeId(node): ProgressView(
                match=Index(match),
                next=Index(match + 1),
                state=ProgressState.REPLICATE,
                is_learner=False,
                recent_active=True,
            )
            for node, match in matches.items()
        },
    )


@pytest.mark.parametrize(
    ("matches", "connected", "expected"),
    [
        # the highest Match wins
        ({INFRA1: 9, INFRA2: 7, INFRA3: 9}, {INFRA2, INFRA3}, INFRA3),
        ({INFRA1: 9, INFRA2: 9, INFRA3: 7}, {INFRA2, INFRA3}, INFRA2),
        # a tie goes to the lower ID (INFRA2 < INFRA3)
        ({INFRA1: 9, INFRA2: 9, INFRA3: 9}, {INFRA2, INFRA3}, INFRA2),
        # an unconnected voter is never picked, however up to date
        ({INFRA1: 9, INFRA2: 5, INFRA3: 9}, {INFRA2}, INFRA2),
        # nobody connected, or nobody else: no transfer
        ({INFRA1: 9, INFRA2: 9, INFRA3: 9}, set(), None),
        ({INFRA1: 9}, {INFRA2}, None),
        # a member without progress (not a voter raft knows of) is skipped
        ({INFRA1: 9, INFRA3: 4}, {INFRA2, INFRA3}, INFRA3),
    ],
)
def test_transfer_target(
    matches: dict[int, int], connected: set[int], expected: int | None
) -> None:
    voters = [INFRA1, INFRA2, INFRA3]
    pick = transfer_target(
        status_with(matches), voters, lambda peer: 0.0 if peer in connected else None
    )
    assert pick == expected


@pytest.mark.asyncio
async def test_the_leader_hands_over_to_its_most_up_to_date_voter() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        ahead, behind = h.followers()
        # `behind` misses the appends of one change, so `ahead` is the one to pick.
        h.network.drop = lambda m: m.to == behind.id and m.type is MessageType.APP
        update = pb.MemberUpdateRequest(id=ahead.id, peer_ur_ls=list(ahead.peer_urls))
        await h.run(leader.cluster.member_update(update))
        matches = leader.driver.status.progress
        assert matches[NodeId(ahead.id)].match > matches[NodeId(behind.id)].match
        h.network.drop = None
        new_leader = await h.run(leader.manager.hand_over_leadership(BOUND), max_ticks=3)
        assert new_leader == ahead.id
        assert h.leader() is ahead
        assert leader.driver.status.lead == ahead.id and not leader.is_leader


@pytest.mark.asyncio
async def test_no_hand_over_without_a_connected_voter_or_when_not_leading() -> None:
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        assert await h.run(follower.manager.hand_over_leadership(BOUND), max_ticks=0) is None
        leader = h.leader()
        h.isolate(*h.followers())
        assert await h.run(leader.manager.hand_over_leadership(BOUND), max_ticks=0) is None


@pytest.mark.asyncio
async def test_a_transfer_that_cannot_finish_gives_up_within_the_bound() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        # Links count as up, but the transferee never gets TimeoutNow: raft aborts the transfer
        # after an election timeout and the wait ends at the bound, leaving the leader in place.
        h.network.drop = lambda m: m.type is MessageType.TIMEOUT_NOW
        began = h.clock.now
        result = await h.run(leader.manager.hand_over_leadership(BOUND))
        assert result is None
        assert h.clock.now - began >= BOUND
        assert h.leader() is leader
