"""etcd's Maintenance service (Status, MoveLeader) and the unserved services, through their
gRPC stubs on an in-memory cluster (layer e; see ``cluster_harness``)."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest
from grpclib.const import Status

from node.domain_errors import (
    AuthNotEnabled,
    BadLeaderTransferee,
    LeaderTransferTimeout,
    NotLeader,
)
from node.services.maintenance import REVISION, VERSION
from proto import etcdserverpb as pb
from tests.node.cluster_harness import (
    CLUSTER_ID,
    INFRA3,
    NEW_ID,
    NEW_PEER,
    ClusterHarness,
    HarnessNode,
    assert_error,
    lose_leader,
    rpc_error,
)

pytestmark = pytest.mark.asyncio


# ---- Maintenance.Status --------------------------------------------------------------------------


async def test_status_fields() -> None:
    async with ClusterHarness(3) as h:
        h.db_size = 20480
        leader = h.leader()
        for node in h.nodes.values():
            reply = await h.run(node.maintenance.status(pb.StatusRequest()), max_ticks=0)
            st = node.driver.status
            assert reply == pb.StatusResponse(
                header=pb.ResponseHeader(
                    cluster_id=CLUSTER_ID,
                    member_id=node.id,
                    revision=REVISION,
                    raft_term=int(st.applied_term),
                ),
                version=VERSION,
                db_size=20480,
                db_size_in_use=20480,
                leader=leader.id,
                raft_index=int(st.commit),
                raft_term=int(st.applied_term),
                raft_applied_index=int(st.applied),
                errors=[],
                is_learner=False,
            )
        assert VERSION == "3.5.0" and REVISION == 1


async def test_status_without_a_leader_reports_it_in_errors() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        reply = await h.run(lonely.maintenance.status(pb.StatusRequest()), max_ticks=0)
        assert reply.leader == 0
        assert reply.errors == ["etcdserver: no leader"]


# ---- Maintenance.MoveLeader ----------------------------------------------------------------------


def move(node: HarnessNode, target: int) -> Awaitable[pb.MoveLeaderResponse]:
    return node.maintenance.move_leader(pb.MoveLeaderRequest(target_id=target))


async def test_move_leader_on_a_follower_is_not_leader() -> None:
    async with ClusterHarness(3) as h:
        error = await rpc_error(h, move(h.followers()[0], INFRA3), max_ticks=0)
        assert_error(error, NotLeader)
        assert (error.status, error.message) == (
            Status.FAILED_PRECONDITION,
            "etcdserver: not leader",
        )


async def test_move_leader_to_a_stranger_or_a_learner_is_a_bad_transferee() -> None:
    async with ClusterHarness(3) as h:
        await h.run(h.leader().manager.member_add([NEW_PEER], True))
        for target in (0x1234, NEW_ID, 0):
            error = await rpc_error(h, move(h.leader(), target), max_ticks=0)
            assert_error(error, BadLeaderTransferee)
            assert error.message == "etcdserver: bad leader transferee"


async def test_move_leader_hands_over_and_replies_without_a_header() -> None:
    async with ClusterHarness(3) as h:
        old = h.leader()
        reply = await h.run(move(old, INFRA3))
        assert bytes(reply) == b""  # etcd leaves the header out (spec §7.2)
        await h.settle()
        assert h.leader().id == INFRA3
        assert all(n.driver.status.lead == INFRA3 for n in h.nodes.values())
        # Moving to the current leader succeeds at once.
        assert bytes(await h.run(move(h.leader(), INFRA3), max_ticks=0)) == b""


async def test_move_leader_to_an_unreachable_voter_times_out() -> None:
    async with ClusterHarness(3) as h:
        target = h.followers()[0]
        h.isolate(target)
        error = await rpc_error(h, move(h.leader(), target.id))
        assert_error(error, LeaderTransferTimeout)
        assert (error.status, error.message) == (
            Status.UNKNOWN,
            "etcdserver: request timed out, leader transfer took too long",
        )


# ---- The other services --------------------------------------------------------------------------


async def test_unserved_kv_put_is_unimplemented_and_authenticate_refuses() -> None:
    async with ClusterHarness(1) as h:
        node = h.node(0)
        error = await rpc_error(h, node.kv.put(pb.PutRequest(key=b"k", value=b"v")), max_ticks=0)
        assert error.status is Status.UNIMPLEMENTED
        auth = node.auth.authenticate(pb.AuthenticateRequest(name="root", password="x"))
        error = await rpc_error(h, auth, max_ticks=0)
        assert_error(error, AuthNotEnabled)
        assert (error.status, error.message) == (
            Status.FAILED_PRECONDITION,
            "etcdserver: authentication is not enabled",
        )
