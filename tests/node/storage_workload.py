"""A scripted storage workload with its MemoryStorage model, shared by the crash and corruption
tests: appends, conflicting overwrites, hard-state-only saves, segment rotation, local snapshots,
a snapshot installed from a leader, and reopens in the middle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from node.storage import DurableStorage, FileSystem, Identity
from raft.storage import MemoryStorage
from raft.types import (
    ConfState,
    Entry,
    HardState,
    Index,
    NodeId,
    Snapshot,
    SnapshotMetadata,
    Term,
)

DATA_DIR = "/data/member-1"
IDENTITY = Identity(cluster_id=0x59A05384C9B79EE, member_id=0xBF9071F4639C75CC, cluster_token="t")
SEGMENT_SIZE = 1024
CONF = ConfState(voters=frozenset({NodeId(1), NodeId(2), NodeId(3)}))


class Readable(Protocol):
    """What the comparison reads: the Storage protocol plus the hard state."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...
    def entries(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]: ...
    def term(self, index: Index) -> Term: ...
    def first_index(self) -> Index: ...
    def last_index(self) -> Index: ...
    def snapshot(self) -> Snapshot: ...


def summary(storage: Readable) -> tuple[object, ...]:
    """Everything a reader can observe, as one comparable value."""
    first, last = storage.first_index(), storage.last_index()
    return (
        storage.initial_state(),
        storage.snapshot(),
        first,
        last,
        [storage.term(Index(i)) for i in range(first - 1, last + 1)],
        storage.entries(first, Index(last + 1)),
    )


def ents(start: int, stop: int, term: int) -> list[Entry]:
    """Entries start..stop-1, with enough data that a few batches fill a segment."""
    return [
        Entry(Term(term), Index(i), data=f"entry {i} of term {term}".encode() * 2)
        for i in range(start, stop)
    ]


def hs(term: int, vote: int, commit: int) -> HardState:
    return HardState(Term(term), NodeId(vote), Index(commit))


class Harness:
    """Holds the storage under test; ``reopen`` closes and recovers it, like a restart."""

    def __init__(self, fs: FileSystem, segment_size: int = SEGMENT_SIZE) -> None:
        self.fs = fs
        self.segment_size = segment_size
        self.storage: DurableStorage | None = None
        self.acked = 0

    def open(self) -> DurableStorage:
        self.storage = DurableStorage.open(
            DATA_DIR, IDENTITY, fs=self.fs, segment_size=self.segment_size
        )
        return self.storage

    def reopen(self) -> None:
        assert self.storage is not None
        self.storage.close()
        self.open()

    @property
    def s(self) -> DurableStorage:
        assert self.storage is not None
        return self.storage


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Harness], object]
    model: Callable[[MemoryStorage], object]


def _save(hard: HardState | None, entries: list[Entry]) -> Step:
    def model(m: MemoryStorage) -> None:
        m.append(entries)
        if hard is not None:
            m.set_hard_state(hard)

    name = f"save {entries[0].index}..{entries[-1].index}" if entries else f"save {hard}"
    return Step(name, lambda h: h.s.save_sync(hard, entries), model)


def _create_snapshot(index: int) -> Step:
    data = f"membership at {index}".encode()

    def model(m: MemoryStorage) -> None:
        m.create_snapshot(Index(index), CONF, data)
        m.compact(Index(index))

    return Step(
        f"snapshot at {index}",
        lambda h: h.s.create_snapshot_sync(Index(index), CONF, data),
        model,
    )


def _install(index: int, term: int, entries: list[Entry], hard: HardState | None) -> Step:
    snapshot = Snapshot(SnapshotMetadata(Index(index), Term(term), CONF), b"leader's state")

    def model(m: MemoryStorage) -> None:
        m.apply_snapshot(snapshot)
        m.append(entries)
        if hard is not None:
            m.set_hard_state(hard)

    return Step(
        f"install snapshot at {index}", lambda h: h.s.save_sync(hard, entries, snapshot), model
    )


def _reopen() -> Step:
    return Step("reopen", lambda h: h.reopen(), lambda m: None)


STEPS: list[Step] = [
    Step("bootstrap", lambda h: h.open(), lambda m: None),
    _save(hs(1, 1, 0), ents(1, 4, 1)),
    _save(hs(1, 1, 2), ents(4, 8, 1)),
    _save(hs(2, 2, 3), ents(5, 7, 2)),  # conflicting: 5..7 of term 1 are overwritten, 7 is gone
    _save(hs(2, 2, 5), []),  # hard state only
    _save(None, ents(7, 20, 2)),  # bigger than a segment's remaining room: rotation
    _save(hs(2, 2, 15), ents(20, 22, 2)),
    _create_snapshot(10),
    _reopen(),
    _save(hs(3, 3, 18), ents(18, 25, 3)),  # overwrites past the snapshot
    _install(40, 4, ents(41, 43, 4), hs(4, 0, 41)),
    _save(None, ents(43, 50, 4)),
    _save(hs(4, 0, 48), []),
    _create_snapshot(45),
    _save(hs(5, 5, 48), ents(49, 52, 5)),
    _install(52, 5, [], None),  # a leader's snapshot with no entries and no hard state change
    _reopen(),
    _save(hs(5, 5, 52), ents(53, 54, 5)),
]


#: Appends that leave several segments behind the last checkpoint.
MORE_STEPS: list[Step] = [
    *STEPS,
    *(_save(hs(5, 5, 52 + 6 * k), ents(54 + 6 * k, 60 + 6 * k, 5)) for k in range(8)),
]


def model_summaries(steps: list[Step] = STEPS) -> list[tuple[object, ...]]:
    """summary() of the model after each prefix of ``steps``: [0] before any, [-1] after all."""
    model = MemoryStorage()
    found = [summary(model)]
    for step in steps:
        step.model(model)
        found.append(summary(model))
    return found


def run(harness: Harness, steps: list[Step] = STEPS) -> None:
    """Run ``steps``; ``harness.acked`` counts those that returned (were acknowledged)."""
    for step in steps:
        step.run(harness)
        harness.acked += 1
