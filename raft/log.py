"""The Raft log as the core sees it: the durable part (Storage) plus an unstable tail.

Entries appended by the core (as leader, or taken from the leader as follower) sit in the
unstable tail until the application reports them persisted (``stable_to``); an incoming snapshot
sits in ``unstable_snapshot`` likewise. Reads look at the tail first, then storage.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft.errors import CompactedError, UnavailableError
from raft.storage import Storage, limit_size
from raft.types import Entry, Index, Snapshot, Term


class RaftLog:
    def __init__(self, storage: Storage, max_committed_size: int) -> None:
        self.storage = storage
        self.max_committed_size = max_committed_size
        last = storage.last_index()
        #: Unstable entries; the first one has index ``unstable_offset``.
        self.unstable: list[Entry] = []
        self.unstable_offset = Index(last + 1)
        self.unstable_snapshot: Snapshot | None = None
        first = storage.first_index()
        self.committed = Index(first - 1)
        self.applied = Index(first - 1)

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable_offset={self.unstable_offset}, unstable={len(self.unstable)})"
        )

    # -- bounds --

    def first_index(self) -> Index:
        if self.unstable_snapshot is not None:
            return Index(self.unstable_snapshot.metadata.index + 1)
        return self.storage.first_index()

    def last_index(self) -> Index:
        if self.unstable:
            return Index(self.unstable_offset + len(self.unstable) - 1)
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.metadata.index
        return self.storage.last_index()

    def last_term(self) -> Term:
        return self.term(self.last_index())

    def term(self, index: Index) -> Term:
        """Term at ``index``; raises CompactedError/UnavailableError outside the held range."""
        if self.unstable and index >= self.unstable_offset:
            pos = index - self.unstable_offset
            if pos < len(self.unstable):
                return self.unstable[pos].term
            raise UnavailableError(f"index {index} is beyond the last index {self.last_index()}")
        if self.unstable_snapshot is not None:
            meta = self.unstable_snapshot.metadata
            if index == meta.index:
                return meta.term
            if index < meta.index:
                raise CompactedError(f"index {index} is compacted")
            raise UnavailableError(f"index {index} is beyond the last index {self.last_index()}")
        if index > self.last_index():
            raise UnavailableError(f"index {index} is beyond the last index {self.last_index()}")
        return self.storage.term(index)

    def term_or_zero(self, index: Index) -> Term:
        """Term at ``index``, or 0 where unknown (compacted or beyond the end)."""
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return Term(0)

    def match_term(self, index: Index, term: Term) -> bool:
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- reading entries --

    def slice(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]:
        """Entries [lo, hi) from storage and the unstable tail, size-limited (at least one)."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted (first is {self.first_index()})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"slice up to {hi - 1} beyond last {self.last_index()}")
        result: list[Entry] = []
        if lo < self.unstable_offset:
            result = self.storage.entries(lo, Index(min(hi, self.unstable_offset)), max_size)
            if len(result) < min(hi, self.unstable_offset) - lo:
                return result  # size limit reached inside storage
        if hi > self.unstable_offset:
            start = max(lo, self.unstable_offset) - self.unstable_offset
            result.extend(self.unstable[start : hi - self.unstable_offset])
        return limit_size(result, max_size)

    def entries_from(self, lo: Index, max_size: int | None = None) -> list[Entry]:
        return self.slice(lo, Index(self.last_index() + 1), max_size)

    def has_next_committed(self) -> bool:
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed(self) -> list[Entry]:
        lo = Index(max(self.applied + 1, self.first_index()))
        if self.committed + 1 <= lo:
            return []
        return self.slice(lo, Index(self.committed + 1), self.max_committed_size)

    # -- changing the log --

    def find_conflict(self, entries: Sequence[Entry]) -> Index:
        """Index of the first entry whose term differs from ours, or that we lack; 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return Index(0)

    def find_conflict_by_term(self, index: Index, term: Term) -> tuple[Index, Term]:
        """The largest index <= ``index`` whose term is <= ``term`` (fast backtracking, §5.3):
        every entry above it has a larger term and therefore cannot match the other log."""
        index = Index(min(index, self.last_index()))  # a peer's hint may point past our log
        while index > 0:
            try:
                our = self.term(index)
            except CompactedError:
                return index, Term(0)
            except UnavailableError:
                index = Index(index - 1)
                continue
            if our <= term:
                return index, our
            index = Index(index - 1)
        return Index(0), Term(0)

    def maybe_append(
        self, index: Index, log_term: Term, committed: Index, entries: Sequence[Entry]
    ) -> Index | None:
        """Follower side of AppendEntries: None if our entry at ``index`` has another term,
        else append (truncating a conflicting suffix) and return the new last index."""
        if not self.match_term(index, log_term):
            return None
        new_last = Index(index + len(entries))
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(
                    f"entry {conflict} conflicts with committed entry (committed {self.committed})"
                )
            self.append(entries[conflict - entries[0].index :])
        self.commit_to(Index(min(committed, new_last)))
        return new_last

    def append(self, entries: Sequence[Entry]) -> Index:
        if not entries:
            return self.last_index()
        after = entries[0].index
        if after <= self.committed:
            raise AssertionError(f"appending at {after} would overwrite committed {self.committed}")
        if after == self.unstable_offset + len(self.unstable):
            self.unstable.extend(entries)
        elif after <= self.unstable_offset:
            # Replace the whole unstable tail; storage's conflicting suffix is overwritten when
            # the application persists these entries.
            self.unstable_offset = after
            self.unstable = list(entries)
        else:
            keep = self.unstable[: after - self.unstable_offset]
            self.unstable = [*keep, *entries]
        return self.last_index()

    def commit_to(self, index: Index) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} is beyond the last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: Index, term: Term) -> bool:
        """Leader commit: only entries of the current ``term`` commit by counting (§5.4.2)."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: Index) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise AssertionError(f"applied {index} out of range [{self.applied}, {self.committed}]")
        self.applied = index

    def stable_to(self, index: Index, term: Term) -> None:
        """The application persisted entries up to ``index`` (of ``term``)."""
        if not self.unstable or index < self.unstable_offset:
            return
        if self.term_or_zero(index) != term:
            return  # overwritten by a newer append meanwhile
        drop = index - self.unstable_offset + 1
        self.unstable = self.unstable[drop:]
        self.unstable_offset = Index(index + 1)

    def stable_snapshot_to(self, index: Index) -> None:
        if self.unstable_snapshot is not None and self.unstable_snapshot.metadata.index == index:
            self.unstable_snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Reset to ``snapshot``: everything before it is gone, it is committed."""
        self.unstable_snapshot = snapshot
        self.unstable = []
        self.unstable_offset = Index(snapshot.metadata.index + 1)
        self.committed = snapshot.metadata.index

    def snapshot(self) -> Snapshot:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot
        return self.storage.snapshot()
