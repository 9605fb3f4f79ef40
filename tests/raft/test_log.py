"""Layer (a): the Raft log (raft/log.py) and MemoryStorage (raft/storage.py) as tables.

The log is the durable part (a MemoryStorage, possibly compacted behind a snapshot) plus the
unstable tail the core appended but the application has not yet persisted; most tables below
build a log that straddles the two so that every read crosses the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from raft.config import NO_LIMIT
from raft.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.log import RaftLog
from raft.storage import MemoryStorage
from raft.types import (
    EMPTY_HARD_STATE,
    ConfState,
    Entry,
    HardState,
    Index,
    NodeId,
    Snapshot,
    SnapshotMetadata,
    Term,
)

CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))
#: Entry.size() of an entry built by ``ents`` (16 bytes of overhead plus 4 of data).
ENTRY_SIZE = 20


def ents(first: int, *terms: int) -> list[Entry]:
    """Entries at consecutive indexes from ``first``, with the given terms."""
    return [Entry(Term(t), Index(first + i), data=b"data") for i, t in enumerate(terms)]


def snapshot(index: int, term: int, data: bytes = b"") -> Snapshot:
    return Snapshot(SnapshotMetadata(Index(index), Term(term), CONF), data)


def storage_with(
    terms: Sequence[int] = (), *, snap_index: int = 0, snap_term: int = 0
) -> MemoryStorage:
    """A storage holding a snapshot at ``snap_index`` and entries after it with ``terms``."""
    storage = MemoryStorage()
    if snap_index:
        storage.apply_snapshot(snapshot(snap_index, snap_term))
    storage.append(ents(snap_index + 1, *terms))
    return storage


def held(log: RaftLog | MemoryStorage) -> list[tuple[int, int]]:
    """(index, term) of every entry held, first to last."""
    return [(i, log.term(Index(i))) for i in range(log.first_index(), log.last_index() + 1)]


def straddling_log() -> RaftLog:
    """Snapshot at 3 (term 2); storage holds 4 (t2) and 5 (t3); unstable holds 6, 7 (t4)."""
    log = RaftLog(storage_with((2, 3), snap_index=3, snap_term=2), NO_LIMIT)
    log.append(ents(6, 4, 4))
    return log


# ----------------------------------------------------------------------------- RaftLog bounds


def test_new_log_starts_at_the_storage_snapshot():
    log = RaftLog(storage_with((2, 3), snap_index=3, snap_term=2), NO_LIMIT)
    assert (log.first_index(), log.last_index()) == (4, 5)
    assert (log.committed, log.applied) == (3, 3)
    assert log.unstable_offset == 6
    assert log.unstable == []
    assert log.last_term() == 3


def test_append_extends_the_unstable_tail():
    log = straddling_log()
    assert log.unstable_offset == 6
    assert [e.index for e in log.unstable] == [6, 7]
    assert (log.first_index(), log.last_index(), log.last_term()) == (4, 7, 4)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (2, CompactedError),
        (3, 2),  # the snapshot's own index answers with the snapshot's term
        (4, 2),
        (5, 3),  # last in storage
        (6, 4),  # first unstable
        (7, 4),
        (8, UnavailableError),
    ],
)
def test_term_across_storage_and_unstable(index, expected):
    log = straddling_log()
    if isinstance(expected, int):
        assert log.term(Index(index)) == expected
        assert log.term_or_zero(Index(index)) == expected
    else:
        with pytest.raises(expected):
            log.term(Index(index))
        assert log.term_or_zero(Index(index)) == 0
        assert not log.match_term(Index(index), Term(0))


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "expected"),
    [
        (4, 8, None, [4, 5, 6, 7]),  # all of it, across the boundary
        (5, 7, None, [5, 6]),  # straddling
        (4, 6, None, [4, 5]),  # storage only
        (6, 8, None, [6, 7]),  # unstable only
        (5, 5, None, []),  # empty range
        (7, 6, None, []),  # inverted range
        (3, 5, None, CompactedError),
        (2, 8, None, CompactedError),
        (4, 9, None, UnavailableError),
        (8, 9, None, UnavailableError),
        # size limits: whole entries only, but never fewer than one
        (4, 8, 0, [4]),
        (4, 8, ENTRY_SIZE, [4]),  # limit reached inside storage
        (4, 8, 2 * ENTRY_SIZE, [4, 5]),  # exactly the storage part
        (4, 8, 3 * ENTRY_SIZE, [4, 5, 6]),  # limit reached inside unstable
        (4, 8, 3 * ENTRY_SIZE + 1, [4, 5, 6]),
        (6, 8, ENTRY_SIZE, [6]),
        (4, 8, 100 * ENTRY_SIZE, [4, 5, 6, 7]),
    ],
)
def test_slice(lo, hi, max_size, expected):
    log = straddling_log()
    if isinstance(expected, list):
        got = log.slice(Index(lo), Index(hi), max_size)
        assert [e.index for e in got] == expected
    else:
        with pytest.raises(expected):
            log.slice(Index(lo), Index(hi), max_size)


def test_entries_from_reads_to_the_end():
    log = straddling_log()
    assert [e.index for e in log.entries_from(Index(5))] == [5, 6, 7]
    assert log.entries_from(Index(8)) == []


# ----------------------------------------------------------------------------- RaftLog writes


def three_entry_log() -> RaftLog:
    """Entries 1 (t1), 2 (t2), 3 (t3), committed up to 1; like etcd's TestLogMaybeAppend."""
    log = RaftLog(storage_with((1, 2, 3)), NO_LIMIT)
    log.commit_to(Index(1))
    return log


