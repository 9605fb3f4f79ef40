"""``ClusterManager``, the Cluster API's domain logic, called directly on in-memory clusters.

What the gRPC tests cannot reach: the injected clock, request ids, the D3 retry when a leader
refuses a forwarded change, the strict checks judged at the change's turn, promote forwarding's
retries and bounds, the applied-index wait, publish, the node stopping, and the translation of
raft's own refusals.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node.cluster import APPLY_WAIT, request_ids
from node.domain_errors import (
    BadLeaderTransferee,
    LeaderChanged,
    LearnerNotReady,
    MemberNotFound,
    NoLeader,
    NotEnoughStarted,
    RequestTimeout,
    Stopped,
    TimeoutWaitAppliedIndex,
    Unhealthy,
)
from node.membership import ChangeKind, Membership, MembershipChange
from node.testing import ManualClock
from raft import NONE, LeaderTransferRefused, MessageType, ProposalDropped
from tests.node.cluster_harness import (
    INFRA2,
    INFRA3,
    NEW_ID,
    NEW_PEER,
    REQUEST_TIMEOUT,
    TICK,
    ClusterHarness,
    HarnessNode,
)

pytestmark = pytest.mark.asyncio


async def start_learner(h: ClusterHarness) -> HarnessNode:
    member, _ = await h.run(h.leader().manager.member_add([NEW_PEER], True))
    return await h.start_member(member, "infra4", "http://127.0.0.1:42379")


# ---- The clock ----------------------------------------------------------------------------------


async def test_manual_clock_sleeps_until_advanced() -> None:
    clock = ManualClock()
    sleeper = asyncio.ensure_future(clock.sleep(0.5))
    await asyncio.sleep(0)
    clock.advance(0.25)
    await asyncio.sleep(0)
    assert not sleeper.done()
    clock.advance(0.25)
    await asyncio.sleep(0)
    assert sleeper.done() and clock.pending == 0
    assert clock.time() == clock.epoch + 0.5


async def test_manual_clock_timeout_raises_timeout_error_at_the_deadline() -> None:
    clock = ManualClock()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def bounded() -> None:
        async with clock.timeout(1.0):
            await never

    task = asyncio.ensure_future(bounded())
    await asyncio.sleep(0)
    clock.advance(0.875)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.125)
    with pytest.raises(TimeoutError):
        await task


async def test_manual_clock_timeout_leaves_other_cancels_alone() -> None:
    clock = ManualClock()

    async def bounded() -> None:
        async with clock.timeout(1.0):
            await asyncio.Event().wait()

    task = asyncio.ensure_future(bounded())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending == 0
    async with clock.timeout(1.0):
        pass  # a body that finishes in time leaves no timer behind
    assert clock.pending == 0


async def test_the_manager_reads_time_only_from_its_clock() -> None:
    async with ClusterHarness(3) as h:
        manager = h.leader().manager
        assert manager.clock is h.clock
        member, _ = await h.run(manager.member_add([NEW_PEER], True))
        assert member.id == NEW_ID  # the spec's runtime vector at the clock's epoch


# ---- Request ids --------------------------------------------------------------------------------


async def test_request_ids_differ_between_members_started_in_the_same_millisecond() -> None:
    a = request_ids(0xBF9071F4639C75CC, 1_795_478_781_000)
    b = request_ids(0x91BC3C398FB3C146, 1_795_478_781_000)
    first_a = [next(a) for _ in range(1000)]
    first_b = [next(b) for _ in range(1000)]
    assert not set(first_a) & set(first_b)
    assert first_a == sorted(first_a) and len(set(first_a)) == 1000
    assert all(0 < i < 2**64 for i in first_a + first_b)


async def test_request_ids_after_a_restart_do_not_repeat() -> None:
    before = request_ids(0xBF9071F4639C75CC, 1_795_478_781_000)
    used = {next(before) for _ in range(200)}
    after = request_ids(0xBF9071F4639C75CC, 1_795_478_781_001)
    assert not used & {next(after) for _ in range(56)}


async def test_members_started_in_the_same_millisecond_answer_only_their_own_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Request ids used to be a counter from the start time alone: members started in the same
    # millisecond shared ids, and one member's apply answered another's waiter.
    monkeypatch.setattr(time, "time", lambda: 1_795_478_781.0)  # node.cluster reads it
    async with ClusterHarness(3) as h:
        nodes = list(h.nodes.values())
        replies = await h.run_all(
            *(n.manager.publish(f"renamed-{i}", ()) for i, n in enumerate(nodes))
        )
        for i, (n, after) in enumerate(zip(nodes, replies, strict=True)):
            assert isinstance(after, Membership), after
            member = after.get(n.id)
            assert member is not None and member.name == f"renamed-{i}"


# ---- D3: serialised changes ---------------------------------------------------------------------


async def test_a_change_the_leader_refuses_is_retried_until_it_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ClusterHarness(3) as h:
        leader, follower = h.leader(), h.followers()[0]
        refusals: list[str] = []
        original = follower.driver.propose_conf_change

        async def recording(change: Any, request_id: int) -> object:
            try:
                return await original(change, request_id)
            except ProposalDropped as exc:
                refusals.append(str(exc))
                raise

        monkeypatch.setattr(follower.driver, "propose_conf_change", recording)
        results = await h.run_all(
            leader.manager.member_update(INFRA3, ["http://127.0.0.1:32390"]),
            follower.manager.member_update(INFRA2, ["http://127.0.0.1:22390"]),
        )
        assert all(not isinstance(r, BaseException) for r in results), results
        assert refusals and all("pending" in r for r in refusals)
        members = {m.id: m.peer_urls for m in h.leader().membership.members}
        assert members[INFRA3] == ("http://127.0.0.1:32390",)
        assert members[INFRA2] == ("http://127.0.0.1:22390",)


async def test_strict_checks_judge_the_membership_the_change_is_applied_to() -> None:
    async with ClusterHarness(1) as h:
        manager = h.node(0).manager
        first, second = await h.run_all(
            manager.member_add(["http://127.0.0.1:22380"], False),
            manager.member_add(["http://127.0.0.1:32380"], False),
        )
        assert not isinstance(first, BaseException)
        # Checked against the one-voter cluster, the second add would pass, commit to a
        # two-voter cluster whose new voter never starts, and time out.
        assert isinstance(second, NotEnoughStarted)
        assert h.clock.now < REQUEST_TIMEOUT


async def test_remove_of_id_zero_runs_the_strict_checks_first() -> None:
    async with ClusterHarness(1) as h:
        manager = h.node(0).manager
        await h.run(manager.member_add(["http://127.0.0.1:22380"], False))
        with pytest.raises(NotEnoughStarted):
            await h.run(manager.member_remove(0), max_ticks=0)
    async with ClusterHarness(3) as h:
        before = h.commits()
        with pytest.raises(MemberNotFound):
            await h.run(h.leader().manager.member_remove(0), max_ticks=0)
        assert h.commits() == before


async def test_a_change_waiting_when_the_node_stops_answers_stopped() -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()
        h.isolate(*h.followers())
        waiting = asyncio.ensure_future(leader.manager.member_update(INFRA3, [NEW_PEER]))
        await h.tick(2)
        assert not waiting.done()
        await leader.driver.close()
        with pytest.raises(Stopped):
            await waiting


# ---- Strict checks and the health interval ------------------------------------------------------


async def test_connected_voters_count_links_up_for_the_health_interval() -> None:
    async with ClusterHarness(3, health_interval=1.0) as h:
        leader = h.leader()
        down = h.followers()[0]
        assert h.clock.now >= 0
        await h.tick(8)
        assert leader.manager.connected_voters() == {INFRA2, INFRA3, leader.id}
        h.isolate(down)
        assert down.id not in leader.manager.connected_voters()
        h.heal(down)
        assert down.id not in leader.manager.connected_voters()
        with pytest.raises(Unhealthy):
            await h.run(leader.manager.member_add([NEW_PEER], False), max_ticks=0)
        await h.tick(8)
        assert down.id in leader.manager.connected_voters()


# ---- Promote: forwarding and the leader's checks ------------------------------------------------


async def test_forwarding_retries_a_failed_attempt_after_a_heartbeat() -> None:
    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        follower = h.followers()[0]
        attempts: list[float] = []
        forward = follower.manager._forward_promote
        assert forward is not None

        async def flaky(leader: Any, member_id: int) -> Any:
            attempts.append(h.clock.now)
            if len(attempts) == 1:
                raise ConnectionResetError("the leader's port hung up")
            return await forward(leader, member_id)

        follower.manager._forward_promote = flaky
        start = h.clock.now
        after = await h.run(follower.manager.member_promote(learner.id))
        assert learner.id in after.voter_ids()
        assert len(attempts) == 2 and attempts[1] - start >= TICK


async def test_forwarding_stops_at_once_on_a_final_answer() -> None:
    async with ClusterHarness(3) as h:
        member, _ = await h.run(h.leader().manager.member_add([NEW_PEER], True))
        follower = h.followers()[0]
        with pytest.raises(LearnerNotReady):
            await h.run(follower.manager.member_promote(member.id), max_ticks=0)
        assert len(h.forwarded) == 1


async def test_forwarding_without_a_leader_ends_in_no_leader_at_the_bound() -> None:
    async with ClusterHarness(3) as h:
        member, _ = await h.run(h.leader().manager.member_add([NEW_PEER], True))
        lonely = h.node(2)
        h.isolate(lonely)
        await h.until(lambda: lonely.driver.status.lead == NONE)
        start = h.clock.now
        with pytest.raises(NoLeader):
            await h.run(lonely.manager.member_promote(member.id))
        assert h.clock.now - start >= REQUEST_TIMEOUT
        assert h.forwarded == []


async def test_forwarding_to_an_unreachable_leader_ends_in_request_timeout() -> None:
    async with ClusterHarness(3) as h:
        member, _ = await h.run(h.leader().manager.member_add([NEW_PEER], True))
        follower = h.followers()[0]

        async def unreachable(leader: Any, member_id: int) -> Any:
            raise ConnectionRefusedError("no route")

        follower.manager._forward_promote = unreachable
        with pytest.raises(RequestTimeout):
            await h.run(follower.manager.member_promote(member.id))


async def test_the_leader_bounds_its_wait_for_the_applied_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ClusterHarness(3) as h:
        learner = await start_learner(h)
        leader = h.leader()
        stuck: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def never_applied(index: Any) -> None:
            await stuck

        monkeypatch.setattr(leader.driver, "wait_applied", never_applied)
        start = h.clock.now
        with pytest.raises(TimeoutWaitAppliedIndex):
            await h.run(leader.manager.member_promote(learner.id))
        assert h.clock.now - start >= APPLY_WAIT


# ---- Reads, publish, leadership -----------------------------------------------------------------


async def test_a_linearizable_read_across_a_leader_change_answers_leader_changed() -> None:
    async with ClusterHarness(3) as h:
        follower = h.nodes[INFRA2]
        h.network.drop = lambda m: m.type is MessageType.READ_INDEX
        reading = asyncio.ensure_future(follower.manager.member_list(True))
        await h.settle()
        assert not reading.done()
        await h.run(h.leader().manager.move_leader(INFRA3))
        with pytest.raises(LeaderChanged):
            await h.run(reading, max_ticks=0)


async def test_publish_retries_until_there_is_a_leader() -> None:
    async with ClusterHarness(3) as h:
        lonely = h.node(2)
        h.isolate(lonely)
        await h.until(lambda: lonely.driver.status.lead == NONE)
        publishing = asyncio.ensure_future(
            lonely.manager.publish("infra3b", ("http://127.0.0.1:32399",))
        )
        await h.tick(40)
        assert not publishing.done()
        h.heal(lonely)
        after = await h.run(publishing)
        member = after.get(lonely.id)
        assert member is not None and member.name == "infra3b"
        assert member.client_urls == ("http://127.0.0.1:32399",)


async def test_raft_refusing_a_transfer_is_a_bad_transferee(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with ClusterHarness(3) as h:
        leader = h.leader()

        async def refuse(target: Any) -> None:
            raise LeaderTransferRefused("not a voter in raft's view")

        monkeypatch.setattr(leader.driver, "transfer_leader", refuse)
        with pytest.raises(BadLeaderTransferee):
            await h.run(leader.manager.move_leader(INFRA3), max_ticks=0)


async def test_change_rejects_id_zero_before_raft() -> None:
    with pytest.raises(ValueError):
        MembershipChange(ChangeKind.ADD_VOTER, 0, (NEW_PEER,))
