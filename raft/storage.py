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


_ZERO_INDEX = Index(0)
_ZERO_TERM = Term(0)


class EntryLog:
    """The entries after a snapshot. ``_entries[0]`` is a dummy standing for the snapshot's last
    entry (its index and term), so term() answers for first_index()-1 as Raft requires.

    Appends truncate a conflicting suffix in place and extend, so replaying a long log one entry
    at a time is linear. Shared by ``MemoryStorage`` and the node's durable storage, whose replay
    must rebuild exactly the log these semantics give."""

    def __init__(self, index: Index = _ZERO_INDEX, term: Term = _ZERO_TERM) -> None:
        self._entries: list[Entry] = [Entry(term, index)]

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

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, overwriting any conflicting suffix; entries already compacted are ignored."""
        if not entries:
            return
        if entries[0].index == self._entries[0].index + len(self._entries):
            self._entries.extend(entries)  # the common case, and all of a replay: no overlap
            return
        first = self.first_index()
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._offset()
        if offset > len(self._entries):
            raise UnavailableError(
                f"missing log entry: last {self.last_index()}, appending at {entries[0].index}"
            )
        del self._entries[offset:]
        self._entries.extend(entries)

    def reset(self, index: Index, term: Term) -> None:
        """Drop everything: the log now starts right after a snapshot at (index, term)."""
        self._entries = [Entry(term, index)]

    def compact(self, index: Index) -> None:
        """Drop entries up to ``index``; ``index`` must be held."""
        offset = self._offset()
        if index <= offset:
            raise CompactedError(f"index {index} is already compacted")
        if index > self.last_index():
            raise UnavailableError(f"compact {index} is beyond the last index {self.last_index()}")
        kept = self._entries[index - offset :]
        kept[0] = Entry(kept[0].term, kept[0].index)
        self._entries = kept


class MemoryStorage:
    """Storage held in memory: the test double, and what the simulator "persists" into."""

    def __init__(self) -> None:
        self.hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot = Snapshot()
        self._log = EntryLog()

    # -- read side (the Storage protocol) --

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def first_index(self) -> Index:
        return self._log.first_index()

    def last_index(self) -> Index:
        return self._log.last_index()

    def term(self, index: Index) -> Term:
        return self._log.term(index)

    def entries(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]:
        return self._log.entries(lo, hi, max_size)

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
        self._log.reset(snapshot.metadata.index, snapshot.metadata.term)

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
        self._log.compact(index)

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, overwriting any conflicting suffix (a follower taking the leader's log)."""
        self._log.append(entries)
