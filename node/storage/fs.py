"""The file operations the WAL, snapshot and metadata code need, as a small Protocol.

Why a Protocol (CONVENTIONS P4): crash safety is a claim about *which* bytes are durable at each
step, and the only way to test that claim is to run the real code against a file system that can
lose everything not yet synced, at every step. ``node.storage.fakefs`` is that file system; this
module is the real one. Keeping the surface this small (positional writes, fdatasync, atomic rename,
directory fsync) is what makes the fake faithful.

Durability rules every caller relies on (POSIX, and what the fake enforces):

* data written to a file survives a crash only after ``FileHandle.sync`` on it;
* a new, renamed or removed name survives only after ``sync_dir`` on its directory.
"""

from __future__ import annotations

import errno
import os
from typing import Protocol


class FileHandle(Protocol):
    def pwrite(self, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset``, extending the file if needed."""
        ...

    def sync(self) -> None:
        """Make the data (and size) written so far durable: fdatasync."""
        ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    def exists(self, path: str) -> bool: ...

    def makedirs(self, path: str) -> None:
        """Create ``path`` and missing parents (durable once their parents are dir-synced)."""
        ...

    def listdir(self, path: str) -> list[str]: ...

    def read(self, path: str) -> bytes: ...

    def size(self, path: str) -> int: ...

    def create(self, path: str, size: int) -> FileHandle:
        """Create a new file (it must not exist) holding ``size`` zero bytes, preallocated."""
        ...

    def open(self, path: str) -> FileHandle:
        """Open an existing file for positional writes."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename within one directory, replacing ``dst``."""
        ...

    def remove(self, path: str) -> None: ...

    def sync_dir(self, path: str) -> None:
        """Make creations, renames and removals in directory ``path`` durable."""
        ...


_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class OsFile:
    """A file descriptor with the FileHandle operations."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    def sync(self) -> None:
        _fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class OsFileSystem:
    """The real file system."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def create(self, path: str, size: int) -> OsFile:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if size > 0:
                _preallocate(fd, size)
        except BaseException:
            os.close(fd)
            raise
        return OsFile(fd)

    def open(self, path: str) -> OsFile:
        return OsFile(os.open(path, os.O_RDWR | os.O_CLOEXEC))

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _preallocate(fd: int, size: int) -> None:
    """Reserve the blocks now, so appends never fail for lack of space mid-record and the file's
    size does not change with every write (fdatasync then has less metadata to flush)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:  # file systems without fallocate still get the right size
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        os.ftruncate(fd, size)
