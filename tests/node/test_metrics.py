"""``/metrics``: the Prometheus registry (tables), then the node's metrics on in-memory clusters."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from node.domain_errors import LearnerNotReady
from node.metrics import Registry, exponential_buckets
from node.observability import NodeMetrics
from proto import etcdserverpb as pb
from raft import NodeId
from tests.node.cluster_harness import (
    ClusterHarness,
    HarnessNode,
    assert_error,
    rpc_error,
)

Samples = dict[str, float]
"""``'name{k="v",...}' -> value``, as rendered."""


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def scrape(node: HarnessNode) -> Samples:
    return parse(node.metrics.render())


# ---- the registry ---------------------------------------------------------------------------


def test_the_text_format_of_each_kind() -> None:
    r = Registry()
    r.counter("c_total", "A counter.").only.inc(2)
    g = r.gauge("g", "Help with \\ and\nnewline.", labels=("k",))
    g.labels('a"b\\c\nd').set(-1.5)
    h = r.histogram("h_seconds", "A histogram.", [0.5, 1.0], labels=("To",))
    for value in (0.25, 0.75, 3.0):
        h.labels("x").observe(value)
    assert r.render() == (
        "# HELP c_total A counter.\n"
        "# TYPE c_total counter\n"
        "c_total 2\n"
        "# HELP g Help with \\\\ and\\nnewline.\n"
        "# TYPE g gauge\n"
        'g{k="a\\"b\\\\c\\nd"} -1.5\n'
        "# HELP h_seconds A histogram.\n"
        "# TYPE h_seconds histogram\n"
        'h_seconds_bucket{To="x",le="0.5"} 1\n'
        'h_seconds_bucket{To="x",le="1"} 2\n'
        'h_seconds_bucket{To="x",le="+Inf"} 3\n'
        'h_seconds_sum{To="x"} 4\n'
        'h_seconds_count{To="x"} 3\n'
    )


def test_collect_hooks_run_before_each_render() -> None:
    r = Registry()
    gauge = r.gauge("seen", "How often rendered.").only
    r.on_collect(lambda: gauge.inc())
    assert parse(r.render())["seen"] == 1
    assert parse(r.render())["seen"] == 2


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda r: r.counter("c", "x").only.inc(-1), "cannot decrease"),
        (lambda r: r.gauge("9lives", "x"), "invalid metric"),
        (lambda r: r.gauge("ok", "x", labels=("bad-label",)), "invalid metric"),
        (lambda r: (r.gauge("twice", "x"), r.counter("twice", "y")), "already registered"),
        (lambda r: r.histogram("h", "x", [1.0, 0.5]), "strictly increasing"),
        (lambda r: r.histogram("h", "x", [1.0, math.inf]), "finite"),
        (lambda r: r.gauge("g", "x", labels=("a",)).labels("1", "2"), "takes labels"),
    ],
)
def test_misuse_is_refused(make: Callable[[Registry], object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        make(Registry())


def test_exponential_buckets_are_etcds() -> None:
    wal = exponential_buckets(0.001, 2, 14)
    assert (wal[0], wal[-1], len(wal)) == (0.001, 8.192, 14)
    with pytest.raises(ValueError):
        exponential_buckets(0, 2, 3)


def test_a_counter_mirrored_from_elsewhere_never_goes_down() -> None:
    counter = Registry().counter("c_total", "x").only
    counter.set_total(5)
    with pytest.raises(ValueError):
        counter.set_total(4)


# ---- the node's metrics -----------------------------------------------------------------------


def member_list(node: HarnessNode) -> Awaitable[pb.MemberListResponse]:
    return node.cluster.member_list(pb.MemberListRequest())


@pytest.mark.asyncio
async def test_leadership_and_raft_progress() -> None:
    async with ClusterHarness(3) as h:
        await h.settle()
        scraped = {node.id: scrape(node) for node in h.nodes.values()}
        leader = h.leader()
        for node in h.nodes.values():
            s = scraped[node.id]
            assert s["etcd_server_has_leader"] == 1
            assert s["etcd_server_is_leader"] == (node is leader)
            assert s["etcd_server_is_learner"] == 0
            assert s["etcd_server_leader_changes_seen_total"] == 1
            assert s["etcd_server_proposals_committed_total"] == node.driver.status.commit
            assert s["etcd_server_proposals_applied_total"] == node.driver.status.applied
            assert s["etcd_server_proposals_pending"] == 0
            assert s[f'etcd_server_id{{server_id="{node.id:x}"}}'] == 1
            assert s['etcd_server_version{server_version="3.5.0"}'] == 1

        old = leader
        h.isolate(old)
        await h.until(lambda: any(n.is_leader for n in h.nodes.values() if n is not old))
        new = next(n for n in h.nodes.values() if n is not old and n.is_leader)
        assert scrape(new)["etcd_server_leader_changes_seen_total"] == 2
        assert scrape(new)["etcd_server_is_leader"] == 1


@pytest.mark.asyncio
async def test_grpc_calls_are_counted_by_method_and_code() -> None:
    async with ClusterHarness(3) as h:
        node = h.leader()
        await h.run(member_list(node))
        await h.run(member_list(node))
        await rpc_error(h, node.cluster.member_remove(pb.MemberRemoveRequest(id=0x1234)))
        await rpc_error(h, node.kv.put(pb.PutRequest(key=b"k")), max_ticks=0)
        s = scrape(node)
        labels = 'grpc_method="{}",grpc_service="{}",grpc_type="unary"'
        cluster_list = labels.format("MemberList", "etcdserverpb.Cluster")
        assert s[f"grpc_server_started_total{{{cluster_list}}}"] == 2
        assert s[f'grpc_server_handled_total{{grpc_code="OK",{cluster_list}}}'] == 2
        remove = labels.format("MemberRemove", "etcdserverpb.Cluster")
        assert s[f'grpc_server_handled_total{{grpc_code="NotFound",{remove}}}'] == 1
        put = labels.format("Put", "etcdserverpb.KV")
        assert s[f'grpc_server_handled_total{{grpc_code="Unimplemented",{put}}}'] == 1


@pytest.mark.asyncio
async def test_promotions_are_counted_where_the_leader_judges_them() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        add = pb.MemberAddRequest(peer_ur_ls=["http://127.0.0.1:42380"], is_learner=True)
        reply = await h.run(leader.cluster.member_add(add))
        promote = pb.MemberPromoteRequest(id=reply.member.id)
        assert_error(await rpc_error(h, leader.cluster.member_promote(promote)), LearnerNotReady)
        s = scrape(leader)
        assert s['etcd_server_learner_promote_failures{Reason="LearnerNotReady"}'] == 1
        assert s["etcd_server_learner_promote_successes"] == 0

        learner = await h.start_member(reply.member, "infra4", "http://127.0.0.1:42379")
        await h.run(h.followers()[0].cluster.member_promote(promote))  # forwarded to the leader
        assert scrape(leader)["etcd_server_learner_promote_successes"] == 1
        assert scrape(learner)["etcd_server_is_learner"] == 0


@pytest.mark.asyncio
async def test_a_proposal_that_never_applies_is_counted_failed() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        h.isolate(*h.followers())
        update = pb.MemberUpdateRequest(id=leader.id, peer_ur_ls=["http://127.0.0.1:32390"])
        pending = leader.cluster.member_update(update)
        await rpc_error(h, pending)  # times out: the leader cannot commit alone
        s = scrape(leader)
        assert s["etcd_server_proposals_failed_total"] >= 1
        assert s["etcd_server_proposals_pending"] == 0


def test_fsync_and_round_trip_observations_land_in_etcds_histograms() -> None:
    metrics = NodeMetrics(0x1234, "3.5.0")
    metrics.on_fsync(0.0015)
    metrics.on_round_trip(NodeId(0xABC), 0.00025)
    s = parse(metrics.render())
    assert s['etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"}'] == 0
    assert s['etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"}'] == 1
    assert s["etcd_disk_wal_fsync_duration_seconds_count"] == 1
    rtt = 'etcd_network_peer_round_trip_time_seconds_bucket{To="abc",le="0.0004"}'
    assert s[rtt] == 1
    assert s['etcd_network_peer_round_trip_time_seconds_count{To="abc"}'] == 1
