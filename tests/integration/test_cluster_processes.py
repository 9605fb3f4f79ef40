"""Multi-process fault tests: real members on loopback, driven with etcdctl (CONVENTIONS P8 f).

- promotion gives a learner a vote (issue 4, item 7);
- restarts after SIGTERM and after SIGKILL lose nothing that was acknowledged;
- garbage on the client and peer ports, a member of another cluster and removed members leave the
  cluster serving; removed members stop and stay out (spec §6, D5).

A membership change is the probe for "the cluster can commit": ``member update`` of a live member
to the URL it already has changes nothing, needs no strict check (spec §3.4), and goes through
the Raft log like any other change. Waits are bounded polls; "cannot commit" is a short
``--command-timeout`` that expires.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from node.transport import MAGIC
from tests.compat.etcdctl_output import etcd_env
from tests.procs import (
    REQUEST_TIMEOUT_S,
    Member,
    Procs,
    Result,
    etcdctl,
    members_by_name,
    require_etcdctl,
    retry_ctl,
    wait_for,
)

pytestmark = pytest.mark.slow

#: etcdctl's deadline when a change is expected to commit (covers an election) / not to.
COMMIT_TIMEOUT = f"--command-timeout={REQUEST_TIMEOUT_S + 2:.0f}s"
STALL_TIMEOUT = "--command-timeout=1500ms"


def noop_change(via: Member, target: Member, timeout: str) -> Result:
    """``member update`` of ``target`` to its own peer URL, sent to ``via``."""
    return via.ctl(
        "member", "update", f"{target_id(via, target):x}", f"--peer-urls={target.peer_url}", timeout
    )


_ids: dict[tuple[int, str], int] = {}


def target_id(via: Member, target: Member) -> int:
    """A member's ID, learned once from a member list (IDs never change)."""
    key = (target.peer_port, target.name)
    if key not in _ids:
        result = via.ctl("member", "list", "-w", "json")
        assert result.code == 0, str(result)
        for m in result.json()["members"]:
            if target.peer_url in m.get("peerURLs", []):
                _ids[key] = m["ID"]
    return _ids[key]


def commits(via: Member, target: Member) -> None:
    result = noop_change(via, target, COMMIT_TIMEOUT)
    assert result.code == 0 and "updated in cluster" in result.stdout, str(result)


def cannot_commit(via: Member, target: Member) -> None:
    result = noop_change(via, target, STALL_TIMEOUT)
    assert result.code == 1, str(result)
    assert result.error == "Error: context deadline exceeded", str(result)


def add_and_start_learner(procs: Procs, via: Member, name: str) -> tuple[Member, int]:
    learner = procs.member(name)
    added = retry_ctl(via, "member", "add", name, f"--peer-urls={learner.peer_url}", "--learner")
    assert added.code == 0, str(added)
    procs.start(learner, cluster=None, state=None, env=etcd_env(added.stdout))
    return learner, int(added.stdout.split()[1], 16)


# ---- voting rights ------------------------------------------------------------------------------


