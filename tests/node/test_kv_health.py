"""KV.Range over the always-empty key space, and ``GET /health``, on an in-memory cluster (layer e).

``etcdctl endpoint health`` is a linearizable Range of the key ``health``: it must succeed while
the member can reach a quorum through its leader and fail when it cannot (spec §10.3, issue 5
item 3). ``/health`` says "true" only with a leader and a ReadIndex round that completes.
Everything runs on fake time (``ClusterHarness``): no sockets, no sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status

from node.cluster import HEALTH_PROBE_TIMEOUT, KV_REVISION
from node.domain_errors import (
    EmptyKey,
    FutureRevision,
    LeaderChanged,
    NoLeader,
    NotSupportedForLearner,
    RequestTimeout,
)
from node.errors import ERRORS
from node.gateway import Gateway
from node.services.cluster import ClusterService
from node.services.maintenance import MaintenanceService
from proto import etcdserverpb as pb
from raft import MessageType
from tests.node.cluster_harness import (
    CLUSTER_ID,
    HASLEADER,
    NEW_PEER,
    TICK,
    ClusterHarness,
    HarnessNode,
    assert_error,
    lose_leader,
    rpc_error,
)

pytestmark = pytest.mark.asyncio


def get(node: HarnessNode, key: bytes = b"health", **fields: Any) -> Any:
    """What clientv3's ``Get(ctx, key)`` sends (``serializable``/``revision`` as given)."""
    return node.kv.range(pb.RangeRequest(key=key, **fields))


def range_reply(node: HarnessNode) -> pb.RangeResponse:
    return pb.RangeResponse(
        header=pb.ResponseHeader(
            cluster_id=node.membership.cluster_id,
            member_id=node.id,
            revision=KV_REVISION,
            raft_term=int(node.driver.status.applied_term),
        )
    )


def read_index_messages(h: ClusterHarness) -> list[MessageType]:
    """Record every ReadIndex-related message the network carries (to prove a round ran)."""
    seen: list[MessageType] = []

    def spy(m: Any) -> bool:
        if m.type in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP) or m.context:
            seen.append(m.type)
        return False

    h.network.drop = spy
    return seen


# ---- KV.Range ------------------------------------------------------------------------------------


async def test_linearizable_range_on_every_member_is_empty_at_revision_1() -> None:
    async with ClusterHarness(3) as h:
        for node in h.nodes.values():
            seen = read_index_messages(h)
            reply = await h.run(get(node))
            assert reply == range_reply(node)
            assert reply.kvs == [] and reply.count == 0 and not reply.more
            assert reply.header.cluster_id == CLUSTER_ID
            assert seen, "a linearizable Range must go through a ReadIndex round"
        # a prefix or a whole-keyspace read is just as empty
        reply = await h.run(get(h.leader(), b"\0", range_end=b"\0", limit=10))
        assert reply == range_reply(h.leader())


async def test_concurrent_linearizable_ranges_from_every_member_all_complete() -> None:
    """Regression: read contexts were per-node counters, so two followers' first reads had the
    same context; the leader merged them and answered only one, the other waited for its
    deadline (found with ``etcdctl endpoint health`` on three endpoints)."""
    async with ClusterHarness(3) as h:
        for _ in range(3):
            replies = await h.run_all(*(get(node) for node in h.nodes.values()), max_ticks=5)
            assert replies == [range_reply(node) for node in h.nodes.values()]


async def test_serializable_range_answers_from_local_state_even_without_a_leader() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        seen = read_index_messages(h)
        reply = await h.run(get(lonely, serializable=True), max_ticks=0)
        assert reply == range_reply(lonely)
        assert seen == []


async def test_linearizable_range_without_quorum_fails_within_the_request_timeout() -> None:
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        h.isolate(*(n for n in h.nodes.values() if n is not follower))
        # The follower still trusts its leader, whose answer never comes; the leader (cut off)
        # steps down, and either way the read ends within ReqTimeout with etcd's error.
        error = await rpc_error(h, get(follower))
        assert error.status is Status.UNAVAILABLE
        assert (error.status, error.message) in {
            (ERRORS[cls].status, ERRORS[cls].message) for cls in (RequestTimeout, LeaderChanged)
        }


