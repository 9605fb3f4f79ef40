"""The in-memory copy of the durable log, answering the Raft core's reads.

Why in memory: the core reads terms and entries on nearly every step (append checks, conflict
search, sending to followers). Serving those from disk would put I/O inside the core's step; etcd
does the same thing (its MemoryStorage is filled by WAL replay and kept in step with every save).

It has ``raft.storage.MemoryStorage``'s exact semantics, because replay must rebuild precisely the
log the node had, including suffixes truncated by a conflicting append. It differs in cost only:
``MemoryStorage.append`` rebuilds the whole list, which makes replaying 100,000 single-entry records
quadratic; here an append truncates in place and extends, so replay is linear.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft.errors import CompactedError, UnavailableError
from raft.storage import limit_size
from raft.types import Entry, Index, Term

_ZERO_INDEX = Index(0)
_ZERO_TERM = Term(0)


class LogIndex:
    """``_entries[0]`` is a dummy standing for the snapshot's last entry (index and term), so
    term() answers for first_index()-1 as Raft requires."""

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

    def after(self, index: Index) -> list[Entry]:
        """Every entry with an index above ``index`` (which must be held or be the dummy)."""
        return self._entries[index - self._offset() + 1 :]

    def check_append(self, entries: Sequence[Entry]) -> None:
        """Raise what ``append`` would raise, changing nothing.

        Called before a batch is written, so a batch the log cannot take never reaches the WAL
        (replay would then fail on it forever). Also insists the batch is consecutive, which
        ``append`` takes for granted.
        """
        for previous, entry in zip(entries, entries[1:], strict=False):
            if entry.index != previous.index + 1:
                raise ValueError(f"entries are not consecutive: {previous.index}, {entry.index}")
        if entries and entries[-1].index >= self.first_index():
            start = max(entries[0].index, self.first_index())
            if start > self.last_index() + 1:
                raise UnavailableError(
                    f"missing log entry: last {self.last_index()}, appending at {start}"
                )

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
