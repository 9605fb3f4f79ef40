"""The data dir's layout and its metadata record: whose state this is, in which format.

Layout (format version 1)::

    <data dir>/meta.json    format version, cluster ID, member ID, cluster token, removed mark
    <data dir>/wal/         WAL segments (node.storage.wal)
    <data dir>/snap/        snapshot files (node.storage.snap)

Why a metadata record: a node must never run on state that is not its own, nor bootstrap over
state that exists (spec D5). Starting member A on member B's dir would make A vote with B's log,
which can elect two leaders in one term. So the record names the cluster and member the state
belongs to, and opening compares them with what the caller expects, refusing on any mismatch.
The format version lets a later layout be refused clearly by an older build instead of misread.

Why JSON and not msgpack: it is tiny, written once, and an operator deciding which cluster a dir
belongs to can read it with ``cat``.

Why it is written *last* at bootstrap (and atomically: temp file, fsync, rename, directory fsync):
its presence is the commit point. A dir without it holds nothing acknowledged and may be
bootstrapped again, unless it holds WAL records or snapshots; then something else is going on
and starting is refused rather than guessed at.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Final

from node.storage.errors import DataDirError
from node.storage.fs import FileSystem

FORMAT_VERSION: Final = 1
META_FILE: Final = "meta.json"
WAL_DIR: Final = "wal"
SNAP_DIR: Final = "snap"
_FORMAT_NAME: Final = "raftnode data dir"
_U64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Identity:
    """Whose state a data dir holds."""

    cluster_id: int
    member_id: int
    cluster_token: str

    def __post_init__(self) -> None:
        for name in ("cluster_id", "member_id"):
            value = getattr(self, name)
            if type(value) is not int or not 0 < value <= _U64_MAX:
                raise ValueError(f"{name} must be a non-zero 64-bit unsigned int, got {value!r}")


@dataclass(frozen=True, slots=True)
class Metadata:
    identity: Identity
    #: Set when this member applied its own removal: the dir must never be started again.
    removed: bool = False
    version: int = FORMAT_VERSION


def wal_dir(path: str) -> str:
    return posixpath.join(path, WAL_DIR)


def snap_dir(path: str) -> str:
    return posixpath.join(path, SNAP_DIR)


def read_metadata(fs: FileSystem, path: str) -> Metadata | None:
    """The metadata record of the dir at ``path``, or None if it has none (a fresh dir)."""
    meta_path = posixpath.join(path, META_FILE)
    if not fs.exists(meta_path):
        return None
    try:
        record = json.loads(fs.read(meta_path))
    except ValueError as exc:
        raise DataDirError(path, f"{META_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT_NAME:
        raise DataDirError(path, f"{META_FILE} is not a raftnode metadata record")
    version = record.get("version")
    if version != FORMAT_VERSION:
        raise DataDirError(
            path,
            f"data dir format version {version!r} is not supported "
            f"(this build reads version {FORMAT_VERSION})",
        )
    try:
        identity = Identity(
            cluster_id=int(record["cluster_id"], 16),
            member_id=int(record["member_id"], 16),
            cluster_token=_str(record["cluster_token"]),
        )
        removed = record["removed"]
        if type(removed) is not bool:
            raise ValueError(f"removed must be true or false, got {removed!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataDirError(path, f"{META_FILE} has a missing or invalid field: {exc}") from exc
    return Metadata(identity, removed, version)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def write_metadata(fs: FileSystem, path: str, metadata: Metadata) -> None:
    """Replace the metadata record atomically and durably."""
    record = {
        "format": _FORMAT_NAME,
        "version": metadata.version,
        "cluster_id": f"{metadata.identity.cluster_id:x}",
        "member_id": f"{metadata.identity.member_id:x}",
        "cluster_token": metadata.identity.cluster_token,
        "removed": metadata.removed,
    }
    write_atomically(fs, path, META_FILE, (json.dumps(record, indent=2) + "\n").encode())


def write_atomically(fs: FileSystem, directory: str, name: str, data: bytes) -> None:
    """Write ``directory/name`` so that a crash leaves either the old file or the new one whole."""
    final = posixpath.join(directory, name)
    temp = final + ".tmp"
    if fs.exists(temp):
        fs.remove(temp)
    handle = fs.create(temp, 0)
    try:
        handle.pwrite(data, 0)
        handle.sync()
    finally:
        handle.close()
    fs.rename(temp, final)
    fs.sync_dir(directory)


def check_identity(path: str, metadata: Metadata, expected: Identity) -> None:
    """Refuse a dir that belongs to another cluster or member, or to a removed member."""
    found = metadata.identity
    if found.cluster_id != expected.cluster_id:
        raise DataDirError(
            path,
            f"belongs to cluster {found.cluster_id:x}, not {expected.cluster_id:x}",
        )
    if found.member_id != expected.member_id:
        raise DataDirError(
            path, f"belongs to member {found.member_id:x}, not {expected.member_id:x}"
        )
    if found.cluster_token != expected.cluster_token:
        raise DataDirError(
            path,
            f"was created with cluster token {found.cluster_token!r}, "
            f"not {expected.cluster_token!r}",
        )
    if metadata.removed:
        raise DataDirError(
            path,
            f"member {found.member_id:x} was removed from the cluster; "
            "delete this data dir and rejoin through MemberAdd to come back",
        )


def make_dirs(fs: FileSystem, path: str) -> None:
    """Create the dir, ``wal/`` and ``snap/``, durably (each new name is in a synced parent)."""
    parent = posixpath.dirname(posixpath.normpath(path)) or "."
    fs.makedirs(path)
    fs.sync_dir(parent)
    for sub in (wal_dir(path), snap_dir(path)):
        fs.makedirs(sub)
    fs.sync_dir(path)
