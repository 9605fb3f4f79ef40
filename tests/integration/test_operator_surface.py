"""Operator surface with real members (issue 5, items 3 and 4; CONVENTIONS P8 f).

- ``etcdctl endpoint health`` and ``GET /health``: healthy with a quorum, then unhealthy once
  quorum is lost, printed and exited as etcd 3.4 does (transcript 02; the unhealthy lines were
  recorded from the reference etcd with two of three members killed);
- SIGTERM on the leader during a stream of MemberList/MemberUpdate calls: it hands leadership
  over before it stops, drains what it was serving, exits 0, and every acknowledged change is
  in the survivors' membership. The time until a new leader is seen is printed, not asserted.

Waits are bounded polls; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from node.client import ClientError, ClusterClient, MemberNotFound, PeerURLExists
from proto import etcdserverpb as pb
from tests.procs import (
    ELECTION_MS,
    Member,
    Procs,
    Result,
    etcdctl,
    free_port,
    members_by_name,
    require_etcdctl,
    retry_ctl,
    wait_for,
)

pytestmark = pytest.mark.slow

#: etcdctl's deadline for a health check that is expected to fail (etcd prints the same).
SHORT_COMMAND = "--command-timeout=2s"


def http_health(member: Member) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{member.client_url}/health", timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def healthy_lines(result: Result) -> set[str]:
    """The endpoints etcdctl called healthy (its lines go to stderr, transcript 02)."""
    pattern = re.compile(r"^(\S+) is healthy: successfully committed proposal: took = \S+$")
    return {m.group(1) for line in result.stderr.splitlines() if (m := pattern.match(line))}


# ---- endpoint health and /health -----------------------------------------------------------------


def test_endpoint_health_with_and_without_quorum(tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_etcdctl()
    with Procs(tmp_path) as procs:
        a, b, c = procs.start_cluster("h1", "h2", "h3")
        procs.wait_leader([a, b, c])
        endpoints = [m.endpoint for m in (a, b, c)]

        result = etcdctl(endpoints, "endpoint", "health")
        assert result.code == 0 and result.stdout == "", str(result)
        assert healthy_lines(result) == set(endpoints), str(result)
        assert len(result.stderr.splitlines()) == 3, str(result)
        as_json = etcdctl(endpoints, "endpoint", "health", "-w", "json")
        assert as_json.code == 0, str(as_json)
        assert {(e["endpoint"], e["health"]) for e in as_json.json()} == {
            (ep, True) for ep in endpoints
        }
        assert all(set(e) == {"endpoint", "health", "took"} for e in as_json.json())
        for member in (a, b, c):
            assert http_health(member) == (200, b'{"health":"true"}')
        # A serializable read is served locally: `get` prints nothing for the empty key space.
        local = a.ctl("get", "health", "--consistency=s")
        assert (local.code, local.stdout) == (0, ""), str(local)

        procs.kill(b)
        procs.kill(c)
        result = a.ctl("endpoint", "health", SHORT_COMMAND)
        assert result.code == 1 and result.stdout == "", str(result)
        lines = result.stderr.splitlines()
        assert lines[-2:] == [
            f"{a.endpoint} is unhealthy: failed to commit proposal: context deadline exceeded",
            "Error: unhealthy cluster",
        ], str(result)
        warnings = [json.loads(line) for line in lines if line.startswith("{")]
        assert warnings and all(w["msg"] == "retrying of unary invoker failed" for w in warnings)
        assert warnings[-1]["error"].endswith("desc = context deadline exceeded"), str(result)
        as_json = a.ctl("endpoint", "health", "-w", "json", SHORT_COMMAND)
        assert as_json.code == 1 and as_json.error == "Error: unhealthy cluster", str(as_json)
        [entry] = as_json.json()
        assert (entry["endpoint"], entry["health"], entry["error"]) == (
            a.endpoint,
            False,
            "context deadline exceeded",
        )
        assert http_health(a) == (503, b'{"health":"false"}')
        # Local state is still readable without quorum.
        assert a.ctl("get", "health", "--consistency=s").code == 0

        procs.restart(b)
        wait_for(
            lambda: a.ctl("endpoint", "health", SHORT_COMMAND).code == 0,
            30,
            "health to come back with a quorum",
            a.log_tail,
        )
        assert http_health(a) == (200, b'{"health":"true"}')


# ---- graceful shutdown of the leader -------------------------------------------------------------


@dataclass
class Workload:
    """A client that updates one (never started) learner's peer URL to url 0, 1, 2, ... in turn,
    each change retried on the next member until it is acknowledged, plus a MemberList stream."""

    endpoints: list[Member]
    learner_id: int
    acked: list[str] = field(default_factory=list)
    update_failures: list[str] = field(default_factory=list)
    lists_ok: int = 0
    list_failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _channels: dict[int, Channel] = field(default_factory=dict)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{41000 + i}"

    def channel(self, member: Member) -> Channel:
        if member.client_port not in self._channels:
            self._channels[member.client_port] = Channel("127.0.0.1", member.client_port)
        return self._channels[member.client_port]

    def drop(self, member: Member) -> None:
        channel = self._channels.pop(member.client_port, None)
        if channel is not None:
            channel.close()

    async def updates(self) -> None:
        target = 0
        i = 0
        while not self.stop.is_set():
            member = self.endpoints[target % len(self.endpoints)]
            request = pb.MemberUpdateRequest(id=self.learner_id, peer_ur_ls=[self.url(i)])
            try:
                await pb.ClusterStub(self.channel(member)).member_update(request, timeout=10)
            except (GRPCError, OSError, StreamTerminatedError, TimeoutError) as exc:
                self.update_failures.append(f"{member.name}: {type(exc).__name__}: {exc}")
                self.drop(member)
                target += 1  # the same change again, on the next member
                continue
            self.acked.append(self.url(i))
            i += 1

    async def lists(self, member: Member) -> None:
        while not self.stop.is_set():
            try:
                await pb.ClusterStub(self.channel(member)).member_list(
                    pb.MemberListRequest(), timeout=10
                )
                self.lists_ok += 1
            except (GRPCError, OSError, StreamTerminatedError, TimeoutError) as exc:
                self.list_failures.append(f"{type(exc).__name__}: {exc}")
                self.drop(member)
                return  # the member is going away

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def the_leader(
    procs: Procs, members: list[Member]
) -> tuple[int, dict[int, str], Member, list[Member]]:
    """The leader's ID, every member's name by ID, the leader's process and the others."""
    leader_id = procs.wait_leader(members)
    names = {m["ID"]: m["name"] for m in procs.member_list(members[0])["members"]}
    leader = next(m for m in members if m.name == names[leader_id])
    return leader_id, names, leader, [m for m in members if m is not leader]


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Bounded polling from the client side (the process layer may wait on the clock)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.01)


