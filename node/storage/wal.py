"""The write-ahead log: preallocated segment files of framed ``LogRecord``s, and their replay.

Writing. One ``append`` writes one frame (one Ready's snapshot marker, entries and hard state
together) with one ``pwrite`` and one fdatasync: group commit. A Ready is therefore all-or-nothing
on disk, which is what lets recovery treat a damaged last frame as "never written". Segments are
preallocated (zeros) so the file size does not change with every append; when the next frame does
not fit, a new segment is created, synced, and its directory synced.

Checkpoints. A record carrying a snapshot resets the log (``LogRecord``), so it alone determines the
log: everything before it can go. ``append(..., checkpoint=True)`` therefore starts a new segment
first, so that each checkpoint is the first frame of its segment, and ``release`` can delete whole
older segments. On open, replay starts at the newest segment that begins with a checkpoint (or at
segment 0); older segments are leftovers of an interrupted release and are deleted.

Reading back, the two kinds of damage are told apart, and must be:

* A **torn tail**: the last frame of the last segment is incomplete or fails its CRC, and no valid
  frame follows it. That is the write a crash interrupted; its Ready was never acknowledged (the
  fsync had not returned), so dropping it loses nothing promised. It is zeroed and replay goes on.
* **Corruption**: a bad frame followed by a valid one, a bad frame in a segment that was complete
  when the next one was started, a gap in the frame sequence numbers or in the segment numbers, or
  a frame whose CRC is fine but whose content is not a record. Those bytes were acknowledged once;
  opening is refused with the file and offset, never silently skipped.

A damaged *last* frame whose fsync had returned (bit rot of the newest record) looks exactly like
a torn write and is dropped too: no checksum can tell the two apart.
"""

from __future__ import annotations

import gc
import posixpath
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from node.codec import CodecError, LogRecord, decode, encode
from node.storage.errors import CorruptDataError, DataDirError
from node.storage.frame import Frame, encode_frame, is_zero, next_frame_after, read_frame, scan
from node.storage.fs import FileHandle, FileSystem
from raft.errors import StorageError

SEGMENT_SUFFIX: Final = ".wal"
DEFAULT_SEGMENT_SIZE: Final = 64 * 1024 * 1024


def segment_name(seq: int) -> str:
    return f"{seq:016x}{SEGMENT_SUFFIX}"


_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def _segment_seq(name: str) -> int | None:
    stem = name.removesuffix(SEGMENT_SUFFIX)
    if stem == name or len(stem) != 16 or not _HEX_DIGITS.issuperset(stem):
        return None
    return int(stem, 16)


def list_segments(fs: FileSystem, directory: str) -> list[int]:
    """Segment numbers present in ``directory``, oldest first."""
    found = (_segment_seq(name) for name in fs.listdir(directory))
    return sorted(seq for seq in found if seq is not None)


def has_records(fs: FileSystem, directory: str) -> bool:
    """Whether any segment holds anything but zeros (used before bootstrapping over leftovers)."""
    return any(
        not is_zero(fs.read(posixpath.join(directory, segment_name(seq))), 0)
        for seq in list_segments(fs, directory)
    )