@pytest.mark.parametrize(
    ("index", "log_term", "commit", "entries", "result", "committed", "terms"),
    [
        # the entry before the new ones does not match: refuse, change nothing
        (3, 2, 3, ents(4, 4), None, 1, [1, 2, 3]),
        (4, 3, 3, ents(5, 4), None, 1, [1, 2, 3]),  # we do not even have it
        # matching, nothing new: commit = min(leader commit, last new index)
        (3, 3, 3, [], 3, 3, [1, 2, 3]),
        (3, 3, 4, [], 3, 3, [1, 2, 3]),
        (3, 3, 2, [], 3, 2, [1, 2, 3]),
        (3, 3, 0, [], 3, 1, [1, 2, 3]),  # commit never goes back
        (2, 2, 3, [], 2, 2, [1, 2, 3]),  # "last new" is 2 here, not our last index 3
        # matching, new entries appended
        (3, 3, 3, ents(4, 4), 4, 3, [1, 2, 3, 4]),
        (3, 3, 4, ents(4, 4), 4, 4, [1, 2, 3, 4]),
        (3, 3, 5, ents(4, 4), 4, 4, [1, 2, 3, 4]),
        (3, 3, 5, ents(4, 4, 4), 5, 5, [1, 2, 3, 4, 4]),
        # a conflicting suffix is replaced
        (2, 2, 3, ents(3, 4), 3, 3, [1, 2, 4]),
        (1, 1, 3, ents(2, 4), 2, 2, [1, 4]),
        (1, 1, 3, ents(2, 4, 4, 4), 4, 3, [1, 4, 4, 4]),
        # entries we already hold: no conflict, so nothing after them is dropped
        (1, 1, 3, ents(2, 2), 2, 2, [1, 2, 3]),
        (0, 0, 3, ents(1, 1, 2), 2, 2, [1, 2, 3]),
        (0, 0, 0, ents(1, 1, 2, 3), 3, 1, [1, 2, 3]),
    ],
)
def test_maybe_append(index, log_term, commit, entries, result, committed, terms):
    log = three_entry_log()
    got = log.maybe_append(Index(index), Term(log_term), Index(commit), entries)
    assert got == result
    assert log.committed == committed
    assert [t for _, t in held(log)] == terms


