"""WAL details the crash and corruption sweeps do not pin down one by one."""

from __future__ import annotations

import posixpath

import pytest

from node.codec import LogRecord, encode
from node.storage import CorruptDataError, CrashingFileSystem, DataDirError, DurableStorage
from node.storage.frame import encode_frame, is_zero, scan
from node.storage.wal import Wal, list_segments, segment_name
from raft.types import Index
from tests.node.storage_workload import CONF, DATA_DIR, IDENTITY, ents, hs

WAL_DIR = posixpath.join(DATA_DIR, "wal")


def _open(fs: CrashingFileSystem, segment_size: int = 1024) -> DurableStorage:
    return DurableStorage.open(DATA_DIR, IDENTITY, fs=fs, segment_size=segment_size)


def _segment(fs: CrashingFileSystem, position: int = -1) -> str:
    return posixpath.join(WAL_DIR, segment_name(list_segments(fs, WAL_DIR)[position]))


def _append_raw(fs: CrashingFileSystem, data: bytes) -> int:
    """Write ``data`` right after the last valid frame of the last segment; its offset."""
    path = _segment(fs)
    _, end = scan(fs.read(path))
    handle = fs.open(path)
    handle.pwrite(data, end)
    handle.sync()
    handle.close()
    return end


def test_a_torn_tail_is_cut_and_zeroed() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.close()
    torn = encode_frame(2, encode(LogRecord(None, tuple(ents(3, 5, 1)), None)))
    end = _append_raw(fs, torn[: len(torn) // 2])
    storage = _open(fs)
    assert storage.last_index() == 2
    assert is_zero(fs.read(_segment(fs)), end)
    storage.save_sync(None, ents(3, 4, 1))  # written where the torn record was
    storage.close()
    assert _open(fs).last_index() == 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xc1garbage", "not valid msgpack"),
        (encode(hs(1, 1, 1)), "expected a LogRecord"),
        (encode(LogRecord(None, tuple(ents(9, 10, 1)), None)), "does not fit the log"),
    ],
)
def test_a_well_framed_record_that_is_not_right_is_corruption(payload: bytes, message: str) -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.close()
    offset = _append_raw(fs, encode_frame(2, payload))
    with pytest.raises(CorruptDataError, match=message) as info:
        _open(fs)
    assert (info.value.path, info.value.offset) == (_segment(fs), offset)


def test_a_lost_record_between_segments_is_a_gap() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs, segment_size=400)
    storage.save_sync(hs(1, 1, 0), ents(1, 6, 1))
    storage.save_sync(hs(2, 1, 0), [])  # a small hard-state record ends the first segment
    storage.save_sync(None, ents(6, 12, 1))  # does not fit: the second segment begins
    storage.close()
    first, second = (_segment(fs, 0), _segment(fs, 1))
    frames, _ = scan(fs.read(first))
    fs.cut(first, frames[-1].offset)  # the hard state record is gone, the entries still line up
    with pytest.raises(CorruptDataError, match="record number 3 where 2 was expected") as info:
        _open(fs, segment_size=400)
    assert (info.value.path, info.value.offset) == (second, 0)


def test_a_record_larger_than_a_segment_gets_one_of_its_own() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs, segment_size=256)
    storage.save_sync(hs(1, 1, 0), ents(1, 30, 1))
    storage.save_sync(hs(1, 1, 1), ents(30, 31, 1))
    assert len(list_segments(fs, WAL_DIR)) == 2
    storage.close()
    assert _open(fs, segment_size=256).last_index() == 30


def test_leftovers_of_an_interrupted_release_are_removed_at_open() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs, segment_size=512)
    for i in range(1, 30, 4):
        storage.save_sync(hs(1, 1, i + 3), ents(i, i + 4, 1))
    before = list_segments(fs, WAL_DIR)
    assert len(before) > 2
    fs.fail_at(10)  # the first remove of the release, after snapshot file and checkpoint
    storage.create_snapshot_sync(Index(20), CONF, b"state")
    checkpoint = list_segments(fs, WAL_DIR)[-1]
    assert list_segments(fs, WAL_DIR) == [*before, checkpoint]  # nothing released
    storage.save_sync(None, ents(33, 34, 1))  # the failure was housekeeping: still writable
    storage.close()
    storage = _open(fs, segment_size=512)
    assert list_segments(fs, WAL_DIR)[0] == checkpoint
    assert (storage.first_index(), storage.last_index()) == (21, 33)


def test_a_wal_whose_beginning_is_gone_is_refused() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs, segment_size=256)
    for i in range(1, 20, 3):
        storage.save_sync(hs(1, 1, 0), ents(i, i + 3, 1))
    storage.close()
    fs.remove(_segment(fs, 0))
    with pytest.raises(DataDirError, match="has no beginning"):
        _open(fs, segment_size=256)


def test_files_that_are_not_segments_are_ignored() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.close()
    for name in ("README", "x.wal", "zzzzzzzzzzzzzzzz.wal", "0x00000000000007.wal", "a.tmp"):
        fs.create(posixpath.join(WAL_DIR, name), 10).close()
    assert _open(fs).last_index() == 2


def test_release_needs_a_checkpoint_at_the_start_of_the_segment() -> None:
    fs = CrashingFileSystem()
    fs.makedirs(WAL_DIR)
    wal = Wal.create(fs, WAL_DIR, 1024)
    wal.append(LogRecord(None, tuple(ents(1, 2, 1)), None))
    with pytest.raises(RuntimeError, match="checkpoint"):
        wal.release()


def test_a_disk_error_while_repairing_a_torn_tail_fails_the_open() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.close()
    _append_raw(fs, encode_frame(2, b"torn record")[:-3])
    fs.fail_at(0)
    with pytest.raises(OSError):
        _open(fs)
    assert _open(fs).last_index() == 2
