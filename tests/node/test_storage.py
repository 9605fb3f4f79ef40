"""DurableStorage: the Storage protocol's semantics, the write API and its refusals."""

from __future__ import annotations

import asyncio
import posixpath
import threading

import pytest

from node.storage import (
    CrashingFileSystem,
    DurableStorage,
    FileHandle,
    StorageFailedError,
)
from raft.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raft.storage import MemoryStorage, Storage
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
from tests.node.storage_workload import CONF, DATA_DIR, IDENTITY, ents, hs, summary

SNAP_DIR = posixpath.join(DATA_DIR, "snap")
WAL_DIR = posixpath.join(DATA_DIR, "wal")


def _open(fs: CrashingFileSystem, **options: int) -> DurableStorage:
    options.setdefault("segment_size", 1024)
    return DurableStorage.open(DATA_DIR, IDENTITY, fs=fs, **options)


def _reopened(fs: CrashingFileSystem, storage: DurableStorage) -> DurableStorage:
    storage.close()
    return _open(fs)


@pytest.fixture
def fs() -> CrashingFileSystem:
    return CrashingFileSystem()


def test_reads_follow_memory_storage(fs: CrashingFileSystem) -> None:
    storage, model = _open(fs), MemoryStorage()
    assert summary(storage) == summary(model)
    assert storage.initial_state() == (EMPTY_HARD_STATE, ConfState())
    storage.save_sync(hs(1, 1, 3), ents(1, 6, 1))
    model.append(ents(1, 6, 1))
    model.set_hard_state(hs(1, 1, 3))
    storage.create_snapshot_sync(Index(3), CONF, b"app state")
    model.create_snapshot(Index(3), CONF, b"app state")
    model.compact(Index(3))
    assert summary(storage) == summary(model)
    assert storage.term(Index(3)) == 1  # first_index() - 1 answers the snapshot's term
    with pytest.raises(CompactedError):
        storage.term(Index(2))
    with pytest.raises(CompactedError):
        storage.entries(Index(3), Index(5))
    with pytest.raises(UnavailableError):
        storage.entries(Index(4), Index(7))
    with pytest.raises(UnavailableError):
        storage.term(Index(6))
    assert storage.entries(Index(4), Index(6), max_size=0) == ents(4, 5, 1)
    assert storage.initial_state() == (hs(1, 1, 3), CONF)
    assert summary(_reopened(fs, storage)) == summary(model)


def test_a_conflicting_append_truncates_the_suffix(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 10, 1))
    storage.save_sync(hs(2, 2, 0), ents(4, 6, 2))
    assert storage.last_index() == 5
    assert [storage.term(Index(i)) for i in range(1, 6)] == [1, 1, 1, 2, 2]
    storage = _reopened(fs, storage)
    assert storage.last_index() == 5
    assert storage.entries(Index(4), Index(6)) == ents(4, 6, 2)


def test_a_save_with_nothing_to_persist_does_not_touch_the_disk(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    before = fs.ops
    storage.save_sync(None, [])
    assert fs.ops == before


def test_one_save_is_one_write_and_one_fsync(fs: CrashingFileSystem) -> None:
    storage = _open(fs, segment_size=1 << 20)
    before = fs.ops
    storage.save_sync(hs(1, 1, 0), ents(1, 65, 1))
    assert fs.ops - before == 2  # pwrite + fdatasync: group commit


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (ents(3, 4, 1), UnavailableError),  # a gap after last index 1
        ([*ents(2, 3, 1), *ents(4, 5, 1)], ValueError),  # not consecutive
    ],
)
def test_a_bad_append_is_refused_before_anything_is_written(
    fs: CrashingFileSystem, entries: list[Entry], error: type[Exception]
) -> None:
    storage = _open(fs)
    storage.save_sync(None, ents(1, 2, 1))
    before = fs.ops
    with pytest.raises(error):
        storage.save_sync(hs(1, 1, 1), entries)
    assert fs.ops == before
    storage.save_sync(None, ents(2, 3, 1))  # still writable: nothing was damaged
    assert _reopened(fs, storage).last_index() == 2


def test_installing_a_leaders_snapshot_resets_the_log(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 2), ents(1, 10, 1))
    snapshot = Snapshot(SnapshotMetadata(Index(20), Term(3), CONF), b"leader's")
    storage.save_sync(None, ents(21, 23, 3), snapshot)
    for s in (storage, _reopened(fs, storage)):
        assert s.snapshot() == snapshot
        assert (s.first_index(), s.last_index()) == (21, 22)
        assert s.term(Index(20)) == 3
        assert s.hard_state == hs(1, 1, 2)  # None in the Ready means unchanged
        assert fs.listdir(SNAP_DIR) == ["0000000000000003-0000000000000014.snap"]
        s.close()