def test_maybe_append_refuses_to_overwrite_a_committed_entry():
    log = three_entry_log()
    log.commit_to(Index(2))
    with pytest.raises(AssertionError, match="conflicts with committed"):
        log.maybe_append(Index(1), Term(1), Index(3), ents(2, 9))
    assert [t for _, t in held(log)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], 0),
        (ents(1, 1, 2, 3), 0),
        (ents(2, 2, 3), 0),
        (ents(3, 3), 0),
        (ents(1, 1, 2, 3, 4, 4), 4),  # new entries past the end
        (ents(2, 2, 3, 4, 4), 4),
        (ents(3, 3, 4, 4), 4),
        (ents(4, 4, 4), 4),
        (ents(1, 4, 4), 1),  # a conflict at the very start
        (ents(2, 1, 4, 4), 2),
        (ents(3, 1, 2, 4, 4), 3),
    ],
)
def test_find_conflict(entries, expected):
    assert three_entry_log().find_conflict(entries) == expected


@pytest.mark.parametrize(
    ("compacted", "index", "term", "expected"),
    [
        # log: 1 (t1), 2 (t1), 3 (t3), 4 (t3), 5 (t5)
        (False, 5, 5, (5, 5)),
        (False, 5, 6, (5, 5)),
        (False, 5, 4, (4, 3)),  # skip the whole of term 5
        (False, 5, 3, (4, 3)),
        (False, 5, 2, (2, 1)),  # skip terms 5 and 3 in one step
        (False, 5, 1, (2, 1)),
        (False, 5, 0, (0, 0)),
        (False, 3, 2, (2, 1)),
        (False, 10, 3, (4, 3)),  # beyond our last index: start from what we hold
        (False, 0, 5, (0, 0)),
        # same log, compacted up to 2 (the snapshot keeps 2's term)
        (True, 5, 2, (2, 1)),
        (True, 5, 0, (1, 0)),  # ran into the compacted part: give up there, term unknown
    ],
)
def test_find_conflict_by_term(compacted, index, term, expected):
    if compacted:
        storage = storage_with((3, 3, 5), snap_index=2, snap_term=1)
    else:
        storage = storage_with((1, 1, 3, 3, 5))
    log = RaftLog(storage, NO_LIMIT)
    assert log.find_conflict_by_term(Index(index), Term(term)) == expected


@pytest.mark.parametrize(
    ("commit", "expected"),
    [
        (3, 3),
        (2, 3),  # never decreases
        (1, 3),
        (4, 4),
        (5, 5),
        (6, AssertionError),  # beyond the last index
    ],
)
def test_commit_to(commit, expected):
    log = RaftLog(storage_with((1, 2, 3, 4, 5)), NO_LIMIT)
    log.commit_to(Index(3))
    if isinstance(expected, int):
        log.commit_to(Index(commit))
        assert log.committed == expected
    else:
        with pytest.raises(expected):
            log.commit_to(Index(commit))
        assert log.committed == 3


@pytest.mark.parametrize(
    ("index", "term", "committed", "expected"),
    [
        (4, 2, True, 4),
        (5, 3, True, 5),
        (4, 3, False, 2),  # index 4 is not of this term
        (5, 2, False, 2),
        (2, 1, False, 2),  # not past committed
        (1, 1, False, 2),
        (6, 3, False, 2),  # beyond the log
    ],
)
def test_maybe_commit_needs_the_term_of_the_entry(index, term, committed, expected):
    log = RaftLog(storage_with((1, 1, 2, 2, 3)), NO_LIMIT)
    log.commit_to(Index(2))
    assert log.maybe_commit(Index(index), Term(term)) is committed
    assert log.committed == expected


