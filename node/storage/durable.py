"""DurableStorage: the Raft log, hard state and snapshots of one member, on disk and in memory.

It implements the read-side ``raft.storage.Storage`` Protocol from memory (``LogIndex``), and every
write goes to disk first: the in-memory state changes only after the write is durable, so what the
core reads back is always something a crash cannot take away.

Writes, and why each is shaped as it is:

* ``save(hard_state, entries, snapshot)`` persists one Ready. It is one WAL record and one fdatasync
  (group commit), run through ``asyncio.to_thread`` so heartbeats and RPCs keep flowing while the
  disk works. When it returns the Ready's messages may be sent. ``save_sync`` is the same, blocking,
  for tests, the simulator and the bench.
* A snapshot in the Ready (sent by the leader) is written to its own file first, then a checkpoint
  record that resets the log to it; the WAL and snapshot files before it are then released.
* ``create_snapshot(index, conf_state, data)`` records the application's state at an applied index
  the same way, with the not-yet-snapshotted tail of the log copied into the checkpoint, then
  compacts the in-memory log. ``should_snapshot(applied)`` applies ``--snapshot-count``.

A write is validated against the current log *before* anything is written (a gap, a stale snapshot),
so a bad call raises without touching the disk. If the disk itself fails mid-write the storage
refuses further writes (``StorageFailedError``): after a failed fsync the kernel may have dropped
the pages, and only a restart and replay tell what is really on disk.

One write at a time: the driver persists Readies in order, and a second concurrent write is a bug
(it would race the first for the log's order), so it raises instead of queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import Callable, Sequence
from typing import Final

from node.codec import LogRecord
from node.storage import datadir, snap
from node.storage.datadir import Identity, Metadata
from node.storage.errors import DataDirError, StorageFailedError
from node.storage.fs import FileSystem, OsFileSystem
from node.storage.logindex import LogIndex
from node.storage.wal import DEFAULT_SEGMENT_SIZE, Wal, has_records
from raft.errors import SnapshotOutOfDateError, UnavailableError
from raft.types import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    HardState,
    Index,
    Snapshot,
    SnapshotMetadata,
    Term,
)

#: etcd's default for --snapshot-count.
DEFAULT_SNAPSHOT_COUNT: Final = 100_000

_log = logging.getLogger(__name__)


class DurableStorage:
    """Open with ``DurableStorage.open``; see the module doc."""

    def __init__(
        self,
        fs: FileSystem,
        path: str,
        metadata: Metadata,
        wal: Wal,
        log: LogIndex,
        hard_state: HardState,
        snapshot: Snapshot,
        snapshot_count: int,
    ) -> None:
        self._fs = fs
        self._path = path
        self._metadata = metadata
        self._wal = wal
        self._log = log
        self._hard_state = hard_state
        self._snapshot = snapshot
        self._snapshot_count = snapshot_count
        self._busy = False
        #: A commit-index update saved with sync=False, not yet on disk (see ``save``).
        self._deferred_hard_state: HardState | None = None
        self._failed: BaseException | None = None
        self._closed = False
        #: Called on the event loop with each WAL fdatasync's duration in seconds (metrics).
        self.on_fsync: Callable[[float], None] | None = None

    @classmethod
    def open(
        cls,
        path: str,
        identity: Identity,
        *,
        fs: FileSystem | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        snapshot_count: int = DEFAULT_SNAPSHOT_COUNT,
    ) -> DurableStorage:
        """Recover the state in ``path``, or bootstrap an empty one there if it has none.

        Raises ``DataDirError`` (or its ``CorruptDataError``) when the dir belongs to another
        cluster or member, has an unknown format, or fails its checks.
        """
        if segment_size <= 0 or snapshot_count <= 0:
            raise ValueError("segment_size and snapshot_count must be positive")
        fs = fs if fs is not None else OsFileSystem()
        metadata = datadir.read_metadata(fs, path)
        if metadata is None:
            return cls._bootstrap(fs, path, identity, segment_size, snapshot_count)
        datadir.check_identity(path, metadata, identity)
        wal_dir, snap_dir = datadir.wal_dir(path), datadir.snap_dir(path)
        for sub in (wal_dir, snap_dir):
            if not fs.exists(sub):
                raise DataDirError(path, f"{sub} is missing, yet the data dir has metadata")
        replay = _Replay()
        wal = Wal.open(fs, wal_dir, segment_size, replay.apply)
        try:
            snapshot = EMPTY_SNAPSHOT
            if replay.snapshot is not None:
                snapshot = snap.read_snapshot(fs, snap_dir, replay.snapshot)
            snap.prune(fs, snap_dir, keep=replay.snapshot)
        except BaseException:
            wal.close()
            raise
        return cls(fs, path, metadata, wal, replay.log, replay.hard_state, snapshot, snapshot_count)

    @classmethod
    def _bootstrap(
        cls, fs: FileSystem, path: str, identity: Identity, segment_size: int, count: int
    ) -> DurableStorage:
        wal_dir, snap_dir = datadir.wal_dir(path), datadir.snap_dir(path)
        if fs.exists(wal_dir) and has_records(fs, wal_dir):
            raise DataDirError(path, "holds WAL records but no metadata; refusing to bootstrap")
        if fs.exists(snap_dir) and snap.has_snapshots(fs, snap_dir):
            raise DataDirError(path, "holds snapshots but no metadata; refusing to bootstrap")
        datadir.make_dirs(fs, path)
        wal = Wal.create(fs, wal_dir, segment_size)
        metadata = Metadata(identity)
        try:
            datadir.write_metadata(fs, path, metadata)  # the commit point of the bootstrap
        except BaseException:
            wal.close()
            raise
        return cls(fs, path, metadata, wal, LogIndex(), EMPTY_HARD_STATE, EMPTY_SNAPSHOT, count)

    # ---- the Storage protocol, served from memory ----

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: Index, hi: Index, max_size: int | None = None) -> list[Entry]:
        return self._log.entries(lo, hi, max_size)

    def term(self, index: Index) -> Term:
        return self._log.term(index)

    def first_index(self) -> Index:
        return self._log.first_index()

    def last_index(self) -> Index:
        return self._log.last_index()

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # ---- more reads ----

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def identity(self) -> Identity:
        return self._metadata.identity

    @property
    def path(self) -> str:
        return self._path

    def disk_usage(self) -> int:
        """Bytes of WAL segments and snapshot files (the Status RPC's dbSize)."""
        return self._file_bytes(datadir.wal_dir(self._path)) + self._file_bytes(
            datadir.snap_dir(self._path)
        )

    def bytes_in_use(self) -> int:
        """Bytes of WAL records and snapshot files (the Status RPC's dbSizeInUse): what
        ``disk_usage`` counts, less the unused, preallocated tails of WAL segments."""
        return self._wal.used_bytes + self._file_bytes(datadir.snap_dir(self._path))

    def _file_bytes(self, directory: str) -> int:
        total = 0
        for name in self._fs.listdir(directory):
            try:
                total += self._fs.size(posixpath.join(directory, name))
            except FileNotFoundError:  # released meanwhile by a write in its worker thread
                pass
        return total

    def should_snapshot(self, applied: Index) -> bool:
        """Whether ``applied`` is ``snapshot_count`` or more entries past the last snapshot."""
        return applied - self._snapshot.metadata.index >= self._snapshot_count

    # ---- persisting a Ready ----

    async def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """Persist one Ready's snapshot, entries and hard state; durable when this returns.

        ``sync=False`` (the Ready's ``must_sync`` is False: only the commit index changed) writes
        nothing: the new hard state is kept in memory and goes to disk with the next record (or
        at close). A crash before that loses only this commit-index update, which Raft relearns.
        (Writing it unsynced instead could tear it behind a later record, which recovery must
        refuse as corruption: found by the durable simulator.)"""
        record = self._plan_save(hard_state, entries, snapshot, sync)
        if record is None:
            return
        await self._off_loop(
            lambda: self._write_save(record, snapshot),
            lambda: self._apply_save(record, snapshot),
        )
        if self.on_fsync is not None:
            self.on_fsync(self._wal.last_sync_seconds)

    def save_sync(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """``save``, blocking the caller."""
        record = self._plan_save(hard_state, entries, snapshot, sync)
        if record is None:
            return
        self._blocking(lambda: self._write_save(record, snapshot))
        self._apply_save(record, snapshot)

    def _plan_save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool = True,
    ) -> LogRecord | None:
        self._check_writable()
        if snapshot is None and not entries and hard_state is not None and not sync:
            self._hard_state = self._deferred_hard_state = hard_state
            return None
        if hard_state is None:
            hard_state = self._deferred_hard_state
        self._deferred_hard_state = None
        if snapshot is None:
            if not entries and hard_state is None:
                return None
            self._log.check_append(entries)
            return LogRecord(None, tuple(entries), hard_state)
        metadata = snapshot.metadata
        if metadata.index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {metadata.index} is not newer than the held one at "
                f"{self._snapshot.metadata.index}"
            )
        LogIndex(metadata.index, metadata.term).check_append(entries)
        # A checkpoint carries the full hard state: replay may start at it.
        full = hard_state if hard_state is not None else self._hard_state
        return LogRecord(metadata, tuple(entries), full)

    def _write_save(self, record: LogRecord, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            self._wal.append(record)
        else:
            self._write_checkpoint(record, snapshot)

    def _apply_save(self, record: LogRecord, snapshot: Snapshot | None) -> None:
        if snapshot is not None:
            self._snapshot = snapshot
            self._log.reset(snapshot.metadata.index, snapshot.metadata.term)
        self._log.append(record.entries)
        if record.hard_state is not None:
            self._hard_state = record.hard_state

    # ---- snapshots of our own state ----

    async def create_snapshot(self, index: Index, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's ``data`` at applied ``index`` and compact the log to it."""
        snapshot, record = self._plan_snapshot(index, conf_state, data)
        await self._off_loop(
            lambda: self._write_checkpoint(record, snapshot),
            lambda: self._apply_snapshot(snapshot),
        )
        return snapshot

    def create_snapshot_sync(self, index: Index, conf_state: ConfState, data: bytes) -> Snapshot:
        """``create_snapshot``, blocking the caller."""
        snapshot, record = self._plan_snapshot(index, conf_state, data)
        self._blocking(lambda: self._write_checkpoint(record, snapshot))
        self._apply_snapshot(snapshot)
        return snapshot

    def _plan_snapshot(
        self, index: Index, conf_state: ConfState, data: bytes
    ) -> tuple[Snapshot, LogRecord]:
        self._check_writable()
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError(
                f"snapshot at {index} is not newer than {self._snapshot.metadata.index}"
            )
        if index > self._log.last_index():
            raise UnavailableError(f"snapshot at {index} is beyond the last index")
        if index > self._hard_state.commit:
            raise ValueError(f"snapshot at {index} is beyond the commit index (not applied)")
        metadata = SnapshotMetadata(index, self._log.term(index), conf_state)
        record = LogRecord(metadata, tuple(self._log.after(index)), self._hard_state)
        return Snapshot(metadata, data), record

    def _apply_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._log.compact(snapshot.metadata.index)

    def _write_checkpoint(self, record: LogRecord, snapshot: Snapshot) -> None:
        """Snapshot file first, then the checkpoint that points at it, then the release of what
        the checkpoint supersedes. A crash between any two steps leaves a state open() repairs."""
        snap_dir = datadir.snap_dir(self._path)
        snap.write_snapshot(self._fs, snap_dir, snapshot)
        self._wal.append(record, checkpoint=True)
        try:  # housekeeping only: what is needed is durable, and open() retries it
            self._wal.release()
            snap.prune(self._fs, snap_dir, keep=snapshot.metadata)
        except OSError as exc:
            _log.warning("could not release storage superseded by a snapshot: %s", exc)

    # ---- lifecycle ----

    def mark_removed(self) -> None:
        """Record that this member applied its own removal: the dir will refuse to start."""
        self._check_writable()
        self._metadata = Metadata(self._metadata.identity, removed=True)
        datadir.write_metadata(self._fs, self._path, self._metadata)

    def close(self) -> None:
        if not self._closed:
            if self._deferred_hard_state is not None and self._failed is None:
                with contextlib.suppress(Exception):  # best effort: it is relearnable
                    self.save_sync(None, [])  # a clean stop keeps the last commit index
            self._closed = True
            self._wal.close()

    # ---- running writes ----

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageFailedError("the storage is closed")
        if self._failed is not None:
            raise StorageFailedError(
                f"an earlier write failed ({self._failed}); reopen to recover from disk"
            )
        if self._busy:
            raise RuntimeError("another write is in progress; writes must be made one at a time")

    def _blocking(self, write: Callable[[], None]) -> None:
        self._busy = True
        try:
            write()
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._busy = False

    async def _off_loop(self, write: Callable[[], None], then: Callable[[], None]) -> None:
        """Run ``write`` in a worker thread, then ``then`` (the memory update) on the loop.

        If the caller is cancelled meanwhile, the write still finishes (a thread cannot be
        stopped), so it is waited for and memory is updated before the cancellation is re-raised:
        memory must never disagree with what the disk holds.
        """
        self._busy = True
        cancelled = False
        try:
            future = asyncio.ensure_future(asyncio.to_thread(write))
            while not future.done():
                try:
                    await asyncio.shield(future)
                except asyncio.CancelledError:
                    cancelled = True
            future.result()
        except BaseException as exc:
            self._failed = exc
            raise
        finally:
            self._busy = False
        then()
        if cancelled:
            raise asyncio.CancelledError


class _Replay:
    """Rebuilds memory from WAL records, exactly as the saves that wrote them changed it."""

    def __init__(self) -> None:
        self.log = LogIndex()
        self.hard_state = EMPTY_HARD_STATE
        self.snapshot: SnapshotMetadata | None = None

    def apply(self, record: LogRecord) -> None:
        if record.snapshot is not None:
            self.snapshot = record.snapshot
            self.log.reset(record.snapshot.index, record.snapshot.term)
        self.log.append(record.entries)
        if record.hard_state is not None:
            self.hard_state = record.hard_state
