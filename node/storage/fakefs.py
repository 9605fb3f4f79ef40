"""An in-memory FileSystem that can crash: it forgets whatever was not made durable.

Why: "nothing acknowledged is lost after a crash" cannot be shown by killing a process at random;
the crash has to land on every step of a workload, and the disk afterwards has to hold exactly what
POSIX promises and no more. This fake keeps two views of every file and directory:

* what reads see (the page cache), changed by every call;
* what survives a crash: file bytes as of their last ``sync``, names as of their directory's last
  ``sync_dir``.

``crash_at(n)`` makes the n-th mutating call (0-based) raise ``SimulatedCrash`` *before* it acts;
each call of the workload is a boundary. ``reboot()`` then keeps the durable view only. With an
``rng``, ``reboot`` is harsher and closer to real disks: every 512-byte sector written since the
last sync independently did or did not reach the platter (so a record can be torn anywhere, and
later sectors may land while earlier ones do not), the file size may or may not have been updated,
and a random prefix of the unsynced directory operations was journaled.

``fail_at(n)`` instead makes that call fail with EIO while the machine stays up: a disk error, for
testing that the storage stops writing after one.

Directories themselves are kept simple: once made they survive (nothing here removes one), which
is all the storage code needs.
"""

from __future__ import annotations

import errno
import posixpath
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from node.storage.fs import FileHandle

SECTOR = 512


class SimulatedCrash(Exception):
    """The scripted crash point was reached; the fake 'machine' is off until ``reboot()``."""


