"""Damage to stored bytes is detected (an error naming file and offset) or is a torn-tail
truncation (the state of a shorter prefix of the workload); it is never silently wrong data."""

from __future__ import annotations

import copy
import posixpath
import random

import pytest

from node.codec import encode
from node.storage import CorruptDataError, CrashingFileSystem, DataDirError
from node.storage.datadir import write_atomically
from node.storage.frame import Frame, encode_frame, scan
from node.storage.wal import list_segments
from raft.types import HardState, Index, Snapshot, SnapshotMetadata, Term
from tests.node.storage_workload import (
    DATA_DIR,
    MORE_STEPS,
    Harness,
    model_summaries,
    run,
    summary,
)

SUMMARIES = model_summaries(MORE_STEPS)
WAL = posixpath.join(DATA_DIR, "wal")
SNAP = posixpath.join(DATA_DIR, "snap")


def _written() -> CrashingFileSystem:
    fs = CrashingFileSystem()
    harness = Harness(fs)
    run(harness, MORE_STEPS)
    harness.s.close()
    fs.reboot()  # a clean shutdown: everything was synced, so nothing is lost
    return fs


PRISTINE = _written()


def _fresh() -> CrashingFileSystem:
    return copy.deepcopy(PRISTINE)


def _segments() -> list[str]:
    return [posixpath.join(WAL, f"{seq:016x}.wal") for seq in list_segments(PRISTINE, WAL)]


def _frames(path: str) -> list[Frame]:
    return scan(PRISTINE.read(path))[0]


def _snapshot_file() -> str:
    (name,) = PRISTINE.listdir(SNAP)
    return posixpath.join(SNAP, name)


def _outcome(fs: CrashingFileSystem) -> tuple[object, ...] | DataDirError:
    try:
        harness = Harness(fs)
        return summary(harness.open())
    except DataDirError as exc:
        return exc


def test_the_pristine_dir_has_several_segments_and_a_snapshot() -> None:
    assert len(_segments()) >= 3
    assert _outcome(_fresh()) == SUMMARIES[-1]
    _snapshot_file()


def _flip_cases() -> list[tuple[str, int]]:
    rng = random.Random(1)
    cases = []
    for path in [*_segments(), _snapshot_file(), posixpath.join(DATA_DIR, "meta.json")]:
        used = max((f.end for f in _frames(path)), default=0) if path.endswith(".wal") else 0
        size = len(PRISTINE.read(path))
        for _ in range(25):  # mostly where the records are, some in the zeros after them
            end = used if used and rng.random() < 0.8 else size
            cases.append((path, rng.randrange(end * 8)))
    return cases


@pytest.mark.parametrize(("path", "bit"), _flip_cases())
def test_a_flipped_bit(path: str, bit: int) -> None:
    fs = _fresh()
    fs.flip_bit(path, bit)
    outcome = _outcome(fs)
    if isinstance(outcome, DataDirError):
        assert path in str(outcome) or posixpath.dirname(path) in str(outcome)
        return
    assert outcome in SUMMARIES, "a damaged dir recovered to a state the workload never had"
    if path.endswith(".wal"):
        segments = _segments()
        frames = _frames(path)
        last_frame = _frames(segments[-1])[-1]
        in_a_record = any(f.offset <= bit // 8 < f.end for f in frames)
        if in_a_record:
            # Only the newest record may be taken for a torn write; anything else is corruption.
            assert path == segments[-1] and last_frame.offset <= bit // 8
            assert outcome == SUMMARIES[-2]
        else:
            assert outcome == SUMMARIES[-1]  # a flip in unused, zero-filled space
    elif path.endswith(".snap"):
        pytest.fail("a damaged snapshot file was accepted")
    else:
        assert outcome == SUMMARIES[-1]  # meta.json still named the same identity


def test_damage_before_the_tail_names_file_and_offset() -> None:
    fs = _fresh()
    last = _segments()[-1]
    first, *_ = _frames(last)
    fs.flip_bit(last, (first.offset + 25) * 8)
    with pytest.raises(CorruptDataError) as info:
        Harness(fs).open()
    assert info.value.path == last
    assert info.value.offset == first.offset
    assert "followed by a valid one" in str(info.value)


def test_damage_in_a_completed_segment_is_refused() -> None:
    fs = _fresh()
    segment = _segments()[0]
    frame = _frames(segment)[-1]
    fs.flip_bit(segment, (frame.end - 1) * 8)
    with pytest.raises(CorruptDataError, match="inside a completed segment") as info:
        Harness(fs).open()
    assert info.value.path == segment
    assert info.value.offset == frame.offset


@pytest.mark.parametrize("seed", range(40))
def test_truncating_the_last_segment(seed: int) -> None:
    last = _segments()[-1]
    end = _frames(last)[-1].end
    size = random.Random(seed).randrange(end + 1)
    fs = _fresh()
    fs.cut(last, size)
    outcome = _outcome(fs)
    # Whole records cut off are indistinguishable from never written: a shorter prefix.
    assert isinstance(outcome, DataDirError) or outcome in SUMMARIES


def test_truncating_a_completed_segment_is_refused() -> None:
    for segment in _segments()[:-1]:
        frames = _frames(segment)
        for size in (frames[-1].offset, frames[-1].offset + 3):  # at and inside a record
            fs = _fresh()
            fs.cut(segment, size)
            with pytest.raises(CorruptDataError):
                Harness(fs).open()


@pytest.mark.parametrize("cut", [1, 10, -1])
def test_truncated_snapshot_file(cut: int) -> None:
    fs = _fresh()
    path = _snapshot_file()
    size = len(fs.read(path))
    assert size > 10
    fs.cut(path, size - 1 if cut < 0 else cut)
    with pytest.raises(CorruptDataError, match="checksum"):
        Harness(fs).open()


def test_missing_files_are_refused() -> None:
    segments = _segments()
    cases = [
        (segments[len(segments) // 2], "is missing"),
        (_snapshot_file(), "is missing"),
        (posixpath.join(DATA_DIR, "meta.json"), "no metadata"),
    ]
    for path, message in cases:
        fs = _fresh()
        fs.remove(path)
        fs.sync_dir(posixpath.dirname(path))
        with pytest.raises(DataDirError, match=message):
            Harness(fs).open()


def test_a_snapshot_file_that_is_not_a_snapshot_is_refused() -> None:
    fs = _fresh()
    path = _snapshot_file()
    write_atomically(fs, SNAP, posixpath.basename(path), encode_frame(0, encode(HardState())))
    with pytest.raises(CorruptDataError, match="expected a Snapshot"):
        Harness(fs).open()


def test_a_snapshot_file_holding_another_snapshot_is_refused() -> None:
    fs = _fresh()
    path = _snapshot_file()
    other = Snapshot(SnapshotMetadata(Index(1), Term(1)), b"someone else's")
    write_atomically(fs, SNAP, posixpath.basename(path), encode_frame(0, encode(other)))
    with pytest.raises(CorruptDataError, match="but the WAL says"):
        Harness(fs).open()
