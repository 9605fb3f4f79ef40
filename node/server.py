"""The composition root: builds a node from a NodeConfig, runs it, stops it (P4, P10).

Start-up order (spec §5):
0. Bind the client sockets, without listening: a port in use fails the start before anything
   is written, and clients still get "connection refused" until step 4.
1. Learn who we are: the data dir's metadata on a restart; the founding membership for a new
   cluster; the peers' applied membership when joining an existing one.
2. Open (or create) the data dir. A new cluster's founding members all install the same
   bootstrap snapshot, so they agree on the first configuration with no log entries.
3. Start the peer transport, the driver task and the ticker.
4. Publish our name and client URLs through Raft, and only then open the client port.

A start that cannot proceed (removed or foreign data dir, a port in use, a failed join) raises
`StartupError`: one log line and exit code 1, never a traceback.

Stopping (first SIGTERM/SIGINT, or applying our own removal): a leader first hands leadership to
its most up-to-date voter (bounded by two election timeouts), so the cluster has a leader again
about one round trip later rather than an election timeout after our connections close; then
the client port closes while in-flight RPCs finish (bounded), and the ticker, the driver, the
transport and the storage (its last WAL record synced) stop; exit code 0. A second signal exits
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import grpclib.server
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from node.cluster import AutoPromoter, ClusterManager, Timing
from node.codec import decode, encode
from node.config import NodeConfig
from node.domain_errors import LearnerNotReady, MemberNotFound, MemberNotLearner
from node.driver import RaftDriver
from node.errors import ERRORS
from node.gateway import Gateway
from node.join import JoinError, fetch_membership, find_self
from node.listener import ClientPort, serve_client_port
from node.membership import Member, Membership, build_initial_membership
from node.observability import NodeMetrics
from node.services import etcd_services, install_request_context, patch_grpclib
from node.services.cluster import ClusterService
from node.services.instrument import instrument_server
from node.services.kv import KvService
from node.services.maintenance import VERSION, MaintenanceService
from node.state import MembershipMachine
from node.storage import DataDirError, DurableStorage, Identity, OsFileSystem, read_metadata
from node.transport import PeerTransport, TransportEvents
from proto import etcdserverpb as pb
from raft import Config, Index, NodeId, Role, bootstrap_snapshot

log = logging.getLogger("raftnode")

#: How long shutdown waits for in-flight client RPCs (spec §11, pitfall 3).
DRAIN_SECONDS = 5.0
#: When the leader's connection closes, followers campaign within this many ticks (issue 5).
CRASH_CAMPAIGN_TICKS = 3
#: A member that applied its own removal finishes its reply, then stops (spec §6).
REMOVAL_GRACE_SECONDS = 0.5
#: A stopping leader waits at most this many election timeouts for its successor (issue 5).
HANDOVER_ELECTION_TIMEOUTS = 2


class StartupError(Exception):
    """The node refuses to start; the message says why (exit code 1, no traceback)."""


@dataclass
class Node:
    config: NodeConfig
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int = 0
    storage: DurableStorage | None = None
    transport: PeerTransport | None = None
    driver: RaftDriver | None = None
    machine: MembershipMachine | None = None
    manager: ClusterManager | None = None
    promoter: AutoPromoter | None = None
    metrics: NodeMetrics | None = None
    servers: list[grpclib.server.Server] = field(default_factory=list)
    client_ports: list[int] = field(default_factory=list)
    _client_sockets: list[socket.socket] = field(default_factory=list)
    listeners: list[ClientPort] = field(default_factory=list)
    peer_ports: list[int] = field(default_factory=list)
    _ticker: asyncio.Task[None] | None = None
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)
    _removal_noticed: bool = False

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        self._client_sockets = [_bind_unlistened(url) for url in self.config.listen_client_urls]
        identity, membership = await self._identity()
        self.storage = await asyncio.to_thread(
            DurableStorage.open,
            self.config.data_dir,
            identity,
            snapshot_count=self.config.snapshot_count,
        )
        storage = self.storage
        snapshot = storage.snapshot()
        if snapshot.is_empty() and storage.last_index() == 0 and self.config.is_new_cluster:
            boot = bootstrap_snapshot(membership.conf_state().voters, encode(membership))
            await storage.save(None, [], boot)
            snapshot = boot
        if not snapshot.is_empty():
            membership = decode(snapshot.data, Membership)
        self.machine = MembershipMachine(membership)
        member_id = NodeId(identity.member_id)
        self.metrics = NodeMetrics(member_id, VERSION)
        storage.on_fsync = self.metrics.on_fsync
        self.transport = PeerTransport(
            identity.cluster_id,
            member_id,
            TransportEvents(
                deliver=self._deliver,
                removed=self._on_removed_by_peer,
                foreign=self._on_foreign,
                unreachable=self._on_unreachable,
                peer_lost=self._on_peer_lost,
                membership=lambda: encode(self._machine().membership),
                round_trip=lambda peer, seconds: self._metrics().on_round_trip(peer, seconds),
            ),
        )
        raft_config = Config(
            id=member_id,
            election_tick=self.config.election_ticks,
            heartbeat_tick=self.config.heartbeat_ticks,
            rng=random.Random(),
            applied=Index(snapshot.metadata.index),
        )
        self.driver = RaftDriver(raft_config, storage, self.transport, self.machine)
        self.metrics.watch_driver(self.driver)
        self.machine.add_listener(self._on_membership_change)
        try:
            await self.transport.start(self.config.listen_peer_urls)
        except OSError as exc:
            urls = ",".join(self.config.listen_peer_urls)
            raise StartupError(
                f"cannot listen for peers on {urls}: {exc.strerror or exc}"
            ) from None
        self.peer_ports = self.transport.bound_ports()
        self._update_peers(self.machine.membership)
        self.driver.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="raft-ticker")
        self.manager = ClusterManager(
            self.driver,
            lambda: self._machine().membership,
            self.transport.active_since,
            Timing(
                request_timeout=self.config.request_timeout_s,
                heartbeat=self.config.tick_interval_s,
                health_interval=self.config.health_interval_s,
            ),
            strict_reconfig_check=self.config.strict_reconfig_check,
            forward_promote=forward_promote,
        )
        self.metrics.watch_promotions(self.manager.promotions)
        if self.config.auto_promote_learners:
            self.promoter = AutoPromoter(self.manager)
        log.info("member %x of cluster %x starting; publishing", member_id, identity.cluster_id)
        await self.manager.publish(self.config.name, self.config.advertise_client_urls)
        await self._serve_clients()
        log.info(
            "member %x ready to serve clients on %s", member_id, self.config.listen_client_urls
        )

    async def _identity(self) -> tuple[Identity, Membership]:
        cfg = self.config
        metadata = read_metadata(OsFileSystem(), cfg.data_dir)
        if metadata is not None:
            if metadata.removed:
                raise StartupError(
                    f"member {metadata.identity.member_id:x} was removed from the cluster; "
                    f"delete the data dir {cfg.data_dir} to join again as a new member"
                )
            if metadata.identity.cluster_token != cfg.initial_cluster_token and cfg.is_new_cluster:
                raise StartupError(
                    f"the data dir {cfg.data_dir} belongs to cluster token "
                    f"{metadata.identity.cluster_token!r}, not --initial-cluster-token="
                    f"{cfg.initial_cluster_token!r}"
                )
            placeholder = Membership(cluster_id=metadata.identity.cluster_id)
            return metadata.identity, placeholder
        if cfg.is_new_cluster:
            try:
                membership = build_initial_membership(
                    cfg.initial_cluster, cfg.initial_cluster_token, cfg.max_learners
                )
            except ValueError as exc:
                raise StartupError(str(exc)) from None
            own = membership.find_by_peer_urls(cfg.initial_advertise_peer_urls)
            assert own is not None  # NodeConfig checked our entry
            return Identity(membership.cluster_id, own.id, cfg.initial_cluster_token), membership
        peers = [u for name, urls in cfg.initial_cluster for u in urls if name != cfg.name]
        peers = [u for u in peers if u not in cfg.initial_advertise_peer_urls]
        try:
            membership = await fetch_membership(peers, attempt_s=cfg.request_timeout_s)
            own = find_self(membership, cfg.initial_advertise_peer_urls, cfg.initial_cluster)
        except JoinError as exc:
            raise StartupError(str(exc)) from None
        membership = Membership(
            cluster_id=membership.cluster_id,
            members=membership.members,
            removed=membership.removed,
            max_learners=cfg.max_learners,
        )
        return Identity(membership.cluster_id, own.id, cfg.initial_cluster_token), membership

    async def _serve_clients(self) -> None:
        """gRPC and the JSON gateway share each client port (spec §9.1): the listener sniffs
        every connection and hands HTTP/2 to grpclib, HTTP/1.1 to the gateway."""
        patch_grpclib()
        manager = self._manager()
        cluster = ClusterService(manager)
        storage = self._storage()
        maintenance = MaintenanceService(manager, storage.disk_usage, storage.bytes_in_use)
        services = etcd_services(kv=KvService(manager), cluster=cluster, maintenance=maintenance)
        metrics = self._metrics()
        for sock in self._client_sockets:
            server = grpclib.server.Server(services)
            install_request_context(server)
            instrument_server(server, services, metrics.grpc_started, metrics.grpc_handled)
            gateway = Gateway(
                cluster=cluster,
                maintenance=maintenance,
                has_leader=manager.healthy,  # a leader and a ReadIndex round that completes
                request_timeout=manager.timing.request_timeout,
                metrics=metrics.render,
            )
            listener = await serve_client_port(sock, server, gateway)
            self.servers.append(server)
            self.listeners.append(listener)
            self.client_ports.append(listener.port)

    async def _tick_forever(self) -> None:
        driver = self._driver()
        interval = self.config.tick_interval_s
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            driver.tick()

    # ------------------------------------------------------------------ events

    def _deliver(self, message: object) -> None:
        self._driver().step(message)  # type: ignore[arg-type]

    def _on_peer_lost(self, peer: NodeId) -> None:
        self._driver().peer_lost(peer, campaign_within=CRASH_CAMPAIGN_TICKS)

    def _on_unreachable(self, peer: NodeId) -> None:
        self._driver().report_unreachable(peer)

    def _on_removed_by_peer(self, reason: str) -> None:
        """A peer refused us as removed. The news that our removal committed may still be on
        its way (and a request here may wait for that apply), so stop after the same grace as
        when we apply it ourselves."""
        if self._removal_noticed:
            return
        self._removal_noticed = True
        log.error("%s; the data dir must be deleted before this member can join again", reason)
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(REMOVAL_GRACE_SECONDS, self._mark_removed_and_stop))

    def _on_foreign(self, reason: str) -> None:
        log.error("cluster ID mismatch: %s", reason)
        if not self.stopping.is_set():
            self.exit_code = 1
            self.stopping.set()

    def _on_membership_change(self, old: Membership, new: Membership) -> None:
        self._update_peers(new)
        me = int(self._driver().status.id)
        if me in new.removed and me not in old.removed:
            log.warning(
                "member %x was permanently removed from the cluster; its data dir must be "
                "deleted before it can join again",
                me,
            )
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(REMOVAL_GRACE_SECONDS, self._mark_removed_and_stop))

    def _mark_removed_and_stop(self) -> None:
        if self.storage is not None:
            with contextlib.suppress(Exception):
                self.storage.mark_removed()
        self.stopping.set()

    def _update_peers(self, membership: Membership) -> None:
        """Dial the members of ``membership`` and tell peers our own URLs in each handshake.
        (A peer missing from an older ``membership``, such as the founders' snapshot a joiner
        installs first, is still dialled once it dials us: see ``PeerTransport.update_peers``.)"""
        if self.transport is None:
            return
        me = membership.get(self._driver().status.id)
        own = me.peer_urls if me is not None else self.config.initial_advertise_peer_urls
        self.transport.advertise_urls = tuple(own)
        peers = {m.id: m.peer_urls for m in membership.members}
        self.transport.update_peers(peers, membership.removed)

    # ------------------------------------------------------------------ stop

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await self._hand_over_leadership()
        # Stop accepting, let in-flight RPCs on both APIs finish (bounded), then close (pitfall 3).
        await asyncio.gather(*(listener.drain(DRAIN_SECONDS) for listener in self.listeners))
        for listener in self.listeners:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), DRAIN_SECONDS)
        if self.promoter is not None:
            await self.promoter.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.driver is not None:
            await self.driver.close()
        if self.transport is not None:
            await self.transport.close()
        if self.storage is not None:
            self.storage.close()
        for sock in self._client_sockets:
            sock.close()  # a no-op for the ones a server owned and closed

    async def _hand_over_leadership(self) -> None:
        """A stopping leader first hands leadership to its most up-to-date voter (issue 5,
        item 4), while it still serves: requests in flight are refused by raft during the
        transfer, retried by the Cluster API, and then forwarded to the new leader, so they
        complete before the drain below. Bounded by two election timeouts."""
        if self.manager is None or self._ticker is None or self._ticker.done():
            return
        if self.manager.driver.status.role is not Role.LEADER:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        bound = HANDOVER_ELECTION_TIMEOUTS * self.config.election_timeout_ms / 1000
        new_leader = await self.manager.hand_over_leadership(bound)
        if new_leader is not None:
            log.info(
                "handed leadership to %x in %.1f ms before stopping",
                new_leader,
                (loop.time() - began) * 1000,
            )

    # ------------------------------------------------------------------ accessors

    def _driver(self) -> RaftDriver:
        assert self.driver is not None
        return self.driver

    def _machine(self) -> MembershipMachine:
        assert self.machine is not None
        return self.machine

    def _manager(self) -> ClusterManager:
        assert self.manager is not None
        return self.manager

    def _metrics(self) -> NodeMetrics:
        assert self.metrics is not None, "the node has not started"
        return self.metrics

    def _storage(self) -> DurableStorage:
        assert self.storage is not None
        return self.storage


def _bind_unlistened(url: str) -> socket.socket:
    """A TCP socket bound to a client URL's host:port but not listening yet (see step 0)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for clients on {url}: {exc.strerror or exc}") from None
    return sock