@pytest.mark.parametrize(
    ("index", "term", "offset", "unstable"),
    [
        (1, 1, 2, [2, 3]),
        (2, 1, 3, [3]),
        (3, 2, 4, []),
        (2, 2, 1, [1, 2, 3]),  # stale term: entry 2 is of term 1
        (3, 1, 1, [1, 2, 3]),
        (4, 2, 1, [1, 2, 3]),  # beyond the log
        (0, 0, 1, [1, 2, 3]),  # below the unstable offset
    ],
)
def test_stable_to(index, term, offset, unstable):
    storage = MemoryStorage()
    log = RaftLog(storage, NO_LIMIT)
    log.append(ents(1, 1, 1, 2))
    storage.append(log.unstable)  # the application persisted the Ready's entries
    log.stable_to(Index(index), Term(term))
    assert log.unstable_offset == offset
    assert [e.index for e in log.unstable] == unstable
    assert held(log) == [(1, 1), (2, 1), (3, 2)]


def test_stable_to_ignores_a_ready_whose_entries_were_overwritten_meanwhile():
    """A Ready handed out 1..3 (t1); before advance, a new leader replaced 2.. with term 3.
    Advancing the old Ready must not mark the replacement as persisted."""
    log = RaftLog(MemoryStorage(), NO_LIMIT)
    log.append(ents(1, 1, 1, 1))
    log.append(ents(2, 3))
    assert [(e.index, e.term) for e in log.unstable] == [(1, 1), (2, 3)]
    log.stable_to(Index(3), Term(1))  # the old Ready's last entry is gone
    log.stable_to(Index(2), Term(1))  # and index 2 is of another term now
    assert [(e.index, e.term) for e in log.unstable] == [(1, 1), (2, 3)]
    log.stable_to(Index(1), Term(1))  # entry 1 really is the persisted one
    assert [(e.index, e.term) for e in log.unstable] == [(2, 3)]


def test_append_over_persisted_entries_shadows_storage():
    log = straddling_log()
    log.append(ents(5, 9))
    assert log.unstable_offset == 5
    assert held(log) == [(4, 2), (5, 9)]
    with pytest.raises(UnavailableError):
        log.term(Index(6))


def test_append_inside_the_unstable_tail_truncates_it():
    log = straddling_log()
    log.append(ents(7, 9, 9))
    assert held(log) == [(4, 2), (5, 3), (6, 4), (7, 9), (8, 9)]
    assert log.unstable_offset == 6


def test_append_refuses_to_overwrite_committed_entries():
    log = straddling_log()
    log.commit_to(Index(6))
    with pytest.raises(AssertionError):
        log.append(ents(6, 9))
    assert log.append([]) == 7


def pending_snapshot(log: RaftLog) -> Snapshot | None:
    return log.unstable_snapshot  # through a call, so mypy does not narrow it across steps


def test_restore_from_snapshot():
    storage = storage_with((1, 1, 2, 2, 2))
    log = RaftLog(storage, NO_LIMIT)
    log.commit_to(Index(3))
    log.append(ents(6, 3))
    snap = snapshot(10, 4, b"state")
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert log.term(Index(10)) == 4
    assert log.last_term() == 4
    with pytest.raises(CompactedError):
        log.term(Index(9))
    with pytest.raises(UnavailableError):
        log.term(Index(11))
    assert log.unstable == [] and log.unstable_offset == 11
    assert log.snapshot() is snap
    assert log.next_committed() == []  # the snapshot is installed, not replayed
    assert log.match_term(Index(10), Term(4))
    assert log.is_up_to_date(Index(10), Term(4))
    assert not log.is_up_to_date(Index(20), Term(3))
    # new entries follow the snapshot
    log.append(ents(11, 4))
    assert log.last_index() == 11
    # the application persists the snapshot, then reports it stable
    storage.apply_snapshot(snap)
    log.stable_snapshot_to(Index(9))  # not this snapshot: ignored
    assert pending_snapshot(log) is snap
    log.stable_snapshot_to(Index(10))
    assert pending_snapshot(log) is None
    assert log.first_index() == 11
    assert log.term(Index(10)) == 4


