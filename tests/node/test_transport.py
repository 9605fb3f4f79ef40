"""The peer transport on real loopback sockets: ordered delivery, handshake refusals, garbage."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from node.transport import MAGIC, PeerTransport, TransportEvents
from raft import Entry, Index, Message, MessageType, NodeId, Term

WAIT = 10.0  # an upper bound for loopback delivery, never a sleep


@dataclass
class Recorder:
    delivered: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    removed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    intruders: list[str] = field(default_factory=list)
    unreachable: list[NodeId] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Queue[NodeId] = field(default_factory=asyncio.Queue)

    def events(self) -> TransportEvents:
        def note(target: list[str]):  # type: ignore[no-untyped-def]
            def add(reason: str) -> None:
                target.append(reason)
                self.changed.set()

            return add

        return TransportEvents(
            deliver=self.delivered.put_nowait,
            removed=note(self.removed),
            foreign=note(self.foreign),
            unreachable=self.unreachable.append,
            intruder=note(self.intruders),
            peer_lost=self.lost.put_nowait,
        )


async def started(cluster_id: int, member_id: int) -> tuple[PeerTransport, Recorder, str]:
    recorder = Recorder()
    transport = PeerTransport(cluster_id, member_id, recorder.events())
    await transport.start(["http://127.0.0.1:0"])
    url = f"http://127.0.0.1:{transport.bound_ports()[0]}"
    return transport, recorder, url


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[PeerTransport, Recorder, PeerTransport, Recorder]]:
    a, ra, url_a = await started(7, 1)
    b, rb, url_b = await started(7, 2)
    a.update_peers({1: [url_a], 2: [url_b]}, removed=())
    b.update_peers({1: [url_a], 2: [url_b]}, removed=())
    yield a, ra, b, rb
    await a.close()
    await b.close()


def app(i: int) -> Message:
    entry = Entry(Term(1), Index(i), data=b"x" * i)
    return Message(MessageType.APP, to=NodeId(2), frm=NodeId(1), term=Term(1), entries=(entry,))


@pytest.mark.asyncio
async def test_peers_are_probed_for_their_round_trip_time() -> None:
    trips: asyncio.Queue[tuple[NodeId, float]] = asyncio.Queue()
    events = TransportEvents(
        deliver=lambda m: None,
        removed=lambda reason: None,
        foreign=lambda reason: None,
        unreachable=lambda peer: None,
        round_trip=lambda peer, seconds: trips.put_nowait((peer, seconds)),
    )
    a = PeerTransport(7, 1, events, probe_interval=0.01)
    b, _, url_b = await started(7, 2)
    try:
        a.update_peers({2: [url_b], 3: ["http://127.0.0.1:1"]}, removed=())  # 3: nobody there
        for _ in range(3):
            peer, seconds = await asyncio.wait_for(trips.get(), WAIT)
            assert peer == 2 and 0 <= seconds < WAIT
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_closing_leaves_no_task_behind() -> None:
    a, _, url_a = await started(7, 1)
    b, _, url_b = await started(7, 2)
    before = asyncio.all_tasks()
    a.update_peers({1: [url_a], 2: [url_b]}, removed=())
    await asyncio.wait_for(_until(lambda: a.active_since(2) is not None), WAIT)
    await a.close()  # its writer is cancelled while it waits for work
    await b.close()

    def left() -> list[asyncio.Task[object]]:
        ours = {asyncio.current_task()}  # the polling task itself
        return [t for t in asyncio.all_tasks() - before - ours if not t.done()]

    # Before the fix, the writer's wake-up waiter stayed pending forever (and was later
    # destroyed with a warning), so this wait timed out.
    await asyncio.wait_for(_until(lambda: not left()), WAIT)


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (the caller bounds it)."""
    while True:
        if condition():
            return
        await asyncio.sleep(0.001)


@pytest.mark.asyncio
async def test_what_was_queued_for_a_peer_is_delivered_after_its_removal(pair) -> None:  # type: ignore[no-untyped-def]
    a, _, b, rb = pair
    await asyncio.wait_for(_until(lambda: a.active_since(2) is not None), WAIT)
    a.send([app(1)])  # e.g. the append carrying the commit of its own removal
    a.update_peers({1: ["http://127.0.0.1:1"]}, removed={2})
    got = await asyncio.wait_for(rb.delivered.get(), WAIT)
    assert got.entries == app(1).entries
    a.send([app(2)])  # after the removal nothing more is sent to it
    assert a.active_since(2) is None


