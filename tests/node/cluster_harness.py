"""In-memory clusters for the Cluster and Maintenance services (layer e: no sockets, no sleeps).

A ``ClusterHarness`` builds N members the way the composition root does, with the I/O edges
replaced by their fakes:

* ``MemoryLogStore`` holding the bootstrap snapshot (data = the founding membership), the
  ``MembershipMachine``, a ``RaftDriver`` that is never started (the harness pumps it with
  ``run_until_idle``), a ``HarnessNetwork`` (``MemoryNetwork`` plus a message filter);
* a ``ClusterManager`` on a shared ``ManualClock``, with ``health_interval`` 0 by default and an
  ``active_since`` fake read from the network's link state (a link counts as active since the
  instant it last came up; a down node, a cut link or a member with no node is inactive);
* ``grpclib.testing.ChannelFor`` over ``etcd_services(...)`` with the request-context listener,
  so tests talk to each member through the generated stubs, metadata included.

Time only moves in ticks: ``tick()`` advances the clock by ``TICK`` seconds and ticks every
driver. ``run(aw)`` awaits one call, pumping every driver between event-loop turns and ticking
only while the call is still waiting, up to ``max_ticks``; ``max_ticks=0`` asserts the call
completes without any time passing ("at once").

The founding members are etcd's ``infra1..3`` on the spec's URLs with token ``etcd-cluster-1``, so
the IDs are the spec's verification vectors (§3.3). Member 1 is elected, then every member
publishes its name and client URLs through Raft, as a real node does before serving.

``rpc_error`` and ``assert_error`` check a failed call against the one error table.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from node.cluster import AutoPromoter, ClusterManager, Timing
from node.codec import encode
from node.domain_errors import EtcdError
from node.driver import RaftDriver
from node.errors import ERRORS
from node.membership import Member, Membership, build_initial_membership
from node.observability import NodeMetrics
from node.services import etcd_services, install_request_context
from node.services.cluster import ClusterService
from node.services.instrument import instrument_server
from node.services.kv import KvService
from node.services.maintenance import VERSION, MaintenanceService
from node.state import MembershipMachine
from node.testing import ManualClock, MemoryLogStore, MemoryNetwork
from proto import etcdserverpb as pb
from raft import NONE, Config, Index, Message, NodeId, Role, bootstrap_snapshot

T = TypeVar("T")

#: One tick of fake time; a power of two, so sums of ticks are exact floats.
TICK = 0.125
ELECTION_TICKS = 10
HEARTBEAT_TICKS = 1
#: Our ReqTimeout in fake seconds (32 ticks: long enough for a leader to step down without quorum).
REQUEST_TIMEOUT = 4.0
TOKEN = "etcd-cluster-1"
FOUNDERS: tuple[tuple[str, str, str], ...] = (
    ("infra1", "http://127.0.0.1:2380", "http://127.0.0.1:2379"),
    ("infra2", "http://127.0.0.1:22380", "http://127.0.0.1:22379"),
    ("infra3", "http://127.0.0.1:32380", "http://127.0.0.1:32379"),
    ("infra4", "http://127.0.0.1:42380", "http://127.0.0.1:42379"),
    ("infra5", "http://127.0.0.1:52380", "http://127.0.0.1:52379"),
)
#: The spec's vectors: infra1, infra2, infra3 and their cluster (§3.3).
INFRA1, INFRA2, INFRA3 = 0xBF9071F4639C75CC, 0x91BC3C398FB3C146, 0xFD422379FDA50E48
CLUSTER_ID = 0x59A05384C9B79EE
HASLEADER = {"hasleader": "true"}
#: A runtime member's peer URL and its ID at the clock's epoch: the spec's runtime vector (§3.3).
NEW_PEER = "http://127.0.0.1:42380"
NEW_ID = 0x3E6A519C54FD7AFC


class HarnessNetwork(MemoryNetwork):
    """``MemoryNetwork`` plus ``drop``, a predicate that loses chosen messages."""

    def __init__(self) -> None:
        super().__init__()
        self.drop: Callable[[Message], bool] | None = None

    def deliver(self, m: Message) -> None:
        if self.drop is not None and self.drop(m):
            return
        super().deliver(m)

    def linked(self, a: int, b: int) -> bool:
        """Whether messages between ``a`` and ``b`` get through (both have a node, both up)."""
        ends = {NodeId(a), NodeId(b)}
        return (
            all(n in self.receivers for n in ends)
            and not ends & self.down
            and frozenset(ends) not in self.cut
        )


@dataclass
class HarnessNode:
    """One member: its fakes, its driver and manager, and its gRPC stubs."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    store: MemoryLogStore
    machine: MembershipMachine
    driver: RaftDriver
    manager: ClusterManager
    channel: Channel
    cluster: pb.ClusterStub
    maintenance: pb.MaintenanceStub
    kv: pb.KvStub
    auth: pb.AuthStub
    _channel_for: ChannelFor
    #: What ``GET /metrics`` would render for this member (wired as the composition root does).
    metrics: NodeMetrics
    #: ``--auto-promote-learners`` (only with ``ClusterHarness(auto_promote_learners=True)``).
    promoter: AutoPromoter | None = None

    @property
    def membership(self) -> Membership:
        return self.machine.membership

    @property
    def is_leader(self) -> bool:
        return self.driver.status.role is Role.LEADER