def test_next_committed_respects_the_size_budget():
    log = RaftLog(storage_with((1, 1, 1, 1, 1)), max_committed_size=2 * ENTRY_SIZE + 5)
    log.commit_to(Index(5))
    batches = []
    while log.has_next_committed():
        batch = log.next_committed()
        batches.append([e.index for e in batch])
        log.applied_to(batch[-1].index)
    assert batches == [[1, 2], [3, 4], [5]]
    assert log.next_committed() == []
    assert log.applied == 5


def test_next_committed_hands_out_at_least_one_entry():
    log = RaftLog(storage_with((1, 1)), max_committed_size=1)
    log.commit_to(Index(2))
    assert [e.index for e in log.next_committed()] == [1]


def test_next_committed_stops_at_commit():
    log = RaftLog(storage_with((1, 1, 1)), NO_LIMIT)
    assert not log.has_next_committed()
    log.commit_to(Index(2))
    assert [e.index for e in log.next_committed()] == [1, 2]


@pytest.mark.parametrize(
    "applied",
    [
        4,  # beyond commit (3)
        1,  # backwards from 2
    ],
)
def test_applied_to_out_of_range(applied):
    log = RaftLog(storage_with((1, 1, 1, 1)), NO_LIMIT)
    log.commit_to(Index(3))
    log.applied_to(Index(2))
    with pytest.raises(AssertionError):
        log.applied_to(Index(applied))
    assert log.applied == 2
    log.applied_to(Index(0))  # "nothing applied" is a no-op, not a regression
    assert log.applied == 2


@pytest.mark.parametrize(
    ("last_index", "last_term", "expected"),
    [
        # our log: last index 3, last term 2
        (3, 2, True),
        (4, 2, True),
        (2, 2, False),
        (1, 3, True),  # a later last term wins however short
        (10, 1, False),  # an earlier last term loses however long
        (3, 1, False),
    ],
)
def test_is_up_to_date(last_index, last_term, expected):
    log = RaftLog(storage_with((1, 1, 2)), NO_LIMIT)
    assert log.is_up_to_date(Index(last_index), Term(last_term)) is expected


# ----------------------------------------------------------------------------- MemoryStorage


def test_fresh_memory_storage():
    storage = MemoryStorage()
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.term(Index(0)) == 0
    assert storage.entries(Index(1), Index(1)) == []
    assert storage.initial_state() == (EMPTY_HARD_STATE, ConfState())
    assert storage.snapshot().is_empty()
    with pytest.raises(UnavailableError):
        storage.term(Index(1))


def test_hard_state_round_trip():
    storage = storage_with(snap_index=3, snap_term=3)
    hard = HardState(term=Term(5), vote=NodeId(2), commit=Index(3))
    storage.set_hard_state(hard)
    assert storage.initial_state() == (hard, CONF)


def compacted_storage() -> MemoryStorage:
    """Snapshot at 3 (t3), then 4 (t4), 5 (t5), 6 (t6): etcd's storage test fixture."""
    return storage_with((4, 5, 6), snap_index=3, snap_term=3)