def test_a_leaders_snapshot_older_than_ours_is_refused(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 5), ents(1, 10, 1))
    storage.create_snapshot_sync(Index(5), CONF, b"")
    for index in (4, 5):
        stale = Snapshot(SnapshotMetadata(Index(index), Term(1), CONF))
        with pytest.raises(SnapshotOutOfDateError):
            storage.save_sync(None, [], stale)
    with pytest.raises(UnavailableError):  # entries must follow the snapshot
        storage.save_sync(None, ents(30, 31, 2), Snapshot(SnapshotMetadata(Index(20), Term(2))))


@pytest.mark.parametrize(
    ("index", "error"),
    [(0, SnapshotOutOfDateError), (5, SnapshotOutOfDateError), (12, UnavailableError)],
)
def test_create_snapshot_refusals(
    fs: CrashingFileSystem, index: int, error: type[Exception]
) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 8), ents(1, 11, 1))
    storage.create_snapshot_sync(Index(5), CONF, b"")
    with pytest.raises(error):
        storage.create_snapshot_sync(Index(index), CONF, b"")


def test_a_snapshot_must_not_pass_the_commit_index(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 4), ents(1, 11, 1))
    with pytest.raises(ValueError, match="commit"):
        storage.create_snapshot_sync(Index(5), CONF, b"")


def test_a_snapshot_releases_older_segments_and_snapshots(fs: CrashingFileSystem) -> None:
    storage = _open(fs, segment_size=512)
    for i in range(1, 40, 3):
        storage.save_sync(hs(1, 1, i + 2), ents(i, i + 3, 1))
    assert len(fs.listdir(WAL_DIR)) > 3
    storage.create_snapshot_sync(Index(20), CONF, b"first")
    assert len(fs.listdir(WAL_DIR)) == 1
    storage.save_sync(hs(1, 1, 40), ents(40, 44, 1))
    storage.create_snapshot_sync(Index(30), CONF, b"second")
    assert fs.listdir(SNAP_DIR) == ["0000000000000001-000000000000001e.snap"]
    assert (storage.first_index(), storage.last_index()) == (31, 43)
    storage = _reopened(fs, storage)
    assert storage.snapshot().data == b"second"
    assert storage.entries(Index(31), Index(44)) == ents(31, 44, 1)


def test_should_snapshot_applies_the_snapshot_count(fs: CrashingFileSystem) -> None:
    storage = _open(fs, snapshot_count=10)
    storage.save_sync(hs(1, 1, 25), ents(1, 26, 1))
    assert not storage.should_snapshot(Index(9))
    assert storage.should_snapshot(Index(10))
    storage.create_snapshot_sync(Index(12), CONF, b"")
    assert not storage.should_snapshot(Index(21))
    assert storage.should_snapshot(Index(22))


@pytest.mark.parametrize("option", ["segment_size", "snapshot_count"])
def test_options_must_be_positive(fs: CrashingFileSystem, option: str) -> None:
    with pytest.raises(ValueError):
        _open(fs, **{option: 0})


def test_disk_usage_counts_segments_and_snapshots(fs: CrashingFileSystem) -> None:
    storage = _open(fs, segment_size=4096)
    assert storage.disk_usage() == 4096
    storage.save_sync(hs(1, 1, 2), ents(1, 3, 1))
    storage.create_snapshot_sync(Index(2), CONF, b"x" * 100)
    assert 4096 + 100 < storage.disk_usage() < 4096 + 300


def test_bytes_in_use_counts_records_not_preallocated_space(fs: CrashingFileSystem) -> None:
    storage = _open(fs, segment_size=512)
    base = storage.bytes_in_use()
    assert (base, storage.disk_usage()) == (0, 512)  # a preallocated, empty segment
    sizes = [base]
    for i in range(1, 40, 3):  # rotates several times
        storage.save_sync(hs(1, 1, i + 2), ents(i, i + 3, 1))
        sizes.append(storage.bytes_in_use())
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert len(fs.listdir(WAL_DIR)) > 3
    before = storage.bytes_in_use()
    assert _reopened(fs, storage).bytes_in_use() == before  # replay finds the same records
    storage = _open(fs, segment_size=512)
    storage.create_snapshot_sync(Index(20), CONF, b"x" * 100)  # releases the older segments
    assert len(fs.listdir(WAL_DIR)) == 1
    assert 100 < storage.bytes_in_use() < before


def test_disk_usage_skips_a_file_released_while_it_counts(fs: CrashingFileSystem) -> None:
    class Racing(CrashingFileSystem):
        def size(self, path: str) -> int:
            raise FileNotFoundError(path)

    storage = DurableStorage.open(DATA_DIR, IDENTITY, fs=Racing())
    assert storage.disk_usage() == 0


