"""Snapshot files: the application's state at an applied index, plus its Raft metadata.

One file per snapshot, ``snap/<term>-<index>.snap`` (16 hex digits each), holding one frame
(``node.storage.frame``) whose payload is the codec's ``Snapshot``: index, term, conf state and the
opaque application blob (the membership state).

Why temp file, fsync, rename, directory fsync: the WAL checkpoint that points at a snapshot is
written only after this returns, so when recovery follows that pointer the file must be complete.
Writing in place could leave a half file under the final name; the rename makes the name appear
only with the whole content behind it, and the directory fsync makes the name itself durable.

A snapshot file no checkpoint points at (a crash came between the two writes) is garbage and is
deleted at the next open, like the older snapshots a newer checkpoint has superseded.
"""

from __future__ import annotations

import posixpath
from typing import Final

from node.codec import CodecError, decode, encode
from node.storage.datadir import write_atomically
from node.storage.errors import CorruptDataError, DataDirError
from node.storage.frame import encode_frame, read_frame
from node.storage.fs import FileSystem
from raft.types import Snapshot, SnapshotMetadata

SNAP_SUFFIX: Final = ".snap"


def snapshot_name(metadata: SnapshotMetadata) -> str:
    return f"{metadata.term:016x}-{metadata.index:016x}{SNAP_SUFFIX}"


def write_snapshot(fs: FileSystem, directory: str, snapshot: Snapshot) -> None:
    """Store ``snapshot`` durably under its own name."""
    data = encode_frame(0, encode(snapshot))
    write_atomically(fs, directory, snapshot_name(snapshot.metadata), data)


def read_snapshot(fs: FileSystem, directory: str, metadata: SnapshotMetadata) -> Snapshot:
    """The snapshot a WAL checkpoint points at; it must exist and match the checkpoint."""
    path = posixpath.join(directory, snapshot_name(metadata))
    if not fs.exists(path):
        raise DataDirError(
            path, f"snapshot at index {metadata.index} is missing, yet the WAL refers to it"
        )
    buf = fs.read(path)
    frame = read_frame(buf, 0)
    if frame is None or frame.end != len(buf):
        raise CorruptDataError(path, 0, "the snapshot file fails its checksum")
    try:
        snapshot = decode(frame.payload, Snapshot)
    except CodecError as exc:
        raise CorruptDataError(path, frame.offset, str(exc)) from exc
    if snapshot.metadata != metadata:
        raise CorruptDataError(
            path, frame.offset, f"holds {snapshot.metadata}, but the WAL says {metadata}"
        )
    return snapshot


def prune(fs: FileSystem, directory: str, keep: SnapshotMetadata | None) -> None:
    """Delete every snapshot file (and leftover temp file) except the one ``keep`` names."""
    kept = None if keep is None else snapshot_name(keep)
    doomed = [
        name
        for name in fs.listdir(directory)
        if name != kept and (name.endswith(SNAP_SUFFIX) or name.endswith(".tmp"))
    ]
    for name in doomed:
        fs.remove(posixpath.join(directory, name))
    if doomed:
        fs.sync_dir(directory)


def has_snapshots(fs: FileSystem, directory: str) -> bool:
    return any(name.endswith(SNAP_SUFFIX) for name in fs.listdir(directory))