@pytest.mark.parametrize(
    ("index", "expected"),
    [(2, CompactedError), (3, 3), (4, 4), (6, 6), (7, UnavailableError)],
)
def test_storage_term(index, expected):
    storage = compacted_storage()
    if isinstance(expected, int):
        assert storage.term(Index(index)) == expected
    else:
        with pytest.raises(expected):
            storage.term(Index(index))


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "expected"),
    [
        (2, 6, None, CompactedError),
        (3, 4, None, CompactedError),  # the snapshot's index is not an entry
        (4, 5, None, [4]),
        (4, 7, None, [4, 5, 6]),
        (5, 5, None, []),
        (4, 8, None, UnavailableError),
        (4, 7, 0, [4]),
        (4, 7, ENTRY_SIZE, [4]),
        (4, 7, 2 * ENTRY_SIZE, [4, 5]),
        (4, 7, 3 * ENTRY_SIZE - 1, [4, 5]),
        (4, 7, 3 * ENTRY_SIZE, [4, 5, 6]),
    ],
)
def test_storage_entries(lo, hi, max_size, expected):
    storage = compacted_storage()
    if isinstance(expected, list):
        got = storage.entries(Index(lo), Index(hi), max_size)
        assert [e.index for e in got] == expected
    else:
        with pytest.raises(expected):
            storage.entries(Index(lo), Index(hi), max_size)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (2, CompactedError),
        (3, CompactedError),  # already the snapshot
        (4, [(5, 5), (6, 6)]),
        (5, [(6, 6)]),
        (6, []),
        (7, UnavailableError),
    ],
)
def test_storage_compact(index, expected):
    storage = compacted_storage()
    if isinstance(expected, list):
        storage.compact(Index(index))
        assert storage.first_index() == index + 1
        assert storage.last_index() == 6
        assert storage.term(Index(index)) == index  # the compaction point keeps its term
        assert held(storage) == expected
        with pytest.raises(CompactedError):
            storage.term(Index(index - 1))
    else:
        with pytest.raises(expected):
            storage.compact(Index(index))
        assert held(storage) == [(4, 4), (5, 5), (6, 6)]


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (5, 5),
        (6, 6),
        (3, SnapshotOutOfDateError),  # not newer than the held snapshot
        (2, SnapshotOutOfDateError),
        (7, UnavailableError),
    ],
)
def test_storage_create_snapshot(index, expected):
    storage = compacted_storage()
    new_conf = ConfState(voters=frozenset({NodeId(1)}), learners=frozenset({NodeId(2)}))
    if isinstance(expected, int):
        snap = storage.create_snapshot(Index(index), new_conf, b"app state")
        assert snap.metadata == SnapshotMetadata(Index(index), Term(expected), new_conf)
        assert snap.data == b"app state"
        assert storage.snapshot() == snap
        assert storage.initial_state()[1] == new_conf
        # entries are kept until the application compacts
        assert held(storage) == [(4, 4), (5, 5), (6, 6)]
    else:
        with pytest.raises(expected):
            storage.create_snapshot(Index(index), new_conf, b"app state")
        assert storage.snapshot().metadata.index == 3


def test_storage_apply_snapshot():
    storage = compacted_storage()
    with pytest.raises(SnapshotOutOfDateError):
        storage.apply_snapshot(snapshot(2, 2))
    assert held(storage) == [(4, 4), (5, 5), (6, 6)]
    storage.apply_snapshot(snapshot(10, 7, b"leader state"))
    assert (storage.first_index(), storage.last_index()) == (11, 10)
    assert storage.term(Index(10)) == 7
    assert storage.snapshot().data == b"leader state"
    with pytest.raises(CompactedError):
        storage.term(Index(6))
    storage.append(ents(11, 7))
    assert held(storage) == [(11, 7)]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], [(4, 4), (5, 5), (6, 6)]),
        # the appended batch is the new tail: what followed it is dropped (the core only ever
        # appends its unstable tail, which supersedes anything after it)
        (ents(4, 4, 5), [(4, 4), (5, 5)]),
        (ents(4, 4, 5, 6), [(4, 4), (5, 5), (6, 6)]),
        (ents(5, 6, 6), [(4, 4), (5, 6), (6, 6)]),  # overwrite from 5
        (ents(4, 4, 5, 6, 6), [(4, 4), (5, 5), (6, 6), (7, 6)]),  # extend
        (ents(7, 6), [(4, 4), (5, 5), (6, 6), (7, 6)]),  # extend right after the end
        (ents(2, 3, 3, 5), [(4, 5)]),  # the compacted part of the batch is skipped
        (ents(1, 1, 1), [(4, 4), (5, 5), (6, 6)]),  # entirely compacted: ignored
        (ents(8, 6), UnavailableError),  # a gap
    ],
)
def test_storage_append(entries, expected):
    storage = compacted_storage()
    if isinstance(expected, list):
        storage.append(entries)
        assert held(storage) == expected
        assert storage.first_index() == 4
    else:
        with pytest.raises(expected):
            storage.append(entries)
        assert held(storage) == [(4, 4), (5, 5), (6, 6)]