class ClusterHarness:
    """N in-memory members of one cluster; use as ``async with ClusterHarness(3) as h``."""

    def __init__(
        self,
        size: int = 3,
        *,
        max_learners: int = 1,
        strict_reconfig_check: bool = True,
        health_interval: float = 0.0,
        request_timeout: float = REQUEST_TIMEOUT,
        auto_promote_learners: bool = False,
    ) -> None:
        if not 1 <= size <= len(FOUNDERS):
            raise ValueError(f"size must be 1..{len(FOUNDERS)}")
        self.size = size
        self.clock = ManualClock()
        self.network = HarnessNetwork()
        self.timing = Timing(
            request_timeout=request_timeout, heartbeat=TICK, health_interval=health_interval
        )
        self.strict = strict_reconfig_check
        self.auto_promote = auto_promote_learners
        self.db_size = 0
        self.nodes: dict[int, HarnessNode] = {}
        #: When each link last came up (links never cut count as up since time 0).
        self._link_up_since: dict[frozenset[int], float] = {}
        #: Calls made through the injected promote forwarder: (from, leader, member).
        self.forwarded: list[tuple[int, int, int]] = []
        self.founding = build_initial_membership(
            [(name, [peer]) for name, peer, _ in FOUNDERS[:size]], TOKEN, max_learners
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ClusterHarness:
        voters = self.founding.conf_state().voters
        boot = bootstrap_snapshot(voters, encode(self.founding))
        for name, peer, client in FOUNDERS[: self.size]:
            member = self.founding.find_by_peer_urls([peer])
            assert member is not None
            store = MemoryLogStore()
            store.apply_snapshot(boot)
            await self._add_node(member.id, name, (peer,), (client,), store, self.founding)
        first = self.node(0)
        await self.run(first.driver.call(lambda raw: raw.campaign()))
        await self.settle()
        assert first.is_leader, "member 1 did not win the first election"
        for node in list(self.nodes.values()):
            await self.publish(node)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for node in self.nodes.values():
            if node.promoter is not None:
                await node.promoter.close()
        for node in self.nodes.values():
            await node.driver.close()
        for node in self.nodes.values():
            await node._channel_for.__aexit__(None, None, None)

    async def _add_node(
        self,
        member_id: int,
        name: str,
        peer_urls: tuple[str, ...],
        client_urls: tuple[str, ...],
        store: MemoryLogStore,
        membership: Membership,
    ) -> HarnessNode:
        machine = MembershipMachine(membership)
        config = Config(
            id=NodeId(member_id),
            election_tick=ELECTION_TICKS,
            heartbeat_tick=HEARTBEAT_TICKS,
            rng=random.Random(member_id),
            applied=Index(store.snapshot().metadata.index),
        )
        driver = RaftDriver(config, store, self.network.transport(NodeId(member_id)), machine)
        manager = ClusterManager(
            driver,
            lambda: machine.membership,
            lambda peer: self.active_since(member_id, peer),
            self.timing,
            strict_reconfig_check=self.strict,
            forward_promote=lambda leader, target: self._forward(member_id, leader, target),
            clock=self.clock,
        )
        services = etcd_services(
            kv=KvService(manager),
            cluster=ClusterService(manager),
            maintenance=MaintenanceService(manager, lambda: self.db_size),
        )
        channel_for = ChannelFor(services)
        channel = await channel_for.__aenter__()
        # ChannelFor builds its Server inside __aenter__ and offers no accessor for it.
        install_request_context(channel_for._server)
        metrics = NodeMetrics(member_id, VERSION)
        metrics.watch_driver(driver)
        metrics.watch_promotions(manager.promotions)
        instrument_server(channel_for._server, services, metrics.grpc_started, metrics.grpc_handled)
        node = HarnessNode(
            id=member_id,
            name=name,
            peer_urls=peer_urls,
            client_urls=client_urls,
            store=store,
            machine=machine,
            driver=driver,
            manager=manager,
            channel=channel,
            cluster=pb.ClusterStub(channel),
            maintenance=pb.MaintenanceStub(channel),
            kv=pb.KvStub(channel),
            auth=pb.AuthStub(channel),
            _channel_for=channel_for,
            metrics=metrics,
            promoter=AutoPromoter(manager) if self.auto_promote else None,
        )
        self.nodes[member_id] = node
        self.network.attach(NodeId(member_id), driver.step)
        for other in self.nodes:
            self._link_up_since[frozenset({member_id, other})] = self.clock.now
        return node

    async def _forward(self, origin: int, leader: Member, member_id: int) -> Membership:
        """The promote forwarder: call the leader's manager, as the leader's gRPC port would."""
        self.forwarded.append((origin, leader.id, member_id))
        target = self.nodes.get(leader.id)
        if target is None or not self.network.linked(origin, leader.id):
            raise ConnectionError(f"cannot reach {leader.id:x}")
        return await target.manager.member_promote(member_id)

    async def start_member(
        self, member: pb.Member | Member, name: str, client_url: str, *, publish: bool = True
    ) -> HarnessNode:
        """Start a node for a member added at runtime: empty storage, caught up by the leader
        (a snapshot, then the log), then its publish, as ``--initial-cluster-state existing``."""
        peer_urls = tuple(member.peer_ur_ls if isinstance(member, pb.Member) else member.peer_urls)
        node = await self._add_node(
            member.id, name, peer_urls, (client_url,), MemoryLogStore(), self.leader().membership
        )
        await self.until(lambda: node.driver.status.applied >= self.leader().driver.status.commit)
        if publish:
            await self.publish(node)
        return node

    async def publish(self, node: HarnessNode) -> None:
        await self.run(node.manager.publish(node.name, node.client_urls))
        await self.settle()

    # ------------------------------------------------------------------ time and pumping

    async def settle(self, until: Callable[[], bool] | None = None, rounds: int = 40) -> None:
        """Let messages, applies and gRPC frames flow with no time passing."""
        for _ in range(rounds):
            for node in list(self.nodes.values()):
                await node.driver.run_until_idle()
            await asyncio.sleep(0)
            if until is not None and until():
                return

    async def tick(self, count: int = 1) -> None:
        """Advance fake time by ``count`` ticks, settling after each."""
        for _ in range(count):
            self.clock.advance(TICK)
            for node in self.nodes.values():
                node.driver.tick()
            await self.settle()

    async def run(self, call: Awaitable[T], *, max_ticks: int = 200) -> T:
        """Await ``call`` while pumping the cluster; tick only while it still waits."""
        task = asyncio.ensure_future(call)
        ticks = 0
        while True:
            await self.settle(until=task.done)
            if task.done():
                return task.result()
            if ticks >= max_ticks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise AssertionError(f"the call did not complete within {max_ticks} ticks")
            await self.tick()
            ticks += 1

    async def run_all(self, *calls: Awaitable[Any], max_ticks: int = 200) -> list[Any]:
        """Await several calls at once (e.g. concurrent clients); exceptions are returned."""
        gathered = asyncio.gather(*calls, return_exceptions=True)
        return list(await self.run(gathered, max_ticks=max_ticks))

    async def until(self, condition: Callable[[], bool], *, max_ticks: int = 200) -> int:
        """Tick until ``condition`` holds; returns the ticks it took."""
        for ticks in range(max_ticks + 1):
            await self.settle(until=condition)
            if condition():
                return ticks
            await self.tick()
        raise AssertionError(f"condition still false after {max_ticks} ticks")

    # ------------------------------------------------------------------ faults

    def isolate(self, *nodes: HarnessNode) -> None:
        """Cut every link of ``nodes`` (the node keeps running: a partition, not a crash)."""
        for node in nodes:
            self.network.down.add(NodeId(node.id))

    def heal(self, *nodes: HarnessNode) -> None:
        for node in nodes:
            self.network.down.discard(NodeId(node.id))
            for other in self.nodes:
                pair = frozenset({node.id, other})
                if pair not in self.network.cut:
                    self._link_up_since[pair] = self.clock.now

    def active_since(self, local: int, peer: int) -> float | None:
        """The transport's view from ``local``: since when its link to ``peer`` is up."""
        if not self.network.linked(local, peer):
            return None
        return self._link_up_since.get(frozenset({local, peer}), 0.0)

    # ------------------------------------------------------------------ views

    def node(self, index: int) -> HarnessNode:
        """The index-th founding member (0 = infra1), or a later one in start order."""
        return list(self.nodes.values())[index]

    def leader(self) -> HarnessNode:
        leaders = [n for n in self.nodes.values() if n.is_leader]
        assert len(leaders) == 1, f"expected one leader, got {[f'{n.id:x}' for n in leaders]}"
        return leaders[0]

    def followers(self) -> list[HarnessNode]:
        return [n for n in self.nodes.values() if not n.is_leader]

    def commits(self) -> dict[int, int]:
        return {i: int(n.driver.status.commit) for i, n in self.nodes.items()}


def ids(members: Iterable[pb.Member]) -> list[int]:
    return [m.id for m in members]


def by_id(members: Sequence[pb.Member], member_id: int) -> pb.Member:
    for member in members:
        if member.id == member_id:
            return member
    raise AssertionError(f"{member_id:x} is not in {[f'{m.id:x}' for m in members]}")


# ---- assertions (``pytest.raises`` on a pumped call; errors compared with the one table) -----


async def rpc_error(h: ClusterHarness, call: Awaitable[Any], *, max_ticks: int = 200) -> GRPCError:
    with pytest.raises(GRPCError) as caught:
        await h.run(call, max_ticks=max_ticks)
    return caught.value


def assert_error(error: GRPCError, expected: type[EtcdError]) -> None:
    row = ERRORS[expected]
    assert (error.status, error.message) == (row.status, row.message)


async def lose_leader(h: ClusterHarness, node: HarnessNode) -> None:
    """Partition ``node`` from everyone and tick until it no longer knows a leader."""
    h.isolate(node)
    await h.until(lambda: node.driver.status.lead == NONE)
