"""Durable storage for one member: data-dir layout, WAL, snapshots, recovery.

``DurableStorage`` is the entry point (it implements ``raft.storage.Storage``). The modules beside
it each do one job: ``datadir`` (layout and the identity record), ``wal`` (segments and replay),
``snap`` (snapshot files), ``frame`` (length + CRC framing), ``logindex`` (the in-memory log),
``fs`` (the file-system Protocol and the real one) and ``fakefs`` (a file system that can crash,
for tests and the simulator).
"""

from node.storage.datadir import FORMAT_VERSION, Identity, Metadata, read_metadata
from node.storage.durable import DEFAULT_SNAPSHOT_COUNT, DurableStorage
from node.storage.errors import CorruptDataError, DataDirError, StorageFailedError
from node.storage.fakefs import CrashingFileSystem, SimulatedCrash
from node.storage.fs import FileHandle, FileSystem, OsFileSystem
from node.storage.wal import DEFAULT_SEGMENT_SIZE

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "DEFAULT_SNAPSHOT_COUNT",
    "FORMAT_VERSION",
    "CorruptDataError",
    "CrashingFileSystem",
    "DataDirError",
    "DurableStorage",
    "FileHandle",
    "FileSystem",
    "Identity",
    "Metadata",
    "OsFileSystem",
    "SimulatedCrash",
    "StorageFailedError",
    "read_metadata",
]
