"""The real file system behind the Protocol, and the crashing fake's promises."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from node.storage import CrashingFileSystem, OsFileSystem, SimulatedCrash


def test_os_file_system_operations(tmp_path: Path) -> None:
    fs = OsFileSystem()
    directory = str(tmp_path / "a" / "b")
    fs.makedirs(directory)
    fs.makedirs(directory)  # idempotent
    path = os.path.join(directory, "f")
    handle = fs.create(path, 4096)
    assert fs.size(path) == 4096  # preallocated
    with pytest.raises(FileExistsError):
        fs.create(path, 0)
    handle.pwrite(b"hello", 10)
    handle.sync()
    handle.close()
    handle.close()  # idempotent
    assert fs.read(path) == bytes(10) + b"hello" + bytes(4096 - 15)
    reopened = fs.open(path)
    reopened.pwrite(b"!", 15)
    reopened.close()
    fs.rename(path, path + "2")
    fs.sync_dir(directory)
    assert fs.listdir(directory) == ["f2"]
    assert fs.exists(path + "2") and not fs.exists(path)
    fs.remove(path + "2")
    assert fs.listdir(directory) == []


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL])
def test_preallocation_falls_back_where_fallocate_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(code, "not here")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    path = str(tmp_path / "f")
    OsFileSystem().create(path, 1000).close()
    assert os.path.getsize(path) == 1000


def test_a_real_preallocation_error_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="disk full"):
        OsFileSystem().create(str(tmp_path / "f"), 1000)


# ---- the fake ----


def _fake_with_file() -> tuple[CrashingFileSystem, str]:
    fs = CrashingFileSystem()
    fs.makedirs("/d")
    return fs, "/d/f"


def test_unsynced_data_and_names_are_lost_in_a_crash() -> None:
    fs, path = _fake_with_file()
    handle = fs.create(path, 0)
    handle.pwrite(b"durable", 0)
    handle.sync()
    fs.sync_dir("/d")
    handle.pwrite(b"-lost-", 7)
    fs.create("/d/unnamed", 0).close()
    fs.reboot()
    assert fs.read(path) == b"durable"
    assert fs.listdir("/d") == ["f"]
    with pytest.raises(ValueError, match="before a reboot"):
        handle.pwrite(b"x", 0)


def test_a_synced_file_without_a_synced_name_is_lost() -> None:
    fs, path = _fake_with_file()
    handle = fs.create(path, 0)
    handle.pwrite(b"data", 0)
    handle.sync()
    fs.reboot()
    assert not fs.exists(path)


def test_renames_and_removals_wait_for_sync_dir() -> None:
    fs, path = _fake_with_file()
    fs.create(path, 3).close()
    fs.create("/d/g", 1).close()
    fs.sync_dir("/d")
    fs.rename(path, "/d/h")
    fs.remove("/d/g")
    assert fs.listdir("/d") == ["h"]
    fs.reboot()
    assert fs.listdir("/d") == ["f", "g"]
    fs.rename(path, "/d/h")
    fs.sync_dir("/d")
    fs.reboot()
    assert fs.listdir("/d") == ["g", "h"]


def test_torn_reboots_keep_a_subset_of_unsynced_sectors() -> None:
    fs, path = _fake_with_file()
    handle = fs.create(path, 4096)
    handle.sync()
    fs.sync_dir("/d")
    handle.pwrite(b"\xff" * 4096, 0)
    fs.reboot(random.Random(3))
    data = fs.read(path)
    sectors = {data[i : i + 512] for i in range(0, 4096, 512)}
    assert sectors == {b"\xff" * 512, bytes(512)}  # each sector old or new, never mixed


def test_crash_at_stops_the_machine_until_reboot() -> None:
    fs, path = _fake_with_file()
    fs.crash_at(1)
    handle = fs.create(path, 0)
    with pytest.raises(SimulatedCrash):
        handle.pwrite(b"x", 0)
    with pytest.raises(SimulatedCrash):
        fs.read(path)
    with pytest.raises(SimulatedCrash):
        fs.sync_dir("/d")
    fs.reboot()
    assert not fs.exists(path)
    assert fs.boots == 1


def test_fake_file_system_refusals() -> None:
    fs, path = _fake_with_file()
    handle = fs.create(path, 0)
    handle.close()
    with pytest.raises(ValueError, match="closed"):
        handle.sync()
    with pytest.raises(FileExistsError):
        fs.create(path, 0)
    with pytest.raises(FileExistsError):
        fs.makedirs(path + "/sub")
    assert fs.listdir("/d") == ["f"]
    with pytest.raises(FileNotFoundError):
        fs.create("/nowhere/f", 0)
    with pytest.raises(FileNotFoundError):
        fs.read("/d/missing")
    with pytest.raises(FileNotFoundError):
        fs.listdir("/nowhere")
    with pytest.raises(FileNotFoundError):
        fs.sync_dir("/nowhere")
    with pytest.raises(OSError, match="within one directory"):
        fs.rename(path, "/f")
    assert fs.size(path) == 0
    assert fs.files() == [path]