async def forward_promote(leader: Member, member_id: int) -> Membership:
    """Send a MemberPromote to the leader's client URL (spec §3.10 forwarding)."""
    parts = urlsplit(leader.client_urls[0])
    channel = Channel(parts.hostname, parts.port)
    try:
        stub = pb.ClusterStub(channel)
        reply = await stub.member_promote(pb.MemberPromoteRequest(id=member_id))
    except GRPCError as exc:
        for error in (LearnerNotReady, MemberNotFound, MemberNotLearner):
            if exc.message == ERRORS[error].message:
                raise error() from None
        raise
    finally:
        channel.close()
    members = tuple(
        Member(
            id=m.id,
            name=m.name,
            peer_urls=tuple(m.peer_ur_ls),
            client_urls=tuple(m.client_ur_ls),
            is_learner=m.is_learner,
        )
        for m in reply.members
    )
    return Membership(cluster_id=reply.header.cluster_id, members=members)


async def serve(config: NodeConfig, ready: asyncio.Event | None = None) -> int:
    node = Node(config)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(1)
        log.info("signal received: draining and stopping")
        node.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    try:
        starting = asyncio.create_task(node.start())
        stop_wait = asyncio.create_task(node.stopping.wait())
        done, _ = await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()  # raises a StartupError
            if ready is not None:
                ready.set()
            await stop_wait
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    except (StartupError, DataDirError) as exc:
        log.error("%s", exc)
        node.exit_code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await node.close()
    return node.exit_code


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run(config: NodeConfig) -> int:
    configure_logging(config.log_level)
    return asyncio.run(serve(config))
