"""The read side of the log storage the core needs, and an in-memory implementation.

The application owns writes: it appends a Ready's entries, hard state and snapshot to its storage
*before* calling ``advance``, and the core only ever reads back what is durable through this
Protocol. ``MemoryStorage`` is the test double (and what the simulator "persists" into); the
durable WAL implements the same Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from raft.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.types import (
    EMPTY_HARD_STATE,
    ConfState,
    Entry,
    HardState,
    Index,
    Snapshot,
    SnapshotMetadata,
    Term,
)


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration of the latest snapshot."""
        ...

    def entries(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); at least one if any, then up to ``max_size`` bytes in total."""
        ...

    def term(self, index: Index) -> Term:
        """Term of the entry at ``index``; valid for first_index()-1 .. last_index()."""
        ...

    def first_index(self) -> Index: ...

    def last_index(self) -> Index: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: Sequence[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix within ``max_size`` bytes, but never fewer than one entry."""
    if max_size is None or not entries:
        return list(entries)
    total = entries[0].size()
    count = 1
    for entry in entries[1:]:
        total += entry.size()
        if total > max_size:
            break
        count += 1
    return list(entries[:count])


class MemoryStorage:
    """Storage held in memory. ``_entries[0]`` is a dummy standing for the snapshot's last entry
    (its index and term), so term() answers for first_index()-1 as Raft requires."""

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot = Snapshot()
        self._entries: list[Entry] = [Entry(Term(0), Index(0))]

    # -- read side (the Storage protocol) --

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def _offset(self) -> int:
        return self._entries[0].index

    def first_index(self) -> Index:
        return Index(self._offset() + 1)

    def last_index(self) -> Index:
        return Index(self._offset() + len(self._entries) - 1)

    def term(self, index: Index) -> Term:
        offset = self._offset()
        if index < offset:
            raise CompactedError(f"index {index} is compacted (first is {offset + 1})")
        if index - offset >= len(self._entries):
            raise UnavailableError(f"index {index} is beyond the last index {self.last_index()}")
        return self._entries[index - offset].term

    def entries(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]:
        offset = self._offset()
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1} asked, last is {self.last_index()}")
        return limit_size(self._entries[lo - offset : hi - offset], max_size)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- write side (the application's) --

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot`` (a follower installing the leader's)."""
        held = self._snapshot.metadata.index
        if snapshot.metadata.index <= held:
            raise SnapshotOutOfDateError(
                f"snapshot at {snapshot.metadata.index} is not newer than the held one at {held}"
            )
        self._snapshot = snapshot
        self._entries = [Entry(snapshot.metadata.term, snapshot.metadata.index)]

    def create_snapshot(self, index: Index, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's state at applied ``index``; entries are kept until compact."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snapshot.metadata.index}"
            )
        if index > self.last_index():
            raise UnavailableError(f"snapshot at {index} is beyond the last index")
        metadata = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=metadata, data=data)
        return self._snapshot

    def compact(self, index: Index) -> None:
        """Drop entries up to ``index``; ``index`` must not pass the last index."""
        offset = self._offset()
        if index <= offset:
            raise CompactedError(f"index {index} is already compacted")
        if index > self.last_index():
            raise UnavailableError(f"compact {index} is beyond the last index {self.last_index()}")
        kept = self._entries[index - offset :]
        self._entries = [Entry(kept[0].term, kept[0].index), *kept[1:]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, overwriting any conflicting suffix (a follower taking the leader's log)."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return  # entirely compacted already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._offset()
        if offset > len(self._entries):
            raise UnavailableError(
                f"missing log entry: last {self.last_index()}, appending at {entries[0].index}"
            )
        self._entries = [*self._entries[:offset], *entries]