def test_a_disk_error_stops_all_further_writes(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 2, 1))
    fs.fail_at(1)  # the fdatasync of the next save
    with pytest.raises(OSError):
        storage.save_sync(hs(1, 1, 1), ents(2, 3, 1))
    assert storage.last_index() == 1  # memory never got ahead of the disk
    with pytest.raises(StorageFailedError, match="reopen"):
        storage.save_sync(None, ents(2, 3, 1))
    with pytest.raises(StorageFailedError):
        storage.create_snapshot_sync(Index(1), CONF, b"")
    storage.close()
    assert _open(fs).last_index() in (1, 2)


def test_a_closed_storage_refuses_writes(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageFailedError, match="closed"):
        storage.save_sync(hs(1, 1, 0), [])


# ---- the asyncio API ----


@pytest.mark.asyncio
async def test_async_save_and_snapshot(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    await storage.save(hs(1, 1, 3), ents(1, 5, 1))
    snapshot = await storage.create_snapshot(Index(3), CONF, b"state")
    assert snapshot == storage.snapshot()
    assert (storage.first_index(), storage.last_index()) == (4, 4)
    await storage.save(None, [])
    storage = _reopened(fs, storage)
    assert storage.snapshot() == snapshot
    assert storage.hard_state == hs(1, 1, 3)


@pytest.mark.asyncio
async def test_each_save_reports_its_fsync_time(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    seen: list[float] = []
    storage.on_fsync = seen.append
    await storage.save(hs(1, 1, 1), ents(1, 3, 1))
    await storage.save(hs(1, 1, 2), [], sync=False)  # commit-only: nothing written, no fsync
    await storage.save(None, ents(3, 4, 1))
    assert len(seen) == 2 and all(s >= 0 for s in seen)


class _GatedFileSystem(CrashingFileSystem):
    """Holds every fdatasync in its worker thread until the test opens ``gate``, and tells the
    event loop (``entered``) when one is waiting. No sleeps: the test and the thread hand over
    through events."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = asyncio.Event()
        self.armed = False  # off while the storage is opened, on for the save under test
        self._loop = loop

    def create(self, path: str, size: int) -> FileHandle:
        return self._gated(super().create(path, size))

    def open(self, path: str) -> FileHandle:
        return self._gated(super().open(path))

    def _gated(self, handle: FileHandle) -> FileHandle:
        sync = handle.sync

        def gated_sync() -> None:
            if not self.armed:
                return sync()
            self._loop.call_soon_threadsafe(self.entered.set)
            assert self.gate.wait(timeout=60), "the test never opened the gate"
            sync()

        handle.sync = gated_sync  # type: ignore[method-assign]
        return handle


@pytest.mark.asyncio
async def test_the_event_loop_keeps_running_while_a_save_waits_for_the_disk() -> None:
    fs = _GatedFileSystem(asyncio.get_running_loop())
    storage = _open(fs, segment_size=1 << 20)
    fs.armed = True
    save = asyncio.create_task(storage.save(hs(1, 1, 0), ents(1, 3, 1)))
    await fs.entered.wait()  # the loop runs this coroutine while the fsync is held
    assert not save.done()
    assert storage.last_index() == 0  # not durable yet, so not visible yet
    with pytest.raises(RuntimeError, match="one at a time"):
        await storage.save(None, ents(3, 4, 1))
    fs.gate.set()
    await save
    assert storage.last_index() == 2


@pytest.mark.asyncio
async def test_a_cancelled_save_still_completes_before_raising() -> None:
    loop = asyncio.get_running_loop()
    fs = _GatedFileSystem(loop)
    storage = _open(fs, segment_size=1 << 20)
    fs.armed = True
    save = asyncio.create_task(storage.save(hs(1, 1, 0), ents(1, 3, 1)))
    await fs.entered.wait()
    save.cancel()
    loop.call_soon(fs.gate.set)  # runs after the task has taken the cancellation
    with pytest.raises(asyncio.CancelledError):
        await save
    # The write reached the disk, so memory shows it too, and further writes work.
    assert storage.last_index() == 2
    await storage.save(hs(1, 1, 2), ents(3, 4, 1))
    assert _reopened(fs, storage).last_index() == 3


def test_hard_state_only_saves_survive_a_restart(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    storage.save_sync(HardState(Term(7), NodeId(3), Index(0)), [])
    assert _reopened(fs, storage).initial_state() == (hs(7, 3, 0), ConfState())


@pytest.mark.asyncio
async def test_an_async_disk_error_stops_further_writes(fs: CrashingFileSystem) -> None:
    storage = _open(fs)
    assert storage.path == DATA_DIR
    fs.fail_at(0)
    with pytest.raises(OSError):
        await storage.save(hs(1, 1, 0), ents(1, 2, 1))
    assert storage.last_index() == 0
    with pytest.raises(StorageFailedError):
        await storage.create_snapshot(Index(1), CONF, b"")


def test_it_is_a_raft_storage(fs: CrashingFileSystem) -> None:
    storage: Storage = _open(fs)  # checked by mypy: DurableStorage satisfies the Protocol
    assert storage.snapshot().is_empty()