def test_promotion_gives_the_learner_a_vote(tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_etcdctl()
    with Procs(tmp_path) as procs:
        v1, v2, v3 = procs.start_cluster("v1", "v2", "v3")
        learner, learner_id = add_and_start_learner(procs, v1, "l4")

        # 3 voters + 1 learner: with two voters down, v1 and the learner are no quorum.
        procs.stop(v2)
        procs.stop(v3)
        cannot_commit(v1, v1)

        procs.restart(v2, wait=False)
        procs.restart(v3, wait=False)
        procs.wait_ready(v2)
        procs.wait_ready(v3)
        # A member that joined restarts from its data dir too (its flags: the ETCD_* lines).
        assert procs.stop(learner) == 0
        procs.restart(learner)
        promoted = retry_ctl(
            v1,
            "member",
            "promote",
            f"{learner_id:x}",
            retry_on=("in sync with leader", "timed out", "no leader"),
        )
        assert "promoted in cluster" in promoted.stdout, str(promoted)

        # 4 voters: with one down, v1 + v2 + the former learner are a quorum (3 of 4), which
        # needs the former learner's acks, and its vote if v3 was the leader.
        v3_id = target_id(v1, v3)
        procs.stop(v3)
        procs.wait_leader([v1, v2, learner], not_id=v3_id)
        commits(v1, v1)
        # With two down, v1 + the former learner are 2 of 4: no quorum.
        procs.stop(v2)
        cannot_commit(v1, v1)
        assert learner.running


# ---- restarts -----------------------------------------------------------------------------------


def test_restarts_after_sigterm_and_sigkill_lose_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_etcdctl()
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("r1", "r2", "r3")
        leader_id = procs.wait_leader(members)
        by_id = {m["ID"]: m["name"] for m in procs.member_list(members[0])["members"]}
        leader = next(m for m in members if m.name == by_id[leader_id])
        f1, f2 = (m for m in members if m is not leader)

        # SIGTERM a follower, add a learner while it is down, restart it: it has everything.
        assert procs.stop(f1) == 0
        assert "Traceback" not in f1.log(), f1.log_tail()  # a clean drain, peers connected
        spare = procs.member("spare")
        added = retry_ctl(
            leader, "member", "add", "spare", f"--peer-urls={spare.peer_url}", "--learner"
        )
        assert added.code == 0, str(added)
        spare_id = int(added.stdout.split()[1], 16)
        procs.restart(f1)
        wait_for(
            lambda: procs.member_list(f1)["members"] == procs.member_list(leader)["members"],
            10,
            "the restarted member to catch up",
            f1.log_tail,
        )
        assert members_by_name(procs.member_list(f1))["r1" if f1.name == "r1" else f1.name][
            "clientURLs"
        ] == [f1.client_url]

        # A workload of acknowledged changes; f2 is SIGKILLed in the middle of it.
        acked: list[str] = []
        failures: list[Result] = []
        half = threading.Event()
        urls = [f"http://127.0.0.1:{port}" for port in range(40001, 40021)]

        def workload() -> None:
            for i, url in enumerate(urls):
                result = leader.ctl(
                    "member", "update", f"{spare_id:x}", f"--peer-urls={url}", COMMIT_TIMEOUT
                )
                if result.code != 0:
                    failures.append(result)
                    return
                acked.append(url)
                if i == len(urls) // 2:
                    half.set()

        worker = threading.Thread(target=workload)
        worker.start()
        try:
            assert half.wait(60), "the workload did not get half way"
            procs.kill(f2)
        finally:
            worker.join(120)
        assert not failures, str(failures[0])
        assert acked == urls

        # f2 comes back from its crash; then the leader crashes: f1 and f2 go on without it.
        procs.restart(f2)
        procs.kill(leader)
        procs.wait_leader([f1, f2], not_id=leader_id)
        commits(f2, f2)
        final = "http://127.0.0.1:40100"
        changed = f1.ctl(
            "member", "update", f"{spare_id:x}", f"--peer-urls={final}", COMMIT_TIMEOUT
        )
        assert changed.code == 0, str(changed)

        procs.restart(leader)

        def shows_final(member: Member) -> bool:
            return bool(members_by_name(procs.member_list(member))[""]["peerURLs"] == [final])

        for member in members:
            wait_for(
                lambda: shows_final(member),  # noqa: B023  (called before the loop moves on)
                10,
                f"{member.name} to show every acknowledged change",
                member.log_tail,
            )
        lists = [procs.member_list(m)["members"] for m in members]
        assert lists[0] == lists[1] == lists[2]
        assert {m.get("name") for m in lists[0]} == {"r1", "r2", "r3", None}


# ---- intruders and removed members --------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Procs, list[Member]]]:
    require_etcdctl()
    with Procs(tmp_path_factory.mktemp("intruders")) as procs:
        members = procs.start_cluster("g1", "g2", "g3")
        procs.wait_leader(members)
        yield procs, members


def send(port: int, payload: bytes, read: bool = True) -> bytes:
    """Write ``payload`` to a loopback port and return what comes back before it closes."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        if read:
            sock.settimeout(10)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def test_garbage_on_the_client_and_peer_ports(cluster) -> None:  # type: ignore[no-untyped-def]
    procs, members = cluster
    g1 = members[0]
    reply = procs.member_list(g1)
    cluster_id = reply["header"]["cluster_id"]
    own = reply["header"]["member_id"]
    other = next(m["ID"] for m in reply["members"] if m["ID"] != own)
    rng = os.urandom
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    client_junk = [
        rng(4096),
        b"GET /v3/cluster/member/list HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng(500),  # a TLS ClientHello
        preface + rng(2048),
        preface + b"\xff\xff\xff\x04\x00\x00\x00\x00\x00" + rng(64),  # an oversized SETTINGS
        preface[:10],
    ]
    hello = struct.Struct(">16sQQQ")
    peer_junk = [
        rng(4096),
        MAGIC + rng(64),
        hello.pack(MAGIC, cluster_id, other, own) + struct.pack(">I", 2**31) + rng(64),
        hello.pack(MAGIC, cluster_id, other, own) + struct.pack(">I", 16) + rng(16),
        hello.pack(MAGIC, cluster_id, other, own) + struct.pack(">I", 3) + b"\xc1\xc1\xc1",
        hello.pack(MAGIC, cluster_id, other, 12345) + rng(32),
        hello.pack(b"\0" * 16, 0, 0, 0),
        MAGIC[:5],
    ]
    for junk in client_junk:
        send(g1.client_port, junk)
    for junk in peer_junk:
        send(g1.peer_port, junk)
    # A flood of connections that say nothing, and one left half-open while we check service.
    for _ in range(50):
        socket.create_connection(("127.0.0.1", g1.peer_port), 5).close()
        socket.create_connection(("127.0.0.1", g1.client_port), 5).close()
    with (
        socket.create_connection(("127.0.0.1", g1.peer_port), 5) as idle_peer,
        socket.create_connection(("127.0.0.1", g1.client_port), 5) as idle_client,
    ):
        idle_peer.sendall(MAGIC[:8])
        idle_client.sendall(preface[:8])
        assert g1.running
        assert procs.member_list(g1)["members"] == reply["members"]
        for member in members:
            commits(g1, member)
            commits(member, g1)
    assert "Traceback" not in g1.log(), g1.log_tail(80)


def test_a_member_of_another_cluster_is_refused(cluster) -> None:  # type: ignore[no-untyped-def]
    procs, members = cluster
    g1 = members[0]
    before = procs.member_list(g1)
    # A stranger bootstraps its own cluster (another token, so another cluster ID) whose
    # --initial-cluster points at g1's peer URL.
    stranger = procs.member("stranger")
    procs.start(
        stranger,
        f"stranger={stranger.peer_url},{g1.name}={g1.peer_url}",
        token="another-cluster",
        wait=False,
    )
    assert procs.wait_exit(stranger) != 0
    assert "cluster ID mismatch" in stranger.log(), stranger.log_tail()
    assert "cluster ID mismatch" in g1.log()
    # We were not disturbed.
    assert all(m.running for m in members)
    assert procs.member_list(g1)["members"] == before["members"]
    commits(g1, g1)
    assert "Traceback" not in g1.log(), g1.log_tail(80)


def test_removed_members_stop_and_stay_out(cluster) -> None:  # type: ignore[no-untyped-def]
    procs, members = cluster
    leader_id = procs.wait_leader(members)
    by_id = {m["ID"]: m["name"] for m in procs.member_list(members[0])["members"]}
    leader = next(m for m in members if m.name == by_id[leader_id])
    down, live = (m for m in members if m is not leader)

    # Removed while it was down: on restart the peers tell it, and it stops (spec §6).
    procs.stop(down)
    down_id = target_id(leader, down)
    gone = retry_ctl(leader, "member", "remove", f"{down_id:x}")
    assert "removed from cluster" in gone.stdout, str(gone)
    procs.restart(down, wait=False)
    procs.wait_exit(down)
    assert "removed" in down.log().split("===")[-1], down.log_tail()

    # Removed while running: it finishes, stops by itself and marks its data dir.
    live_id = target_id(leader, live)
    gone = retry_ctl(leader, "member", "remove", f"{live_id:x}")
    assert "removed from cluster" in gone.stdout, str(gone)
    procs.wait_exit(live)
    assert "permanently removed" in live.log(), live.log_tail()

    # Neither may come back on its data dir: a clear message and a non-zero exit (D5).
    for member in (down, live):
        procs.restart(member, wait=False)
        assert procs.wait_exit(member) != 0
        last_run = member.log().split("===")[-1]
        assert "was removed from the cluster" in last_run, member.log_tail()
        assert "delete the data dir" in last_run

    # The survivor is a one-member cluster that still commits.
    assert [m["name"] for m in procs.member_list(leader)["members"]] == [leader.name]
    commits(leader, leader)
    assert leader.running


# ---- joining under a leader that joined later ------------------------------------------------


def test_a_member_joins_while_a_later_member_leads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A joiner installs the leader's snapshot first, here the founders' bootstrap snapshot, which
    does not know the leader (it joined later). The joiner must still answer that leader, or it
    never catches up and never serves (found by the fault runner, seeds 2, 3 and 11)."""
    require_etcdctl()
    with Procs(tmp_path) as procs:
        v1, v2, v3 = procs.start_cluster("v1", "v2", "v3")
        d4, d4_id = add_and_start_learner(procs, v1, "d4")
        promoted = retry_ctl(
            v1, "member", "promote", f"{d4_id:x}", retry_on=("in sync with leader", "timed out")
        )
        assert promoted.code == 0, str(promoted)
        members = [v1, v2, v3, d4]
        endpoints = [m.endpoint for m in members]

        def move() -> Result | None:
            result = etcdctl(endpoints, "move-leader", f"{d4_id:x}")
            return result if result.code == 0 else None

        moved = wait_for(move, 30, "leadership to move to d4")
        assert "Leadership transferred" in moved.stdout, str(moved)
        assert procs.wait_leader(members) == d4_id

        add_and_start_learner(procs, d4, "e5")  # waits until e5 has published and serves
        listed = procs.member_list(d4)["members"]
        assert {m.get("name") for m in listed} == {"v1", "v2", "v3", "d4", "e5"}