async def first_new_leader(survivors: list[Member], old: int, within: float) -> int:
    """Poll Status on the survivors until one of them names a leader other than ``old``."""
    channels = [Channel("127.0.0.1", m.client_port) for m in survivors]
    deadline = time.monotonic() + within
    try:
        while True:
            for channel in channels:
                try:
                    status = await pb.MaintenanceStub(channel).status(pb.StatusRequest(), timeout=1)
                except (GRPCError, OSError, StreamTerminatedError, TimeoutError):
                    continue
                if status.leader not in (0, old):
                    return int(status.leader)
            assert time.monotonic() < deadline, f"no new leader within {within} s"
            await asyncio.sleep(0.002)  # a polling client, above the process layer
    finally:
        for channel in channels:
            channel.close()


def test_sigterm_on_the_leader_hands_over_drains_and_exits_0(tmp_path) -> None:  # type: ignore[no-untyped-def]
    require_etcdctl()
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("s1", "s2", "s3")
        leader_id, names, leader, survivors = the_leader(procs, members)
        spare = f"http://127.0.0.1:{free_port()}"
        added = retry_ctl(leader, "member", "add", "spare", f"--peer-urls={spare}", "--learner")
        assert added.code == 0, str(added)
        learner_id = int(added.stdout.split()[1], 16)

        async def scenario() -> tuple[Workload, float, int]:
            work = Workload([leader, *survivors], learner_id)
            tasks = [
                asyncio.create_task(work.updates()),
                asyncio.create_task(work.lists(leader)),
                asyncio.create_task(work.lists(leader)),
            ]
            try:
                await until(lambda: len(work.acked) >= 20, 30, "20 acknowledged updates")
                assert leader.process is not None
                began = time.monotonic()
                os.kill(leader.process.pid, signal.SIGTERM)
                new_leader = await first_new_leader(survivors, leader_id, within=30)
                new_leader_after = time.monotonic() - began
                acked_at_signal = len(work.acked)
                await until(
                    lambda: len(work.acked) >= acked_at_signal + 20,
                    30,
                    "20 more acknowledged updates after the SIGTERM",
                )
            finally:
                work.stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                work.close()
            return work, new_leader_after, new_leader

        work, new_leader_after, new_leader = asyncio.run(scenario())
        code = procs.wait_exit(leader)
        print(
            f"\nSIGTERM on leader {leader_id:x}: {new_leader:x} seen leading after "
            f"{new_leader_after * 1000:.0f} ms (election timeout {ELECTION_MS} ms); "
            f"{len(work.acked)} updates acknowledged, {work.lists_ok} MemberLists answered; "
            f"failed calls (each retried elsewhere): updates {work.update_failures}, "
            f"lists {work.list_failures}"
        )
        assert code == 0, leader.log_tail()
        assert new_leader != leader_id
        assert "handed leadership to" in leader.log(), leader.log_tail()
        assert "Traceback" not in leader.log(), leader.log_tail()

        # Every acknowledged change is applied: the last acknowledged URL is the learner's, on
        # every survivor (the client retried each change until acknowledged, in order).
        def shows_last(member: Member) -> bool:
            learner = members_by_name(procs.member_list(member))[""]
            return bool(learner["peerURLs"] == [work.acked[-1]])

        for member in survivors:
            wait_for(
                lambda: shows_last(member),  # noqa: B023  (called before the loop moves on)
                10,
                f"{member.name} to show the last acknowledged change",
                member.log_tail,
            )
        # The stopped leader's log has them too: it restarts with every change it acknowledged.
        procs.restart(leader)
        wait_for(
            lambda: shows_last(leader),
            10,
            "the restarted leader to show the last acknowledged change",
            leader.log_tail,
        )


