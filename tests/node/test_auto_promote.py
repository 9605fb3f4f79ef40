"""``--auto-promote-learners`` on an in-memory cluster (issue 5, item 7; layer e, fake time).

The leader promotes a learner once it passes the readiness rule (spec §3.10), as one more conf
change; off by default; a learner that never catches up (never started) stays a learner; a
refused promotion is retried after a backoff, not once per status change.
"""

from __future__ import annotations

from typing import Any

import pytest

from node.cluster import AUTO_PROMOTE_BACKOFF
from node.domain_errors import NotEnoughStarted
from proto import etcdserverpb as pb
from raft import NodeId
from tests.node.cluster_harness import (
    NEW_PEER,
    TICK,
    ClusterHarness,
    HarnessNode,
    by_id,
)

pytestmark = pytest.mark.asyncio


async def add_learner(h: ClusterHarness, peer: str = NEW_PEER) -> pb.Member:
    request = pb.MemberAddRequest(peer_ur_ls=[peer], is_learner=True)
    reply = await h.run(h.leader().cluster.member_add(request))
    member: pb.Member = reply.member
    return member


def is_voter_everywhere(h: ClusterHarness, member_id: int) -> bool:
    return all(
        member_id in n.driver.status.conf_state.voters
        and not by_id_or_none(n, member_id).is_learner
        for n in h.nodes.values()
    )


def by_id_or_none(node: HarnessNode, member_id: int) -> Any:
    member = node.membership.get(member_id)
    assert member is not None, f"{member_id:x} is not a member on {node.id:x}"
    return member


async def test_the_leader_promotes_a_learner_once_it_is_in_sync() -> None:
    async with ClusterHarness(3, auto_promote_learners=True) as h:
        added = await add_learner(h)
        learner = await h.start_member(added, "infra4", "http://127.0.0.1:42379")
        await h.until(lambda: is_voter_everywhere(h, learner.id))
        leader = h.leader()
        assert leader.promoter is not None and leader.promoter.promoted == [learner.id]
        assert all(n.promoter is None or not n.promoter.promoted for n in h.followers())
        reply = await h.run(leader.cluster.member_list(pb.MemberListRequest()), max_ticks=0)
        assert not by_id(reply.members, learner.id).is_learner
        assert by_id(reply.members, learner.id).name == "infra4"
        # The promoted member votes: with it, 3 of 4 voters are a quorum without one founder.
        h.isolate(h.followers()[0] if h.followers()[0] is not learner else h.followers()[1])
        reply = await h.run(leader.cluster.member_list(pb.MemberListRequest(linearizable=True)))
        assert len(reply.members) == 4


async def test_a_learner_that_never_catches_up_stays_a_learner() -> None:
    async with ClusterHarness(3, auto_promote_learners=True) as h:
        added = await add_learner(h)  # never started: its Match stays 0
        await h.tick(100)
        assert all(by_id_or_none(n, added.id).is_learner for n in h.nodes.values())
        assert all(n.promoter is not None and not n.promoter.promoted for n in h.nodes.values())


async def test_off_by_default() -> None:
    async with ClusterHarness(3) as h:
        added = await add_learner(h)
        learner = await h.start_member(added, "infra4", "http://127.0.0.1:42379")
        await h.tick(50)
        assert h.leader().promoter is None
        assert all(by_id_or_none(n, learner.id).is_learner for n in h.nodes.values())
        leader_status = h.leader().driver.status
        assert leader_status.progress[leader_status.id].match == (
            leader_status.progress[NodeId(learner.id)].match  # in sync, and still not promoted
        )


async def test_a_refused_promotion_is_retried_after_a_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ClusterHarness(3, auto_promote_learners=True) as h:
        leader = h.leader()
        attempts: list[float] = []
        original = leader.manager.member_promote

        async def refuse_twice(member_id: int) -> Any:
            attempts.append(h.clock.now)
            if len(attempts) <= 2:
                raise NotEnoughStarted("refused by the test")
            return await original(member_id)

        monkeypatch.setattr(leader.manager, "member_promote", refuse_twice)
        added = await add_learner(h)
        learner = await h.start_member(added, "infra4", "http://127.0.0.1:42379")
        await h.until(lambda: is_voter_everywhere(h, learner.id))
        assert len(attempts) == 3
        # One attempt per backoff, doubling, whatever the status changes in between.
        assert attempts[1] - attempts[0] >= AUTO_PROMOTE_BACKOFF
        assert attempts[2] - attempts[1] >= 2 * AUTO_PROMOTE_BACKOFF
        assert attempts[2] - attempts[1] < 2 * AUTO_PROMOTE_BACKOFF + 2 * TICK
        assert leader.promoter is not None and leader.promoter.promoted == [learner.id]