async def test_linearizable_range_without_a_leader_retries_then_times_out() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        began = h.clock.now
        error = await rpc_error(h, get(lonely))
        assert_error(error, RequestTimeout)
        assert h.clock.now - began >= h.timing.request_timeout


async def test_range_request_checks_and_revision() -> None:
    async with ClusterHarness(1) as h:
        node = h.node(0)
        assert_error(await rpc_error(h, get(node, b""), max_ticks=0), EmptyKey)
        error = await rpc_error(h, get(node, revision=KV_REVISION + 1), max_ticks=0)
        assert_error(error, FutureRevision)
        assert (error.status, error.message) == (
            Status.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
        )
        for revision in (KV_REVISION, 0, -5):  # 0 and below mean "the current revision"
            assert await h.run(get(node, revision=revision)) == range_reply(node)


async def test_range_with_hasleader_and_no_leader_is_no_leader() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        call = lonely.kv.range(pb.RangeRequest(key=b"health"), metadata=HASLEADER)
        assert_error(await rpc_error(h, call, max_ticks=0), NoLeader)


async def test_a_learner_serves_only_serializable_range() -> None:
    async with ClusterHarness(3) as h:
        reply = await h.run(
            h.leader().cluster.member_add(
                pb.MemberAddRequest(peer_ur_ls=[NEW_PEER], is_learner=True)
            )
        )
        learner = await h.start_member(reply.member, "infra4", "http://127.0.0.1:42379")
        error = await rpc_error(h, get(learner), max_ticks=0)
        assert_error(error, NotSupportedForLearner)
        assert await h.run(get(learner, serializable=True), max_ticks=0) == range_reply(learner)


async def test_kv_writes_stay_unimplemented() -> None:
    async with ClusterHarness(1) as h:
        node = h.node(0)
        calls = [
            node.kv.put(pb.PutRequest(key=b"k", value=b"v")),
            node.kv.delete_range(pb.DeleteRangeRequest(key=b"k")),
            node.kv.txn(pb.TxnRequest()),
            node.kv.compact(pb.CompactionRequest(revision=1)),
        ]
        for call in calls:
            error = await rpc_error(h, call, max_ticks=0)
            assert error.status is Status.UNIMPLEMENTED


# ---- /health -------------------------------------------------------------------------------------


async def test_healthy_with_a_leader_and_a_working_commit_path() -> None:
    async with ClusterHarness(3) as h:
        for node in h.nodes.values():
            assert await h.run(node.manager.healthy()) is True


async def test_unhealthy_without_a_leader_answers_at_once() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        await lose_leader(h, lonely)
        assert await h.run(lonely.manager.healthy(), max_ticks=0) is False


async def test_unhealthy_when_the_leader_is_known_but_quorum_is_lost() -> None:
    """The case a leader-only check gets wrong: the follower still names its (cut off) leader,
    but no ReadIndex round can complete, so the probe gives up after its bound."""
    async with ClusterHarness(3) as h:
        follower = h.followers()[0]
        h.isolate(*(n for n in h.nodes.values() if n is not follower))
        assert follower.driver.status.lead != 0
        task_ticks = int(HEALTH_PROBE_TIMEOUT / TICK)
        assert await h.run(follower.manager.healthy(), max_ticks=task_ticks + 1) is False


async def test_gateway_health_follows_the_probe() -> None:
    async with ClusterHarness(3) as h:
        node = h.node(1)
        gateway = Gateway(
            cluster=ClusterService(node.manager),
            maintenance=MaintenanceService(node.manager, lambda: 0),
            has_leader=node.manager.healthy,
            request_timeout=60.0,
        )
        healthy = await h.run(gateway.respond("GET", "/health", b""))
        assert (healthy.status, healthy.body) == (200, b'{"health":"true"}')
        h.isolate(*(n for n in h.nodes.values() if n is not node))
        unhealthy = await h.run(gateway.respond("GET", "/health", b""))
        assert (unhealthy.status, unhealthy.body) == (503, b'{"health":"false"}')
        h.heal(*h.nodes.values())
        await h.until(lambda: all(n.driver.status.lead != 0 for n in h.nodes.values()))
        healthy = await h.run(gateway.respond("GET", "/health", b""))
        assert healthy.status == 200
