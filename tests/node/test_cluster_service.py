"""etcd's Cluster service through its gRPC stubs, in memory (layer e).

Every call goes through ``grpclib.testing.ChannelFor`` into a member of a ``ClusterHarness``
cluster whose drivers, network and clock are fakes: no sockets, no sleeps, time moves in ticks.
Errors are compared with the one table (``node.errors.ERRORS``): status and exact message; the
most important messages are also spelled out, as a second check of the table against the spec.
Maintenance and the unserved services are in ``test_maintenance_service``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from grpclib.const import Status

from node.domain_errors import (
    InvalidPeerURLs,
    LearnerNotReady,
    MemberExists,
    MemberNotFound,
    MemberNotLearner,
    NoLeader,
    NotEnoughStarted,
    NotSupportedForLearner,
    PeerURLExists,
    RequestTimeout,
    TimeoutDueToConnectionLost,
    TimeoutDueToLeaderFail,
    TooManyLearners,
    Unhealthy,
)
from node.ids import runtime_member_id
from proto import etcdserverpb as pb
from raft import MessageType
from tests.node.cluster_harness import (
    CLUSTER_ID,
    HASLEADER,
    INFRA1,
    INFRA2,
    INFRA3,
    NEW_ID,
    NEW_PEER,
    REQUEST_TIMEOUT,
    ClusterHarness,
    HarnessNode,
    assert_error,
    by_id,
    ids,
    lose_leader,
    rpc_error,
)

pytestmark = pytest.mark.asyncio


def add(
    node: HarnessNode, *urls: str, learner: bool = False, **kw: Any
) -> Awaitable[pb.MemberAddResponse]:
    request = pb.MemberAddRequest(peer_ur_ls=list(urls), is_learner=learner)
    return node.cluster.member_add(request, **kw)


def member_list(node: HarnessNode, linearizable: bool = False, **kw: Any) -> Any:
    return node.cluster.member_list(pb.MemberListRequest(linearizable=linearizable), **kw)


def sorted_ids(members: list[pb.Member]) -> bool:
    return ids(members) == sorted(ids(members))


# ---- MemberList ---------------------------------------------------------------------------------


async def test_member_list_is_sorted_with_etcd_header_from_the_answering_node() -> None:
    async with ClusterHarness(3) as h:
        for node in h.nodes.values():
            reply = await h.run(member_list(node), max_ticks=0)
            assert reply.header == pb.ResponseHeader(
                cluster_id=CLUSTER_ID,
                member_id=node.id,
                revision=0,
                raft_term=int(node.driver.status.applied_term),
            )
            assert ids(reply.members) == sorted([INFRA1, INFRA2, INFRA3])
            infra1 = by_id(reply.members, INFRA1)
            assert infra1 == pb.Member(
                id=INFRA1,
                name="infra1",
                peer_ur_ls=["http://127.0.0.1:2380"],
                client_ur_ls=["http://127.0.0.1:2379"],
            )


async def test_member_list_includes_learners_and_unstarted_members() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        await h.run(add(h.leader(), "http://127.0.0.1:52380"))
        reply = await h.run(member_list(h.node(2)))
        assert len(reply.members) == 5 and sorted_ids(reply.members)
        assert by_id(reply.members, NEW_ID) == pb.Member(
            id=NEW_ID, peer_ur_ls=[NEW_PEER], is_learner=True
        )
        unstarted = [m for m in reply.members if not m.name]
        assert len(unstarted) == 2 and all(not m.client_ur_ls for m in unstarted)


async def test_linearizable_member_list_takes_a_read_index_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        rounds: list[int] = []
        original = follower.driver.read_index

        async def counting_read_index() -> Any:
            index = await original()
            rounds.append(int(index))
            return index

        monkeypatch.setattr(follower.driver, "read_index", counting_read_index)
        await h.run(member_list(follower, linearizable=False), max_ticks=0)
        assert rounds == []
        reply = await h.run(member_list(follower, linearizable=True), max_ticks=0)
        assert rounds == [int(h.leader().driver.status.commit)]
        assert len(reply.members) == 3 and reply.header.member_id == follower.id


async def test_member_list_works_without_a_leader_unless_linearizable() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        reply = await h.run(member_list(lonely), max_ticks=0)
        assert ids(reply.members) == sorted([INFRA1, INFRA2, INFRA3])
        start = h.clock.now
        assert_error(await rpc_error(h, member_list(lonely, linearizable=True)), RequestTimeout)
        assert h.clock.now - start >= REQUEST_TIMEOUT


async def test_header_raft_term_is_the_applied_term_and_lags_during_an_election() -> None:
    async with ClusterHarness(3) as h:
        old_term = int(h.leader().driver.status.term)
        lagging = h.node(2)
        # node 3 hears the new leader's votes but none of its appends: its term moves on,
        # the term of what it applied does not.
        h.network.drop = lambda m: m.to == lagging.id and m.type is MessageType.APP
        await h.run(h.leader().maintenance.move_leader(pb.MoveLeaderRequest(target_id=INFRA2)))
        await h.until(lambda: lagging.driver.status.term > old_term)
        reply = await h.run(member_list(lagging), max_ticks=0)
        assert reply.header.raft_term == old_term < lagging.driver.status.term
        h.network.drop = None
        await h.tick(2)
        reply = await h.run(member_list(lagging), max_ticks=0)
        assert reply.header.raft_term == lagging.driver.status.term > old_term


# ---- MemberAdd ----------------------------------------------------------------------------------


async def test_member_add_voter_replies_with_the_new_member_and_the_whole_list() -> None:
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        reply = await h.run(add(follower, NEW_PEER))
        expected_id = runtime_member_id((NEW_PEER,), int(h.clock.time()))
        assert expected_id == NEW_ID  # spec §3.3's runtime vector
        assert reply.member == pb.Member(id=NEW_ID, peer_ur_ls=[NEW_PEER])  # no name, no URLs
        assert ids(reply.members) == sorted([INFRA1, INFRA2, INFRA3, NEW_ID])
        assert by_id(reply.members, INFRA1).name == "infra1"
        assert reply.header.member_id == follower.id and reply.header.cluster_id == CLUSTER_ID
        for node in h.nodes.values():
            assert NEW_ID in node.driver.status.conf_state.voters


async def test_member_add_learner_normalises_and_sorts_the_urls() -> None:
    async with ClusterHarness(3) as h:
        raw = [" HTTP://127.0.0.1:42382 ", "http://127.0.0.1:42381"]
        reply = await h.run(add(h.leader(), *raw, learner=True))
        urls = ["http://127.0.0.1:42381", "http://127.0.0.1:42382"]
        assert reply.member == pb.Member(
            id=runtime_member_id(urls, int(h.clock.time())), peer_ur_ls=urls, is_learner=True
        )
        assert by_id(reply.members, reply.member.id) == reply.member
        await h.settle()
        for node in h.nodes.values():
            conf = node.driver.status.conf_state
            assert reply.member.id in conf.learners and reply.member.id not in conf.voters


async def test_same_second_re_add_fails_at_apply_with_member_exists() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        before = h.commits()
        second = int(h.clock.time())
        error = await rpc_error(h, add(h.leader(), NEW_PEER, learner=True))
        assert int(h.clock.time()) == second
        assert_error(error, MemberExists)
        assert error.status is Status.FAILED_PRECONDITION
        assert error.message == "etcdserver: member ID already exist"
        assert h.commits() == {i: c + 1 for i, c in before.items()}  # apply-time: one entry


async def test_same_second_re_add_of_a_removed_member_fails_with_not_found() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        await h.run(h.leader().cluster.member_remove(pb.MemberRemoveRequest(id=NEW_ID)))
        error = await rpc_error(h, add(h.leader(), NEW_PEER, learner=True))
        assert_error(error, MemberNotFound)
        # A later second gives a fresh ID, and the URL is free again.
        h.clock.advance(1.0)
        reply = await h.run(add(h.leader(), NEW_PEER, learner=True))
        assert reply.member.id not in (NEW_ID, 0)


@pytest.mark.parametrize("url", ["http://127.0.0.1:22380", "HTTP://127.0.0.1:22380"])
async def test_adding_a_peer_url_in_use_fails_at_apply(url: str) -> None:
    async with ClusterHarness(3) as h:
        before = h.commits()
        error = await rpc_error(h, add(h.node(1), url, learner=True))
        assert_error(error, PeerURLExists)
        assert error.message == "etcdserver: Peer URLs already exists"
        assert h.commits() == {i: c + 1 for i, c in before.items()}
        assert len(h.leader().membership.members) == 3


async def test_a_second_learner_is_refused_at_apply_with_max_learners_one() -> None:
    async with ClusterHarness(3, max_learners=1) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        before = h.commits()
        error = await rpc_error(h, add(h.leader(), "http://127.0.0.1:52380", learner=True))
        assert_error(error, TooManyLearners)
        assert error.message == "etcdserver: too many learner members in cluster"
        assert h.commits() == {i: c + 1 for i, c in before.items()}
        for node in h.nodes.values():
            assert len(node.driver.status.conf_state.learners) == 1
        # A voter add still works: the cap is on learners only.
        await h.run(add(h.leader(), "http://127.0.0.1:52380"))


async def test_two_learners_with_max_learners_two() -> None:
    async with ClusterHarness(3, max_learners=2) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        reply = await h.run(add(h.leader(), "http://127.0.0.1:52380", learner=True))
        assert sum(m.is_learner for m in reply.members) == 2


BAD_URL_LISTS = [
    [],
    [""],
    ["foo"],
    ["http://127.0.0.1:47209/"],
    ["http://127.0.0.1:abc"],
    ["http://127.0.0.1"],
    ["ftp://127.0.0.1:1"],
    ["http://%zz:1"],
    ["http://127.0.0.1:1", "bad"],
]


@pytest.mark.parametrize("urls", BAD_URL_LISTS)
async def test_invalid_peer_urls_are_refused_pre_raft_by_add_and_update(urls: list[str]) -> None:
    async with ClusterHarness(3) as h:
        before = h.commits()
        node = h.node(1)
        error = await rpc_error(h, add(node, *urls), max_ticks=0)
        assert_error(error, InvalidPeerURLs)
        assert error.status is Status.INVALID_ARGUMENT
        assert error.message == "etcdserver: given member URLs are invalid"
        update = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=urls)
        assert_error(
            await rpc_error(h, node.cluster.member_update(update), max_ticks=0), InvalidPeerURLs
        )
        assert h.commits() == before  # D1: nothing reached the log


# ---- MemberRemove -------------------------------------------------------------------------------


async def test_member_remove_of_unknown_zero_or_removed_ids_is_not_found() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        for target in (0x1234, 0):
            request = pb.MemberRemoveRequest(id=target)
            assert_error(await rpc_error(h, leader.cluster.member_remove(request)), MemberNotFound)
        await h.run(leader.cluster.member_remove(pb.MemberRemoveRequest(id=INFRA3)))
        h.isolate(h.nodes[INFRA3])  # a removed member stops
        request = pb.MemberRemoveRequest(id=INFRA3)
        error = await rpc_error(h, h.nodes[INFRA2].cluster.member_remove(request))
        assert_error(error, MemberNotFound)
        assert error.status is Status.NOT_FOUND and error.message == "etcdserver: member not found"


async def test_member_remove_of_a_follower() -> None:
    async with ClusterHarness(3) as h:
        reply = await h.run(h.node(1).cluster.member_remove(pb.MemberRemoveRequest(id=INFRA3)))
        assert ids(reply.members) == sorted([INFRA1, INFRA2])
        assert reply.header.member_id == INFRA2
        for node_id in (INFRA1, INFRA2):
            conf = h.nodes[node_id].driver.status.conf_state
            assert conf.voters == {INFRA1, INFRA2}
            assert INFRA3 in h.nodes[node_id].membership.removed


async def test_a_member_removing_itself_answers_with_its_own_id() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        reply = await h.run(leader.cluster.member_remove(pb.MemberRemoveRequest(id=leader.id)))
        assert reply.header.member_id == leader.id
        assert leader.id not in ids(reply.members) and len(reply.members) == 2
        h.isolate(leader)  # it stops; the other two go on and elect a leader
        await h.until(lambda: any(n.is_leader for n in h.nodes.values() if n is not leader))
        added = await h.run(add(h.node(1), NEW_PEER, learner=True))
        assert len(added.members) == 3


async def test_a_removed_leader_hands_over_at_once() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        await h.run(leader.cluster.member_remove(pb.MemberRemoveRequest(id=leader.id)))
        await h.until(
            lambda: any(n.is_leader for n in h.nodes.values() if n is not leader), max_ticks=2
        )


# ---- MemberUpdate -------------------------------------------------------------------------------


async def test_member_update_changes_only_the_peer_urls_of_a_voter() -> None:
    async with ClusterHarness(3) as h:
        urls = ["http://127.0.0.1:32382", " HTTP://127.0.0.1:32381"]
        request = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=urls)
        reply = await h.run(h.node(0).cluster.member_update(request))
        assert by_id(reply.members, INFRA3) == pb.Member(
            id=INFRA3,
            name="infra3",
            peer_ur_ls=["http://127.0.0.1:32381", "http://127.0.0.1:32382"],
            client_ur_ls=["http://127.0.0.1:32379"],
        )
        for node in h.nodes.values():
            assert node.driver.status.conf_state.voters == {INFRA1, INFRA2, INFRA3}


async def test_member_update_keeps_a_learner_a_learner() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        request = pb.MemberUpdateRequest(id=NEW_ID, peer_ur_ls=["http://127.0.0.1:42390"])
        reply = await h.run(h.node(2).cluster.member_update(request))
        assert by_id(reply.members, NEW_ID) == pb.Member(
            id=NEW_ID, peer_ur_ls=["http://127.0.0.1:42390"], is_learner=True
        )
        await h.settle()
        for node in h.nodes.values():
            assert NEW_ID in node.driver.status.conf_state.learners  # D2


async def test_member_update_errors() -> None:
    async with ClusterHarness(3) as h:
        node = h.node(1)
        unknown = pb.MemberUpdateRequest(id=0x1234, peer_ur_ls=[NEW_PEER])
        assert_error(await rpc_error(h, node.cluster.member_update(unknown)), MemberNotFound)
        zero = pb.MemberUpdateRequest(id=0, peer_ur_ls=[NEW_PEER])
        assert_error(await rpc_error(h, node.cluster.member_update(zero)), MemberNotFound)
        clash = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["HTTP://127.0.0.1:2380"])
        assert_error(await rpc_error(h, node.cluster.member_update(clash)), PeerURLExists)
        # Its own URL is no clash.
        same = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["http://127.0.0.1:32380"])
        await h.run(node.cluster.member_update(same))


# ---- MemberPromote ------------------------------------------------------------------------------


def promote(node: HarnessNode, member_id: int) -> Awaitable[pb.MemberPromoteResponse]:
    return node.cluster.member_promote(pb.MemberPromoteRequest(id=member_id))


async def test_promoting_an_unstarted_learner_is_not_ready_and_writes_nothing() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        before = h.commits()
        for node in h.nodes.values():
            error = await rpc_error(h, promote(node, NEW_ID), max_ticks=0)
            assert_error(error, LearnerNotReady)
            assert error.message == (
                "etcdserver: can only promote a learner member which is in sync with leader"
            )
        assert h.commits() == before


async def test_promoting_unknown_or_removed_ids_is_not_found_at_once_from_any_node() -> None:
    async with ClusterHarness(3) as h:
        await h.run(add(h.leader(), NEW_PEER, learner=True))
        await h.run(h.leader().cluster.member_remove(pb.MemberRemoveRequest(id=NEW_ID)))
        before = h.commits()
        for node in h.nodes.values():
            for target in (NEW_ID, 0x1234, 0):
                error = await rpc_error(h, promote(node, target), max_ticks=0)
                assert_error(error, MemberNotFound)  # D4: no loop, no timeout
        assert h.commits() == before


async def test_promoting_a_voter_is_refused_pre_raft() -> None:
    async with ClusterHarness(3) as h:
        before = h.commits()
        for node in h.nodes.values():
            error = await rpc_error(h, promote(node, INFRA3), max_ticks=0)
            assert_error(error, MemberNotLearner)  # D6
            assert error.message == "etcdserver: can only promote a learner member"
        assert h.commits() == before


async def start_learner(h: ClusterHarness) -> HarnessNode:
    reply = await h.run(add(h.leader(), NEW_PEER, learner=True))
    return await h.start_member(reply.member, "infra4", "http://127.0.0.1:42379")


async def test_promoting_a_caught_up_learner_makes_it_a_voter_everywhere() -> None:
    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        reply = await h.run(promote(h.leader(), learner.id), max_ticks=0)
        assert by_id(reply.members, learner.id) == pb.Member(
            id=learner.id,
            name="infra4",
            peer_ur_ls=[NEW_PEER],
            client_ur_ls=["http://127.0.0.1:42379"],
        )
        await h.settle()
        for node in h.nodes.values():
            conf = node.driver.status.conf_state
            assert conf.voters == {INFRA1, INFRA2, INFRA3, learner.id} and not conf.learners
        assert h.forwarded == []
        # It votes now: with two of the old voters gone, the other two still make a quorum.
        h.isolate(h.nodes[INFRA3])
        await h.run(
            h.leader().cluster.member_update(
                pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["http://127.0.0.1:32390"])
            )
        )


async def test_promotion_gives_the_learner_a_vote() -> None:
    """Issue 4, item 7: 3 voters + 1 learner; losing 2 voters stops membership changes; after
    the promotion, losing 1 voter does not, and losing 2 does."""

    def update_infra3(node: HarnessNode, port: int) -> Awaitable[pb.MemberUpdateResponse]:
        urls = [f"http://127.0.0.1:{port}"]
        return node.cluster.member_update(pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=urls))

    def serving_leader(h: ClusterHarness) -> HarnessNode | None:
        leaders = [n for n in h.nodes.values() if n.is_leader and n.id not in h.network.down]
        return leaders[0] if len(leaders) == 1 else None

    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        infra1, infra2 = h.nodes[INFRA1], h.nodes[INFRA2]
        h.isolate(infra1, infra2)
        error = await rpc_error(h, update_infra3(h.nodes[INFRA3], 32390))
        assert (error.message or "").startswith("etcdserver: request timed out")
        h.heal(infra1, infra2)
        await h.until(lambda: serving_leader(h) is not None)
        leader = serving_leader(h)
        assert leader is not None
        await h.run(promote(leader, learner.id))

        h.isolate(infra1)
        await h.until(lambda: serving_leader(h) is not None)
        await h.run(update_infra3(learner, 32391))
        h.isolate(infra2)
        error = await rpc_error(h, update_infra3(learner, 32392))
        assert (error.message or "").startswith("etcdserver: request timed out")


async def test_a_follower_forwards_the_promote_to_the_leader() -> None:
    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        follower = h.followers()[0]
        reply = await h.run(promote(follower, learner.id), max_ticks=0)
        assert h.forwarded == [(follower.id, h.leader().id, learner.id)]
        assert not by_id(reply.members, learner.id).is_learner
        assert reply.header.member_id == follower.id
        await h.settle()
        assert learner.id in follower.driver.status.conf_state.voters


async def test_a_learner_node_serves_only_status() -> None:
    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        calls: list[Awaitable[Any]] = [
            member_list(learner),
            member_list(learner, linearizable=True),
            add(learner, "http://127.0.0.1:52380"),
            learner.cluster.member_remove(pb.MemberRemoveRequest(id=INFRA3)),
            learner.cluster.member_update(
                pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["http://127.0.0.1:32390"])
            ),
            promote(learner, learner.id),
            learner.maintenance.move_leader(pb.MoveLeaderRequest(target_id=INFRA2)),
        ]
        for call in calls:
            error = await rpc_error(h, call, max_ticks=0)
            assert_error(error, NotSupportedForLearner)
            assert error.status is Status.UNAVAILABLE
            assert error.message == "etcdserver: rpc not supported for learner"
        status = await h.run(learner.maintenance.status(pb.StatusRequest()), max_ticks=0)
        assert status.is_learner and status.leader == h.leader().id
        assert status.header.member_id == learner.id


# ---- Gates --------------------------------------------------------------------------------------


async def test_hasleader_metadata_without_a_leader_answers_no_leader() -> None:
    async with ClusterHarness(3) as h:
        await h.run(member_list(h.node(1), metadata=HASLEADER), max_ticks=0)  # leader known
        lonely = h.node(2)
        await lose_leader(h, lonely)
        error = await rpc_error(h, member_list(lonely, metadata=HASLEADER), max_ticks=0)
        assert_error(error, NoLeader)
        assert (error.status, error.message) == (Status.UNAVAILABLE, "etcdserver: no leader")
        change = add(lonely, NEW_PEER, metadata=HASLEADER)  # the gate comes before any check
        assert_error(await rpc_error(h, change, max_ticks=0), NoLeader)
        status = lonely.maintenance.status(pb.StatusRequest(), metadata=HASLEADER)
        assert_error(await rpc_error(h, status, max_ticks=0), NoLeader)
        await h.run(member_list(lonely), max_ticks=0)
        await h.run(lonely.maintenance.status(pb.StatusRequest()), max_ticks=0)


# ---- D3: concurrent changes ---------------------------------------------------------------------


async def test_concurrent_adds_from_two_clients_on_two_nodes_each_get_their_reply() -> None:
    async with ClusterHarness(3) as h:
        leader, follower = h.leader(), h.followers()[0]
        urls = ("http://127.0.0.1:42380", "http://127.0.0.1:52380")
        first, second = await h.run_all(add(leader, urls[0]), add(follower, urls[1]))
        assert isinstance(first, pb.MemberAddResponse), first
        assert isinstance(second, pb.MemberAddResponse), second
        assert first.member.peer_ur_ls == [urls[0]] and second.member.peer_ur_ls == [urls[1]]
        assert first.member.id in ids(first.members) and second.member.id in ids(second.members)
        assert first.header.member_id == leader.id and second.header.member_id == follower.id
        final = await h.run(member_list(h.node(2), linearizable=True))
        assert {first.member.id, second.member.id} <= set(ids(final.members))
        assert len(final.members) == 5


async def test_concurrent_changes_on_one_node_are_serialised() -> None:
    async with ClusterHarness(3, max_learners=2) as h:
        node = h.node(1)
        urls = [f"http://127.0.0.1:{port}" for port in (42380, 52380)]
        update = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["http://127.0.0.1:32390"])
        replies = await h.run_all(
            add(node, urls[0], learner=True),
            add(node, urls[1], learner=True),
            node.cluster.member_update(update),
        )
        assert all(not isinstance(r, BaseException) for r in replies), replies
        a, b, c = replies
        assert len(a.members) == 4 and len(b.members) == 5  # each saw its own apply, in order
        assert by_id(c.members, INFRA3).peer_ur_ls == ["http://127.0.0.1:32390"]
        assert h.clock.now < REQUEST_TIMEOUT


async def test_back_to_back_changes_from_one_client_on_a_follower_do_not_collide() -> None:
    async with ClusterHarness(3, max_learners=3) as h:
        follower = h.followers()[0]
        for port in (42380, 52380, 62380):
            # No tick: the previous change's pending mark is gone before its reply is sent.
            await h.run(add(follower, f"http://127.0.0.1:{port}", learner=True), max_ticks=0)
        assert len(follower.membership.learners()) == 3


# ---- Strict reconfiguration checks --------------------------------------------------------------


async def test_not_enough_started_is_sent_as_unknown() -> None:
    async with ClusterHarness(1) as h:
        only = h.node(0)
        await h.run(add(only, "http://127.0.0.1:22380"))  # 1 started + 1 unstarted voter
        error = await rpc_error(h, add(only, "http://127.0.0.1:32380"), max_ticks=0)
        assert_error(error, NotEnoughStarted)
        assert error.status is Status.UNKNOWN  # spec §8.2
        assert error.message == (
            "etcdserver: re-configuration failed due to not enough started members"
        )
        remove_self = only.cluster.member_remove(pb.MemberRemoveRequest(id=only.id))
        assert_error(await rpc_error(h, remove_self, max_ticks=0), NotEnoughStarted)
        error = await rpc_error(h, add(only, NEW_PEER, learner=True), max_ticks=0)
        assert_error(error, Unhealthy)


async def test_one_voter_down_unhealthy_for_voter_add_and_live_removal_not_for_learners() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        down = h.followers()[1]
        live = h.followers()[0]
        h.isolate(down)
        error = await rpc_error(h, add(leader, NEW_PEER), max_ticks=0)
        assert_error(error, Unhealthy)
        assert (error.status, error.message) == (
            Status.UNAVAILABLE,
            "etcdserver: unhealthy cluster",
        )
        remove_live = leader.cluster.member_remove(pb.MemberRemoveRequest(id=live.id))
        assert_error(await rpc_error(h, remove_live, max_ticks=0), Unhealthy)
        await h.run(add(leader, NEW_PEER, learner=True))  # D8
        reply = await h.run(leader.cluster.member_remove(pb.MemberRemoveRequest(id=down.id)))
        assert down.id not in ids(reply.members)


async def test_strict_checks_wait_for_the_health_interval_after_a_reconnect() -> None:
    async with ClusterHarness(3, health_interval=1.0) as h:
        leader = h.leader()
        down = h.followers()[1]
        h.isolate(down)
        await h.tick(2)
        h.heal(down)
        error = await rpc_error(h, add(leader, NEW_PEER), max_ticks=0)
        assert_error(error, Unhealthy)
        await h.tick(8)  # one second of fake time
        await h.run(add(leader, NEW_PEER))


async def test_strict_checks_can_be_switched_off() -> None:
    async with ClusterHarness(3, strict_reconfig_check=False) as h:
        h.isolate(h.followers()[1])
        await h.run(add(h.leader(), NEW_PEER))


# ---- Timeouts ------------------------------------------------------------------------------------


def update(node: HarnessNode) -> Awaitable[pb.MemberUpdateResponse]:
    request = pb.MemberUpdateRequest(id=INFRA3, peer_ur_ls=["http://127.0.0.1:32390"])
    return node.cluster.member_update(request)


async def test_a_leader_that_loses_its_quorum_times_out_with_connection_lost() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        h.isolate(*h.followers())
        start = h.clock.now
        error = await rpc_error(h, update(leader))
        assert_error(error, TimeoutDueToConnectionLost)
        assert error.message == "etcdserver: request timed out, possibly due to connection lost"
        assert h.clock.now - start >= REQUEST_TIMEOUT


async def test_a_request_started_without_a_leader_times_out_with_leader_fail() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        error = await rpc_error(h, update(lonely))
        assert_error(error, TimeoutDueToLeaderFail)
        assert error.message == (
            "etcdserver: request timed out, possibly due to previous leader failure"
        )


async def test_a_lost_proposal_under_a_steady_leader_times_out_plainly() -> None:
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        h.network.drop = lambda m: m.type is MessageType.PROP and m.frm == follower.id
        error = await rpc_error(h, update(follower))
        assert_error(error, RequestTimeout)
        assert (error.status, error.message) == (
            Status.UNAVAILABLE,
            "etcdserver: request timed out",
        )
