"""Saves without fdatasync: a Ready whose only change is the commit index (``must_sync`` False).

Such an update is kept in memory and written with the next record or at a clean close; a crash
before that loses only it (Raft relearns the commit index), and the WAL never holds an unsynced
record that a later one could be torn behind.
"""

from __future__ import annotations

from node.storage import CrashingFileSystem, DurableStorage, SimulatedCrash
from tests.node.storage_workload import DATA_DIR, IDENTITY, ents, hs


def _open(fs: CrashingFileSystem, segment_size: int = 1 << 20) -> DurableStorage:
    return DurableStorage.open(DATA_DIR, IDENTITY, fs=fs, segment_size=segment_size)


def _crash_and_reopen(fs: CrashingFileSystem) -> DurableStorage:
    fs.reboot()  # everything not fsynced is gone
    return _open(fs)


def test_an_unsynced_commit_update_touches_no_disk() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    before = fs.ops
    storage.save_sync(hs(1, 1, 2), [], sync=False)
    assert fs.ops - before == 0
    assert storage.hard_state == hs(1, 1, 2)


def test_a_deferred_commit_update_rides_with_the_next_entries() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.save_sync(hs(1, 1, 2), [], sync=False)
    storage.save_sync(None, ents(3, 4, 1))  # its own hard state unchanged
    recovered = _crash_and_reopen(fs)
    assert recovered.hard_state == hs(1, 1, 2)
    assert recovered.last_index() == 3


def test_unsynced_updates_in_a_row_and_a_crash_inside_the_next_save_stay_readable() -> None:
    for crash_at in range(1, 4):
        fs = CrashingFileSystem()
        storage = _open(fs)
        storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
        storage.save_sync(hs(1, 1, 1), [], sync=False)
        storage.save_sync(hs(1, 1, 2), [], sync=False)
        fs.crash_at(fs.ops + crash_at)
        try:
            storage.save_sync(None, ents(3, 4, 1))
        except SimulatedCrash:
            pass
        recovered = _crash_and_reopen(fs)
        assert recovered.last_index() in (2, 3)
        assert recovered.hard_state.commit in (0, 2)


def test_a_crash_loses_at_most_the_unsynced_commit_update() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.save_sync(hs(1, 1, 2), [], sync=False)
    recovered = _crash_and_reopen(fs)
    assert recovered.hard_state == hs(1, 1, 0)  # commit relearned from the leader later
    assert recovered.last_index() == 2


def test_the_next_synced_save_makes_an_unsynced_one_durable() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.save_sync(hs(1, 1, 2), [], sync=False)
    storage.save_sync(hs(2, 1, 2), [])
    recovered = _crash_and_reopen(fs)
    assert recovered.hard_state == hs(2, 1, 2)


def test_entries_are_always_synced_even_if_asked_not_to() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1), sync=False)
    recovered = _crash_and_reopen(fs)
    assert recovered.last_index() == 2


def test_a_rotation_syncs_an_unsynced_tail_before_the_next_segment() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs, segment_size=256)
    storage.save_sync(hs(1, 1, 0), ents(1, 2, 1))
    storage.save_sync(hs(1, 1, 1), [], sync=False)
    for i in range(2, 12):  # enough synced appends to rotate at least once
        storage.save_sync(None, ents(i, i + 1, 1))
    recovered = _crash_and_reopen(fs)
    assert recovered.last_index() == 11
    assert recovered.hard_state.commit == 1


def test_a_clean_close_keeps_the_last_commit_update() -> None:
    fs = CrashingFileSystem()
    storage = _open(fs)
    storage.save_sync(hs(1, 1, 0), ents(1, 3, 1))
    storage.save_sync(hs(1, 1, 2), [], sync=False)
    storage.close()
    assert _crash_and_reopen(fs).hard_state == hs(1, 1, 2)