# ---- removing the leader (issue 5, item 5) -------------------------------------------------------


def test_removing_the_leader_hands_over_before_it_stops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("r1", "r2", "r3")
        leader_id, names, leader, survivors = the_leader(procs, members)

        async def scenario() -> tuple[pb.MemberRemoveResponse, float, int]:
            channel = Channel("127.0.0.1", leader.client_port)
            try:
                request = pb.MemberRemoveRequest(id=leader_id)
                reply = await pb.ClusterStub(channel).member_remove(request, timeout=10)
            finally:
                channel.close()
            replied = time.monotonic()
            new_leader = await first_new_leader(survivors, leader_id, within=30)
            return reply, time.monotonic() - replied, new_leader

        reply, gap, new_leader = asyncio.run(scenario())
        print(
            f"\nremoving leader {leader_id:x}: {new_leader:x} seen leading {gap * 1000:.0f} ms "
            f"after the reply (election timeout {ELECTION_MS} ms)"
        )
        # The reply comes after the removal is committed and applied: it no longer lists the
        # leader, and the survivors agree.
        assert leader_id not in {m.id for m in reply.members}
        assert {m.id for m in reply.members} == {
            i for i, name in names.items() if name != leader.name
        }
        assert procs.wait_exit(leader) == 0, leader.log_tail()
        assert "Traceback" not in leader.log(), leader.log_tail()
        for member in survivors:
            listed = procs.member_list(member)["members"]
            assert leader_id not in {m["ID"] for m in listed}


