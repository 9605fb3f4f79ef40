"""`node.client.ClusterClient` against in-memory members (layer e): no sockets, no sleeps.

The client's channels come from an injected factory that hands out each harness member's
``ChannelFor`` channel by name, so every call crosses grpclib and the real services; the harness
pumps the fake cluster while a call waits. Transport failures and deadlines need real endpoints:
see ``test_client_processes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from grpclib.const import Status

from node.client import (
    BadLeaderTransferee,
    BadPeerURLs,
    ClusterClient,
    LearnerNotReady,
    Member,
    MemberNotFound,
    NotLeader,
    NotLearner,
    NotSupportedForLearner,
    PeerURLExists,
    TooManyLearners,
)
from proto import etcdserverpb as pb
from tests.node.cluster_harness import (
    CLUSTER_ID,
    INFRA1,
    INFRA2,
    INFRA3,
    NEW_PEER,
    ClusterHarness,
    HarnessNode,
)

pytestmark = pytest.mark.asyncio


def client_for(h: ClusterHarness, *nodes: HarnessNode, timeout: float = 30.0) -> ClusterClient:
    """A client whose endpoint ``name:1`` is the harness member ``name``."""
    by_endpoint = {f"{n.name}:1": n for n in h.nodes.values()}
    return ClusterClient(
        [f"{n.name}:1" for n in nodes],
        timeout=timeout,
        channel_factory=lambda endpoint: by_endpoint[endpoint].channel,
    )


def as_pb(member: Member) -> pb.Member:
    return pb.Member(id=member.id, peer_ur_ls=list(member.peer_urls), is_learner=member.is_learner)


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[ClusterHarness]:
    async with ClusterHarness(3) as h:
        yield h


async def test_member_list_gives_frozen_members_sorted_by_id(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(1)) as client:
        members = await h.run(client.member_list())
    assert [m.id for m in members] == sorted([INFRA1, INFRA2, INFRA3])
    assert (
        Member(
            id=INFRA1,
            name="infra1",
            peer_urls=("http://127.0.0.1:2380",),
            client_urls=("http://127.0.0.1:2379",),
            is_learner=False,
        )
        in members
    )
    with pytest.raises(AttributeError):
        members[0].name = "changed"  # type: ignore[misc]


async def test_linearizable_member_list_answers_the_same_members(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(2)) as client:
        assert await h.run(client.member_list(linearizable=True)) == await h.run(
            client.member_list()
        )


async def test_learner_lifecycle_and_its_rejections(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(1), h.node(0)) as client:
        added = await h.run(client.member_add([NEW_PEER], learner=True))
        assert added.member.is_learner and added.member.peer_urls == (NEW_PEER,)
        assert not added.member.started
        assert added.member in added.members and len(added.members) == 4

        with pytest.raises(TooManyLearners) as too_many:
            await h.run(client.member_add(["http://127.0.0.1:52380"], learner=True))
        assert too_many.value.code is Status.FAILED_PRECONDITION
        assert too_many.value.message == "etcdserver: too many learner members in cluster"
        assert too_many.value.definitely_failed

        with pytest.raises(LearnerNotReady) as not_ready:
            await h.run(client.member_promote(added.member.id))
        assert not_ready.value.message == (
            "etcdserver: can only promote a learner member which is in sync with leader"
        )
        assert not_ready.value.definitely_failed

        with pytest.raises(NotLearner) as voter:
            await h.run(client.member_promote(INFRA2))
        assert voter.value.message == "etcdserver: can only promote a learner member"

        await h.start_member(as_pb(added.member), "infra4", "http://127.0.0.1:42379")
        promoted = await h.run(client.wait_promotable(added.member.id, timeout=30))
        infra4 = next(m for m in promoted if m.id == added.member.id)
        assert infra4.name == "infra4" and not infra4.is_learner

        remaining = await h.run(client.member_remove(added.member.id))
        assert added.member.id not in {m.id for m in remaining}
        with pytest.raises(MemberNotFound) as gone:
            await h.run(client.member_remove(added.member.id))
        assert gone.value.code is Status.NOT_FOUND
        assert gone.value.message == "etcdserver: member not found"


async def test_wait_promotable_gives_up_with_the_last_refusal(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(0)) as client:
        added = await h.run(client.member_add([NEW_PEER], learner=True))
        # The learner never starts, so it never catches up: every poll is refused.
        with pytest.raises(LearnerNotReady) as refused:
            await h.run(client.wait_promotable(added.member.id, timeout=0.3), max_ticks=10_000)
        assert refused.value.definitely_failed
        members = await h.run(client.member_list())
        assert next(m for m in members if m.id == added.member.id).is_learner


async def test_url_errors_are_typed(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(0)) as client:
        with pytest.raises(PeerURLExists) as exists:
            await h.run(client.member_add(["http://127.0.0.1:22380"]))
        assert exists.value.message == "etcdserver: Peer URLs already exists"
        with pytest.raises(BadPeerURLs) as bad:
            await h.run(client.member_add(["foo"]))
        assert (bad.value.code, bad.value.message) == (
            Status.INVALID_ARGUMENT,
            "etcdserver: given member URLs are invalid",
        )
        with pytest.raises(PeerURLExists):
            await h.run(client.member_update(INFRA2, ["http://127.0.0.1:2380"]))
        updated = await h.run(client.member_update(INFRA2, ["http://127.0.0.1:22381"]))
        infra2 = next(m for m in updated if m.id == INFRA2)
        assert infra2.peer_urls == ("http://127.0.0.1:22381",) and infra2.name == "infra2"
        with pytest.raises(MemberNotFound):
            await h.run(client.member_update(0x1234, ["http://127.0.0.1:9"]))


async def test_ids_are_checked_before_they_reach_the_wire(harness: ClusterHarness) -> None:
    async with client_for(harness, harness.node(0)) as client:
        with pytest.raises(ValueError, match="uint64"):
            await client.member_remove(2**64)
        with pytest.raises(ValueError, match="uint64"):
            await client.member_promote(-1)
        with pytest.raises(TypeError):
            await client.member_add("http://127.0.0.1:9")


async def test_status_of_each_member(harness: ClusterHarness) -> None:
    h = harness
    leader = h.leader()
    async with client_for(h, *h.nodes.values()) as client:
        statuses = await h.run(client.statuses())
    assert [s.endpoint for s in statuses] == [f"{n.name}:1" for n in h.nodes.values()]
    assert [s.member_id for s in statuses] == list(h.nodes)
    assert {s.leader for s in statuses} == {leader.id}
    assert [s.is_leader for s in statuses] == [n is leader for n in h.nodes.values()]
    assert all(s.version == "3.5.0" and not s.errors and not s.is_learner for s in statuses)
    assert all(s.raft_applied_index <= s.raft_index for s in statuses)


async def test_move_leader_finds_the_leader_and_hands_over(harness: ClusterHarness) -> None:
    h = harness
    old = h.leader()
    target = h.followers()[0]
    # The leader is the last endpoint, so the client has to look for it.
    endpoints = [*h.followers(), old]
    async with client_for(h, *endpoints) as client:
        assert await h.run(client.leader_endpoint()) == f"{old.name}:1"
        await h.run(client.move_leader(target.id))
        await h.until(lambda: target.is_leader)
        with pytest.raises(BadLeaderTransferee):
            await h.run(client.move_leader(0x1234))
        with pytest.raises(NotLeader) as not_leader:
            await h.run(client.raw.move_leader(f"{old.name}:1", old.id))
        assert not_leader.value.message == "etcdserver: not leader"


async def test_health_reads_through_the_leader(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(2)) as client:
        took = await h.run(client.health(f"{h.node(2).name}:1"))
    assert took >= 0


async def test_a_learner_endpoint_is_skipped_for_reads_and_mutations(
    harness: ClusterHarness,
) -> None:
    h = harness
    async with client_for(h, h.node(0)) as setup:
        added = await h.run(setup.member_add([NEW_PEER], learner=True))
    learner = await h.start_member(as_pb(added.member), "infra4", "http://127.0.0.1:42379")
    async with client_for(h, learner) as only_learner:
        with pytest.raises(NotSupportedForLearner) as refused:
            await h.run(only_learner.member_remove(0x1234))
        assert refused.value.code is Status.UNAVAILABLE and refused.value.definitely_failed
        status = await h.run(only_learner.status(f"{learner.name}:1"))
        assert status.is_learner
    async with client_for(h, learner, h.node(1)) as client:
        members = await h.run(client.member_list())
        assert added.member.id in {m.id for m in members}
        # The learner refused at its gate, so moving on to the next endpoint is safe.
        with pytest.raises(MemberNotFound):
            await h.run(client.member_remove(0x1234))


async def test_header_fields_stay_reachable_through_raw(harness: ClusterHarness) -> None:
    h = harness
    async with client_for(h, h.node(1)) as client:
        reply = await h.run(client.raw.member_list())
    assert reply.header.cluster_id == CLUSTER_ID
    assert reply.header.member_id == h.node(1).id
