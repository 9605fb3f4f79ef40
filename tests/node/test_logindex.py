"""LogIndex behaves exactly like raft's MemoryStorage (replay depends on it), only faster."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.storage.logindex import LogIndex
from raft.errors import StorageError
from raft.storage import MemoryStorage
from raft.types import Entry, Index, Snapshot, SnapshotMetadata, Term
from tests.node.strategies import NO_TIMING


def _same(log: LogIndex, model: MemoryStorage) -> None:
    assert log.first_index() == model.first_index()
    assert log.last_index() == model.last_index()
    for index in range(model.first_index() - 1, model.last_index() + 1):
        assert log.term(Index(index)) == model.term(Index(index))
    hi = Index(model.last_index() + 1)
    assert log.entries(model.first_index(), hi) == model.entries(model.first_index(), hi)


def _outcome(call: Any, *args: Any) -> str | None:
    try:
        call(*args)
    except (StorageError, ValueError) as exc:
        return type(exc).__name__
    return None


operations = st.one_of(
    st.tuples(
        st.just("append"),
        st.integers(min_value=0, max_value=30),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=1, max_value=4),
    ),
    st.tuples(st.just("compact"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("reset"), st.integers(min_value=0, max_value=30), st.integers(1, 4)),
)


@NO_TIMING
@given(st.lists(operations, max_size=30))
def test_matches_memory_storage(ops: list[tuple[Any, ...]]) -> None:
    log, model = LogIndex(), MemoryStorage()
    for op in ops:
        if op[0] == "append":
            _, start, count, term = op
            batch = [Entry(Term(term), Index(i)) for i in range(start, start + count)]
            if start == 0:
                continue
            checked = _outcome(log.check_append, batch)
            got = _outcome(log.append, batch)
            assert got == _outcome(model.append, batch)
            assert checked == got
        elif op[0] == "compact":
            index = Index(op[1])
            assert _outcome(log.compact, index) == _outcome(model.compact, index)
        else:
            _, index, term = op
            snapshot = Snapshot(SnapshotMetadata(Index(index), Term(term)))
            if index <= model.snapshot().metadata.index:
                continue
            model.apply_snapshot(snapshot)
            log.reset(Index(index), Term(term))
        _same(log, model)


def test_reads_outside_the_log() -> None:
    log = LogIndex(Index(5), Term(2))
    log.append([Entry(Term(2), Index(6)), Entry(Term(3), Index(7))])
    assert log.term(Index(5)) == 2
    with pytest.raises(StorageError, match="compacted"):
        log.term(Index(4))
    with pytest.raises(StorageError, match="beyond"):
        log.term(Index(8))
    with pytest.raises(StorageError, match="compacted"):
        log.entries(Index(5), Index(7))
    with pytest.raises(StorageError, match="last is 7"):
        log.entries(Index(6), Index(9))
    assert log.entries(Index(6), Index(8), max_size=1) == [Entry(Term(2), Index(6))]
    assert log.after(Index(6)) == [Entry(Term(3), Index(7))]
    assert log.after(Index(5)) == log.entries(Index(6), Index(8))


def test_check_append_insists_on_consecutive_entries() -> None:
    with pytest.raises(ValueError, match="not consecutive"):
        LogIndex().check_append([Entry(Term(1), Index(1)), Entry(Term(1), Index(3))])
