"""The in-memory copy of the durable log, answering the Raft core's reads.

Why in memory: the core reads terms and entries on nearly every step (append checks, conflict
search, sending to followers). Serving those from disk would put I/O inside the core's step; etcd
does the same thing (its MemoryStorage is filled by WAL replay and kept in step with every save).

It is the core's own ``raft.storage.EntryLog`` (what ``MemoryStorage`` holds), because replay must
rebuild precisely the log the node had, including suffixes truncated by a conflicting append.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft.errors import UnavailableError
from raft.storage import EntryLog
from raft.types import Entry, Index


class LogIndex(EntryLog):
    """``raft.storage.EntryLog`` plus what a durable save needs: checking a batch before it is
    written, and reading the suffix after an index."""

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
