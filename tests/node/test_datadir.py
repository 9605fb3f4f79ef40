"""The data dir: bootstrap when empty, reopen when ours, refuse anything else, saying why."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pytest

from node.storage import (
    FORMAT_VERSION,
    CrashingFileSystem,
    DataDirError,
    DurableStorage,
    Identity,
    OsFileSystem,
    read_metadata,
)
from node.storage.datadir import META_FILE, write_atomically
from node.storage.wal import segment_name
from raft.types import ConfState, Index
from tests.node.storage_workload import DATA_DIR, IDENTITY, ents, hs

META = posixpath.join(DATA_DIR, META_FILE)


def _open(fs: CrashingFileSystem, identity: Identity = IDENTITY) -> DurableStorage:
    return DurableStorage.open(DATA_DIR, identity, fs=fs, segment_size=4096)


def _with_state() -> CrashingFileSystem:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 1), ents(1, 3, 1))
    storage.close()
    return fs


def test_a_nonexistent_dir_bootstraps_and_reopens() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.identity == IDENTITY
    storage.close()
    assert fs.listdir(DATA_DIR) == ["meta.json", "snap", "wal"]
    assert fs.listdir(posixpath.join(DATA_DIR, "wal")) == [segment_name(0)]
    metadata = read_metadata(fs, DATA_DIR)
    assert metadata is not None
    assert (metadata.identity, metadata.removed, metadata.version) == (IDENTITY, False, 1)
    _open(fs).close()


def test_metadata_is_readable_json() -> None:
    fs = CrashingFileSystem()
    _open(fs).close()
    assert json.loads(fs.read(META)) == {
        "format": "raftnode data dir",
        "version": FORMAT_VERSION,
        "cluster_id": "59a05384c9b79ee",
        "member_id": "bf9071f4639c75cc",
        "cluster_token": "t",
        "removed": False,
    }


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        (Identity(0x1234, IDENTITY.member_id, "t"), "belongs to cluster 59a05384c9b79ee, not 1234"),
        (Identity(IDENTITY.cluster_id, 0x99, "t"), "belongs to member bf9071f4639c75cc, not 99"),
        (
            Identity(IDENTITY.cluster_id, IDENTITY.member_id, "other"),
            "cluster token 't', not 'other'",
        ),
    ],
)
def test_a_dir_of_another_cluster_or_member_is_refused(identity: Identity, message: str) -> None:
    fs = _with_state()
    with pytest.raises(DataDirError, match=message) as info:
        _open(fs, identity)
    assert info.value.path == DATA_DIR
    assert str(info.value).startswith(DATA_DIR)


def _rewrite_meta(fs: CrashingFileSystem, **changes: object) -> None:
    record = json.loads(fs.read(META))
    record.update(changes)
    write_atomically(fs, DATA_DIR, META_FILE, json.dumps(record).encode())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 2}, "format version 2 is not supported"),
        ({"version": "1"}, "format version '1' is not supported"),
        ({"format": "something else"}, "not a raftnode metadata record"),
        ({"cluster_id": "zz"}, "invalid field"),
        ({"member_id": "0"}, "invalid field"),
        ({"member_id": 5}, "invalid field"),
        ({"cluster_token": 5}, "invalid field"),
        ({"removed": "no"}, "invalid field"),
    ],
)
def test_unknown_format_or_bad_metadata_is_refused(
    changes: dict[str, object], message: str
) -> None:
    fs = _with_state()
    _rewrite_meta(fs, **changes)
    with pytest.raises(DataDirError, match=message):
        _open(fs)


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"\xff"])
def test_unreadable_metadata_is_refused(content: bytes) -> None:
    fs = _with_state()
    write_atomically(fs, DATA_DIR, META_FILE, content)
    with pytest.raises(DataDirError, match=META_FILE):
        _open(fs)


def test_missing_field_is_refused() -> None:
    fs = _with_state()
    record = json.loads(fs.read(META))
    del record["cluster_token"]
    write_atomically(fs, DATA_DIR, META_FILE, json.dumps(record).encode())
    with pytest.raises(DataDirError, match="cluster_token"):
        _open(fs)


def test_a_removed_member_refuses_to_start() -> None:
    fs = _with_state()
    storage = _open(fs)
    storage.mark_removed()
    storage.close()
    with pytest.raises(DataDirError, match="was removed from the cluster"):
        _open(fs)


@pytest.mark.parametrize("sub", ["wal", "snap"])
def test_state_without_metadata_is_never_bootstrapped_over(sub: str) -> None:
    fs = _with_state()
    storage = _open(fs)
    storage.create_snapshot_sync(Index(1), ConfState(), b"")
    storage.close()
    fs.remove(META)
    fs.sync_dir(DATA_DIR)
    if sub == "snap":  # only the snapshot is left: still state, still refused
        for name in fs.listdir(posixpath.join(DATA_DIR, "wal")):
            fs.remove(posixpath.join(DATA_DIR, "wal", name))
    with pytest.raises(DataDirError, match="no metadata; refusing to bootstrap"):
        _open(fs)


def test_an_interrupted_bootstrap_is_redone() -> None:
    # The crash came after the empty first segment was made, before the metadata: nothing was
    # ever acknowledged, so bootstrapping again is safe.
    fs = CrashingFileSystem()
    fs.makedirs(posixpath.join(DATA_DIR, "wal"))
    fs.create(posixpath.join(DATA_DIR, "wal", segment_name(0)), 4096).close()
    fs.create(posixpath.join(DATA_DIR, "wal", segment_name(3)), 0).close()
    storage = _open(fs)
    assert fs.listdir(posixpath.join(DATA_DIR, "wal")) == [segment_name(0)]
    storage.save_sync(hs(1, 1, 0), ents(1, 2, 1))
    storage.close()
    assert _open(fs).last_index() == 1


@pytest.mark.parametrize("sub", ["wal", "snap"])
def test_metadata_without_its_directories_is_refused(sub: str) -> None:
    fs = CrashingFileSystem()
    fs.makedirs(DATA_DIR)
    fs.makedirs(posixpath.join(DATA_DIR, "wal" if sub == "snap" else "snap"))
    _rewrite_meta_from_scratch(fs)
    with pytest.raises(DataDirError, match=f"{sub} is missing"):
        _open(fs)


def _rewrite_meta_from_scratch(fs: CrashingFileSystem) -> None:
    other = CrashingFileSystem()
    _open(other).close()
    write_atomically(fs, DATA_DIR, META_FILE, other.read(META))


def test_metadata_with_an_empty_wal_is_refused() -> None:
    fs = _with_state()
    wal = posixpath.join(DATA_DIR, "wal")
    for name in fs.listdir(wal):
        fs.remove(posixpath.join(wal, name))
    with pytest.raises(DataDirError, match="holds no WAL segment"):
        _open(fs)


@pytest.mark.parametrize("bad", [0, -1, 2**64])
def test_identity_ids_are_non_zero_64_bit(bad: int) -> None:
    with pytest.raises(ValueError):
        Identity(bad, 1, "t")
    with pytest.raises(ValueError):
        Identity(1, bad, "t")


def test_on_the_real_file_system(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "member")
    storage = DurableStorage.open(path, IDENTITY, fs=OsFileSystem(), segment_size=8192)
    storage.save_sync(hs(1, 1, 1), ents(1, 4, 1))
    storage.close()
    assert sorted(p.name for p in Path(path).iterdir()) == ["meta.json", "snap", "wal"]
    assert (Path(path) / "wal" / segment_name(0)).stat().st_size == 8192  # preallocated
    reopened = DurableStorage.open(path, IDENTITY)  # the real file system is the default
    assert reopened.entries(reopened.first_index(), Index(reopened.last_index() + 1)) == ents(
        1, 4, 1
    )
    reopened.close()
    with pytest.raises(DataDirError, match="belongs to member"):
        DurableStorage.open(path, Identity(IDENTITY.cluster_id, 7, "t"))
