"""The driver over in-memory storage and network: Ready order, apply-time replies, refusals."""

from __future__ import annotations

import ast
import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

import pytest

from node.driver import Applied, DriverStopped, RaftDriver
from node.testing import MemoryLogStore, MemoryNetwork
from raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    NodeId,
    ProposalDropped,
    Role,
    bootstrap_snapshot,
)


class RecordingMachine:
    """Request ids are the first 8 bytes of a payload (or of a conf change's context)."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, entry: Entry, apply_conf_change: Callable[[ConfChange], ConfState]) -> Applied:
        if entry.type is EntryType.CONF_CHANGE:
            assert entry.change is not None
            conf = apply_conf_change(entry.change)
            return Applied(self.request_id(entry.data, entry.change), conf)
        if entry.data:
            self.applied.append(entry.data)
        return Applied(self.request_id(entry.data, None), len(self.applied))

    def request_id(self, data: bytes, change: ConfChange | None) -> int | None:
        payload = change.context if change is not None else data
        return int.from_bytes(payload[:8], "big") if len(payload) >= 8 else None

    def snapshot(self) -> bytes:
        return repr(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = ast.literal_eval(data.decode()) if data else []


class Trio:
    def __init__(
        self, journal: list[tuple[str, object]] | None = None, snapshot_count: int = 10_000
    ) -> None:
        self.network = MemoryNetwork()
        voters = frozenset({NodeId(1), NodeId(2), NodeId(3)})
        base = bootstrap_snapshot(voters)
        self.drivers: dict[int, RaftDriver] = {}
        self.machines: dict[int, RecordingMachine] = {}
        self.stores: dict[int, MemoryLogStore] = {}
        for node_id in (1, 2, 3):
            store = MemoryLogStore(snapshot_count, journal if node_id == 1 else None)
            store.apply_snapshot(base)
            machine = RecordingMachine()
            config = Config(
                id=NodeId(node_id), rng=random.Random(node_id), applied=base.metadata.index
            )
            transport = self.network.transport(NodeId(node_id), journal if node_id == 1 else None)
            driver = RaftDriver(config, store, transport, machine)
            self.network.attach(NodeId(node_id), driver.step)
            self.drivers[node_id], self.machines[node_id] = driver, machine
            self.stores[node_id] = store

    async def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            for driver in self.drivers.values():
                await driver.run_until_idle()
            await asyncio.sleep(0)  # let awaiting requests enqueue their events

    async def elect(self, node_id: int) -> None:
        await self.drivers[node_id].call(lambda node: node.campaign())  # queued; pumped below
        await self.pump()

    async def run(self, make: Callable[[], Awaitable[object]]) -> object:
        task = asyncio.ensure_future(make())
        for _ in range(20):
            await self.pump(5)
            if task.done():
                break
        return await task


def request(request_id: int, body: bytes = b"") -> bytes:
    return request_id.to_bytes(8, "big") + body


async def started_trio(**kwargs: object) -> Trio:
    trio = Trio(**kwargs)  # type: ignore[arg-type]
    task = asyncio.ensure_future(trio.drivers[1].call(lambda node: node.campaign()))
    await trio.pump()
    await task
    await trio.pump()
    assert trio.drivers[1].status.role is Role.LEADER
    return trio


@pytest.mark.asyncio
async def test_a_proposal_resolves_with_what_its_apply_produced() -> None:
    trio = await started_trio()
    result = await trio.run(lambda: trio.drivers[1].propose(request(7, b"x"), 7))
    assert result == 1
    assert all(m.applied == [request(7, b"x")] for m in trio.machines.values())


@pytest.mark.asyncio
async def test_a_follower_proposal_is_forwarded_and_resolved_at_its_own_apply() -> None:
    trio = await started_trio()
    result = await trio.run(lambda: trio.drivers[2].propose(request(8, b"y"), 8))
    assert result == 1
    assert trio.drivers[2].status.applied == trio.drivers[1].status.applied


@pytest.mark.asyncio
async def test_nothing_is_sent_before_the_state_it_acknowledges_is_persisted() -> None:
    journal: list[tuple[str, object]] = []
    trio = await started_trio(journal=journal)
    for i in range(20, 25):
        await trio.run(partial(trio.drivers[1].propose, request(i), i))
    durable_last, durable_hs = 0, HardState()
    checked = 0
    for kind, value in journal:
        if kind == "persist":
            durable_last, durable_hs = value  # type: ignore[misc]
            continue
        if kind != "send":
            continue
        for m in value:  # type: ignore[attr-defined]
            assert m.term <= durable_hs.term or m.type is MessageType.PRE_VOTE, m
            if m.type is MessageType.APP and m.entries:
                assert m.entries[-1].index <= durable_last, (m, durable_last)
                checked += 1
            if m.type is MessageType.VOTE:
                assert durable_hs.vote == 1 and durable_hs.term == m.term
    assert checked >= 5  # the leader's appends were all covered


@pytest.mark.asyncio
async def test_a_second_conf_change_is_refused_while_one_is_pending() -> None:
    trio = await started_trio()
    leader = trio.drivers[1]
    first = asyncio.ensure_future(
        leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(4), request(1)), 1)
    )
    second = asyncio.ensure_future(
        leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, NodeId(5), request(2)), 2)
    )
    await trio.pump()
    assert isinstance(await first, ConfState)
    with pytest.raises(ConfChangeInProgress):
        await second


@pytest.mark.asyncio
async def test_a_forwarded_conf_change_refused_by_the_leader_fails_on_the_follower() -> None:
    trio = await started_trio()
    pending = asyncio.ensure_future(
        trio.drivers[1].propose_conf_change(
            ConfChange(ConfChangeType.ADD_LEARNER, NodeId(4), request(1)), 1
        )
    )
    forwarded = asyncio.ensure_future(
        trio.drivers[2].propose_conf_change(
            ConfChange(ConfChangeType.ADD_LEARNER, NodeId(5), request(2)), 2
        )
    )
    await trio.pump()
    await pending
    with pytest.raises(ProposalDropped, match="already pending"):
        await forwarded


@pytest.mark.asyncio
async def test_read_index_returns_a_committed_and_applied_index() -> None:
    trio = await started_trio()
    index = await trio.run(lambda: trio.drivers[2].read_index())
    assert index == trio.drivers[1].status.commit
    assert trio.drivers[2].status.applied >= index


@pytest.mark.asyncio
async def test_a_proposal_without_leader_fails_at_once() -> None:
    trio = Trio()
    with pytest.raises(ProposalDropped):
        await trio.run(lambda: trio.drivers[1].propose(request(3), 3))


@pytest.mark.asyncio
async def test_close_fails_every_waiter_with_driver_stopped() -> None:
    trio = await started_trio()
    trio.network.down.add(NodeId(2))
    trio.network.down.add(NodeId(3))
    waiting = asyncio.ensure_future(trio.drivers[1].propose(request(4), 4))
    await trio.pump(3)
    assert not waiting.done()  # no quorum: it cannot commit
    await trio.drivers[1].close()
    with pytest.raises(DriverStopped):
        await waiting


@pytest.mark.asyncio
async def test_the_driver_snapshots_at_the_snapshot_count_and_followers_catch_up() -> None:
    trio = await started_trio(snapshot_count=3)
    trio.network.down.add(NodeId(3))
    for i in range(10, 16):
        await trio.run(partial(trio.drivers[1].propose, request(i), i))
    assert trio.stores[1].snapshot().metadata.index > 1
    trio.network.down.clear()
    for _ in range(3):
        for driver in trio.drivers.values():
            driver.tick()
        await trio.pump()
    assert trio.machines[3].applied == trio.machines[1].applied
    assert trio.drivers[3].status.applied == trio.drivers[1].status.applied


@pytest.mark.asyncio
async def test_the_published_status_describes_the_core() -> None:
    trio = await started_trio()
    status = trio.drivers[1].status
    assert status.lead == 1 and status.role is Role.LEADER and status.term >= 1
    assert set(status.progress) == {1, 2, 3}
    follower = replace(trio.drivers[2].status)
    assert follower.lead == 1 and follower.progress == {}
