"""Crash at every write/fsync boundary of the workload; recovery must lose nothing acknowledged.

For each boundary k: run the workload on a fresh CrashingFileSystem that crashes at its k-th
mutating call, reboot it (dropping what was not durable, or, with a seeded rng, keeping a random
subset of the unsynced sectors and directory operations), reopen, and compare everything a reader
can observe with the MemoryStorage model. The state must be the model after exactly the acknowledged
steps, or after one more (the step in flight may have reached the disk before the crash): any other
state would be acknowledged data lost or an unacknowledged write half-applied.
"""

from __future__ import annotations

import random

import pytest

from node.storage import CrashingFileSystem, SimulatedCrash
from tests.node.storage_workload import STEPS, Harness, ents, hs, model_summaries, run, summary

SUMMARIES = model_summaries()


def _boundaries() -> int:
    fs = CrashingFileSystem()
    run(Harness(fs))
    return fs.ops


BOUNDARIES = _boundaries()


def test_the_workload_matches_its_model_without_crashes() -> None:
    harness = Harness(CrashingFileSystem())
    run(harness)
    assert summary(harness.s) == SUMMARIES[-1]
    assert BOUNDARIES > 50  # the workload really exercises the disk


def _crash_and_recover(boundary: int, rng: random.Random | None) -> None:
    fs = CrashingFileSystem()
    fs.crash_at(boundary)
    harness = Harness(fs)
    with pytest.raises(SimulatedCrash):
        run(harness)
    acked = harness.acked
    fs.reboot(rng)

    recovered = Harness(fs)
    storage = recovered.open()
    state = summary(storage)
    in_flight = STEPS[acked].name if acked < len(STEPS) else "none"
    assert state in SUMMARIES[acked : acked + 2], (
        f"crash at {boundary}: {acked} steps acknowledged, in flight: {in_flight}"
    )

    # The recovered storage keeps working, and what it writes next survives a restart.
    last = storage.last_index()
    storage.save_sync(hs(9, 1, storage.hard_state.commit), ents(last + 1, last + 3, 9))
    expected = summary(storage)
    recovered.reopen()
    assert summary(recovered.s) == expected


@pytest.mark.parametrize("boundary", range(BOUNDARIES))
def test_crash_dropping_everything_unsynced(boundary: int) -> None:
    _crash_and_recover(boundary, rng=None)


@pytest.mark.parametrize("boundary", range(BOUNDARIES))
def test_crash_with_torn_writes(boundary: int) -> None:
    for seed in range(3):
        _crash_and_recover(boundary, rng=random.Random(boundary * 1000 + seed))
