"""In-memory fakes of the node's I/O edges (P4), in the spirit of ``grpclib.testing``.

* ``MemoryLogStore``: the driver's ``LogStore`` over ``raft.MemoryStorage``, recording every call
  so tests can check the persist-before-send order.
* ``MemoryNetwork``: delivers peer messages between drivers in the same event loop, with links
  that can be cut; ``MemoryTransport`` is one node's end of it.
* ``ManualClock``: the ``node.cluster.Clock`` whose time moves only when a test calls
  ``advance``; sleeps and timeouts on it fire then, never on the wall clock (P8).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from types import TracebackType

from raft import (
    ConfState,
    Entry,
    HardState,
    Index,
    MemoryStorage,
    Message,
    NodeId,
    Snapshot,
)


class MemoryLogStore(MemoryStorage):
    def __init__(
        self, snapshot_count: int = 10_000, journal: list[tuple[str, object]] | None = None
    ) -> None:
        super().__init__()
        self.snapshot_count = snapshot_count
        #: Shared with a transport to observe the order of persist and send:
        #: ("persist", (last index, hard state)), ("send", messages), ("snapshot", index).
        self.journal = journal if journal is not None else []

    async def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        self.append(entries)
        if hard_state is not None:
            self.set_hard_state(hard_state)
        self.journal.append(("persist", (self.last_index(), self.hard_state)))

    async def create_snapshot(  # type: ignore[override]
        self, index: Index, conf_state: ConfState, data: bytes
    ) -> Snapshot:
        snapshot = super().create_snapshot(index, conf_state, data)
        self.compact(index)
        self.journal.append(("snapshot", index))
        return snapshot

    def should_snapshot(self, applied: Index) -> bool:
        return applied - self.snapshot().metadata.index >= self.snapshot_count


class MemoryNetwork:
    """Peer links between nodes of one test, all in one event loop."""

    def __init__(self) -> None:
        self.receivers: dict[NodeId, Callable[[Message], None]] = {}
        self.cut: set[frozenset[NodeId]] = set()
        self.down: set[NodeId] = set()

    def transport(
        self, node_id: NodeId, journal: list[tuple[str, object]] | None = None
    ) -> MemoryTransport:
        return MemoryTransport(self, node_id, journal)

    def attach(self, node_id: NodeId, receive: Callable[[Message], None]) -> None:
        self.receivers[node_id] = receive

    def deliver(self, m: Message) -> None:
        if m.frm in self.down or m.to in self.down or frozenset({m.frm, m.to}) in self.cut:
            return
        receive = self.receivers.get(m.to)
        if receive is not None:
            receive(m)


class MemoryTransport:
    def __init__(
        self,
        network: MemoryNetwork,
        node_id: NodeId,
        journal: list[tuple[str, object]] | None,
    ) -> None:
        self.network = network
        self.node_id = node_id
        self.journal = journal
        self.sent: list[Message] = []

    def send(self, messages: Sequence[Message]) -> None:
        if self.journal is not None and messages:
            self.journal.append(("send", tuple(messages)))
        for m in messages:
            self.sent.append(m)
            self.network.deliver(m)


class ManualClock:
    """A ``node.cluster.Clock`` for tests: time stands still until ``advance``.

    ``monotonic()`` starts at 0; ``time()`` is ``epoch + monotonic()``, so with an integral
    epoch every instant of the first second hashes the same second into runtime member IDs.
    """

    def __init__(self, epoch: float = 1_795_478_781.0) -> None:
        self.now = 0.0
        self.epoch = epoch
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    def advance(self, seconds: float) -> None:
        """Move time forward and run every timer that fell due, in deadline order."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds
        while self._timers and self._timers[0][0] <= self.now:
            _, seq, callback = heapq.heappop(self._timers)
            if seq in self._cancelled:
                self._cancelled.discard(seq)
                continue
            callback()

    def call_at(self, when: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` once time reaches ``when``; returns a handle for ``cancel``."""
        seq = next(self._seq)
        heapq.heappush(self._timers, (when, seq, callback))
        return seq

    def cancel(self, handle: int) -> None:
        if any(seq == handle for _, seq, _ in self._timers):
            self._cancelled.add(handle)

    @property
    def pending(self) -> int:
        """Timers still waiting (sleeps and timeouts)."""
        return len(self._timers) - len(self._cancelled)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_at(self.now + seconds, wake)
        try:
            await future
        finally:
            self.cancel(handle)

    def timeout(self, seconds: float) -> ManualTimeout:
        return ManualTimeout(self, seconds)


class ManualTimeout:
    """``asyncio.timeout`` on a ``ManualClock``: when time passes the deadline, the task is
    cancelled and the block raises TimeoutError (a cancel from elsewhere stays a cancel)."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._handle: int | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> ManualTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("ManualClock.timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._clock.call_at(self._clock.now + self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        assert self._task is not None
        self.expired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None and self._handle is not None
        self._clock.cancel(self._handle)
        if self.expired:
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