# ---- SIGTERM while MemberAdds flow (issue 5, item 8) ------------------------------------------


@dataclass
class AddRemoveLoop:
    """Adds a learner on a fresh URL, then removes it, over and over, through ``node.client``.
    A call whose outcome is unknown (the member it reached stopped) is retried until its effect
    is known: a repeated add finds its URL taken (PeerURLExists: the first one applied), a
    repeated remove finds the ID gone (MemberNotFound: the first one applied)."""

    client: ClusterClient
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            url = f"http://127.0.0.1:{43000 + i}"
            member_id = await self._add(url)
            self.added.append(url)
            await self._remove(member_id)
            self.removed.append(url)

    async def _add(self, url: str) -> int:
        while True:
            try:
                return (await self.client.member_add([url], learner=True, timeout=5)).member.id
            except PeerURLExists:
                listed = await self.client.member_list(linearizable=True)
                return next(m.id for m in listed if url in m.peer_urls)
            except ClientError as exc:
                self.failures.append(f"add: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)  # a client backing off, above the process layer

    async def _remove(self, member_id: int) -> None:
        while True:
            try:
                await self.client.member_remove(member_id, timeout=5)
                return
            except MemberNotFound:
                return
            except ClientError as exc:
                self.failures.append(f"remove: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)


def test_sigterm_on_the_leader_while_member_adds_flow(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("t1", "t2", "t3")
        leader_id, names, leader, survivors = the_leader(procs, members)

        async def scenario() -> AddRemoveLoop:
            # The leader first, so the adds in flight at the signal are the ones it serves.
            endpoints = [m.endpoint for m in (leader, *survivors)]
            async with ClusterClient(endpoints, timeout=5) as client:
                loop = AddRemoveLoop(client)
                task = asyncio.create_task(loop.run())
                try:
                    await until(lambda: len(loop.added) >= 10, 30, "10 acknowledged adds")
                    assert leader.process is not None
                    os.kill(leader.process.pid, signal.SIGTERM)
                    at_signal = len(loop.removed)
                    await until(
                        lambda: len(loop.removed) >= at_signal + 10,
                        30,
                        "10 more add/remove rounds after the SIGTERM",
                    )
                finally:
                    loop.stop.set()
                    await asyncio.wait_for(task, 30)
            return loop

        loop = asyncio.run(scenario())
        print(
            f"\nSIGTERM on leader {leader_id:x} during adds: {len(loop.added)} learners added "
            f"and removed; calls retried: {loop.failures}"
        )
        assert procs.wait_exit(leader) == 0, leader.log_tail()
        assert "Traceback" not in leader.log(), leader.log_tail()
        assert loop.added == loop.removed
        # Every acknowledged add was followed by an acknowledged remove: only founders remain.
        for member in survivors:
            listed = procs.member_list(member)["members"]
            assert {m["ID"] for m in listed} == set(names), member.name


def test_a_member_removed_through_its_own_endpoint_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The removed member must still learn that its removal committed (the leader delivers what
    it queued for it before dropping the link), so the request waiting on it is answered, as
    etcd answers it (found by the compose test)."""
    require_etcdctl()
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("o1", "o2", "o3")
        leader_id = procs.wait_leader(members)
        listed = procs.member_list(members[0])["members"]
        follower = next(m for m in listed if m["ID"] != leader_id)
        target = next(m for m in members if m.name == follower["name"])
        removed = etcdctl([target.endpoint], "member", "remove", f"{follower['ID']:x}")
        assert removed.code == 0, str(removed)
        assert removed.stdout.startswith(f"Member {follower['ID']:x} removed from cluster "), str(
            removed
        )
        assert procs.wait_exit(target) == 0, target.log_tail()
        others = [m for m in members if m is not target]
        for member in others:
            assert follower["ID"] not in {m["ID"] for m in procs.member_list(member)["members"]}