@pytest.mark.asyncio
async def test_a_peer_we_do_not_know_yet_is_dialled_back_at_the_urls_it_gave() -> None:
    a, ra, url_a = await started(7, 1)
    b, rb, url_b = await started(7, 2)
    try:
        a.advertise_urls = (url_a,)
        a.update_peers({1: [url_a], 2: [url_b]}, removed=())
        b.update_peers({2: [url_b]}, removed=())  # b is behind: it has not applied a's add
        a.send([app(1)])
        assert (await asyncio.wait_for(rb.delivered.get(), WAIT)).entries == app(1).entries
        reply = Message(MessageType.APP_RESP, to=NodeId(1), frm=NodeId(2), term=Term(1))
        b.send([reply])
        assert await asyncio.wait_for(ra.delivered.get(), WAIT) == reply
        b.update_peers({2: [url_b]}, removed=())  # still behind: it keeps answering a
        assert b.active_since(1) is not None
        b.update_peers({2: [url_b]}, removed={1})  # a was removed: no more answers
        assert b.active_since(1) is None
    finally:
        await a.close()
        await b.close()


@pytest.mark.asyncio
async def test_messages_arrive_in_order_and_intact(pair) -> None:  # type: ignore[no-untyped-def]
    a, _, _, rb = pair
    sent = [app(i) for i in range(1, 200)]
    a.send(sent)
    received = [await asyncio.wait_for(rb.delivered.get(), WAIT) for _ in sent]
    assert received == sent


@pytest.mark.asyncio
async def test_active_since_is_set_once_the_handshake_is_accepted(pair) -> None:  # type: ignore[no-untyped-def]
    a, _, _, rb = pair
    a.send([app(1)])
    await asyncio.wait_for(rb.delivered.get(), WAIT)
    assert a.active_since(2) is not None
    assert a.active_since(99) is None


@pytest.mark.asyncio
async def test_a_member_of_another_cluster_is_refused_on_both_sides() -> None:
    ours, r_ours, url_ours = await started(7, 1)
    theirs, r_theirs, url_theirs = await started(8, 2)
    try:
        theirs.update_peers({1: [url_ours]}, removed=())
        await asyncio.wait_for(r_ours.changed.wait(), WAIT)
        await asyncio.wait_for(r_theirs.changed.wait(), WAIT)
        # Only the dialler is told to stop; we note the intruder and keep serving.
        assert any("of cluster 8 dialled us" in f for f in r_ours.intruders)
        assert not r_ours.foreign
        assert any("cluster ID mismatch" in f for f in r_theirs.foreign)
        assert r_ours.delivered.empty()
    finally:
        await ours.close()
        await theirs.close()


@pytest.mark.asyncio
async def test_a_removed_member_is_told_and_its_messages_are_dropped() -> None:
    ours, r_ours, url_ours = await started(7, 1)
    gone, r_gone, url_gone = await started(7, 5)
    try:
        ours.update_peers({1: [url_ours]}, removed=[5])
        gone.update_peers({1: [url_ours]}, removed=())
        gone.send([Message(MessageType.HEARTBEAT, to=NodeId(1), frm=NodeId(5), term=Term(3))])
        await asyncio.wait_for(r_gone.changed.wait(), WAIT)
        assert r_gone.removed and "removed" in r_gone.removed[0]
        assert r_ours.delivered.empty()
    finally:
        await ours.close()
        await gone.close()


@pytest.mark.asyncio
async def test_garbage_on_the_peer_port_is_closed_and_the_node_keeps_serving(pair) -> None:  # type: ignore[no-untyped-def]
    a, _, b, rb = pair
    port = b.bound_ports()[0]
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64, b"\xff" * 100, b"x"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(junk)
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
    hello = struct.pack(">16sQQQ", MAGIC, 7, 1, 2)
    # A valid handshake (no URLs) followed by a corrupt frame is cut off too, and so is one
    # whose URL list claims to be huge.
    for tail in (
        struct.pack(">I", 0) + struct.pack(">I", 5) + b"\x01\x02\x03\x04\x05",
        struct.pack(">I", 2**31) + b"http://",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(hello + tail)
        await writer.drain()
        await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    assert rb.delivered.empty()
    a.send([app(3)])
    assert await asyncio.wait_for(rb.delivered.get(), WAIT) == app(3)


@pytest.mark.asyncio
async def test_an_unreachable_peer_is_reported_and_send_never_blocks() -> None:
    lonely, r_lonely, _ = await started(7, 1)
    try:
        lonely.update_peers({2: ["http://127.0.0.1:9"]}, removed=())  # discard port: refused
        for i in range(10_000):
            lonely.send([app(1 + i % 50)])  # far beyond the queue limit: dropped, not blocking
        for _ in range(200):
            if r_lonely.unreachable:
                break
            await asyncio.sleep(0.01)  # bounded polling of a real socket outcome
        assert r_lonely.unreachable and r_lonely.unreachable[0] == 2
    finally:
        await lonely.close()


@pytest.mark.asyncio
async def test_a_peer_whose_connection_closes_is_reported_lost(pair) -> None:  # type: ignore[no-untyped-def]
    a, _, _, rb = pair
    a.send([app(1)])
    await asyncio.wait_for(rb.delivered.get(), WAIT)
    await a.close()  # the sending process "dies": its connection closes
    assert await asyncio.wait_for(rb.lost.get(), WAIT) == 1