class Wal:
    """An open WAL, positioned for appending after the last valid frame."""

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        segment_size: int,
        segments: list[int],
        handle: FileHandle,
        offset: int,
        next_seq: int,
        starts_with_checkpoint: bool,
        sealed_bytes: int = 0,
    ) -> None:
        """``sealed_bytes``: bytes of records in the live segments before the current one."""
        self._fs = fs
        self._dir = directory
        self._segment_size = segment_size
        self._segments = segments
        self._handle = handle
        self._offset = offset
        self._next_seq = next_seq
        self._starts_with_checkpoint = starts_with_checkpoint
        self._sealed_bytes = sealed_bytes
        #: How long the last append's fdatasync took (etcd's wal_fsync_duration_seconds).
        self.last_sync_seconds = 0.0

    @property
    def used_bytes(self) -> int:
        """Bytes of records in the live segments (segments are preallocated, so the files are
        larger): the WAL's share of the Status RPC's dbSizeInUse."""
        return self._sealed_bytes + self._offset

    # ---- creating and opening ----

    @classmethod
    def create(cls, fs: FileSystem, directory: str, segment_size: int) -> Wal:
        """A new, empty WAL (segment 0), replacing leftovers that hold no records."""
        for seq in list_segments(fs, directory):
            fs.remove(posixpath.join(directory, segment_name(seq)))
        handle = fs.create(posixpath.join(directory, segment_name(0)), segment_size)
        handle.sync()
        fs.sync_dir(directory)
        return cls(fs, directory, segment_size, [0], handle, 0, 1, False)

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        directory: str,
        segment_size: int,
        apply: Callable[[LogRecord], None],
    ) -> Wal:
        """Replay every record from the newest checkpoint on through ``apply``, in order, then
        return the WAL ready for appending. ``apply`` raising a raft ``StorageError`` means the
        record does not fit the log: that is reported as corruption at that record."""
        return _Replay(fs, directory, apply).run(segment_size)

    # ---- writing ----

    def append(self, record: LogRecord, *, checkpoint: bool = False) -> None:
        """Write ``record`` durably. A checkpoint begins a new segment (see the module doc)."""
        frame = encode_frame(self._next_seq, encode(record))
        if self._offset > 0 and (checkpoint or self._offset + len(frame) > self._segment_size):
            self._rotate()
        self._handle.pwrite(frame, self._offset)
        started = time.perf_counter()
        self._handle.sync()
        self.last_sync_seconds = time.perf_counter() - started
        if self._offset == 0:
            self._starts_with_checkpoint = checkpoint
        self._offset += len(frame)
        self._next_seq += 1

    def _rotate(self) -> None:
        seq = self._segments[-1] + 1
        handle = self._fs.create(self._path(seq), self._segment_size)
        try:
            handle.sync()
            self._fs.sync_dir(self._dir)
        except BaseException:
            handle.close()
            raise
        self._handle.close()
        self._sealed_bytes += self._offset
        self._handle, self._offset = handle, 0
        self._segments.append(seq)
        self._starts_with_checkpoint = False

    def release(self) -> None:
        """Delete every segment before the current one, which must begin with a checkpoint."""
        if not self._starts_with_checkpoint:
            raise RuntimeError("release() needs the current segment to begin with a checkpoint")
        old, self._segments = self._segments[:-1], self._segments[-1:]
        self._sealed_bytes = 0
        for seq in old:
            self._fs.remove(self._path(seq))
        if old:
            self._fs.sync_dir(self._dir)

    def close(self) -> None:
        self._handle.close()

    def _path(self, seq: int) -> str:
        return posixpath.join(self._dir, segment_name(seq))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Replay allocates some hundred thousand long-lived objects and frees almost nothing. The
    cyclic collector would traverse the growing heap again and again (it doubled replay time in
    the bench) while finding no garbage, so it is paused for the duration."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Replay:
    """One run of recovery over a WAL directory (see the module doc for the rules)."""

    def __init__(self, fs: FileSystem, directory: str, apply: Callable[[LogRecord], None]) -> None:
        self._fs = fs
        self._dir = directory
        self._apply = apply
        self._expected: int | None = None  # sequence number of the next frame
        self._start_content: tuple[int, bytes] | None = None  # read by _find_start, reused

    def run(self, segment_size: int) -> Wal:
        with _gc_paused():
            return self._run(segment_size)

    def _run(self, segment_size: int) -> Wal:
        segments = list_segments(self._fs, self._dir)
        if not segments:
            raise DataDirError(self._dir, "holds no WAL segment, yet the data dir has metadata")
        start = self._find_start(segments)
        live = segments[start:]
        for previous, seq in zip(live, live[1:], strict=False):
            if seq != previous + 1:
                raise DataDirError(
                    self._dir, f"WAL segment {segment_name(previous + 1)} is missing"
                )
        sealed_bytes = 0
        for seq in live[:-1]:
            sealed_bytes += self._replay_segment(seq, is_last=False)[0]
        end, torn_end, starts_with_checkpoint = self._replay_segment(live[-1], is_last=True)
        handle = self._fs.open(self._path(live[-1]))
        try:
            if torn_end > end:  # zero it, so its bytes never mix with later records
                handle.pwrite(bytes(torn_end - end), end)
                handle.sync()
            for seq in segments[:start]:  # leftovers of a release that a crash interrupted
                self._fs.remove(self._path(seq))
            if start:
                self._fs.sync_dir(self._dir)
        except BaseException:
            handle.close()
            raise
        next_seq = 1 if self._expected is None else self._expected
        return Wal(
            self._fs,
            self._dir,
            segment_size,
            live,
            handle,
            end,
            next_seq,
            starts_with_checkpoint,
            sealed_bytes,
        )

    def _find_start(self, segments: list[int]) -> int:
        """Position of the newest segment that starts with a checkpoint, or of segment 0."""
        for position in range(len(segments) - 1, -1, -1):
            seq = segments[position]
            buf = self._fs.read(self._path(seq))
            self._start_content = (seq, buf)
            first = read_frame(buf, 0)
            if first is None:
                if position != len(segments) - 1 and not is_zero(buf, 0):
                    raise CorruptDataError(self._path(seq), 0, "the first record is damaged")
                # Empty (a rotation cut short) or the torn first write of the last segment.
            elif self._decode(seq, first).snapshot is not None:
                return position
            if seq == 0:
                return position
        raise DataDirError(
            self._dir,
            f"the WAL has no beginning: {segment_name(segments[0])} does not start with a "
            "checkpoint and the segments before it are gone",
        )

    def _replay_segment(self, seq: int, *, is_last: bool) -> tuple[int, int, bool]:
        """Apply the records of one segment. Returns where they end, where the torn tail (if
        any) ends, and whether the first record is a checkpoint."""
        path = self._path(seq)
        if self._start_content is not None and self._start_content[0] == seq:
            buf = self._start_content[1]
            self._start_content = None
        else:
            buf = self._fs.read(path)
        frames, end = scan(buf)
        starts_with_checkpoint = False
        for frame in frames:
            if self._expected is not None and frame.seq != self._expected:
                raise CorruptDataError(
                    path,
                    frame.offset,
                    f"record number {frame.seq} where {self._expected} was expected",
                )
            self._expected = frame.seq + 1
            record = self._decode(seq, frame)
            if frame.offset == 0:
                starts_with_checkpoint = record.snapshot is not None
            try:
                self._apply(record)
            except StorageError as exc:
                raise CorruptDataError(
                    path, frame.offset, f"record does not fit the log: {exc}"
                ) from exc
        if is_zero(buf, end):
            return end, end, starts_with_checkpoint
        if not is_last:
            raise CorruptDataError(path, end, "damaged record inside a completed segment")
        following = next_frame_after(buf, end)
        if following is not None:
            raise CorruptDataError(
                path, end, f"damaged record followed by a valid one at offset {following.offset}"
            )
        return end, len(buf.rstrip(b"\0")), starts_with_checkpoint

    def _decode(self, seq: int, frame: Frame) -> LogRecord:
        try:
            return decode(frame.payload, LogRecord)
        except CodecError as exc:
            raise CorruptDataError(self._path(seq), frame.offset, str(exc)) from exc

    def _path(self, seq: int) -> str:
        return posixpath.join(self._dir, segment_name(seq))
