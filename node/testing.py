"""In-memory fakes of the node's I/O edges (P4), in the spirit of ``grpclib.testing``.

* ``MemoryLogStore``: the driver's ``LogStore`` over ``raft.MemoryStorage``, recording every call
  so tests can check the persist-before-send order.
* ``MemoryNetwork``: delivers peer messages between drivers in the same event loop, with links
  that can be cut; ``MemoryTransport`` is one node's end of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
