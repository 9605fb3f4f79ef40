"""Operator tools against real members (issue 5, items 2, 3 and 8): ``etcdctl move-leader``,
``etcd3gw`` (the JSON gateway's best-known Python client), ``GET /metrics`` and Status' sizes.

One 3-member cluster serves the module; each test leaves it with three started voters. Waits are
bounded polls; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from etcd3gw.client import Etcd3Client

from tests.node.test_metrics import parse
from tests.procs import Member, Procs, etcdctl, members_by_name, require_etcdctl, wait_for

pytestmark = pytest.mark.slow

Cluster = tuple[Procs, list[Member]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_etcdctl()
    with Procs(tmp_path_factory.mktemp("operators")) as procs:
        members = procs.start_cluster("op1", "op2", "op3")
        procs.wait_leader(members)
        yield procs, members


def ids_by_name(procs: Procs, via: Member) -> dict[str, int]:
    return {name: m["ID"] for name, m in members_by_name(procs.member_list(via)).items()}


# ---- etcdctl move-leader (spec §7.2) ---------------------------------------------------------


def test_etcdctl_move_leader(cluster: Cluster) -> None:
    procs, members = cluster
    endpoints = [m.endpoint for m in members]
    leader = procs.wait_leader(members)
    ids = ids_by_name(procs, members[0])
    target = next(i for i in ids.values() if i != leader)

    moved = etcdctl(endpoints, "move-leader", f"{target:x}")
    assert moved.code == 0, str(moved)
    assert moved.stdout == f"Leadership transferred from {leader:x} to {target:x}\n"
    assert procs.wait_leader(members) == target

    # Only non-leaders as endpoints: etcdctl finds no leader to ask (exit 128, spec §7.2).
    followers = [m.endpoint for m in members if ids[m.name] != target]
    refused = etcdctl(followers, "move-leader", f"{leader:x}")
    assert refused.code == 128, str(refused)
    assert refused.error.startswith("Error: no leader endpoint given at ["), str(refused)

    # A transferee that is not a member: the leader's ErrGRPCBadLeaderTransferee.
    bad = etcdctl(endpoints, "move-leader", "1234")
    assert bad.code == 1, str(bad)
    assert bad.error == "Error: etcdserver: bad leader transferee", str(bad)

    # Moving to the current leader succeeds at once.
    again = etcdctl(endpoints, "move-leader", f"{target:x}")
    assert again.code == 0, str(again)
    assert again.stdout == f"Leadership transferred from {target:x} to {target:x}\n"


# ---- etcd3gw over the JSON gateway ------------------------------------------------------------


def test_etcd3gw_discovers_v3_and_reads_members_and_status(cluster: Cluster) -> None:
    procs, members = cluster
    leader = procs.wait_leader(members)
    ids = ids_by_name(procs, members[0])
    for member in members:
        client = Etcd3Client(host="127.0.0.1", port=member.client_port, api_path=None, timeout=10)
        listed = client.members()
        assert client.api_path == "/v3/"  # chosen from GET /version, as with etcd 3.4+
        assert {m["name"]: int(m["ID"]) for m in listed} == ids
        assert all(m["peerURLs"] and m["clientURLs"] for m in listed)
        status = client.status()
        assert int(status["leader"]) == leader
        assert int(status["header"]["member_id"]) == ids[member.name]
        assert status["version"] == "3.5.0"
        assert 0 < int(status["dbSizeInUse"]) < int(status["dbSize"])  # WAL is preallocated


# ---- /metrics ----------------------------------------------------------------------------------


def scrape(member: Member) -> dict[str, float]:
    with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(reply.read().decode())


def test_metrics_under_etcds_names(cluster: Cluster) -> None:
    procs, members = cluster
    leader = procs.wait_leader(members)
    ids = ids_by_name(procs, members[0])
    listed = etcdctl([members[0].endpoint], "member", "list")
    assert listed.code == 0, str(listed)

    def with_round_trips(member: Member) -> Callable[[], dict[str, float] | None]:
        def probe() -> dict[str, float] | None:
            samples = scrape(member)  # peers are probed every few seconds
            prefix = "etcd_network_peer_round_trip_time_seconds_count"
            return samples if sum(k.startswith(prefix) for k in samples) == 2 else None

        return probe

    for member in members:
        s = wait_for(with_round_trips(member), 30, f"{member.name}'s peer probes")
        assert s["etcd_server_has_leader"] == 1
        assert s["etcd_server_is_leader"] == (ids[member.name] == leader)
        assert s["etcd_server_leader_changes_seen_total"] >= 1
        assert s["etcd_server_proposals_applied_total"] >= 4  # the members' publishes at least
        assert (
            s["etcd_server_proposals_committed_total"] >= s["etcd_server_proposals_applied_total"]
        )
        assert s["etcd_disk_wal_fsync_duration_seconds_count"] >= 1
        assert s[f'etcd_server_id{{server_id="{ids[member.name]:x}"}}'] == 1
        peers = {f"{i:x}" for name, i in ids.items() if name != member.name}
        seen = set(re.findall(r'round_trip_time_seconds_count\{To="([0-9a-f]+)"\}', " ".join(s)))
        assert seen == peers
    handled = scrape(members[0])
    key = (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="MemberList",'
        'grpc_service="etcdserverpb.Cluster",grpc_type="unary"}'
    )
    assert handled[key] >= 1