@dataclass(eq=False)
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    dirty: set[int] = field(default_factory=set)  # sector numbers written since the last sync

    def mark(self, start: int, end: int) -> None:
        self.dirty.update(range(start // SECTOR, (end + SECTOR - 1) // SECTOR))

    def sync(self) -> None:
        self.durable = bytes(self.data)
        self.dirty.clear()

    def after_crash(self, rng: random.Random | None) -> None:
        new = bytearray(self.durable)
        if rng is not None:
            size = rng.choice((len(self.durable), len(self.data)))
            new = bytearray(new[:size].ljust(size, b"\0"))
            for sector in sorted(self.dirty):
                if rng.random() < 0.5:
                    start = sector * SECTOR
                    chunk = self.data[start : min(start + SECTOR, size)]
                    new[start : start + len(chunk)] = chunk
        self.data = new
        self.durable = bytes(new)
        self.dirty.clear()


_NameOp = Callable[[dict[str, _Inode]], None]
"""A directory operation, replayable onto a name table (the durable one, once it is synced)."""


class _FakeFile:
    def __init__(self, fs: CrashingFileSystem, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode
        self._boot = fs.boots
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise ValueError("I/O on a closed file")
        if self._boot != self._fs.boots:
            raise ValueError("file handle from before a reboot")

    def pwrite(self, data: bytes, offset: int) -> None:
        self._fs._step()
        self._check()
        inode = self._inode
        end = offset + len(data)
        if end > len(inode.data):
            inode.mark(len(inode.data), end)
            inode.data.extend(bytes(end - len(inode.data)))
        inode.data[offset:end] = data
        inode.mark(offset, end)

    def sync(self) -> None:
        self._fs._step()
        self._check()
        self._inode.sync()

    def close(self) -> None:
        self._closed = True


class CrashingFileSystem:
    """The fake. Paths are POSIX strings; any absolute or relative root works."""

    def __init__(self) -> None:
        self._files: dict[str, _Inode] = {}
        self._durable_names: dict[str, _Inode] = {}
        # Unsynced directory operations, oldest first, with the directory each one changes.
        self._pending: list[tuple[str, _NameOp]] = []
        self._dirs: set[str] = {"/", "."}
        self._crash_at: int | None = None
        self._fail_at: int | None = None
        self._down = False
        #: Mutating calls made so far; a workload run once tells how many boundaries it has.
        self.ops = 0
        #: Reboots so far; file handles opened before the last one are dead.
        self.boots = 0

    # ---- the crash controls ----

    def crash_at(self, op: int | None) -> None:
        """Crash when mutating call number ``op`` (counting from the current ``ops``) starts."""
        self._crash_at = None if op is None else self.ops + op

    def fail_at(self, op: int) -> None:
        """Make mutating call number ``op`` (from now) fail with EIO, the machine staying up:
        a disk error rather than a crash."""
        self._fail_at = self.ops + op

    def reboot(self, rng: random.Random | None = None) -> None:
        """Lose what was not durable (see the module docstring for what ``rng`` adds)."""
        pending = self._pending
        if rng is not None:
            pending = pending[: rng.randint(0, len(pending))]
        else:
            pending = []
        for _, name_op in pending:
            name_op(self._durable_names)
        self._pending = []
        self.boots += 1
        self._files = dict(self._durable_names)
        # A fixed order (the name table's), so a seeded reboot tears the same sectors in every
        # process; a set of identity-hashed inodes would iterate in memory-address order.
        for inode in dict.fromkeys(self._files.values()):
            inode.after_crash(rng)
        self._crash_at = None
        self._down = False

    def _step(self) -> None:
        if self._down:
            raise SimulatedCrash("the machine is down")
        if self._crash_at is not None and self.ops >= self._crash_at:
            self._down = True
            raise SimulatedCrash(f"crash at operation {self.ops}")
        if self._fail_at == self.ops:
            self._fail_at = None
            self.ops += 1
            raise OSError(errno.EIO, f"simulated I/O error at operation {self.ops - 1}")
        self.ops += 1

    def _alive(self) -> None:
        if self._down:
            raise SimulatedCrash("the machine is down")

    # ---- tampering, for corruption tests (changes both views: the disk itself changed) ----

    def files(self) -> list[str]:
        return sorted(self._files)

    def flip_bit(self, path: str, bit: int) -> None:
        inode = self._files[path]
        inode.data[bit // 8] ^= 1 << (bit % 8)
        inode.sync()

    def cut(self, path: str, size: int) -> None:
        inode = self._files[path]
        del inode.data[size:]
        inode.sync()

    # ---- FileSystem ----

    def exists(self, path: str) -> bool:
        self._alive()
        path = posixpath.normpath(path)
        return path in self._files or path in self._dirs

    def makedirs(self, path: str) -> None:
        self._step()
        missing = []
        path = posixpath.normpath(path)
        while path not in ("", "/", ".") and path not in self._dirs:
            if path in self._files:
                raise FileExistsError(path)
            missing.append(path)
            path = posixpath.dirname(path)
        self._dirs.update(missing)

    def listdir(self, path: str) -> list[str]:
        self._alive()
        path = posixpath.normpath(path)
        if path not in self._dirs:
            raise FileNotFoundError(path)
        names = [
            p for p in [*self._files, *self._dirs] if p != path and posixpath.dirname(p) == path
        ]
        return sorted(posixpath.basename(p) for p in names)

    def read(self, path: str) -> bytes:
        self._alive()
        return bytes(self._inode(path).data)

    def size(self, path: str) -> int:
        self._alive()
        return len(self._inode(path).data)

    def create(self, path: str, size: int) -> FileHandle:
        self._step()
        path = self._new_name(path)
        inode = _Inode(data=bytearray(size))
        self._files[path] = inode
        self._pending.append((posixpath.dirname(path), lambda names: names.update({path: inode})))
        return _FakeFile(self, inode)

    def open(self, path: str) -> FileHandle:
        self._alive()
        return _FakeFile(self, self._inode(path))

    def rename(self, src: str, dst: str) -> None:
        self._step()
        src, dst = posixpath.normpath(src), posixpath.normpath(dst)
        if posixpath.dirname(src) != posixpath.dirname(dst):
            raise OSError("the fake renames within one directory only")
        self._files[dst] = self._inode(src)
        del self._files[src]

        def rename(names: dict[str, _Inode]) -> None:
            inode = names.pop(src, None)
            if inode is not None:
                names[dst] = inode

        self._pending.append((posixpath.dirname(src), rename))

    def remove(self, path: str) -> None:
        self._step()
        path = posixpath.normpath(path)
        self._inode(path)
        del self._files[path]

        def remove(names: dict[str, _Inode]) -> None:
            names.pop(path, None)

        self._pending.append((posixpath.dirname(path), remove))

    def sync_dir(self, path: str) -> None:
        self._step()
        path = posixpath.normpath(path)
        if path not in self._dirs:
            raise FileNotFoundError(path)
        for directory, name_op in self._pending:
            if directory == path:
                name_op(self._durable_names)
        self._pending = [entry for entry in self._pending if entry[0] != path]

    # ---- helpers ----

    def _inode(self, path: str) -> _Inode:
        try:
            return self._files[posixpath.normpath(path)]
        except KeyError:
            raise FileNotFoundError(path) from None

    def _new_name(self, path: str) -> str:
        path = posixpath.normpath(path)
        if path in self._files or path in self._dirs:
            raise FileExistsError(path)
        if posixpath.dirname(path) not in self._dirs:
            raise FileNotFoundError(posixpath.dirname(path))
        return path
