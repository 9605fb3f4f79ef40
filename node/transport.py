"""Peer transport: Raft messages between members over TCP, msgpack-framed.

Shape, and why:

* **One outbound connection per peer**, dialled by the sender. Messages to a peer travel in order on
  it, pipelined (no request/response), so a follower sees appends in the order they were sent.
  Inbound connections only receive. Each direction is independent, so a half-broken link shows up
  as one peer being unreachable, which Raft already handles.
* **The driver never waits on the network.** ``send`` appends to a bounded per-peer queue and
  returns; when the queue is full the message is dropped (Raft retransmits). A writer task per
  peer drains the queue, dials with capped exponential backoff, and reports the peer unreachable
  when a connection fails so the leader falls back to probing.
* **A handshake first**: ``MAGIC | cluster id | sender id | receiver id`` (fixed binary, checked
  before anything is decoded), then the sender's peer URLs, so a member that is behind can dial
  back a peer it does not know yet. The receiver answers one status byte plus a reason. A foreign
  cluster is refused (``cluster ID mismatch``): the refused dialler is told and stops (D5c), while
  the member that refused it only logs it and keeps serving, so a stranger cannot stop a cluster by
  connecting to it. A removed member is told so, which makes it stop (spec §6). Garbage on the
  port fails the magic check and the connection is closed.
* Frames are ``u32 length | codec bytes``, bounded by ``MAX_FRAME``: a corrupt length can never
  make the node allocate gigabytes.

``active_since(peer)`` is the monotonic time since which the outbound connection has been up
(handshake accepted), the input of etcd's strict reconfiguration checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from node.codec import CodecError, decode, encode
from raft import Message, MessageType, NodeId

log = logging.getLogger(__name__)

MAGIC: Final = b"RAFTNODE-PEER-2\n"
_HELLO = struct.Struct(">16sQQQ")
_LENGTH = struct.Struct(">I")
MAX_FRAME: Final = 64 * 1024 * 1024
#: Messages queued per peer before new ones are dropped.
QUEUE_LIMIT: Final = 4096
HANDSHAKE_TIMEOUT: Final = 5.0
MIN_BACKOFF: Final = 0.05
MAX_BACKOFF: Final = 1.0
#: How long the writer of a removed peer may take to deliver what was queued for it.
RETIRE_GRACE: Final = 1.0
#: How often a peer that stays unreachable is logged as a warning.
UNREACHABLE_WARNING_INTERVAL: Final = 10.0
#: How often each peer is probed for its round-trip time (etcd probes every 4 s).
PROBE_INTERVAL: Final = 5.0


class HelloStatus(enum.IntEnum):
    OK = 0
    CLUSTER_MISMATCH = 1
    REMOVED = 2
    WRONG_MEMBER = 3


class PeerRefused(Exception):
    """The peer refused our handshake."""

    def __init__(self, status: HelloStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def peer_address(url: str) -> tuple[str, int]:
    """Host and port of a peer URL (already validated by node.urls)."""
    parts = urlsplit(url)
    if parts.port is None or parts.hostname is None:
        raise ValueError(f"peer URL {url!r} has no host:port")
    return parts.hostname, parts.port


@dataclass(frozen=True, slots=True)
class TransportEvents:
    """How the transport reports back to the node; all called in the event loop."""

    deliver: Callable[[Message], None]
    #: A peer told us we were removed from the cluster: stop (spec §6).
    removed: Callable[[str], None]
    #: A peer refused us because it belongs to another cluster: we are the outsider, stop (D5c).
    foreign: Callable[[str], None]
    #: Sending to a peer failed; Raft should probe it instead of pipelining.
    unreachable: Callable[[NodeId], None]
    #: The applied membership, encoded, for a joining member's info request (spec §5.3).
    membership: Callable[[], bytes] = lambda: b""
    #: A member of another cluster dialled us and was refused. Only worth a note: a stranger
    #: must never be able to stop a healthy member just by connecting to its peer port.
    intruder: Callable[[str], None] = lambda reason: None
    #: An accepted peer connection ended (the peer process likely died): crash failover may
    #: stop trusting that peer's leadership at once (issue 5; a partition closes nothing).
    peer_lost: Callable[[NodeId], None] = lambda peer: None
    #: A probe's round trip to a peer, in seconds (etcd's peer_round_trip_time_seconds).
    round_trip: Callable[[NodeId, float], None] = lambda peer, seconds: None


class _PeerWriter:
    """Owns the outbound connection to one peer and drains its queue in order."""

    def __init__(self, transport: PeerTransport, peer: NodeId, urls: tuple[str, ...]) -> None:
        self.transport = transport
        self.peer = peer
        self.urls = urls
        self.queue: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.active_since: float | None = None
        self.dropped = 0
        #: Set by ``retire``: finish the queue, then end.
        self.retiring = False
        self.task = asyncio.create_task(self._run(), name=f"peer-writer-{peer:x}")
        self.prober = asyncio.create_task(self._probe_forever(), name=f"peer-prober-{peer:x}")

    def cancel(self) -> None:
        self.task.cancel()
        self.prober.cancel()

    def retire(self, grace: float) -> None:
        """Deliver what is already queued, for at most ``grace`` seconds, then stop. A member
        that was just removed is still sent the messages that tell it the removal committed,
        so it applies its own removal and answers a request that waits for it."""
        self.retiring = True
        self.prober.cancel()
        asyncio.get_running_loop().call_later(grace, self.task.cancel)
        self.wakeup.set()

    async def _probe_forever(self) -> None:
        """Time an info request to the peer now and then: the round trip of a small request
        answered by the peer's event loop, like etcd's prober. A failed probe records nothing
        (the writer reports unreachable peers)."""
        for attempt in itertools.count():
            await asyncio.sleep(self.transport.probe_interval)
            url = self.urls[attempt % len(self.urls)]
            try:
                async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                    seconds = await probe_round_trip(url)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                continue
            self.transport.events.round_trip(self.peer, seconds)

    def enqueue(self, frame: bytes) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            self.dropped += 1
            return
        self.queue.append(frame)
        self.wakeup.set()

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        down_since = last_warning = time.monotonic()
        for attempt in itertools.count():
            if self.retiring and not self.queue:
                return
            url = self.urls[attempt % len(self.urls)]
            try:
                await self._connect_and_drain(url)
                if self.retiring:
                    return
            except PeerRefused as exc:
                self.transport._refused(self.peer, exc)
                if exc.status in (HelloStatus.REMOVED, HelloStatus.CLUSTER_MISMATCH):
                    return
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                if self.active_since is not None:
                    log.info("lost connection to peer %x (%s): %s", self.peer, url, exc)
                    down_since = time.monotonic()
                elif time.monotonic() - last_warning >= UNREACHABLE_WARNING_INTERVAL:
                    last_warning = time.monotonic()
                    log.warning(
                        "peer %x (%s) unreachable for %.0f s: %s",
                        self.peer,
                        url,
                        last_warning - down_since,
                        exc or type(exc).__name__,
                    )
                self.transport.events.unreachable(self.peer)
            if self.active_since is not None:
                backoff = MIN_BACKOFF  # it was up: redial promptly
            self.active_since = None
            self.queue.clear()  # stale heartbeats and appends; Raft resends what matters
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _connect_and_drain(self, url: str) -> None:
        host, port = peer_address(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), HANDSHAKE_TIMEOUT
        )
        try:
            hello = _HELLO.pack(
                MAGIC, self.transport.cluster_id, self.transport.member_id, self.peer
            )
            own_urls = ",".join(self.transport.advertise_urls).encode()
            writer.write(hello + _LENGTH.pack(len(own_urls)) + own_urls)
            await writer.drain()
            status_byte = await asyncio.wait_for(reader.readexactly(1), HANDSHAKE_TIMEOUT)
            (reason_len,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            reason = (await reader.readexactly(min(reason_len, 4096))).decode(errors="replace")
            status = HelloStatus(status_byte[0])
            if status is not HelloStatus.OK:
                raise PeerRefused(status, reason)
            self.active_since = time.monotonic()
            log.debug("connected to peer %x at %s", self.peer, url)
            closed = asyncio.ensure_future(reader.read(1))  # the peer never writes after hello
            waiter: asyncio.Future[Any] | None = None
            try:
                while True:
                    while self.queue:
                        batch = b"".join(self._take_batch())
                        writer.write(batch)
                        await writer.drain()
                    if self.retiring:
                        return
                    self.wakeup.clear()
                    waiter = asyncio.ensure_future(self.wakeup.wait())
                    done, _ = await asyncio.wait(
                        (waiter, closed), return_when=asyncio.FIRST_COMPLETED
                    )
                    if closed in done:
                        raise ConnectionResetError("peer closed the connection")
            finally:
                # Both helpers end with the connection, also when this task is cancelled (a
                # pending task left behind is destroyed with a warning, found by the fault runner).
                closed.cancel()
                if waiter is not None:
                    waiter.cancel()
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    def _take_batch(self) -> Iterable[bytes]:
        for _ in range(min(len(self.queue), 256)):
            yield self.queue.popleft()


class PeerTransport:
    """The node's peer network. ``start`` listens; ``send`` never blocks."""

    def __init__(
        self,
        cluster_id: int,
        member_id: int,
        events: TransportEvents,
        *,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.cluster_id = cluster_id
        self.probe_interval = probe_interval
        #: Our own peer URLs, sent in every handshake so a lagging peer can dial us back.
        self.advertise_urls: Sequence[str] = ()
        self.member_id = member_id
        self.events = events
        self.removed_ids: frozenset[int] = frozenset()
        self._writers: dict[NodeId, _PeerWriter] = {}
        #: The peers of our applied membership (``update_peers``).
        self._members: dict[NodeId, tuple[str, ...]] = {}
        #: The peer URLs each member that dialled us gave in its handshake.
        self._heard: dict[NodeId, tuple[str, ...]] = {}
        self._servers: list[asyncio.Server] = []
        self._readers: set[asyncio.Task[None]] = set()
        #: Tasks of writers that were let go and have not ended yet (a removed peer's finishes
        #: its queue first: ``_PeerWriter.retire``).
        self._ending: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle --

    async def start(self, listen_urls: Sequence[str]) -> None:
        for url in listen_urls:
            host, port = peer_address(url)
            server = await asyncio.start_server(self._accept, host, port)
            self._servers.append(server)

    def bound_ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self._servers if s.sockets]

    async def close(self) -> None:
        self._closed = True
        for server in self._servers:
            server.close()
        tasks = [t for w in self._writers.values() for t in (w.task, w.prober)]
        tasks += list(self._readers) + list(self._ending)
        for task in tasks:
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._writers.clear()

    # -- membership --

    def update_peers(self, peers: Mapping[int, Sequence[str]], removed: Iterable[int]) -> None:
        """Dial ``peers`` (id -> peer URLs, our applied membership) and refuse traffic from
        ``removed`` ids. Peers that dialled us while missing from ``peers`` are dialled too
        (``_heard``): we are behind on them, and they must still hear our answers."""
        self.removed_ids = frozenset(removed)
        self._members = {NodeId(i): tuple(u) for i, u in peers.items() if i != self.member_id}
        self._reconcile()

    def _reconcile(self) -> None:
        wanted = {p: u for p, u in self._heard.items() if p not in self.removed_ids}
        wanted.update(self._members)  # our membership's URLs win once it knows the peer
        for peer, writer in list(self._writers.items()):
            if wanted.get(peer) != writer.urls:
                del self._writers[peer]
                if peer in self.removed_ids:
                    writer.retire(RETIRE_GRACE)
                else:
                    writer.cancel()  # new URLs: what was queued for the old ones is stale
                # asyncio holds tasks weakly: one that is still ending must be held until it
                # has, or it may be collected mid-way ("Task was destroyed but it is pending",
                # found by the fault runner).
                for task in (writer.task, writer.prober):
                    self._ending.add(task)
                    task.add_done_callback(self._ending.discard)
        for peer, urls in wanted.items():
            if peer not in self._writers and urls and not self._closed:
                self._writers[peer] = _PeerWriter(self, peer, urls)

    def active_since(self, peer: int) -> float | None:
        writer = self._writers.get(NodeId(peer))
        return writer.active_since if writer is not None else None

    # -- sending --

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            writer = self._writers.get(m.to)
            if writer is None:
                continue  # not (yet) a known peer: Raft will retry
            try:
                payload = encode(m)
            except CodecError:  # pragma: no cover - our own messages always encode
                log.exception("cannot encode %s", m.type)
                continue
            writer.enqueue(_LENGTH.pack(len(payload)) + payload)

    def _refused(self, peer: NodeId, exc: PeerRefused) -> None:
        if exc.status is HelloStatus.REMOVED:
            self.events.removed(f"peer {peer:x} says this member was removed: {exc}")
        elif exc.status is HelloStatus.CLUSTER_MISMATCH:
            self.events.foreign(f"peer {peer:x} refused us: {exc}")
        else:
            log.warning("peer %x refused our connection: %s", peer, exc)

    # -- receiving --

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._readers.add(task)
        try:
            await self._serve_inbound(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # `close` cancels readers. This task belongs to asyncio's stream server, whose
            # done-callback calls `task.exception()` and on Python 3.11 logs a cancelled task
            # as an "Exception in callback" traceback; end it normally instead.
            pass
        finally:
            self._readers.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raw = await asyncio.wait_for(reader.readexactly(_HELLO.size), HANDSHAKE_TIMEOUT)
        magic, cluster_id, sender, receiver = _HELLO.unpack(raw)
        if magic != MAGIC:
            log.warning("closing a peer connection that did not start with the handshake")
            return
        if (cluster_id, sender, receiver) == (0, 0, 0):
            await _reply(writer, HelloStatus.OK, self.events.membership())  # a joiner asks
            return
        (urls_length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if urls_length > MAX_HELLO_URLS:
            log.warning("closing a peer connection whose handshake is %d bytes long", urls_length)
            return
        sender_urls = (await reader.readexactly(urls_length)).decode(errors="replace")
        status, reason = self._judge(cluster_id, sender, receiver)
        await _reply(writer, status, reason.encode())
        if status is not HelloStatus.OK:
            if status is HelloStatus.CLUSTER_MISMATCH:
                self.events.intruder(f"member {sender:x} of cluster {cluster_id:x} dialled us")
            return
        self._learn_remote(NodeId(sender), sender_urls)
        try:
            await self._receive_frames(reader, NodeId(sender))
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self._closed:
                self.events.peer_lost(NodeId(sender))
            raise

    async def _receive_frames(self, reader: asyncio.StreamReader, sender: NodeId) -> None:
        while True:
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            if length > MAX_FRAME:
                log.warning("peer %x sent a %d-byte frame; closing", sender, length)
                return
            payload = await reader.readexactly(length)
            try:
                message = decode(payload, Message)
            except CodecError as exc:
                log.warning("peer %x sent an undecodable frame (%s); closing", sender, exc)
                return
            if message.frm != sender or message.to != self.member_id:
                log.warning(
                    "peer %x sent a message for %x from %x", sender, message.to, message.frm
                )
                return
            if message.type in _LOCAL_ONLY:
                continue
            if sender in self.removed_ids:
                return
            self.events.deliver(message)

    def _learn_remote(self, sender: NodeId, urls_text: str) -> None:
        """Remember the peer URLs a member gave in its handshake. If our applied membership does
        not list it, we are behind (we have not applied its add, or installed a snapshot older
        than it): dial it back there, as etcd adds a remote from its X-PeerURLs header.
        Otherwise a member that is behind could never answer a leader that joined after its
        applied state, and the cluster could lose its quorum for good (found by the fault
        runner)."""
        urls = tuple(u for u in urls_text.split(",") if u)
        try:
            for url in urls:
                peer_address(url)
        except ValueError:
            log.warning("peer %x gave unusable peer URLs %r", sender, urls_text)
            return
        if not urls or self._heard.get(sender) == urls:
            return
        self._heard[sender] = urls
        if sender not in self._members:
            log.info("peer %x, not in our applied membership yet, dials from %s", sender, urls)
            self._reconcile()

    def _judge(self, cluster_id: int, sender: int, receiver: int) -> tuple[HelloStatus, str]:
        if cluster_id != self.cluster_id:
            log.error(
                "cluster ID mismatch: member %x of cluster %x dialled this member of cluster %x",
                sender,
                cluster_id,
                self.cluster_id,
            )
            return HelloStatus.CLUSTER_MISMATCH, "cluster ID mismatch"
        if sender in self.removed_ids:
            return HelloStatus.REMOVED, "the member has been permanently removed from the cluster"
        if receiver != self.member_id:
            return HelloStatus.WRONG_MEMBER, f"this is member {self.member_id:x}, not {receiver:x}"
        return HelloStatus.OK, ""


_LOCAL_ONLY = frozenset({MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM})
#: The sender's peer URLs in a handshake.
MAX_HELLO_URLS: Final = 64 * 1024
#: Replies to an info request may carry a whole membership.
MAX_INFO: Final = 16 * 1024 * 1024


async def _reply(writer: asyncio.StreamWriter, status: HelloStatus, body: bytes) -> None:
    writer.write(bytes([status]) + _LENGTH.pack(len(body)) + body)
    await writer.drain()


async def probe_round_trip(url: str) -> float:
    """Seconds from sending an info request to the peer at ``url`` to its first reply byte
    (the connection is opened before the clock starts). The caller bounds it."""
    host, port = peer_address(url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        started = time.monotonic()
        writer.write(_HELLO.pack(MAGIC, 0, 0, 0))
        await writer.drain()
        await reader.readexactly(1)
        return time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()


async def fetch_info(url: str) -> bytes:
    """Ask the member at peer ``url`` for its applied membership (the join flow, spec §5.3).
    The caller bounds it with ``asyncio.timeout``."""
    host, port = peer_address(url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_HELLO.pack(MAGIC, 0, 0, 0))
        await writer.drain()
        status = (await reader.readexactly(1))[0]
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if status != HelloStatus.OK or length > MAX_INFO:
            raise ConnectionError(f"peer {url} refused the info request")
        return await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()
